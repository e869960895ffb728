use async_graphql::{Context, ID, Object, Result, SelectionField};
use entity::{building, repair_order, unit, user};

use super::{
    service,
    types::{RepairOrder, RepairOrderFilter},
};
use crate::{
    graphql::{
        ContextExt,
        ids::{self, Kind},
        in_turn::InTurn,
        loader::{ColumnsRead, RowsRead},
        pagination::{Page, PageRequest},
    },
    rows::ReadPlan,
    validate,
};

#[derive(Default)]
pub struct RepairQuery;

#[Object]
impl RepairQuery {
    /// One repair order, if the viewer may see it.
    async fn repair_order(&self, ctx: &Context<'_>, id: ID) -> Result<RepairOrder> {
        let principal = ctx.principal()?;
        let id = ids::decode(Kind::RepairOrder, &id, "id")?;
        let related = Shown::under(&[ctx.field()]).columns();
        let order = match ctx.data_opt::<RowsRead>() {
            Some(rows_read) if related.any() => {
                service::find_with_related(ctx.db(), principal, id, &related, rows_read).await?
            }
            _ => service::find(ctx.db(), principal, id).await?,
        };
        Ok(RepairOrder(order))
    }

    /// Repair orders the viewer may see, oldest first: a resident their units'
    /// orders, a butler their buildings', a technician those assigned to them,
    /// other staff the community's.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn repair_orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<RepairOrderFilter>,
        first: i32,
        after: Option<String>,
    ) -> Result<Page<InTurn<RepairOrder>>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let decode = |id: Option<ID>, kind, field| id.map(|id| ids::decode(kind, &id, field)).transpose();
        let filter = service::Filter {
            states: filter.states.unwrap_or_default().into_iter().map(Into::into).collect(),
            priority: filter.priority.map(Into::into),
            overdue: filter.overdue,
            building_id: decode(filter.building_id, Kind::Building, "filter.buildingId")?,
            unit_id: decode(filter.unit_id, Kind::Unit, "filter.unitId")?,
            assignee_id: decode(filter.assignee_id, Kind::User, "filter.assigneeId")?,
            created_from: validate::optional_timestamp(filter.created_from, "filter.createdFrom")?,
            created_to: validate::optional_timestamp(filter.created_to, "filter.createdTo")?,
            text: filter.text,
        };
        let request = PageRequest::new(first, after.as_deref())?;
        let page = ctx.look_ahead();
        let nodes: Vec<_> = [page.field("edges").field("node"), page.field("nodes")]
            .iter()
            .flat_map(|nodes| nodes.selection_fields())
            .collect();
        // The page reads only the columns its nodes show, and a list that shows
        // each order's unit, building or assignee reads the columns of theirs it
        // shows with the page, in one statement.
        let columns = repair_order::Entity::columns_read_by(selected_under(&nodes));
        let related = Shown::under(&nodes).columns();
        let join_related = ctx.data_opt::<RowsRead>().map(|rows_read| (&related, rows_read));
        Ok(service::list(ctx.db(), principal, filter, request, &columns, join_related).await?)
    }
}

/// Where orders' selections show their unit, building, assignee, resident
/// and submitter.
struct Shown<'a> {
    units: Vec<SelectionField<'a>>,
    buildings: Vec<SelectionField<'a>>,
    assignees: Vec<SelectionField<'a>>,
    residents: Vec<SelectionField<'a>>,
    submitters: Vec<SelectionField<'a>>,
}

impl<'a> Shown<'a> {
    /// In the selections of `orders`, each a field whose value is an order.
    fn under(orders: &[SelectionField<'a>]) -> Self {
        let named = |name: &'static str| -> Vec<SelectionField<'a>> {
            selected_under(orders).filter(|field| field.name() == name).collect()
        };
        let units = named("unit");
        // A unit stands in its order's building: one join serves both, with
        // the columns either shows.
        let mut buildings = named("building");
        buildings.extend(selected_under(&units).filter(|field| field.name() == "building"));
        Self {
            units,
            buildings,
            assignees: named("assignee"),
            residents: named("resident"),
            submitters: named("submittedBy"),
        }
    }

    /// The columns of each that the fields showing it read.
    fn columns(&self) -> service::RelatedShown {
        fn read_by<E: ColumnsRead>(shown: &[SelectionField<'_>]) -> Option<ReadPlan<E>> {
            (!shown.is_empty()).then(|| ReadPlan::new(E::columns_read_by(selected_under(shown))))
        }
        let (residents, submitters) = (!self.residents.is_empty(), !self.submitters.is_empty());
        // A person may be an order's assignee too: the row kept for them
        // holds what the assignee's fields read as well.
        let people = (residents || submitters).then(|| service::PeopleShown {
            plan: ReadPlan::new(user::Entity::columns_read_by(selected_under(
                &[&self.residents[..], &self.submitters, &self.assignees].concat(),
            ))),
            residents,
            submitters,
        });
        service::RelatedShown {
            unit: read_by::<unit::Entity>(&self.units),
            building: read_by::<building::Entity>(&self.buildings),
            assignee: read_by::<user::Entity>(&self.assignees),
            people,
        }
    }
}

/// The fields selected under each of `fields`.
fn selected_under<'a>(fields: &[SelectionField<'a>]) -> impl Iterator<Item = SelectionField<'a>> {
    fields.iter().flat_map(|field| field.selection_set())
}
