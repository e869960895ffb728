//! The rules of parcels and mail: registration by the front desk or an
//! integrator, pickup codes only recipients can read, handing over against the
//! code (with a lock after repeated wrong codes), identification and return of
//! unclear mail, reminders, and the events that notify phones.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::{
    butler_assignment,
    enums::{ParcelKind, ParcelStatus, PickupChannel, Role, StaffPosition},
    parcel, parcel_reminder, unit, unit_membership, user,
};
use rand::Rng;
use sea_orm::{
    ActiveEnum, ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Select,
    sea_query::{Expr, OnConflict, Query},
};

use super::types;
use crate::{
    AppContext,
    auth::{Action, Caller, Principal, Scope, permissions},
    error::{ApiError, ApiResult, unique_conflict},
    events::{self, NewEvent, audience},
    graphql::pagination::{self, Page, PageRequest},
    idempotency::Claim,
    property::{scope, service as property},
    validate,
};

pub const ENTITY_TYPE: &str = "PARCEL";
pub const MAX_BATCH: usize = 100;

fn nothing() -> Condition {
    Condition::all().add(Expr::cust("1 = 0"))
}

/// Parcels the caller may see: a resident their units', a butler their
/// buildings' and the community's unidentified ones, staff and integrators
/// with a parcel scope the community's.
pub fn visible(caller: &Caller) -> Condition {
    match caller {
        Caller::User(principal) => match (principal.role, principal.community_id) {
            (Role::Resident, _) => {
                Condition::all().add(parcel::Column::UnitId.in_subquery(scope::current_units_of(principal.user_id)))
            }
            (Role::Butler, community_id) => Condition::any()
                .add(
                    parcel::Column::UnitId.in_subquery(
                        Query::select()
                            .column(unit::Column::Id)
                            .from(unit::Entity)
                            .and_where(
                                unit::Column::BuildingId.in_subquery(scope::buildings_assigned_to(principal.user_id)),
                            )
                            .take(),
                    ),
                )
                .add(
                    Condition::all()
                        .add(parcel::Column::Status.eq(ParcelStatus::Unidentified))
                        .add(parcel::Column::CommunityId.eq(community_id.unwrap_or_default())),
                ),
            (Role::Staff, Some(community_id)) => Condition::all().add(parcel::Column::CommunityId.eq(community_id)),
            (Role::Staff, None) => nothing(),
        },
        Caller::Integrator(integrator) if !integrator.scopes.is_empty() => {
            Condition::all().add(parcel::Column::CommunityId.eq(integrator.community_id))
        }
        Caller::Integrator(_) => nothing(),
    }
}

pub async fn find(db: &impl ConnectionTrait, caller: &Caller, id: i64) -> ApiResult<parcel::Model> {
    parcel::Entity::find_by_id(id).filter(visible(caller)).one(db).await?.ok_or(ApiError::NotFound("parcel"))
}

/// The parcels with `ids`, in that order, all visible to the caller, or NOT_FOUND.
pub async fn find_all(db: &impl ConnectionTrait, caller: &Caller, ids: &[i64]) -> ApiResult<Vec<parcel::Model>> {
    let mut found: HashMap<i64, parcel::Model> = parcel::Entity::find()
        .filter(parcel::Column::Id.is_in(ids.iter().copied()))
        .filter(visible(caller))
        .all(db)
        .await?
        .into_iter()
        .map(|parcel| (parcel.id, parcel))
        .collect();
    ids.iter().map(|id| found.remove(id).ok_or(ApiError::NotFound("parcel"))).collect()
}

/// [`find`], refusing with CONFLICT when the caller acts on a version other
/// than the current one (someone else changed the parcel meanwhile).
async fn find_at(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
    expected_version: Option<i32>,
) -> ApiResult<parcel::Model> {
    let parcel = find(db, caller, id).await?;
    crate::db::require_version("the parcel", parcel.version, expected_version)?;
    Ok(parcel)
}

/// Who registers and hands over parcels: the front desk (supervisors and
/// managers too), or an integrator with `parcels:write`.
enum Handler<'a> {
    Staff(&'a Principal),
    Integrator { client_id: i64, community_id: i64 },
}

impl Handler<'_> {
    fn community_id(&self) -> ApiResult<i64> {
        match self {
            Handler::Staff(principal) => principal.community_id.ok_or(ApiError::Forbidden),
            Handler::Integrator { community_id, .. } => Ok(*community_id),
        }
    }
}

fn handler(caller: &Caller) -> ApiResult<Handler<'_>> {
    match caller {
        Caller::User(principal) => {
            permissions::require(principal, Action::HandleParcels)?;
            Ok(Handler::Staff(principal))
        }
        Caller::Integrator(integrator) if integrator.has(Scope::ParcelsWrite) => {
            Ok(Handler::Integrator { client_id: integrator.client_id, community_id: integrator.community_id })
        }
        Caller::Integrator(_) => Err(ApiError::Forbidden),
    }
}

fn staff(caller: &Caller, action: Action) -> ApiResult<&Principal> {
    match caller {
        Caller::User(principal) => {
            permissions::require(principal, action)?;
            Ok(principal)
        }
        Caller::Integrator(_) => Err(ApiError::Forbidden),
    }
}

/// A unit of the community, for callers that see the whole community.
async fn unit_of_community(db: &impl ConnectionTrait, community_id: i64, unit_id: i64) -> ApiResult<unit::Model> {
    unit::Entity::find_by_id(unit_id)
        .filter(unit::Column::CommunityId.eq(community_id))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("unit"))
}

/// The unit's current residents, the butlers of its building and the front
/// desk; for a parcel without a unit, the front desk and all the community's butlers.
async fn recipients(db: &impl ConnectionTrait, parcel: &parcel::Model) -> ApiResult<Vec<i64>> {
    let front_desk = audience::employees_of(parcel.community_id, Role::Staff, &[StaffPosition::FrontDesk]);
    let groups = match parcel.unit_id {
        Some(unit_id) => {
            let building = Query::select()
                .column(unit::Column::BuildingId)
                .from(unit::Entity)
                .and_where(unit::Column::Id.eq(unit_id))
                .take();
            vec![
                audience::residents_of(unit_id),
                audience::butlers_of(butler_assignment::Column::BuildingId.in_subquery(building)),
                front_desk,
            ]
        }
        None => vec![audience::employees_of(parcel.community_id, Role::Butler, &[]), front_desk],
    };
    Ok(audience::people(db, groups, []).await?)
}

/// Appends the parcel's event for its recipients, in the write's transaction.
async fn announce(txn: &impl ConnectionTrait, parcel: &parcel::Model, kind: &'static str) -> ApiResult<()> {
    let recipients = recipients(txn, parcel).await?;
    events::append(txn, vec![announcement(parcel, kind, recipients)]).await?;
    Ok(())
}

fn announcement(parcel: &parcel::Model, kind: &'static str, recipients: Vec<i64>) -> NewEvent {
    NewEvent { community_id: parcel.community_id, kind, entity_type: ENTITY_TYPE, entity_id: parcel.id, recipients }
}

/// How many codes a registration draws before it gives up: with a million
/// codes, even a community holding 10,000 waiting parcels fails all 20 draws
/// with a probability of 10⁻⁴⁰.
const PICKUP_CODE_DRAWS: usize = 20;

/// A six-digit code from a CSPRNG, so one code says nothing of another.
fn draw_pickup_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000))
}

/// A fresh code, not in use by the community's waiting parcels.
async fn new_pickup_code(db: &impl ConnectionTrait, community_id: i64) -> ApiResult<String> {
    for _ in 0..PICKUP_CODE_DRAWS {
        let code = draw_pickup_code();
        if waiting_with_pickup_code(community_id, &code).count(db).await? == 0 {
            return Ok(code);
        }
    }
    Err(ApiError::Internal("no free pickup code found".into()))
}

/// The community's waiting parcel with this pickup code, found through the
/// unique index on waiting parcels' codes.
fn waiting_with_pickup_code(community_id: i64, code: &str) -> Select<parcel::Entity> {
    parcel::Entity::find()
        .filter(parcel::Column::CommunityId.eq(community_id))
        .filter(status_is(&[ParcelStatus::Waiting]))
        .filter(parcel::Column::PickupCode.eq(code))
}

/// `status` is one of `statuses`, written into the SQL rather than bound: a
/// partial index (such as the unique pickup code among waiting parcels) serves
/// a query only when the query's own condition proves the index's, which a
/// bound value cannot, on SQLite and in PostgreSQL's generic plans. Bound, the
/// lookup scans every waiting parcel of the community instead.
fn status_is(statuses: &[ParcelStatus]) -> Expr {
    let literals: Vec<String> = statuses.iter().map(|status| format!("'{}'", status.to_value())).collect();
    match literals.as_slice() {
        [one] => Expr::cust(format!("status = {one}")),
        many => Expr::cust(format!("status IN ({})", many.join(", "))),
    }
}

fn reminder_delay(app: &AppContext) -> ApiResult<Duration> {
    Duration::from_std(app.settings.parcel_reminder_delay)
        .map_err(|_| ApiError::Internal("reminder delay out of range".into()))
}

pub struct NewParcel {
    pub kind: ParcelKind,
    pub carrier: String,
    pub tracking_number: String,
    pub item_count: i32,
    pub recipient_name: String,
    pub unit_id: Option<i64>,
    pub location: Option<String>,
}

/// Registers parcels, all or nothing. `bulk` names fields `parcels.<i>.<field>`.
#[tracing::instrument(skip_all, fields(count = parcels.len()))]
pub async fn register(
    app: &AppContext,
    caller: &Caller,
    parcels: Vec<NewParcel>,
    bulk: bool,
    claim: Option<&Claim>,
) -> ApiResult<Vec<parcel::Model>> {
    let handler = handler(caller)?;
    let community_id = handler.community_id()?;
    if parcels.is_empty() || parcels.len() > MAX_BATCH {
        return Err(ApiError::bad_input("parcels", format!("between 1 and {MAX_BATCH} parcels")));
    }
    let field = |index: usize, name: &str| if bulk { format!("parcels.{index}.{name}") } else { name.to_owned() };
    let mut checked = Vec::with_capacity(parcels.len());
    let mut tracking_numbers = HashSet::new();
    for (index, new) in parcels.into_iter().enumerate() {
        let carrier = validate::text(&new.carrier, &field(index, "carrier"), 50)?;
        let tracking_number = validate::text(&new.tracking_number, &field(index, "trackingNumber"), 64)?;
        if !tracking_numbers.insert(tracking_number.clone()) {
            return Err(ApiError::bad_input(field(index, "trackingNumber"), "appears twice in this registration"));
        }
        if !(1..=99).contains(&new.item_count) {
            return Err(ApiError::bad_input(field(index, "itemCount"), "must be between 1 and 99"));
        }
        let recipient_name = validate::text(&new.recipient_name, &field(index, "recipientName"), 50)?;
        let location = new.location.as_deref().map(|l| validate::text(l, &field(index, "location"), 50)).transpose()?;
        let unit = match new.unit_id {
            Some(unit_id) => Some(unit_of_community(&app.db, community_id, unit_id).await?),
            None => None,
        };
        checked.push((new.kind, carrier, tracking_number, new.item_count, recipient_name, location, unit));
    }

    let now = Utc::now();
    let first_reminder = now + reminder_delay(app)?;
    let (received_by, registered_by_client) = match &handler {
        Handler::Staff(principal) => (Some(principal.user_id), None),
        Handler::Integrator { client_id, .. } => (None, Some(*client_id)),
    };
    let registered = app
        .writers
        .write(async |txn| {
            let mut registered = Vec::with_capacity(checked.len());
            for (kind, carrier, tracking_number, item_count, recipient_name, location, unit) in checked {
                let (status, pickup_code, next_reminder_at) = match unit {
                    Some(_) => (ParcelStatus::Waiting, Some(draw_pickup_code()), Some(first_reminder)),
                    None => (ParcelStatus::Unidentified, None, None),
                };
                let new_parcel = parcel::ActiveModel {
                    community_id: Set(community_id),
                    unit_id: Set(unit.map(|u| u.id)),
                    kind: Set(kind),
                    carrier: Set(carrier),
                    tracking_number: Set(tracking_number),
                    item_count: Set(item_count),
                    recipient_name: Set(recipient_name),
                    location: Set(location),
                    status: Set(status),
                    pickup_code: Set(pickup_code),
                    received_by: Set(received_by),
                    registered_by_client: Set(registered_by_client),
                    received_at: Set(now),
                    reminder_count: Set(0),
                    next_reminder_at: Set(next_reminder_at),
                    failed_code_attempts: Set(0),
                    version: Set(1),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                };
                registered.push(insert_parcel(txn, new_parcel).await?);
            }
            if let Some(claim) = claim {
                claim.record(txn, &registered.iter().map(|parcel| parcel.id).collect::<Vec<_>>()).await?;
            }
            // A batch often brings several parcels for one unit: their recipients are read once.
            let mut recipients_by_unit: HashMap<Option<i64>, Vec<i64>> = HashMap::new();
            let mut announcements = Vec::with_capacity(registered.len());
            for parcel in &registered {
                let recipients = match recipients_by_unit.entry(parcel.unit_id) {
                    Entry::Occupied(known) => known.get().clone(),
                    Entry::Vacant(unknown) => unknown.insert(recipients(txn, parcel).await?).clone(),
                };
                announcements.push(announcement(parcel, "REGISTERED", recipients));
            }
            events::append(txn, announcements).await?;
            Ok(registered)
        })
        .await?;
    app.events.committed();
    tracing::info!(count = registered.len(), "parcels registered");
    Ok(registered)
}

/// Inserts a registered parcel with its drawn pickup code, or with another
/// one while the code is in use: by a waiting parcel, by an earlier parcel of
/// the same registration, or (on PostgreSQL) by a registration running at the
/// same time. The unique indexes decide, so no lookup precedes the insert: a
/// tracking number still held, whenever it was registered, is a conflict.
async fn insert_parcel(txn: &impl ConnectionTrait, mut new_parcel: parcel::ActiveModel) -> ApiResult<parcel::Model> {
    let mut code_taken = OnConflict::columns([parcel::Column::CommunityId, parcel::Column::PickupCode]);
    code_taken.target_and_where(status_is(&[ParcelStatus::Waiting])).do_nothing();
    for _ in 0..PICKUP_CODE_DRAWS {
        // With DO NOTHING, a code taken meanwhile inserts no row and returns none.
        let inserted = parcel::Entity::insert(new_parcel.clone())
            .on_conflict(code_taken.clone())
            .exec_with_returning_many(txn)
            .await
            .map(|mut rows| rows.pop());
        match inserted {
            Ok(Some(parcel)) => return Ok(parcel),
            Ok(None) => {
                new_parcel.pickup_code = Set(Some(draw_pickup_code()));
            }
            Err(err) => {
                let tracking_number = new_parcel.tracking_number.try_as_ref().map_or("", String::as_str);
                let taken = format!("tracking number {tracking_number} is already registered and not picked up");
                return Err(unique_conflict(err, taken));
            }
        }
    }
    Err(ApiError::Internal("no free pickup code found".into()))
}

/// Writes `update` if the parcel is still at the version read, plus its event.
async fn commit_change(
    app: &AppContext,
    parcel: &parcel::Model,
    mut update: parcel::ActiveModel,
    event: Option<&'static str>,
) -> ApiResult<parcel::Model> {
    update.version = Set(parcel.version + 1);
    update.updated_at = Set(Utc::now());
    let changed = app
        .writers
        .write(async |txn| {
            let changed = parcel::Entity::update_many()
                .set(update)
                .filter(parcel::Column::Id.eq(parcel.id))
                .filter(parcel::Column::Version.eq(parcel.version))
                .exec_with_returning(txn)
                .await
                .map_err(|err| unique_conflict(err, "the pickup code was taken at the same time; retry"))?
                .pop()
                .ok_or_else(|| {
                    ApiError::conflict("the parcel was changed by someone else at the same time; reload it")
                })?;
            if let Some(event) = event {
                announce(txn, &changed, event).await?;
            }
            Ok(changed)
        })
        .await?;
    if event.is_some() {
        app.events.committed();
    }
    Ok(changed)
}

fn status_name(status: ParcelStatus) -> &'static str {
    match status {
        ParcelStatus::Waiting => "WAITING",
        ParcelStatus::Unidentified => "UNIDENTIFIED",
        ParcelStatus::PickedUp => "PICKED_UP",
        ParcelStatus::Returned => "RETURNED",
    }
}

fn require_status(parcel: &parcel::Model, allowed: &[ParcelStatus], what: &str) -> ApiResult<()> {
    if allowed.contains(&parcel.status) {
        Ok(())
    } else {
        Err(ApiError::conflict(format!("cannot {what} a parcel that is {}", status_name(parcel.status))))
    }
}

/// Hands a waiting parcel over against its pickup code: at the desk to a
/// resident of the unit or the person they authorised, or from a locker.
#[tracing::instrument(skip(app, caller, code, collector_name))]
pub async fn pick_up(
    app: &AppContext,
    caller: &Caller,
    parcel_id: i64,
    code: &str,
    collector_name: Option<String>,
) -> ApiResult<parcel::Model> {
    let handler = handler(caller)?;
    let parcel = find(&app.db, caller, parcel_id).await?;
    require_status(&parcel, &[ParcelStatus::Waiting], "hand over")?;
    if parcel.locked_at.is_some() {
        return Err(ApiError::conflict("the parcel is locked after too many wrong codes; staff must review it"));
    }
    let collector_name = match (&handler, collector_name) {
        (Handler::Staff(_), None) => return Err(ApiError::bad_input("collectorName", "is required at the desk")),
        (_, name) => name.map(|name| validate::text(&name, "collectorName", 50)).transpose()?,
    };
    if parcel.pickup_code.as_deref() != Some(code.trim()) {
        let attempts = parcel.failed_code_attempts + 1;
        let lock = attempts >= app.settings.parcel_code_attempts;
        let update = parcel::ActiveModel {
            failed_code_attempts: Set(attempts),
            locked_at: Set(lock.then(Utc::now)),
            ..Default::default()
        };
        commit_change(app, &parcel, update, None).await?;
        if lock {
            tracing::warn!(parcel_id, "parcel locked after repeated wrong pickup codes");
        }
        return Err(ApiError::bad_input("pickupCode", "wrong pickup code"));
    }
    if let (Handler::Staff(_), Some(name)) = (&handler, &collector_name) {
        let authorised = parcel.authorized_collector.as_deref() == Some(name.as_str());
        if !authorised && !lives_in(&app.db, parcel.unit_id, name).await? {
            return Err(ApiError::bad_input(
                "collectorName",
                "is neither a resident of the unit nor authorised by one",
            ));
        }
    }
    let (via, handed_over_by) = match handler {
        Handler::Staff(principal) => (PickupChannel::FrontDesk, Some(principal.user_id)),
        Handler::Integrator { .. } => (PickupChannel::Locker, None),
    };
    let update = parcel::ActiveModel {
        status: Set(ParcelStatus::PickedUp),
        pickup_code: Set(None),
        next_reminder_at: Set(None),
        failed_code_attempts: Set(0),
        picked_up_at: Set(Some(Utc::now())),
        picked_up_by_name: Set(collector_name),
        picked_up_via: Set(Some(via)),
        handed_over_by: Set(handed_over_by),
        ..Default::default()
    };
    commit_change(app, &parcel, update, Some("PICKED_UP")).await
}

async fn lives_in(db: &impl ConnectionTrait, unit_id: Option<i64>, name: &str) -> ApiResult<bool> {
    let Some(unit_id) = unit_id else { return Ok(false) };
    Ok(user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .filter(
            user::Column::Id.in_subquery(
                Query::select()
                    .column(unit_membership::Column::UserId)
                    .from(unit_membership::Entity)
                    .and_where(unit_membership::Column::UnitId.eq(unit_id))
                    .and_where(unit_membership::Column::MovedOutOn.is_null())
                    .take(),
            ),
        )
        .count(db)
        .await?
        > 0)
}

/// A resident lets someone else collect their parcel at the desk.
pub async fn authorize_collector(
    app: &AppContext,
    caller: &Caller,
    parcel_id: i64,
    expected_version: Option<i32>,
    name: &str,
) -> ApiResult<parcel::Model> {
    let Caller::User(principal) = caller else { return Err(ApiError::Forbidden) };
    if !principal.is_resident() {
        return Err(ApiError::Forbidden);
    }
    let name = validate::text(name, "name", 50)?;
    let parcel = find_at(&app.db, caller, parcel_id, expected_version).await?;
    require_status(&parcel, &[ParcelStatus::Waiting], "authorise a collector for")?;
    let update = parcel::ActiveModel { authorized_collector: Set(Some(name)), ..Default::default() };
    commit_change(app, &parcel, update, None).await
}

/// Staff review of a parcel locked after wrong codes.
pub async fn unlock(
    app: &AppContext,
    caller: &Caller,
    parcel_id: i64,
    expected_version: Option<i32>,
) -> ApiResult<parcel::Model> {
    staff(caller, Action::HandleParcels)?;
    let parcel = find_at(&app.db, caller, parcel_id, expected_version).await?;
    if parcel.locked_at.is_none() {
        return Err(ApiError::conflict("the parcel is not locked"));
    }
    let update = parcel::ActiveModel { locked_at: Set(None), failed_code_attempts: Set(0), ..Default::default() };
    commit_change(app, &parcel, update, None).await
}

/// Gives an unidentified parcel its unit: it starts waiting and the residents are told.
#[tracing::instrument(skip(app, caller))]
pub async fn identify(
    app: &AppContext,
    caller: &Caller,
    parcel_id: i64,
    expected_version: Option<i32>,
    unit_id: i64,
) -> ApiResult<parcel::Model> {
    let principal = match caller {
        Caller::User(principal) if principal.role == Role::Butler => principal,
        _ => staff(caller, Action::HandleParcels)?,
    };
    let parcel = find_at(&app.db, caller, parcel_id, expected_version).await?;
    require_status(&parcel, &[ParcelStatus::Unidentified], "identify")?;
    let unit = property::find_unit(&app.db, principal, unit_id).await?;
    let code = new_pickup_code(&app.db, parcel.community_id).await?;
    let update = parcel::ActiveModel {
        unit_id: Set(Some(unit.id)),
        status: Set(ParcelStatus::Waiting),
        pickup_code: Set(Some(code)),
        next_reminder_at: Set(Some(Utc::now() + reminder_delay(app)?)),
        ..Default::default()
    };
    commit_change(app, &parcel, update, Some("IDENTIFIED")).await
}

/// Sends a parcel back to the post office or carrier, with the reason.
#[tracing::instrument(skip(app, caller, reason))]
pub async fn return_to_sender(
    app: &AppContext,
    caller: &Caller,
    parcel_id: i64,
    expected_version: Option<i32>,
    reason: &str,
) -> ApiResult<parcel::Model> {
    staff(caller, Action::HandleParcels)?;
    let reason = validate::text(reason, "reason", 500)?;
    let parcel = find_at(&app.db, caller, parcel_id, expected_version).await?;
    require_status(&parcel, &[ParcelStatus::Waiting, ParcelStatus::Unidentified], "return")?;
    let update = parcel::ActiveModel {
        status: Set(ParcelStatus::Returned),
        pickup_code: Set(None),
        next_reminder_at: Set(None),
        returned_at: Set(Some(Utc::now())),
        return_reason: Set(Some(reason)),
        ..Default::default()
    };
    commit_change(app, &parcel, update, Some("RETURNED")).await
}

/// Records the next reminder of a waiting parcel, once even if several
/// instances run the job at the same moment.
pub(super) async fn remind(app: &AppContext, parcel: &parcel::Model, now: DateTime<Utc>) -> ApiResult<bool> {
    let number = parcel.reminder_count + 1;
    let interval = Duration::from_std(app.settings.parcel_reminder_interval)
        .map_err(|_| ApiError::Internal("reminder interval out of range".into()))?;
    let next = (number < app.settings.parcel_reminder_count).then_some(now + interval);
    let reminded = app
        .writers
        .write(async |txn| {
            let updated = parcel::Entity::update_many()
                .col_expr(parcel::Column::ReminderCount, Expr::value(number))
                .col_expr(parcel::Column::NextReminderAt, Expr::value(next))
                .col_expr(parcel::Column::Version, Expr::value(parcel.version + 1))
                .col_expr(parcel::Column::UpdatedAt, Expr::value(now))
                .filter(parcel::Column::Id.eq(parcel.id))
                .filter(parcel::Column::Version.eq(parcel.version))
                .filter(parcel::Column::Status.eq(ParcelStatus::Waiting))
                .exec(txn)
                .await?;
            if updated.rows_affected == 0 {
                return Ok(false);
            }
            parcel_reminder::ActiveModel {
                parcel_id: Set(parcel.id),
                number: Set(number),
                sent_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            announce(txn, parcel, "REMINDED").await?;
            Ok(true)
        })
        .await?;
    if reminded {
        app.events.committed();
    }
    Ok(reminded)
}

pub struct Filter {
    pub statuses: Vec<ParcelStatus>,
    pub unit_id: Option<i64>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
    pub overdue: Option<bool>,
}

/// Waiting parcels whose resident has had every reminder.
fn overdue_condition(reminders: i32) -> Condition {
    Condition::all()
        .add(parcel::Column::Status.eq(ParcelStatus::Waiting))
        .add(parcel::Column::ReminderCount.gte(reminders))
}

pub async fn list(
    app: &AppContext,
    caller: &Caller,
    filter: Filter,
    request: PageRequest,
) -> ApiResult<Page<types::Parcel>> {
    let select = matching(caller, filter, app.settings.parcel_reminder_count);
    pagination::fetch(&app.db, select, parcel::Column::Id, |p| p.id, request, types::Parcel).await
}

/// The parcels `caller` may see that pass `filter`; overdue after `reminders`.
fn matching(caller: &Caller, filter: Filter, reminders: i32) -> Select<parcel::Entity> {
    use parcel::Column;
    let mut select = parcel::Entity::find().filter(visible(caller));
    if !filter.statuses.is_empty() {
        select = select.filter(Column::Status.is_in(filter.statuses));
    }
    if let Some(unit_id) = filter.unit_id {
        select = select.filter(Column::UnitId.eq(unit_id));
    }
    if let Some(carrier) = filter.carrier.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        select = select.filter(Column::Carrier.eq(carrier));
    }
    if let Some(tracking) = filter.tracking_number.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        select = select.filter(Column::TrackingNumber.eq(tracking));
    }
    if let Some(from) = filter.received_from {
        select = select.filter(Column::ReceivedAt.gte(from));
    }
    if let Some(to) = filter.received_to {
        select = select.filter(Column::ReceivedAt.lt(to));
    }
    if let Some(overdue) = filter.overdue {
        let condition = overdue_condition(reminders);
        select = select.filter(if overdue { condition } else { condition.not() });
    }
    select
}

/// The desk's day, in the community's local time.
pub struct DeskSummary {
    pub received: u64,
    pub picked_up: u64,
    pub returned: u64,
    pub waiting: u64,
    pub overdue: u64,
}

pub async fn desk_summary(app: &AppContext, caller: &Caller, day: NaiveDate) -> ApiResult<DeskSummary> {
    let principal = staff(caller, Action::HandleParcels)?;
    let community_id = principal.community_id.ok_or(ApiError::Forbidden)?;
    let offset = chrono::FixedOffset::east_opt(app.settings.local_utc_offset_minutes * 60)
        .ok_or_else(|| ApiError::Internal("LOCAL_UTC_OFFSET_MINUTES out of range".into()))?;
    let start = day
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(offset).single())
        .map(|local| local.with_timezone(&Utc))
        .ok_or_else(|| ApiError::bad_input("day", "not a valid day"))?;
    let end = start + Duration::days(1);
    let community = || parcel::Entity::find().filter(parcel::Column::CommunityId.eq(community_id));
    let db = &app.db;
    Ok(DeskSummary {
        received: community()
            .filter(parcel::Column::ReceivedAt.gte(start))
            .filter(parcel::Column::ReceivedAt.lt(end))
            .count(db)
            .await?,
        picked_up: community()
            .filter(parcel::Column::PickedUpAt.gte(start))
            .filter(parcel::Column::PickedUpAt.lt(end))
            .count(db)
            .await?,
        returned: community()
            .filter(parcel::Column::ReturnedAt.gte(start))
            .filter(parcel::Column::ReturnedAt.lt(end))
            .count(db)
            .await?,
        waiting: community().filter(parcel::Column::Status.eq(ParcelStatus::Waiting)).count(db).await?,
        overdue: community().filter(overdue_condition(app.settings.parcel_reminder_count)).count(db).await?,
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::{QueryOrder, QuerySelect};

    use super::*;
    use crate::db::testing::{migrated_sqlite, query_plan};

    /// What SQLite's planner does with `select`, one line per step.
    async fn plan(db: &impl ConnectionTrait, select: Select<parcel::Entity>) -> String {
        query_plan(db, select).await.into_iter().map(|(_, detail)| detail).collect::<Vec<_>>().join("\n")
    }

    fn waiting_parcel(community_id: i64, tracking_number: &str, pickup_code: &str) -> parcel::ActiveModel {
        let now = Utc::now();
        parcel::ActiveModel {
            community_id: Set(community_id),
            unit_id: Set(None),
            kind: Set(ParcelKind::Parcel),
            carrier: Set("顺丰".into()),
            tracking_number: Set(tracking_number.into()),
            item_count: Set(1),
            recipient_name: Set("住户".into()),
            location: Set(None),
            status: Set(ParcelStatus::Waiting),
            pickup_code: Set(Some(pickup_code.into())),
            received_by: Set(None),
            registered_by_client: Set(None),
            received_at: Set(now),
            reminder_count: Set(0),
            next_reminder_at: Set(None),
            failed_code_attempts: Set(0),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pickup_code_taken_meanwhile_is_drawn_again_and_a_held_tracking_number_is_a_conflict() {
        let db = migrated_sqlite().await;
        let community = entity::community::ActiveModel {
            name: Set("翠苑".into()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .expect("community");
        let first = insert_parcel(&db, waiting_parcel(community.id, "SF1", "111111")).await.expect("first parcel");
        assert_eq!(first.pickup_code.as_deref(), Some("111111"));

        // As if another registration had drawn the same code and committed first.
        let second = insert_parcel(&db, waiting_parcel(community.id, "SF2", "111111")).await.expect("second parcel");
        let second_code = second.pickup_code.expect("a code");
        assert_ne!(second_code, "111111");
        assert_eq!(second_code.len(), 6);

        let held_again = insert_parcel(&db, waiting_parcel(community.id, "SF1", "222222")).await;
        let told = match held_again {
            Err(ApiError::Conflict(message)) => message,
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(told, "tracking number SF1 is already registered and not picked up");
    }

    #[tokio::test]
    async fn the_pickup_code_lookup_uses_its_unique_index() {
        let db = migrated_sqlite().await;
        let by_code = plan(&db, waiting_with_pickup_code(1, "123456")).await;
        assert!(by_code.contains("USING INDEX ux_parcel_pickup_code"), "{by_code}");
    }

    #[tokio::test]
    async fn the_desks_search_by_tracking_number_reads_only_that_numbers_parcels() {
        let db = migrated_sqlite().await;
        let desk = Caller::User(Principal {
            user_id: 1,
            role: Role::Staff,
            position: Some(StaffPosition::FrontDesk),
            community_id: Some(1),
        });
        let by_tracking_number = Filter {
            statuses: vec![],
            unit_id: None,
            carrier: None,
            tracking_number: Some("SF123".into()),
            received_from: None,
            received_to: None,
            overdue: None,
        };
        // Shaped as the list's pages are read: oldest first, one more than the page.
        let page = matching(&desk, by_tracking_number, 3).order_by_asc(parcel::Column::Id).limit(21);
        let steps = plan(&db, page).await;
        assert!(steps.contains("USING INDEX ix_parcel_tracking_number"), "{steps}");
    }
}
