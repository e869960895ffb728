//! The rules of repair orders: who may submit, dispatch, work on, confirm,
//! cancel and follow up on an order, the state machine, optimistic locking,
//! and the timeline and outbox rows written with every change.

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
};

use chrono::{DateTime, Utc};
use entity::{
    building, butler_assignment,
    enums::{RepairAction, RepairCategory, RepairChannel, RepairPriority, RepairState, Role, StaffPosition},
    repair_follow_up, repair_order, repair_order_change, repair_photo, unit, unit_membership, user,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult,
    IdenStatic, Iterable, JoinType, PaginatorTrait, QueryFilter, QueryResult, QuerySelect, QueryTrait, RelationDef,
    Select, Statement,
    sea_query::{Alias, Expr, ExprTrait, InsertStatement, LikeExpr, Query, SelectStatement, WithQuery},
};

use super::{
    photos::{self, AcceptedPhoto},
    state::{self, Transition},
    types,
};
use crate::{
    AppContext,
    auth::{Action, Principal, permissions},
    db::{WrittenWith, select_written, written},
    error::{ApiError, ApiResult},
    events::{self, NewEvent, NewRowId, audience},
    graphql::{
        in_turn::InTurn,
        loader::RowsRead,
        pagination::{self, Count, Page, PageRequest},
    },
    idempotency::{self, Claim},
    property::{scope, service as property},
    rows::{self, ReadPlan},
    statements::{Columns, Parameter, Parameters, Templates},
    validate,
};

pub const ENTITY_TYPE: &str = "REPAIR_ORDER";
const MAX_CHARGE_CENTS: i64 = 10_000_000;

/// Orders the principal may see: a resident their current units' orders, a
/// butler those of the assigned buildings, a technician those assigned to
/// them, other staff the community's.
pub fn visible(principal: &Principal) -> Condition {
    let nothing = || Condition::all().add(Expr::cust("1 = 0"));
    match (principal.role, principal.position, principal.community_id) {
        (Role::Resident, ..) => {
            Condition::all().add(repair_order::Column::UnitId.in_subquery(scope::current_units_of(principal.user_id)))
        }
        (Role::Butler, ..) => Condition::all()
            .add(repair_order::Column::BuildingId.in_subquery(scope::buildings_assigned_to(principal.user_id))),
        (Role::Staff, Some(StaffPosition::Technician), Some(community_id)) => Condition::all()
            .add(repair_order::Column::CommunityId.eq(community_id))
            .add(repair_order::Column::AssigneeId.eq(principal.user_id)),
        (Role::Staff, Some(_), Some(community_id)) => {
            Condition::all().add(repair_order::Column::CommunityId.eq(community_id))
        }
        (Role::Staff, ..) => nothing(),
    }
}

pub async fn find(db: &impl ConnectionTrait, principal: &Principal, id: i64) -> ApiResult<repair_order::Model> {
    let statement = ORDERS_BY_ID.statement(
        db.get_database_backend(),
        &(principal.role, principal.position),
        &by_id_inputs(principal, id),
        order_by_id,
    );
    repair_order::Model::find_by_statement(statement).one(db).await?.ok_or(ApiError::NotFound("repair order"))
}

/// Orders read by id, as each role and position sees them: read for every
/// change of an order and for each subscriber an event about it reaches.
static ORDERS_BY_ID: LazyLock<Templates<(Role, Option<StaffPosition>)>> = LazyLock::new(Templates::default);

/// Where a read by id's parameters sit among its `Parameters`.
mod by_id_parameter {
    pub const USER: usize = 0;
    pub const COMMUNITY: usize = 1;
    pub const ORDER: usize = 2;
}

/// The parameters of `principal`'s read of the order `id`.
fn by_id_inputs(principal: &Principal, id: i64) -> Parameters {
    let mut parameters = vec![None; 3];
    parameters[by_id_parameter::USER] = Some(Parameter::Id(principal.user_id));
    parameters[by_id_parameter::COMMUNITY] = principal.community_id.map(Parameter::Id);
    parameters[by_id_parameter::ORDER] = Some(Parameter::Id(id));
    Parameters::new(parameters)
}

/// The order the parameters name, if the principal they and `seen_as`
/// (role and position) describe may see it.
fn order_by_id(&(role, position): &(Role, Option<StaffPosition>), parameters: &Parameters) -> SelectStatement {
    use by_id_parameter::*;
    let user_id = parameters.id(USER).unwrap_or_default();
    let principal = Principal { user_id, role, position, community_id: parameters.id(COMMUNITY) };
    let order = repair_order::Entity::find_by_id(parameters.id(ORDER).unwrap_or_default());
    order.filter(visible(&principal)).limit(1).into_query()
}

/// Like [`find`], and reads the order's unit, building and assignee as far as
/// `shown` shows them in the same statement, keeping them in `rows_read`: its
/// nested fields then wait for no batch loader (an order's detail in the apps).
pub async fn find_with_related(
    db: &DatabaseConnection,
    principal: &Principal,
    id: i64,
    shown: &RelatedShown,
    rows_read: &RowsRead,
) -> ApiResult<repair_order::Model> {
    let order = pagination::select_from::<repair_order::Entity>()
        .filter(repair_order::Column::Id.eq(id))
        .filter(visible(principal));
    let columns: Vec<_> = repair_order::Column::iter().collect();
    let found = read_page(db, order, &columns, Some((shown, rows_read))).await?;
    found.into_iter().next().ok_or(ApiError::NotFound("repair order"))
}

#[derive(Clone)]
pub struct Filter {
    pub states: Vec<RepairState>,
    pub priority: Option<RepairPriority>,
    pub overdue: Option<bool>,
    pub building_id: Option<i64>,
    pub unit_id: Option<i64>,
    pub assignee_id: Option<i64>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub text: Option<String>,
}

/// One page of the orders the principal may see that match `filter`, each
/// with only `columns` read (the id among them, for the cursor); given
/// `join_related`, the units, buildings and assignees it shows are read in the
/// same statement, with the columns it shows, and kept in its `RowsRead`.
#[tracing::instrument(skip_all, fields(user_id = principal.user_id))]
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    filter: Filter,
    request: PageRequest,
    columns: &[repair_order::Column],
    join_related: Option<(&RelatedShown, &RowsRead)>,
) -> ApiResult<Page<InTurn<types::RepairOrder>>> {
    use repair_order::Column;
    let joined = join_related.map(|(shown, _)| shown.joined(KeysHeld::of(columns))).unwrap_or_default();
    let page = Arc::new(page_inputs(principal, filter, &request, columns, joined)?);
    let statement = PAGES.statement(db.get_database_backend(), &page.0, &page.1, page_statement);
    // Counted only if the client selects `totalCount`, from the same shape
    // and parameters.
    let count_db = db.clone();
    let count: Count = Arc::new(move || {
        let (page, db) = (page.clone(), count_db.clone());
        Box::pin(async move { matching(&page.0, &page.1).select_only().column(Column::Id).count(&db).await })
    });
    let orders = read_rows(db, statement, columns, join_related).await?;
    Ok(pagination::page_from(orders, &request, |order| order.id, |order| InTurn(types::RepairOrder(order)), count))
}

/// The shape and parameters of a page of orders.
fn page_inputs(
    principal: &Principal,
    filter: Filter,
    request: &PageRequest,
    columns: &[repair_order::Column],
    joined: JoinedColumns,
) -> ApiResult<(PageShape, Parameters)> {
    let text = match filter.text.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) if text.chars().count() > 100 => {
            return Err(ApiError::bad_input("filter.text", "must be at most 100 characters"));
        }
        Some(text) => Some(format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))),
        None => None,
    };
    let shape = PageShape {
        role: principal.role,
        position: principal.position,
        states: filter.states,
        priority: filter.priority,
        overdue: filter.overdue,
        columns: Columns(columns.to_vec()),
        joined,
    };
    let parameters = Parameters::new(vec![
        Some(Parameter::Id(principal.user_id)),
        principal.community_id.map(Parameter::Id),
        filter.building_id.map(Parameter::Id),
        filter.unit_id.map(Parameter::Id),
        filter.assignee_id.map(Parameter::Id),
        filter.created_from.map(Parameter::Instant),
        filter.created_to.map(Parameter::Instant),
        text.map(Parameter::Text),
        request.after().map(Parameter::Id),
        Some(Parameter::Limit(request.limit())),
    ]);
    Ok((shape, parameters))
}

/// The statement of a page of orders: the ids of the page picked from those
/// [`matching`], then their columns and what is joined to them read.
fn page_statement(shape: &PageShape, parameters: &Parameters) -> SelectStatement {
    use page_parameter::{AFTER, LIMIT};
    let limit = parameters.limit(LIMIT).unwrap_or_default();
    let ids =
        pagination::page_of_ids(matching(shape, parameters), repair_order::Column::Id, limit, parameters.id(AFTER));
    with_related(ids.select_only().columns(shape.columns.0.iter().copied()), &shape.joined).into_query()
}

/// Pages of orders, whose statements differ between requests of a shape only
/// in the values they bind.
static PAGES: LazyLock<Templates<PageShape>> = LazyLock::new(Templates::default);

/// What a page of orders is written from besides its parameters: who asks,
/// by role, the parts of the filter that shape the SQL, the columns read and
/// what is joined.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PageShape {
    role: Role,
    position: Option<StaffPosition>,
    states: Vec<RepairState>,
    priority: Option<RepairPriority>,
    overdue: Option<bool>,
    columns: Columns<repair_order::Column>,
    joined: JoinedColumns,
}

/// Where a page's parameters sit among its `Parameters`.
mod page_parameter {
    pub const USER: usize = 0;
    pub const COMMUNITY: usize = 1;
    pub const BUILDING: usize = 2;
    pub const UNIT: usize = 3;
    pub const ASSIGNEE: usize = 4;
    pub const CREATED_FROM: usize = 5;
    pub const CREATED_TO: usize = 6;
    pub const TEXT: usize = 7;
    pub const AFTER: usize = 8;
    pub const LIMIT: usize = 9;
}

/// The orders the principal `shape` and `parameters` describe may see that
/// match the filter they describe, in no order.
fn matching(shape: &PageShape, parameters: &Parameters) -> Select<repair_order::Entity> {
    use page_parameter::*;
    use repair_order::Column;
    let principal = Principal {
        // Always given: a page is asked for by someone.
        user_id: parameters.id(USER).unwrap_or_default(),
        role: shape.role,
        position: shape.position,
        community_id: parameters.id(COMMUNITY),
    };
    let mut select = pagination::select_from::<repair_order::Entity>().filter(visible(&principal));
    if !shape.states.is_empty() {
        select = select.filter(Column::State.is_in(shape.states.iter().copied()));
    }
    if let Some(priority) = shape.priority {
        select = select.filter(Column::Priority.eq(priority));
    }
    if let Some(overdue) = shape.overdue {
        let late = Condition::any().add(Column::ResponseOverdue.eq(true)).add(Column::CompletionOverdue.eq(true));
        select = select.filter(if overdue { late } else { late.not() });
    }
    if let Some(building_id) = parameters.id(BUILDING) {
        select = select.filter(Column::BuildingId.eq(building_id));
    }
    if let Some(unit_id) = parameters.id(UNIT) {
        select = select.filter(Column::UnitId.eq(unit_id));
    }
    if let Some(assignee_id) = parameters.id(ASSIGNEE) {
        select = select.filter(Column::AssigneeId.eq(assignee_id));
    }
    if let Some(from) = parameters.instant(CREATED_FROM) {
        select = select.filter(Column::CreatedAt.gte(from));
    }
    if let Some(to) = parameters.instant(CREATED_TO) {
        select = select.filter(Column::CreatedAt.lt(to));
    }
    if let Some(pattern) = parameters.text(TEXT) {
        let description = Expr::col((repair_order::Entity, Column::Description));
        select = select.filter(description.like(LikeExpr::new(pattern).escape('\\')));
    }
    select
}

/// The orders of `page` with only `columns` read, and, given what to join and
/// where to keep it, each order's unit, building and assignee as shown, read
/// in the same statement.
async fn read_page(
    db: &DatabaseConnection,
    page: Select<repair_order::Entity>,
    columns: &[repair_order::Column],
    join_related: Option<(&RelatedShown, &RowsRead)>,
) -> ApiResult<Vec<repair_order::Model>> {
    let joined = join_related.map(|(shown, _)| shown.joined(KeysHeld::of(columns))).unwrap_or_default();
    let page = with_related(page.select_only().columns(columns.iter().copied()), &joined);
    read_rows(db, db.get_database_backend().build(&page.into_query()), columns, join_related).await
}

/// The orders `statement` reads, `columns` first, then the units, buildings
/// and assignees `join_related` shows, which it keeps.
async fn read_rows(
    db: &DatabaseConnection,
    statement: Statement,
    columns: &[repair_order::Column],
    join_related: Option<(&RelatedShown, &RowsRead)>,
) -> ApiResult<Vec<repair_order::Model>> {
    let rows = db.query_all_raw(statement).await?;
    let plan = ReadPlan::<repair_order::Entity>::new(columns.to_vec());
    let keys_held = KeysHeld::of(columns);
    let mut kept = KeptFromStatement::default();
    let mut orders = Vec::with_capacity(rows.len());
    for row in &rows {
        let order = rows::model_with(row, 0, &plan, unread_order(), None)?;
        if let Some((shown, rows_read)) = join_related {
            shown.keep_from(row, columns.len(), (&order, keys_held), (&mut kept, rows_read))?;
        }
        orders.push(order);
    }
    if let Some((RelatedShown { people: Some(people), .. }, rows_read)) = join_related {
        people.read_and_keep(db, &orders, rows_read).await?;
    }
    Ok(orders)
}

/// What an order's unread columns hold on a page that reads only the columns
/// its selection shows: no field of that selection reads them.
fn unread_order() -> repair_order::Model {
    let never = DateTime::<Utc>::UNIX_EPOCH;
    repair_order::Model {
        id: 0,
        community_id: 0,
        building_id: 0,
        unit_id: None,
        resident_id: None,
        created_by: 0,
        channel: RepairChannel::App,
        category: RepairCategory::Other,
        description: String::new(),
        priority: RepairPriority::Normal,
        state: RepairState::Submitted,
        preferred_visit_at: None,
        contact_phone: None,
        assignee_id: None,
        completion_note: None,
        materials: None,
        charge_cents: None,
        rating: None,
        rating_comment: None,
        cancel_reason: None,
        response_due_at: never,
        completion_due_at: never,
        response_overdue: false,
        completion_overdue: false,
        assigned_at: None,
        started_at: None,
        completed_at: None,
        closed_at: None,
        version: 0,
        created_at: never,
        updated_at: never,
    }
}

/// What a user's unread columns hold where only those a selection shows are
/// read: no field of that selection reads them.
fn unread_user() -> user::Model {
    user::Model {
        id: 0,
        phone: String::new(),
        name: String::new(),
        password_hash: None,
        role: Role::Resident,
        position: None,
        community_id: None,
        created_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// The columns of each order's unit, building and assignee a selection shows
/// beside it (see `ColumnsRead`), each with its plan for reading them, and
/// the people it shows as residents and submitters; `None` for one it does
/// not show.
pub struct RelatedShown {
    pub unit: Option<ReadPlan<unit::Entity>>,
    pub building: Option<ReadPlan<building::Entity>>,
    pub assignee: Option<ReadPlan<user::Entity>>,
    pub people: Option<PeopleShown>,
}

/// The users a selection shows as its orders' residents or submitters. They
/// are read right after the orders, all in one statement: through the
/// shared batch loader each such field waited out its gathering window, and
/// a page whose fields reached it in more than one pass of a loaded host's
/// executor was read in two statements.
pub struct PeopleShown {
    /// The columns the fields showing them read, and those of the
    /// assignee's, whose row a person's may replace.
    pub plan: ReadPlan<user::Entity>,
    pub residents: bool,
    pub submitters: bool,
}

impl PeopleShown {
    /// Reads the people shown for `orders` and keeps them with the rows read.
    async fn read_and_keep(
        &self,
        db: &DatabaseConnection,
        orders: &[repair_order::Model],
        rows_read: &RowsRead,
    ) -> Result<(), DbErr> {
        let mut ids: Vec<i64> = orders
            .iter()
            .flat_map(|order| {
                [order.resident_id.filter(|_| self.residents), Some(order.created_by).filter(|_| self.submitters)]
            })
            .flatten()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort_unstable();
        ids.dedup();
        let people = user::Entity::find()
            .select_only()
            .columns(self.plan.columns().iter().copied())
            .filter(user::Column::Id.is_in(ids))
            .into_query();
        for row in db.query_all_raw(db.get_database_backend().build(&people)).await? {
            let person = rows::model_with(&row, 0, &self.plan, unread_user(), None)?;
            rows_read.keep::<user::Entity>(person.id, person, self.plan.names());
        }
        Ok(())
    }
}

/// The columns of each order's unit, building and assignee a statement
/// joins, as [`RelatedShown::keep_from`] reads them; `None` for one it does
/// not join.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
struct JoinedColumns {
    unit: Option<Columns<unit::Column>>,
    building: Option<Columns<building::Column>>,
    assignee: Option<Columns<user::Column>>,
}

impl RelatedShown {
    /// Whether the selection shows any of them.
    pub fn any(&self) -> bool {
        self.unit.is_some() || self.building.is_some() || self.assignee.is_some() || self.people.is_some()
    }

    /// The columns of each that a statement joins: all those shown, but the
    /// key of one whose key the order's columns hold.
    fn joined(&self, keys_held: KeysHeld) -> JoinedColumns {
        fn columns<E: EntityTrait>(plan: &Option<ReadPlan<E>>, key_held: bool) -> Option<Columns<E::Column>> {
            plan.as_ref().map(|plan| match key_held {
                true => Columns(plan.columns_but_key().collect()),
                false => Columns(plan.columns().to_vec()),
            })
        }
        JoinedColumns {
            unit: columns(&self.unit, keys_held.unit),
            building: columns(&self.building, keys_held.building),
            assignee: columns(&self.assignee, keys_held.assignee),
        }
    }

    /// Reads the rows shown beside `order`, whose read columns hold the keys
    /// `keys_held` says, by position from the row's columns `first..` in the order
    /// [`with_related`] selects them after the order's, and keeps those not
    /// `kept` from an earlier row of the statement; their unread columns hold
    /// placeholders no shown field reads.
    fn keep_from(
        &self,
        row: &QueryResult,
        first: usize,
        (order, keys_held): (&repair_order::Model, KeysHeld),
        (kept, rows_read): (&mut KeptFromStatement, &RowsRead),
    ) -> Result<(), DbErr> {
        let never = DateTime::<Utc>::UNIX_EPOCH;
        let mut at = first;
        if let Some(plan) = &self.unit {
            let unread = unit::Model {
                id: 0,
                building_id: 0,
                community_id: 0,
                number: String::new(),
                floor: None,
                contacts_version: 0,
                created_at: never,
            };
            let key = keys_held.unit.then_some(order.unit_id);
            keep_joined(row, &mut at, plan, unread, key, (&mut kept.units, rows_read))?;
        }
        if let Some(plan) = &self.building {
            let unread = building::Model { id: 0, community_id: 0, name: String::new(), created_at: never };
            let key = keys_held.building.then_some(Some(order.building_id));
            keep_joined(row, &mut at, plan, unread, key, (&mut kept.buildings, rows_read))?;
        }
        if let Some(plan) = &self.assignee {
            let key = keys_held.assignee.then_some(order.assignee_id);
            keep_joined(row, &mut at, plan, unread_user(), key, (&mut kept.assignees, rows_read))?;
        }
        Ok(())
    }
}

/// Which of an order's unit, building and assignee ids its read columns
/// hold: a statement then does not select their rows' keys again.
#[derive(Clone, Copy)]
struct KeysHeld {
    unit: bool,
    building: bool,
    assignee: bool,
}

impl KeysHeld {
    /// Worked out once per page, from the order's columns it reads.
    fn of(order_columns: &[repair_order::Column]) -> Self {
        use repair_order::Column;
        use sea_orm::IdenStatic;
        let reads = |foreign_key: Column| order_columns.iter().any(|column| column.as_str() == foreign_key.as_str());
        Self { unit: reads(Column::UnitId), building: reads(Column::BuildingId), assignee: reads(Column::AssigneeId) }
    }
}

/// The ids of the units, buildings and assignees kept from a statement's
/// rows so far. Orders on a page share them (a resident's orders all stand in
/// one unit), and a row the statement read once holds the same values
/// wherever it is joined again: it is read and kept once.
#[derive(Default)]
struct KeptFromStatement {
    units: KeptIds,
    buildings: KeptIds,
    assignees: KeptIds,
}

/// Ids the server read itself: no client chooses them, so they need no
/// defence against chosen collisions.
type KeptIds = HashSet<i64, foldhash::fast::RandomState>;

/// Keeps the row of `E` joined at the row's columns `*at..`, if one was
/// joined and its id is not among `kept` yet, and moves `at` past its
/// columns. With `held_key`, the order holds the row's key and the statement
/// did not select it: a row was joined exactly when the key is set, as
/// foreign keys are enforced.
fn keep_joined<E>(
    row: &QueryResult,
    at: &mut usize,
    plan: &ReadPlan<E>,
    unread: E::Model,
    held_key: Option<Option<i64>>,
    (kept, rows_read): (&mut KeptIds, &RowsRead),
) -> Result<(), DbErr>
where
    E: EntityTrait,
    E::Model: Send + Sync + 'static,
{
    let first = *at;
    let held_key = held_key.filter(|_| plan.has_key());
    let key = match held_key {
        Some(key) => {
            *at += plan.columns_but_key().count();
            key
        }
        None => {
            *at += plan.columns().len();
            rows::joined_key(row, first, plan)?
        }
    };
    let Some(key) = key.filter(|&key| kept.insert(key)) else {
        return Ok(());
    };
    let model = rows::model_with(row, first, plan, unread, held_key.is_some().then_some(key))?;
    rows_read.keep::<E>(key, model, plan.names());
    Ok(())
}

/// Left-joins each order's unit, building and assignee into `page` as far as
/// `shown` shows them, their columns after the order's in the order
/// [`RelatedShown::keep_from`] reads them by position: the page and what it
/// shows beside each order in one statement.
fn with_related(page: Select<repair_order::Entity>, joined: &JoinedColumns) -> Select<repair_order::Entity> {
    use repair_order::Column;
    let mut page = page;
    if let Some(Columns(columns)) = &joined.unit {
        page = join_columns::<unit::Entity>(page, Column::UnitId, unit::Column::Id, "unit", columns);
    }
    if let Some(Columns(columns)) = &joined.building {
        page = join_columns::<building::Entity>(page, Column::BuildingId, building::Column::Id, "building", columns);
    }
    if let Some(Columns(columns)) = &joined.assignee {
        page = join_columns::<user::Entity>(page, Column::AssigneeId, user::Column::Id, "assignee", columns);
    }
    page
}

fn join_columns<R: EntityTrait>(
    page: Select<repair_order::Entity>,
    foreign_key: repair_order::Column,
    primary_key: R::Column,
    alias: &'static str,
    columns: &[R::Column],
) -> Select<repair_order::Entity> {
    let alias = Alias::new(alias);
    let relation: RelationDef = repair_order::Entity::belongs_to(R::default()).from(foreign_key).to(primary_key).into();
    let mut page = page.join_as(JoinType::LeftJoin, relation, alias.clone());
    for &column in columns {
        page = page.expr(column.select_as(Expr::col((alias.clone(), column))));
    }
    page
}

/// Everyone a change to an order concerns: the residents of its unit, the
/// butlers of its building, its technician, and the community's supervisors
/// and managers.
async fn recipients(db: &impl ConnectionTrait, order: &repair_order::Model) -> ApiResult<Vec<i64>> {
    let groups = groups_of(order.community_id, order.building_id, order.unit_id);
    Ok(audience::people(db, groups, order.assignee_id).await?)
}

/// The groups of people at a known place (everyone an order there concerns
/// but its technician).
fn groups_of(community_id: i64, building_id: i64, unit_id: Option<i64>) -> Vec<SelectStatement> {
    groups_at(Expr::val(community_id), Expr::val(building_id), unit_id.map(Expr::val))
}

/// The groups of people at a place: its community, building and unit, as
/// values or as columns of the row a statement writes.
fn groups_at(community: Expr, building: Expr, unit: Option<Expr>) -> Vec<SelectStatement> {
    let office = [StaffPosition::Supervisor, StaffPosition::Manager];
    let mut groups = vec![
        audience::butlers_of(
            Expr::col((butler_assignment::Entity, butler_assignment::Column::BuildingId)).eq(building),
        ),
        audience::employees_of(community, Role::Staff, &office),
    ];
    groups.extend(unit.map(audience::residents_of));
    groups
}

/// What a change writes besides the order's own columns.
struct Change {
    action: RepairAction,
    event: &'static str,
    actor: Option<i64>,
    note: Option<String>,
}

/// A submitted order with the rows written with it on SQLite: the order, its
/// first timeline entry and its event in one round trip to the writers'
/// connection, then its photos and the caller's idempotency key.
struct NewOrder<'a> {
    /// The order's `INSERT … RETURNING *`.
    insert: Statement,
    community_id: i64,
    submitter: i64,
    photos: &'a [photos::StoredPhoto],
    claim: Option<&'a Claim>,
    now: DateTime<Utc>,
}

/// The id of the order a submission inserts on SQLite, for the rows written
/// with it in the same round trip: the writer holds SQLite's write lock, so
/// the newest order is its own.
const NEW_ORDER_ID: &str = "(SELECT max(id) FROM repair_order)";

impl NewOrder<'_> {
    async fn write(self, txn: &impl ConnectionTrait, recipients: Vec<i64>) -> ApiResult<repair_order::Model> {
        let backend = txn.get_database_backend();
        let change = submitted_by(self.submitter);
        let event = NewEvent {
            community_id: self.community_id,
            kind: change.event,
            entity_type: ENTITY_TYPE,
            entity_id: NewRowId(NEW_ORDER_ID),
            recipients,
        };
        let timeline_entry =
            timeline_entry(Expr::cust(NEW_ORDER_ID), None, Some(RepairState::Submitted), change, self.now);
        let writes = crate::db::joined(self.insert, backend.build(&timeline_entry));
        let order = events::append_about_new_row(txn, writes, event).await?;
        let order = repair_order::Model::from_query_result(&order, "")?;
        if !self.photos.is_empty() {
            repair_photo::Entity::insert_many(self.photos.iter().map(|photo| repair_photo::ActiveModel {
                order_id: Set(order.id),
                content_type: Set(photo.content_type.to_owned()),
                byte_size: Set(photo.byte_size),
                storage_name: Set(photo.storage_name.clone()),
                created_at: Set(self.now),
                ..Default::default()
            }))
            .exec(txn)
            .await?;
        }
        if let Some(claim) = self.claim {
            claim.record(txn, &[order.id]).await?;
        }
        Ok(order)
    }
}

/// The first entry of an order's timeline.
fn submitted_by(submitter: i64) -> Change {
    Change { action: RepairAction::Submitted, event: "SUBMITTED", actor: Some(submitter), note: None }
}

/// Submissions' statements: on PostgreSQL the whole submission's, on SQLite
/// the order's; whose SQL differs between submissions of one shape only in
/// the values it binds.
static SUBMISSIONS: LazyLock<Templates<SubmissionShape>> = LazyLock::new(Templates::default);

/// What a submission is written from besides its parameters.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SubmissionShape {
    /// The resident's unit gives the order's place, read by the statement
    /// that writes it ([`place_in_residents_unit`]); otherwise the place
    /// was read before and is among the parameters.
    place_read_by_the_write: bool,
    channel: RepairChannel,
    category: RepairCategory,
    priority: RepairPriority,
    /// Each photo's content type.
    photos: Vec<&'static str>,
}

/// Where a submission's parameters sit among its `Parameters`.
mod submission_parameter {
    /// Who submits: the order's author, and the resident whose unit gives a
    /// place read by the write.
    pub const SUBMITTER: usize = 0;
    pub const UNIT: usize = 1;
    /// The place read before the write, when it was.
    pub const COMMUNITY: usize = 2;
    pub const BUILDING: usize = 3;
    pub const RESIDENT: usize = 4;
    pub const DESCRIPTION: usize = 5;
    pub const PREFERRED_VISIT: usize = 6;
    pub const CONTACT_PHONE: usize = 7;
    pub const RESPONSE_DUE: usize = 8;
    pub const COMPLETION_DUE: usize = 9;
    pub const NOW: usize = 10;
    /// The idempotency key's caller, operation, key and request hash.
    pub const CLAIM: [usize; 4] = [11, 12, 13, 14];
    /// Each photo's byte size and storage name, in turn.
    pub const PHOTOS: usize = 15;
}

/// The order a submission of `shape` and `parameters` writes; with its
/// place read by the write, without the columns the place gives.
fn new_order(shape: &SubmissionShape, parameters: &Parameters) -> repair_order::ActiveModel {
    use submission_parameter::*;
    let now = parameters.instant(NOW).unwrap_or_default();
    let mut order = repair_order::ActiveModel {
        created_by: Set(parameters.id(SUBMITTER).unwrap_or_default()),
        channel: Set(shape.channel),
        category: Set(shape.category),
        description: Set(parameters.text(DESCRIPTION).unwrap_or_default().to_owned()),
        priority: Set(shape.priority),
        state: Set(RepairState::Submitted),
        preferred_visit_at: Set(parameters.instant(PREFERRED_VISIT)),
        response_due_at: Set(parameters.instant(RESPONSE_DUE).unwrap_or_default()),
        completion_due_at: Set(parameters.instant(COMPLETION_DUE).unwrap_or_default()),
        response_overdue: Set(false),
        completion_overdue: Set(false),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    if let Some(phone) = parameters.text(CONTACT_PHONE) {
        order.contact_phone = Set(Some(phone.to_owned()));
    }
    if !shape.place_read_by_the_write {
        order.community_id = Set(parameters.id(COMMUNITY).unwrap_or_default());
        order.building_id = Set(parameters.id(BUILDING).unwrap_or_default());
        order.unit_id = Set(parameters.id(UNIT));
        order.resident_id = Set(parameters.id(RESIDENT));
    }
    order
}

/// The order a submission writes on SQLite, answering with its row.
fn order_insert(shape: &SubmissionShape, parameters: &Parameters) -> InsertStatement {
    repair_order::Entity::insert(new_order(shape, parameters)).query().returning_all().take()
}

/// The one statement of a submission (PostgreSQL): the order, its photos,
/// the idempotency key, the first timeline entry and the event, whose
/// recipients the statement reads (one round trip where the steps take
/// five). With its place read by the write, it writes nothing when the
/// resident may not report for the unit.
fn submission_statement(shape: &SubmissionShape, parameters: &Parameters) -> WithQuery {
    use repair_order::Column as Order;
    use submission_parameter::*;
    let order = new_order(shape, parameters);
    let (submitter, now) = (parameters.id(SUBMITTER).unwrap_or_default(), parameters.instant(NOW).unwrap_or_default());
    let (insert, groups) = if shape.place_read_by_the_write {
        let resident = Principal { user_id: submitter, role: Role::Resident, position: None, community_id: None };
        let place = place_in_residents_unit(&resident, parameters.id(UNIT).unwrap_or_default());
        let groups = groups_at(written(Order::CommunityId), written(Order::BuildingId), Some(written(Order::UnitId)));
        (insert_placed(&order, place), groups)
    } else {
        let at = |position| Expr::val(parameters.id(position).unwrap_or_default());
        let groups = groups_at(at(COMMUNITY), at(BUILDING), parameters.id(UNIT).map(Expr::val));
        (repair_order::Entity::insert(order).query().returning_all().take(), groups)
    };
    let mut statement = WrittenWith::new(insert);
    for (photo, content_type) in shape.photos.iter().enumerate() {
        use repair_photo::Column;
        let at = PHOTOS + 2 * photo;
        statement = statement.insert(
            repair_photo::Entity,
            [
                (Column::OrderId, written(Order::Id)),
                (Column::ContentType, Expr::val(*content_type)),
                (Column::ByteSize, Expr::val(parameters.number(at).unwrap_or_default())),
                (Column::StorageName, Expr::val(parameters.text(at + 1).unwrap_or_default())),
                (Column::CreatedAt, Expr::val(now)),
            ],
        );
    }
    if let [Some(caller), Some(operation), Some(key), Some(hash)] = CLAIM.map(|at| parameters.text(at)) {
        statement = Claim::recorded_with(statement, [caller, operation, key, hash], written(Order::Id), now);
    }
    recorded_with(statement, None, Some(RepairState::Submitted), submitted_by(submitter), groups, now).query()
}

/// Applies `update` to `order` if it is still at the version that was read
/// (and, if given, at `expected_version`), records the change in the timeline
/// and the outbox, all in one transaction.
async fn commit_change(
    app: &AppContext,
    order: &repair_order::Model,
    expected_version: Option<i32>,
    mut update: repair_order::ActiveModel,
    change: Change,
) -> ApiResult<repair_order::Model> {
    crate::db::require_version("the repair order", order.version, expected_version)?;
    let now = Utc::now();
    let to_state = match &update.state {
        sea_orm::ActiveValue::Set(state) if *state != order.state => Some(*state),
        _ => None,
    };
    update.version = Set(order.version + 1);
    update.updated_at = Set(now);
    let from_state = to_state.map(|_| order.state);
    let unless_changed = repair_order::Entity::update_many()
        .set(update)
        .filter(repair_order::Column::Id.eq(order.id))
        .filter(repair_order::Column::Version.eq(order.version));
    let changed = match app.writers.alone() {
        Some(db) => {
            let mut groups = groups_of(order.community_id, order.building_id, order.unit_id);
            // And the technician the update leaves assigned.
            let mut assignee = select_written(repair_order::Column::AssigneeId);
            assignee.and_where(written(repair_order::Column::AssigneeId).is_not_null());
            groups.push(assignee);
            let mut returning_changed = unless_changed.into_query();
            returning_changed.returning_all();
            let statement = WrittenWith::new(returning_changed);
            let statement = recorded_with(statement, from_state, to_state, change, groups, now).statement();
            repair_order::Model::find_by_statement(statement).one(db).await?
        }
        None => {
            app.writers
                .write(async |txn| {
                    let Some(changed) = unless_changed.exec_with_returning(txn).await?.pop() else {
                        return Ok(None);
                    };
                    let recipients = recipients(txn, &changed).await?;
                    record(txn, &changed, from_state, to_state, change, recipients, now).await?;
                    Ok(Some(changed))
                })
                .await?
        }
    };
    let changed = changed.ok_or_else(|| {
        ApiError::conflict("the repair order was changed by someone else at the same time; reload it")
    })?;
    app.events.committed();
    Ok(changed)
}

/// Adds a change's timeline entry and event to `statement`, which writes the
/// order (PostgreSQL; `record` writes the same after the order). The event's
/// recipients are the people `groups` select, read by the statement.
fn recorded_with(
    statement: WrittenWith,
    from_state: Option<RepairState>,
    to_state: Option<RepairState>,
    change: Change,
    groups: Vec<SelectStatement>,
    now: DateTime<Utc>,
) -> WrittenWith {
    let event = change.event;
    let entry = timeline_row(written(repair_order::Column::Id), from_state, to_state, change, now);
    let timeline = statement.insert(repair_order_change::Entity, entry);
    let (community, id) = (written(repair_order::Column::CommunityId), written(repair_order::Column::Id));
    events::draft_with(timeline, event, ENTITY_TYPE, community, id, audience::array_of(groups), now)
}

/// Adds a change's timeline entry and event once the order is written; on
/// SQLite in one round trip (see `events::append_after`).
async fn record(
    txn: &impl ConnectionTrait,
    order: &repair_order::Model,
    from_state: Option<RepairState>,
    to_state: Option<RepairState>,
    change: Change,
    recipients: Vec<i64>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let event = NewEvent {
        community_id: order.community_id,
        kind: change.event,
        entity_type: ENTITY_TYPE,
        entity_id: order.id,
        recipients,
    };
    let timeline_entry = timeline_entry(Expr::val(order.id), from_state, to_state, change, now);
    events::append_after(txn, Some(txn.get_database_backend().build(&timeline_entry)), vec![event]).await?;
    Ok(())
}

/// A change's entry in the timeline of the order `order_id` gives.
fn timeline_entry(
    order_id: Expr,
    from_state: Option<RepairState>,
    to_state: Option<RepairState>,
    change: Change,
    now: DateTime<Utc>,
) -> InsertStatement {
    let (columns, values): (Vec<_>, Vec<_>) =
        timeline_row(order_id, from_state, to_state, change, now).into_iter().unzip();
    Query::insert().into_table(repair_order_change::Entity).columns(columns).values_panic(values).take()
}

/// The columns of a change's timeline entry and their values.
fn timeline_row(
    order_id: Expr,
    from_state: Option<RepairState>,
    to_state: Option<RepairState>,
    change: Change,
    now: DateTime<Utc>,
) -> [(repair_order_change::Column, Expr); 7] {
    use repair_order_change::Column;
    let Change { action, actor, note, .. } = change;
    [
        (Column::OrderId, order_id),
        (Column::ActorId, Expr::val(actor)),
        (Column::Action, Expr::val(action)),
        (Column::FromState, Expr::val(from_state)),
        (Column::ToState, Expr::val(to_state)),
        (Column::Note, Expr::val(note)),
        (Column::CreatedAt, Expr::val(now)),
    ]
}

fn illegal(order: &repair_order::Model, what: &str) -> ApiError {
    ApiError::conflict(format!("cannot {what} a repair order that is {}", state::name(order.state)))
}

fn transition(order: &repair_order::Model, transition: Transition, what: &str) -> ApiResult<RepairState> {
    state::next(order.state, transition).ok_or_else(|| illegal(order, what))
}

pub struct Submission {
    pub unit_id: Option<i64>,
    pub building_id: Option<i64>,
    pub resident_id: Option<i64>,
    pub channel: Option<RepairChannel>,
    pub category: RepairCategory,
    pub description: String,
    pub priority: RepairPriority,
    pub preferred_visit_at: Option<DateTime<Utc>>,
    pub contact_phone: Option<String>,
    pub photos: Vec<AcceptedPhoto>,
}

/// Where an order goes, as decided by who submits it: read before the
/// write, or, for a resident on PostgreSQL, read by the write itself.
enum Place<'a> {
    Known(Placement),
    /// The resident's unit `unit_id`, read ([`place_in_residents_unit`])
    /// by the one statement that writes on `db`: it writes nothing when the
    /// resident may not report for the unit.
    InTheWrite {
        db: &'a DatabaseConnection,
        unit_id: i64,
    },
}

/// Where an order is and whom it is for.
struct Placement {
    community_id: i64,
    building_id: i64,
    unit_id: Option<i64>,
    resident: Option<Resident>,
    channel: RepairChannel,
    /// Everyone the order concerns, when read with the place.
    recipients: Option<Vec<i64>>,
}

impl Placement {
    /// Everyone an order placed here concerns: as read with the place, or
    /// else read now.
    async fn concerned(&mut self, db: &DatabaseConnection) -> Result<Vec<i64>, DbErr> {
        if let Some(recipients) = self.recipients.take() {
            return Ok(recipients);
        }
        audience::people(db, groups_of(self.community_id, self.building_id, self.unit_id), None).await
    }
}

/// Whom an order is for, and the phone it falls back to for contact.
#[derive(FromQueryResult)]
struct Resident {
    id: i64,
    phone: String,
}

async fn place<'a>(app: &'a AppContext, principal: &Principal, submission: &Submission) -> ApiResult<Place<'a>> {
    let db = &app.db;
    if principal.is_resident() {
        if submission.channel.is_some_and(|channel| channel != RepairChannel::App) {
            return Err(ApiError::bad_input("channel", "residents report through the app"));
        }
        if submission.resident_id.is_some_and(|id| id != principal.user_id) {
            return Err(ApiError::bad_input("residentId", "residents report for themselves"));
        }
        let unit_id = submission.unit_id.ok_or_else(|| ApiError::bad_input("unitId", "is required"))?;
        if let Some(db) = app.writers.alone() {
            return Ok(Place::InTheWrite { db, unit_id });
        }
        // SQLite's writes take turns in steps: the place is read first, and
        // with it everyone the order concerns.
        let parameters = Parameters::new(vec![Some(Parameter::Id(principal.user_id)), Some(Parameter::Id(unit_id))]);
        let read = RESIDENTS_PLACES.statement(DbBackend::Sqlite, &(), &parameters, residents_place);
        let placed = ResidentsPlace::find_by_statement(read).one(db).await?.ok_or(ApiError::NotFound("unit"))?;
        let recipients = serde_json::from_str(&placed.recipients)
            .map_err(|err| ApiError::Internal(format!("the recipients read with a place: {err}")))?;
        return Ok(Place::Known(Placement {
            community_id: placed.community_id,
            building_id: placed.building_id,
            unit_id: Some(placed.unit_id),
            resident: placed.resident_id.zip(placed.contact_phone).map(|(id, phone)| Resident { id, phone }),
            channel: RepairChannel::App,
            recipients: Some(recipients),
        }));
    }

    let channel = submission.channel.ok_or_else(|| ApiError::bad_input("channel", "is required for staff"))?;
    match channel {
        RepairChannel::App => return Err(ApiError::bad_input("channel", "APP is for residents")),
        // Anyone on staff may report what they find on patrol.
        RepairChannel::Patrol => {}
        RepairChannel::Phone | RepairChannel::FrontDesk => permissions::require(principal, Action::HandleRepairs)?,
    }
    let (building, unit) = match (submission.unit_id, submission.building_id) {
        (Some(unit_id), _) => {
            let (unit, building) = property::find_unit_with_building(db, principal, unit_id).await?;
            (building, Some(unit))
        }
        (None, Some(building_id)) if channel == RepairChannel::Patrol => {
            (property::find_building(db, principal, building_id).await?, None)
        }
        (None, _) if channel == RepairChannel::Patrol => {
            return Err(ApiError::bad_input("buildingId", "a unit or a building is required"));
        }
        (None, _) => return Err(ApiError::bad_input("unitId", "is required")),
    };
    let resident = match (submission.resident_id, &unit) {
        (Some(resident_id), Some(unit)) => Some(current_resident(db, unit.id, resident_id).await?),
        (Some(_), None) => return Err(ApiError::bad_input("residentId", "needs a unit")),
        (None, _) if channel == RepairChannel::Patrol => None,
        (None, _) => return Err(ApiError::bad_input("residentId", "is required: whom is the order for?")),
    };
    Ok(Place::Known(Placement {
        community_id: building.community_id,
        building_id: building.id,
        unit_id: unit.map(|unit| unit.id),
        resident,
        channel,
        recipients: None,
    }))
}

/// A resident's place with everyone an order there concerns, read before
/// the write (SQLite), whose SQL differs between residents and units only
/// in the values it binds.
static RESIDENTS_PLACES: LazyLock<Templates<()>> = LazyLock::new(Templates::default);

/// [`place_in_residents_unit`] for the resident and unit `parameters`
/// give, with everyone an order there concerns as a JSON array.
fn residents_place((): &(), parameters: &Parameters) -> SelectStatement {
    let resident = Principal {
        user_id: parameters.id(0).unwrap_or_default(),
        role: Role::Resident,
        position: None,
        community_id: None,
    };
    let mut read = place_in_residents_unit(&resident, parameters.id(1).unwrap_or_default());
    let at = |column| Expr::col((unit::Entity, column));
    let groups = groups_at(at(unit::Column::CommunityId), at(unit::Column::BuildingId), Some(at(unit::Column::Id)));
    read.expr_as(audience::json_array_of(groups), Alias::new("recipients"));
    read
}

/// A row of [`residents_place`].
#[derive(FromQueryResult)]
struct ResidentsPlace {
    community_id: i64,
    building_id: i64,
    unit_id: i64,
    resident_id: Option<i64>,
    contact_phone: Option<String>,
    /// Everyone an order there concerns, as a JSON array.
    recipients: String,
}

/// The columns of a resident's order that its unit decides ([`PLACED`]):
/// the unit's community and building, the unit, and the resident with
/// their phone. No row when the unit is not one of the resident's own.
fn place_in_residents_unit(principal: &Principal, unit_id: i64) -> SelectStatement {
    let sources = [
        Expr::col((unit::Entity, unit::Column::CommunityId)),
        Expr::col((unit::Entity, unit::Column::BuildingId)),
        Expr::col((unit::Entity, unit::Column::Id)),
        Expr::col((user::Entity, user::Column::Id)),
        Expr::col((user::Entity, user::Column::Phone)),
    ];
    let mut place = Query::select();
    for (column, source) in PLACED.into_iter().zip(sources) {
        place.expr_as(source, column);
    }
    place
        .from(unit::Entity)
        .left_join(user::Entity, Expr::col((user::Entity, user::Column::Id)).eq(principal.user_id))
        .and_where(Expr::col((unit::Entity, unit::Column::Id)).eq(unit_id))
        .cond_where(scope::units(principal))
        .take()
}

/// The columns of a new order its place gives, unless the order sets them
/// (a contact phone given with the submission).
const PLACED: [repair_order::Column; 5] = [
    repair_order::Column::CommunityId,
    repair_order::Column::BuildingId,
    repair_order::Column::UnitId,
    repair_order::Column::ResidentId,
    repair_order::Column::ContactPhone,
];

/// `INSERT INTO repair_order (…) SELECT … FROM (place)`: `order`'s values,
/// and its unset columns of [`PLACED`] from `place`'s row; none without one.
fn insert_placed(order: &repair_order::ActiveModel, place: SelectStatement) -> InsertStatement {
    let from_place = Alias::new("place");
    let (mut columns, mut values) = (Vec::new(), Vec::new());
    for column in repair_order::Column::iter() {
        let value = match order.get(column) {
            ActiveValue::Set(value) | ActiveValue::Unchanged(value) => Expr::val(value),
            ActiveValue::NotSet if PLACED.iter().any(|placed| placed.as_str() == column.as_str()) => {
                Expr::col((from_place.clone(), column))
            }
            ActiveValue::NotSet => continue,
        };
        columns.push(column);
        values.push(value);
    }
    Query::insert()
        .into_table(repair_order::Entity)
        .columns(columns)
        .select_from(Query::select().exprs(values).from_subquery(place, from_place).take())
        .expect("as many values as columns: they were pushed in pairs")
        .returning_all()
        .take()
}

/// `user_id` as the resident of `unit_id` an order is for, if they live there now.
async fn current_resident(db: &impl ConnectionTrait, unit_id: i64, user_id: i64) -> ApiResult<Resident> {
    let lives_there = unit_membership::Entity::find()
        .select_only()
        .column(unit_membership::Column::UserId)
        .filter(unit_membership::Column::UnitId.eq(unit_id))
        .filter(unit_membership::Column::MovedOutOn.is_null())
        .into_query();
    user::Entity::find_by_id(user_id)
        .filter(user::Column::Id.in_subquery(lives_there))
        .select_only()
        .columns([user::Column::Id, user::Column::Phone])
        .into_model::<Resident>()
        .one(db)
        .await?
        .ok_or_else(|| ApiError::bad_input("residentId", "is not a current resident of the unit"))
}

#[tracing::instrument(skip_all, fields(user_id = principal.user_id))]
pub async fn submit(
    app: &AppContext,
    principal: &Principal,
    submission: Submission,
    claim: Option<&Claim>,
) -> ApiResult<repair_order::Model> {
    let description = validate::text(&submission.description, "description", 2000)?;
    let now = Utc::now();
    if let Some(at) = submission.preferred_visit_at
        && (at < now - chrono::Duration::hours(1) || at > now + chrono::Duration::days(90))
    {
        return Err(ApiError::bad_input("preferredVisitAt", "must be within the next 90 days"));
    }
    let contact_phone =
        submission.contact_phone.as_deref().map(|phone| validate::contact_phone(phone, "contactPhone")).transpose()?;
    let place = place(app, principal, &submission).await?;
    let (response_within, completion_within) = match submission.priority {
        RepairPriority::Urgent => (app.settings.repair_urgent_response, app.settings.repair_urgent_completion),
        RepairPriority::Normal => (app.settings.repair_normal_response, app.settings.repair_normal_completion),
    };
    let due = |within| {
        chrono::Duration::from_std(within)
            .map(|within| now + within)
            .map_err(|_| ApiError::Internal("repair SLA out of range".into()))
    };
    let (response_due, completion_due) = (due(response_within)?, due(completion_within)?);
    let mut parameters = vec![None; submission_parameter::PHOTOS];
    let mut given = |position, parameter| parameters[position] = Some(parameter);
    let channel = {
        use submission_parameter::*;
        given(SUBMITTER, Parameter::Id(principal.user_id));
        given(DESCRIPTION, Parameter::Text(description));
        if let Some(at) = submission.preferred_visit_at {
            given(PREFERRED_VISIT, Parameter::Instant(at));
        }
        given(RESPONSE_DUE, Parameter::Instant(response_due));
        given(COMPLETION_DUE, Parameter::Instant(completion_due));
        given(NOW, Parameter::Instant(now));
        // A place read by the write gives the resident's phone there.
        let (placed_channel, residents_phone) = match &place {
            Place::Known(placement) => {
                given(COMMUNITY, Parameter::Id(placement.community_id));
                given(BUILDING, Parameter::Id(placement.building_id));
                if let Some(unit_id) = placement.unit_id {
                    given(UNIT, Parameter::Id(unit_id));
                }
                if let Some(resident) = &placement.resident {
                    given(RESIDENT, Parameter::Id(resident.id));
                }
                (placement.channel, placement.resident.as_ref().map(|resident| resident.phone.as_str()))
            }
            Place::InTheWrite { unit_id, .. } => {
                given(UNIT, Parameter::Id(*unit_id));
                (RepairChannel::App, None)
            }
        };
        if let Some(phone) = contact_phone.or_else(|| residents_phone.map(str::to_owned)) {
            given(CONTACT_PHONE, Parameter::Text(phone));
        }
        for (position, text) in CLAIM.into_iter().zip(claim.map(Claim::texts).into_iter().flatten()) {
            given(position, Parameter::Text(text.to_owned()));
        }
        placed_channel
    };
    let stored = photos::store(&app.settings.data_dir, submission.photos).await?;
    for photo in &stored {
        parameters.push(Some(Parameter::Number(photo.byte_size)));
        parameters.push(Some(Parameter::Text(photo.storage_name.clone())));
    }
    let shape = SubmissionShape {
        place_read_by_the_write: matches!(place, Place::InTheWrite { .. }),
        channel,
        category: submission.category,
        priority: submission.priority,
        photos: stored.iter().map(|photo| photo.content_type).collect(),
    };
    let parameters = Parameters::new(parameters);
    let result = match (place, app.writers.alone()) {
        (Place::InTheWrite { db, .. }, _) | (Place::Known(_), Some(db)) => {
            let statement = SUBMISSIONS.statement(DbBackend::Postgres, &shape, &parameters, submission_statement);
            let written = repair_order::Model::find_by_statement(statement).one(db).await;
            match (written, claim) {
                (Ok(Some(order)), _) => Ok(order),
                (Ok(None), _) if shape.place_read_by_the_write => Err(ApiError::NotFound("unit")),
                (Ok(None), _) => Err(ApiError::Internal("the new repair order was not returned".into())),
                (Err(err), Some(_)) => Err(idempotency::taken(err)),
                (Err(err), None) => Err(err.into()),
            }
        }
        // Read before taking the writer connection, SQLite's one lane.
        (Place::Known(mut placement), None) => match placement.concerned(&app.db).await {
            Ok(recipients) => {
                let new = NewOrder {
                    insert: SUBMISSIONS.statement(DbBackend::Sqlite, &shape, &parameters, order_insert),
                    community_id: placement.community_id,
                    submitter: principal.user_id,
                    photos: &stored,
                    claim,
                    now,
                };
                app.writers.write(async |txn| new.write(txn, recipients).await).await
            }
            Err(err) => Err(err.into()),
        },
    };
    match result {
        Ok(order) => {
            app.events.committed();
            tracing::info!(order_id = order.id, "repair order submitted");
            Ok(order)
        }
        Err(err) => {
            photos::remove(&app.settings.data_dir, &stored).await;
            Err(err)
        }
    }
}

#[tracing::instrument(skip(app, principal), fields(user_id = principal.user_id))]
pub async fn assign(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    technician_id: i64,
    expected_version: Option<i32>,
) -> ApiResult<repair_order::Model> {
    permissions::require(principal, Action::DispatchRepairs)?;
    let order = find(&app.db, principal, order_id).await?;
    let technician = user::Entity::find_by_id(technician_id)
        .filter(user::Column::CommunityId.eq(order.community_id))
        .filter(user::Column::Role.eq(Role::Staff))
        .filter(user::Column::Position.eq(StaffPosition::Technician))
        .one(&app.db)
        .await?
        .ok_or(ApiError::NotFound("technician"))?;
    let to = transition(&order, Transition::Assign, "assign")?;
    if order.state == RepairState::Assigned && order.assignee_id == Some(technician.id) {
        return Err(ApiError::conflict("the repair order is already assigned to this technician"));
    }
    let action = if order.assignee_id.is_some() { RepairAction::Reassigned } else { RepairAction::Assigned };
    let update = repair_order::ActiveModel {
        state: Set(to),
        assignee_id: Set(Some(technician.id)),
        assigned_at: Set(Some(Utc::now())),
        started_at: Set(None),
        ..Default::default()
    };
    let change = Change { action, event: "ASSIGNED", actor: Some(principal.user_id), note: None };
    commit_change(app, &order, expected_version, update, change).await
}

/// The order, if the principal is its technician.
async fn own_assignment(app: &AppContext, principal: &Principal, order_id: i64) -> ApiResult<repair_order::Model> {
    let order = find(&app.db, principal, order_id).await?;
    if order.assignee_id != Some(principal.user_id) {
        return Err(ApiError::Forbidden);
    }
    Ok(order)
}

#[tracing::instrument(skip(app, principal), fields(user_id = principal.user_id))]
pub async fn start(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    expected_version: Option<i32>,
) -> ApiResult<repair_order::Model> {
    let order = own_assignment(app, principal, order_id).await?;
    let to = transition(&order, Transition::Start, "start")?;
    let update = repair_order::ActiveModel { state: Set(to), started_at: Set(Some(Utc::now())), ..Default::default() };
    let change = Change { action: RepairAction::Started, event: "STARTED", actor: Some(principal.user_id), note: None };
    commit_change(app, &order, expected_version, update, change).await
}

pub struct Completion {
    pub note: String,
    pub materials: Option<String>,
    pub charge_cents: Option<i64>,
}

#[tracing::instrument(skip(app, principal, completion), fields(user_id = principal.user_id))]
pub async fn complete(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    completion: Completion,
    expected_version: Option<i32>,
) -> ApiResult<repair_order::Model> {
    let note = validate::text(&completion.note, "note", 2000)?;
    let materials = completion.materials.as_deref().map(|m| validate::text(m, "materials", 1000)).transpose()?;
    if let Some(charge) = completion.charge_cents
        && !(0..=MAX_CHARGE_CENTS).contains(&charge)
    {
        return Err(ApiError::bad_input("chargeCents", format!("must be between 0 and {MAX_CHARGE_CENTS}")));
    }
    let order = own_assignment(app, principal, order_id).await?;
    let to = transition(&order, Transition::Complete, "complete")?;
    let update = repair_order::ActiveModel {
        state: Set(to),
        completion_note: Set(Some(note)),
        materials: Set(materials),
        charge_cents: Set(completion.charge_cents),
        completed_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    let change =
        Change { action: RepairAction::Completed, event: "COMPLETED", actor: Some(principal.user_id), note: None };
    commit_change(app, &order, expected_version, update, change).await
}

#[tracing::instrument(skip(app, principal, comment), fields(user_id = principal.user_id))]
pub async fn confirm(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    rating: i32,
    comment: Option<String>,
    expected_version: Option<i32>,
) -> ApiResult<repair_order::Model> {
    if !(1..=5).contains(&rating) {
        return Err(ApiError::bad_input("rating", "must be between 1 and 5"));
    }
    let comment = comment.as_deref().map(|c| validate::text(c, "comment", 1000)).transpose()?;
    // Residents see only their own units' orders, so the scope is the check.
    let order = find(&app.db, principal, order_id).await?;
    if !principal.is_resident() {
        return Err(ApiError::Forbidden);
    }
    let to = transition(&order, Transition::Confirm, "confirm")?;
    let update = repair_order::ActiveModel {
        state: Set(to),
        rating: Set(Some(rating)),
        rating_comment: Set(comment),
        closed_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    let change =
        Change { action: RepairAction::Confirmed, event: "CLOSED", actor: Some(principal.user_id), note: None };
    commit_change(app, &order, expected_version, update, change).await
}

#[tracing::instrument(skip(app, principal, reason), fields(user_id = principal.user_id))]
pub async fn cancel(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    reason: &str,
    expected_version: Option<i32>,
) -> ApiResult<repair_order::Model> {
    let reason = validate::text(reason, "reason", 500)?;
    let order = find(&app.db, principal, order_id).await?;
    let as_staff = permissions::is_allowed(principal, Action::HandleRepairs);
    let kind = match (as_staff, order.created_by == principal.user_id) {
        (true, _) => Transition::CancelByStaff,
        (false, true) => Transition::CancelBySubmitter,
        (false, false) => return Err(ApiError::Forbidden),
    };
    let to = transition(&order, kind, "cancel")?;
    let update = repair_order::ActiveModel {
        state: Set(to),
        cancel_reason: Set(Some(reason.clone())),
        closed_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    let change = Change {
        action: RepairAction::Cancelled,
        event: "CANCELLED",
        actor: Some(principal.user_id),
        note: Some(reason),
    };
    commit_change(app, &order, expected_version, update, change).await
}

pub struct FollowUp {
    pub outcome: String,
    pub satisfied: bool,
    pub note: Option<String>,
}

#[tracing::instrument(skip(app, principal, follow_up), fields(user_id = principal.user_id))]
pub async fn add_follow_up(
    app: &AppContext,
    principal: &Principal,
    order_id: i64,
    follow_up: FollowUp,
) -> ApiResult<repair_order::Model> {
    permissions::require(principal, Action::HandleRepairs)?;
    let outcome = validate::text(&follow_up.outcome, "outcome", 1000)?;
    let note = follow_up.note.as_deref().map(|n| validate::text(n, "note", 2000)).transpose()?;
    let order = find(&app.db, principal, order_id).await?;
    if order.state != RepairState::Closed {
        return Err(illegal(&order, "follow up on"));
    }
    let now = Utc::now();
    let updated = app
        .writers
        .write(async |txn| {
            let bumped = repair_order::Entity::update_many()
                .col_expr(repair_order::Column::Version, Expr::value(order.version + 1))
                .col_expr(repair_order::Column::UpdatedAt, Expr::value(now))
                .filter(repair_order::Column::Id.eq(order.id))
                .filter(repair_order::Column::Version.eq(order.version))
                .exec(txn)
                .await?;
            if bumped.rows_affected == 0 {
                return Err(ApiError::conflict(
                    "the repair order was changed by someone else at the same time; reload it",
                ));
            }
            repair_follow_up::ActiveModel {
                order_id: Set(order.id),
                author_id: Set(principal.user_id),
                outcome: Set(outcome.clone()),
                satisfied: Set(follow_up.satisfied),
                note: Set(note),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            let updated = repair_order::Model { version: order.version + 1, updated_at: now, ..order };
            let change = Change {
                action: RepairAction::FollowedUp,
                event: "FOLLOWED_UP",
                actor: Some(principal.user_id),
                note: Some(outcome),
            };
            let recipients = recipients(txn, &updated).await?;
            record(txn, &updated, None, None, change, recipients, now).await?;
            Ok(updated)
        })
        .await?;
    app.events.committed();
    Ok(updated)
}

/// Marks one deadline missed, once: the conditional update makes it safe for
/// several instances to run the job at the same time.
pub(super) async fn mark_overdue(app: &AppContext, order: &repair_order::Model, response: bool) -> ApiResult<bool> {
    // Another instance may have marked it since the job listed it; the version
    // check below only guards against changes after `order` was read.
    let already = if response { order.response_overdue } else { order.completion_overdue };
    if already {
        return Ok(false);
    }
    let (update, action) = if response {
        (repair_order::ActiveModel { response_overdue: Set(true), ..Default::default() }, RepairAction::ResponseOverdue)
    } else {
        (
            repair_order::ActiveModel { completion_overdue: Set(true), ..Default::default() },
            RepairAction::CompletionOverdue,
        )
    };
    let change = Change { action, event: "OVERDUE", actor: None, note: None };
    match commit_change(app, order, None, update, change).await {
        Ok(_) => Ok(true),
        Err(ApiError::Conflict(_)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Closes a completed order the resident did not confirm in time.
pub(super) async fn auto_close(app: &AppContext, order: &repair_order::Model) -> ApiResult<bool> {
    if state::next(order.state, Transition::AutoClose).is_none() {
        return Ok(false);
    }
    let update = repair_order::ActiveModel {
        state: Set(RepairState::Closed),
        closed_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    let change = Change { action: RepairAction::AutoClosed, event: "CLOSED", actor: None, note: None };
    match commit_change(app, order, None, update, change).await {
        Ok(_) => Ok(true),
        Err(ApiError::Conflict(_)) => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{migrated_sqlite, query_plan};
    use repair_order::Column;
    use sea_orm::Iterable;

    /// Each order's unit, building and assignee shown with every column.
    fn shown_whole() -> RelatedShown {
        RelatedShown {
            unit: Some(ReadPlan::new(unit::Column::iter().collect())),
            building: Some(ReadPlan::new(building::Column::iter().collect())),
            assignee: Some(ReadPlan::new(user::Column::iter().collect())),
            people: None,
        }
    }

    #[test]
    fn a_residents_order_takes_its_place_from_a_unit_they_live_in_unless_it_gives_its_own() {
        let resident = Principal { user_id: 7, role: Role::Resident, position: None, community_id: None };
        let order = repair_order::ActiveModel {
            created_by: Set(7),
            contact_phone: Set(Some("13900001111".into())),
            ..Default::default()
        };
        let insert = insert_placed(&order, place_in_residents_unit(&resident, 3));
        let (sql, values) = insert.build(sea_orm::sea_query::PostgresQueryBuilder);
        assert_eq!(
            sql,
            r#"INSERT INTO "repair_order" ("community_id", "building_id", "unit_id", "resident_id", "created_by", "contact_phone") SELECT "place"."community_id", "place"."building_id", "place"."unit_id", "place"."resident_id", $1, $2 FROM (SELECT "unit"."community_id" AS "community_id", "unit"."building_id" AS "building_id", "unit"."id" AS "unit_id", "user"."id" AS "resident_id", "user"."phone" AS "contact_phone" FROM "unit" LEFT JOIN "user" ON "user"."id" = $3 WHERE "unit"."id" = $4 AND "unit"."id" IN (SELECT "unit_id" FROM "unit_membership" WHERE "unit_membership"."user_id" = $5 AND "unit_membership"."moved_out_on" IS NULL)) AS "place" RETURNING *"#
        );
        let phone = sea_orm::Value::from(Some("13900001111".to_owned()));
        let id_value = |id: i64| sea_orm::Value::from(id);
        assert_eq!(values.0, vec![id_value(7), phone, id_value(7), id_value(3), id_value(7)]);
    }

    #[test]
    fn every_shape_of_a_page_is_written_once_and_binds_the_values_of_its_request() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        use chrono::TimeZone;
        let people = |user_id, community_id| {
            let staff = |position| Principal { user_id, role: Role::Staff, position, community_id: Some(community_id) };
            [
                Principal { user_id, role: Role::Resident, position: None, community_id: None },
                Principal { user_id, role: Role::Butler, position: None, community_id: Some(community_id) },
                staff(Some(StaffPosition::Technician)),
                staff(Some(StaffPosition::Supervisor)),
                Principal { user_id, role: Role::Staff, position: None, community_id: None },
            ]
        };
        let filters = |n: i64| {
            let nothing = Filter {
                states: vec![],
                priority: None,
                overdue: None,
                building_id: None,
                unit_id: None,
                assignee_id: None,
                created_from: None,
                created_to: None,
                text: None,
            };
            let at = |day| Utc.with_ymd_and_hms(2026, 11, day, 8, 0, 0).single().expect("time");
            let everything = Filter {
                states: vec![RepairState::Submitted, RepairState::Assigned],
                priority: Some(RepairPriority::Urgent),
                overdue: Some(true),
                building_id: Some(n),
                unit_id: Some(n + 1),
                assignee_id: Some(n + 2),
                created_from: Some(at(n as u32)),
                created_to: Some(at(n as u32 + 7)),
                text: Some(format!("漏水_{n}%")),
            };
            let on_time = Filter { overdue: Some(false), text: Some(format!("门禁 {n}")), ..nothing.clone() };
            [nothing, everything, on_time]
        };
        let pages = |n: i64| {
            let cursor = URL_SAFE_NO_PAD.encode(format!("k{}", 40 + n));
            let first = PageRequest::new(20, None).expect("page request");
            let next = PageRequest::new(5 + n as i32, Some(&cursor)).expect("page request");
            [(first, vec![Column::Id, Column::State]), (next, Column::iter().collect())]
        };
        let templates = Templates::default();
        let mut shapes = 0;
        for backend in [sea_orm::DatabaseBackend::Sqlite, sea_orm::DatabaseBackend::Postgres] {
            // Two requests of each shape, with different values.
            for n in [1, 2] {
                for principal in people(10 + n, 20 + n) {
                    for filter in filters(n) {
                        for (request, columns) in pages(n) {
                            for joined in [JoinedColumns::default(), shown_whole().joined(KeysHeld::of(&columns))] {
                                let (shape, parameters) =
                                    page_inputs(&principal, filter.clone(), &request, &columns, joined)
                                        .expect("a page");
                                templates.assert_builds_as_directly(backend, &shape, &parameters, page_statement);
                                shapes += usize::from(n == 1);
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(templates.kept_and_unkept(), (shapes, 0));
    }

    #[test]
    fn an_order_read_by_id_is_written_once_per_role_and_binds_who_asks_and_which() {
        let templates = Templates::default();
        let mut shapes = 0;
        for backend in [sea_orm::DatabaseBackend::Sqlite, sea_orm::DatabaseBackend::Postgres] {
            for n in [1, 2] {
                let staff =
                    |position| Principal { user_id: 10 + n, role: Role::Staff, position, community_id: Some(n) };
                for principal in [
                    Principal { user_id: 10 + n, role: Role::Resident, position: None, community_id: None },
                    Principal { user_id: 10 + n, role: Role::Butler, position: None, community_id: Some(n) },
                    staff(Some(StaffPosition::Technician)),
                    staff(Some(StaffPosition::Supervisor)),
                    Principal { user_id: 10 + n, role: Role::Staff, position: None, community_id: None },
                ] {
                    let parameters = by_id_inputs(&principal, 100 + n);
                    let seen_as = (principal.role, principal.position);
                    templates.assert_builds_as_directly(backend, &seen_as, &parameters, order_by_id);
                    shapes += usize::from(n == 1);
                }
            }
        }
        assert_eq!(templates.kept_and_unkept(), (shapes, 0));
    }

    #[test]
    fn every_shape_of_a_submission_is_written_once_and_binds_the_values_of_its_own() {
        use chrono::TimeZone;
        use submission_parameter::*;
        let at = |hours: i64| Utc.timestamp_opt(1_764_000_000 + hours * 3600, 0).single().expect("an instant");
        // Whose place: the resident's unit read by the write, or one read
        // before, with a unit and a resident, a unit alone, or neither.
        let places = [None, Some((true, true)), Some((true, false)), Some((false, false))];
        let templates = Templates::default();
        let mut shapes = 0;
        for n in [1, 2] {
            for place in places {
                for (phone, visit, claim, photos) in
                    [(false, false, false, 0), (true, true, false, 0), (false, true, true, 2), (true, false, true, 1)]
                {
                    let mut parameters = vec![None; PHOTOS];
                    parameters[SUBMITTER] = Some(Parameter::Id(10 + n));
                    parameters[DESCRIPTION] = Some(Parameter::Text(format!("厨房水龙头漏水 {n}")));
                    parameters[RESPONSE_DUE] = Some(Parameter::Instant(at(24 + n)));
                    parameters[COMPLETION_DUE] = Some(Parameter::Instant(at(72 + n)));
                    parameters[NOW] = Some(Parameter::Instant(at(n)));
                    parameters[PREFERRED_VISIT] = visit.then(|| Parameter::Instant(at(48 + n)));
                    parameters[CONTACT_PHONE] = phone.then(|| Parameter::Text(format!("1390000111{n}")));
                    for (position, text) in CLAIM.into_iter().zip(["app:10", "submitRepairOrder", "key", "hash"]) {
                        parameters[position] = claim.then(|| Parameter::Text(format!("{text}-{n}")));
                    }
                    match place {
                        None => parameters[UNIT] = Some(Parameter::Id(30 + n)),
                        Some((unit, resident)) => {
                            parameters[COMMUNITY] = Some(Parameter::Id(50 + n));
                            parameters[BUILDING] = Some(Parameter::Id(40 + n));
                            parameters[UNIT] = unit.then(|| Parameter::Id(30 + n));
                            parameters[RESIDENT] = resident.then(|| Parameter::Id(20 + n));
                        }
                    }
                    for photo in 0..photos {
                        parameters.push(Some(Parameter::Number(1000 * n + photo)));
                        parameters.push(Some(Parameter::Text(format!("photo-{n}-{photo}.jpg"))));
                    }
                    let shape = SubmissionShape {
                        place_read_by_the_write: place.is_none(),
                        channel: if place.is_none() { RepairChannel::App } else { RepairChannel::Phone },
                        category: RepairCategory::Plumbing,
                        priority: RepairPriority::Urgent,
                        photos: vec!["image/jpeg"; photos as usize],
                    };
                    let parameters = Parameters::new(parameters);
                    templates.assert_builds_as_directly(DbBackend::Postgres, &shape, &parameters, submission_statement);
                    shapes += usize::from(n == 1);
                    // On SQLite a place is always read before the write.
                    if place.is_some() {
                        templates.assert_builds_as_directly(DbBackend::Sqlite, &shape, &parameters, order_insert);
                        shapes += usize::from(n == 1);
                    }
                }
            }
        }
        assert_eq!(templates.kept_and_unkept(), (shapes, 0));
    }

    #[test]
    fn a_residents_place_is_written_once_and_binds_who_asks_and_which_unit() {
        let templates = Templates::default();
        for (resident, unit) in [(10, 30), (11, 31)] {
            let parameters = Parameters::new(vec![Some(Parameter::Id(resident)), Some(Parameter::Id(unit))]);
            templates.assert_builds_as_directly(DbBackend::Sqlite, &(), &parameters, residents_place);
        }
        assert_eq!(templates.kept_and_unkept(), (1, 0));
    }

    /// Each order's unit, building and assignee, kept in `rows_read` and
    /// asked for with every column by the field `field`, equals the row read
    /// by id.
    async fn assert_kept_whole(
        db: &DatabaseConnection,
        rows_read: &RowsRead,
        orders: &[repair_order::Model],
        field: crate::graphql::loader::FieldKey,
    ) {
        for order in orders {
            let unit = match order.unit_id {
                Some(id) => unit::Entity::find_by_id(id).one(db).await.expect("unit").map(Arc::new),
                None => None,
            };
            let every_column = || unit::Column::iter().collect();
            assert_eq!(rows_read.get::<unit::Entity>(order.unit_id.unwrap_or_default(), field, every_column), unit);
            let building =
                building::Entity::find_by_id(order.building_id).one(db).await.expect("building").map(Arc::new);
            let every_column = || building::Column::iter().collect();
            assert_eq!(rows_read.get::<building::Entity>(order.building_id, field + 1, every_column), building);
            let assignee = match order.assignee_id {
                Some(id) => user::Entity::find_by_id(id).one(db).await.expect("assignee").map(Arc::new),
                None => None,
            };
            let every_column = || user::Column::iter().collect();
            let kept = rows_read.get::<user::Entity>(order.assignee_id.unwrap_or_default(), field + 2, every_column);
            assert_eq!(kept, assignee);
        }
    }

    #[tokio::test]
    async fn a_page_reads_the_selected_columns_as_reading_each_row_by_name_does() {
        use chrono::TimeZone;
        use entity::community;
        let db = migrated_sqlite().await;
        let at = |second| Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, second).single().expect("time");
        let community =
            community::ActiveModel { name: Set("翠苑".into()), created_at: Set(at(1)), ..Default::default() };
        let community = community.insert(&db).await.expect("community");
        let building = building::ActiveModel {
            community_id: Set(community.id),
            name: Set("3 栋".into()),
            created_at: Set(at(2)),
            ..Default::default()
        };
        let building = building.insert(&db).await.expect("building");
        let unit = unit::ActiveModel {
            building_id: Set(building.id),
            community_id: Set(community.id),
            number: Set("1202".into()),
            floor: Set(Some(12)),
            contacts_version: Set(3),
            created_at: Set(at(3)),
            ..Default::default()
        };
        let unit = unit.insert(&db).await.expect("unit");
        let technician = user::ActiveModel {
            phone: Set("13800000001".into()),
            name: Set("王师傅".into()),
            password_hash: Set(Some("hash".into())),
            role: Set(Role::Staff),
            position: Set(Some(StaffPosition::Technician)),
            community_id: Set(Some(community.id)),
            created_at: Set(at(4)),
            ..Default::default()
        };
        let technician = technician.insert(&db).await.expect("technician");
        let every_column_set = repair_order::ActiveModel {
            community_id: Set(community.id),
            building_id: Set(building.id),
            unit_id: Set(Some(unit.id)),
            resident_id: Set(Some(technician.id)),
            created_by: Set(technician.id),
            channel: Set(RepairChannel::Phone),
            category: Set(RepairCategory::Electrical),
            description: Set("走廊灯不亮".into()),
            priority: Set(RepairPriority::Urgent),
            state: Set(RepairState::Assigned),
            preferred_visit_at: Set(Some(at(5))),
            contact_phone: Set(Some("13800000002".into())),
            assignee_id: Set(Some(technician.id)),
            completion_note: Set(Some("换了灯管".into())),
            materials: Set(Some("灯管".into())),
            charge_cents: Set(Some(1500)),
            rating: Set(Some(4)),
            rating_comment: Set(Some("快".into())),
            cancel_reason: Set(Some("-".into())),
            response_due_at: Set(at(6)),
            completion_due_at: Set(at(7)),
            response_overdue: Set(true),
            completion_overdue: Set(false),
            assigned_at: Set(Some(at(8))),
            started_at: Set(Some(at(9))),
            completed_at: Set(Some(at(10))),
            closed_at: Set(Some(at(11))),
            version: Set(5),
            created_at: Set(at(12)),
            updated_at: Set(at(13)),
            ..Default::default()
        };
        every_column_set.clone().insert(&db).await.expect("order");
        let patrol_finding = repair_order::ActiveModel {
            community_id: Set(community.id),
            building_id: Set(building.id),
            unit_id: Set(None),
            resident_id: Set(None),
            created_by: Set(technician.id),
            channel: Set(RepairChannel::Patrol),
            category: Set(RepairCategory::Plumbing),
            description: Set("楼道漏水".into()),
            priority: Set(RepairPriority::Normal),
            state: Set(RepairState::Submitted),
            response_due_at: Set(at(14)),
            completion_due_at: Set(at(15)),
            response_overdue: Set(false),
            completion_overdue: Set(true),
            version: Set(1),
            created_at: Set(at(16)),
            updated_at: Set(at(17)),
            ..Default::default()
        };
        patrol_finding.insert(&db).await.expect("order");

        let supervisor = Principal {
            user_id: technician.id,
            role: Role::Staff,
            position: Some(StaffPosition::Supervisor),
            community_id: Some(community.id),
        };
        let request = PageRequest::new(20, None).expect("page request");
        let page =
            || pagination::page_of(repair_order::Entity::find().filter(visible(&supervisor)), Column::Id, &request);
        let by_name = repair_order::Entity::find().all(&db).await.expect("orders");
        assert_eq!(by_name.len(), 2);

        let rows_read = RowsRead::default();
        let every_column: Vec<_> = Column::iter().collect();
        let whole = shown_whole();
        let orders = read_page(&db, page(), &every_column, Some((&whole, &rows_read))).await.expect("page");
        assert_eq!(orders, by_name);
        assert_kept_whole(&db, &rows_read, &orders, 0).await;

        // Kept with some columns, a row serves only fields that read no others.
        let rows_read = RowsRead::default();
        let shown = RelatedShown {
            unit: Some(ReadPlan::new(vec![unit::Column::Id, unit::Column::Number])),
            building: None,
            assignee: Some(ReadPlan::new(vec![user::Column::Id, user::Column::Name])),
            people: None,
        };
        read_page(&db, page(), &every_column, Some((&shown, &rows_read))).await.expect("page");
        let order = &by_name[0];
        let (unit_id, assignee_id) = (order.unit_id.expect("unit"), order.assignee_id.expect("assignee"));
        let unit = unit::Entity::find_by_id(unit_id).one(&db).await.expect("unit").expect("unit");
        let kept =
            rows_read.get::<unit::Entity>(unit_id, 1, || vec![unit::Column::Id, unit::Column::Number]).expect("kept");
        assert_eq!((kept.id, &kept.number), (unit.id, &unit.number));
        // A field works out the columns it reads once, however many rows it asks for.
        assert!(rows_read.get::<unit::Entity>(unit_id, 1, || unreachable!("worked out again")).is_some());
        assert_eq!(rows_read.get::<unit::Entity>(unit_id, 2, || vec![unit::Column::Id, unit::Column::Floor]), None);
        assert_eq!(rows_read.get::<unit::Entity>(unit_id, 3, || unit::Column::iter().collect()), None);
        assert_eq!(rows_read.get::<building::Entity>(order.building_id, 4, || vec![building::Column::Id]), None);
        let assignee = user::Entity::find_by_id(assignee_id).one(&db).await.expect("user").expect("user");
        let kept =
            rows_read.get::<user::Entity>(assignee_id, 5, || vec![user::Column::Id, user::Column::Name]).expect("kept");
        assert_eq!((kept.id, &kept.name), (assignee.id, &assignee.name));
        assert_eq!(rows_read.get::<user::Entity>(assignee_id, 6, || vec![user::Column::Id, user::Column::Phone]), None);

        let some_columns = [Column::Id, Column::UnitId, Column::Description, Column::State, Column::ClosedAt];
        let rows_read = RowsRead::default();
        for related in [None, Some((&whole, &rows_read))] {
            let orders = read_page(&db, page(), &some_columns, related).await.expect("page");
            for (order, by_name) in orders.into_iter().zip(&by_name) {
                let expected = repair_order::Model {
                    id: by_name.id,
                    unit_id: by_name.unit_id,
                    description: by_name.description.clone(),
                    state: by_name.state,
                    closed_at: by_name.closed_at,
                    ..unread_order()
                };
                assert_eq!(order, expected);
            }
        }
        // The order's unit id is read, so the unit's is not selected again;
        // its building and assignee ids are not, so theirs are.
        let statement =
            with_related(page(), &whole.joined(KeysHeld::of(&some_columns))).build(sea_orm::DatabaseBackend::Sqlite);
        let (selected, _) = statement.sql.split_once(" FROM ").expect("a select");
        assert!(!selected.contains(r#""unit"."id""#), "{selected}");
        assert!(selected.contains(r#""building"."id""#) && selected.contains(r#""assignee"."id""#), "{selected}");
        assert_kept_whole(&db, &rows_read, &by_name, 7).await;

        // The people shown as residents or submitters are read after the
        // page, with the columns shown, and only those shown.
        let person = |phone: &str, name: &str, role| user::ActiveModel {
            phone: Set(phone.into()),
            name: Set(name.into()),
            role: Set(role),
            community_id: Set(Some(community.id)),
            created_at: Set(at(18)),
            ..Default::default()
        };
        let owner = person("13800000003", "业主", Role::Resident).insert(&db).await.expect("owner");
        let butler = person("13800000004", "管家", Role::Staff).insert(&db).await.expect("butler");
        let entered_for_owner = repair_order::ActiveModel {
            resident_id: Set(Some(owner.id)),
            created_by: Set(butler.id),
            ..every_column_set
        };
        entered_for_owner.insert(&db).await.expect("order");
        let name_only = || vec![user::Column::Id, user::Column::Name];
        for (residents, submitters) in [(true, false), (false, true), (true, true)] {
            let shown = RelatedShown {
                unit: None,
                building: None,
                assignee: None,
                people: Some(PeopleShown { plan: ReadPlan::new(name_only()), residents, submitters }),
            };
            let rows_read = RowsRead::default();
            read_page(&db, page(), &every_column, Some((&shown, &rows_read))).await.expect("page");
            let kept_name = |id| rows_read.get::<user::Entity>(id, 8, name_only).map(|kept| kept.name.clone());
            assert_eq!(kept_name(owner.id), residents.then(|| "业主".to_owned()));
            assert_eq!(kept_name(butler.id), submitters.then(|| "管家".to_owned()));
            assert_eq!(kept_name(technician.id), Some("王师傅".to_owned()), "both a resident and a submitter");
            assert_eq!(
                rows_read.get::<user::Entity>(owner.id, 9, || vec![user::Column::Id, user::Column::Phone]),
                None
            );
        }
    }

    #[tokio::test]
    async fn a_residents_page_sorts_only_the_ids_of_their_visible_orders() {
        let db = migrated_sqlite().await;
        let resident = Principal { user_id: 1, role: Role::Resident, position: None, community_id: Some(1) };
        let request = PageRequest::new(20, None).expect("page request");
        // With the columns `read_page` lists, every one of the order's.
        let page = || {
            pagination::page_of(
                repair_order::Entity::find().filter(visible(&resident)),
                repair_order::Column::Id,
                &request,
            )
            .columns(repair_order::Column::iter())
        };
        for steps in [
            query_plan(&db, page()).await,
            query_plan(&db, with_related(page(), &shown_whole().joined(KeysHeld::of(&[])))).await,
        ] {
            let sorts: Vec<_> = steps.iter().filter(|(_, detail)| detail.contains("TEMP B-TREE")).collect();
            // The only sort is the subquery's, over ids; the rows come out in id order.
            assert_eq!(sorts.len(), 1, "{steps:?}");
            assert_ne!(sorts[0].0, 0, "{steps:?}");
            assert!(
                steps.iter().any(|(_, detail)| detail.contains("COVERING INDEX ix_repair_order_unit")),
                "{steps:?}"
            );
        }
    }
}
