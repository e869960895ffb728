use async_graphql::{Context, ID, Object, Result};
use chrono::NaiveDate;

use super::{
    service,
    types::{Parcel, ParcelDeskSummary, ParcelFilter},
};
use crate::{
    graphql::{
        ContextExt,
        ids::{self, Kind},
        pagination::{Page, PageRequest},
    },
    validate,
};

#[derive(Default)]
pub struct ParcelQuery;

#[Object]
impl ParcelQuery {
    /// One parcel, if the viewer may see it.
    async fn parcel(&self, ctx: &Context<'_>, id: ID) -> Result<Parcel> {
        let caller = ctx.caller()?;
        let id = ids::decode(Kind::Parcel, &id, "id")?;
        Ok(Parcel(service::find(ctx.db(), caller, id).await?))
    }

    /// Parcels the viewer may see: a resident their units', a butler their
    /// buildings' (and unidentified ones), the desk and integrators the community's.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn parcels(
        &self,
        ctx: &Context<'_>,
        filter: Option<ParcelFilter>,
        first: i32,
        after: Option<String>,
    ) -> Result<Page<Parcel>> {
        let caller = ctx.caller()?;
        let filter = filter.unwrap_or_default();
        let filter = service::Filter {
            statuses: filter.statuses.unwrap_or_default().into_iter().map(Into::into).collect(),
            unit_id: filter.unit_id.map(|id| ids::decode(Kind::Unit, &id, "filter.unitId")).transpose()?,
            carrier: filter.carrier,
            tracking_number: filter.tracking_number,
            received_from: validate::optional_timestamp(filter.received_from, "filter.receivedFrom")?,
            received_to: validate::optional_timestamp(filter.received_to, "filter.receivedTo")?,
            overdue: filter.overdue,
        };
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::list(ctx.app(), caller, filter, request).await?)
    }

    /// Received, picked up and returned on `day` (the community's local date),
    /// and waiting and overdue now (front desk, supervisor, manager).
    async fn parcel_desk_summary(&self, ctx: &Context<'_>, day: NaiveDate) -> Result<ParcelDeskSummary> {
        let summary = service::desk_summary(ctx.app(), ctx.caller()?, validate::date(day, "day")?).await?;
        Ok(ParcelDeskSummary {
            day,
            received: summary.received,
            picked_up: summary.picked_up,
            returned: summary.returned,
            waiting: summary.waiting,
            overdue: summary.overdue,
        })
    }
}
