use async_graphql::{
    Context, ContextSelectionSet, Enum, ID, InputObject, Object, Result, SelectionField, SimpleObject, Upload,
    dataloader::DataLoader, parser::types::Field,
};
use chrono::{DateTime, Utc};
use entity::{building, repair_follow_up, repair_order, repair_order_change, repair_photo, unit, user};

use super::loader::{FollowUpsByOrder, PhotosByOrder, TimelineByOrder};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt, boxed_wait,
        ids::{self, Kind},
        in_turn::{InTurn, Selected, Waits, has_selection},
        loader::{ColumnsRead, RowsRead, columns_named, load_one},
    },
    identity::types::User,
    property::types::{Building, Unit},
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::RepairState")]
pub enum RepairState {
    /// Reported, waiting to be dispatched.
    Submitted,
    /// Dispatched to a technician.
    Assigned,
    /// The technician is on site.
    InProgress,
    /// The technician finished; waiting for the resident's confirmation.
    Completed,
    /// Confirmed by the resident, or closed automatically.
    Closed,
    Cancelled,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::RepairChannel")]
pub enum RepairChannel {
    /// The resident app.
    App,
    /// A phone call taken by staff or the butler.
    Phone,
    /// A visit to the front desk.
    FrontDesk,
    /// Found by staff on patrol; may concern a public area with no unit.
    Patrol,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::RepairCategory")]
pub enum RepairCategory {
    Plumbing,
    Electrical,
    DoorsWindows,
    Appliances,
    PublicFacilities,
    Other,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::RepairPriority")]
pub enum RepairPriority {
    Normal,
    /// Emergencies such as fire or a water leak (跑水): someone on site within 30 minutes.
    Urgent,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::RepairAction")]
pub enum RepairAction {
    Submitted,
    Assigned,
    Reassigned,
    Started,
    Completed,
    Confirmed,
    AutoClosed,
    Cancelled,
    FollowedUp,
    ResponseOverdue,
    CompletionOverdue,
}

/// An amount of money in fen (1/100 yuan).
#[derive(SimpleObject)]
pub struct Money {
    pub amount_cents: i64,
    /// ISO 4217 code; always "CNY".
    pub currency: &'static str,
}

/// A repair order (报修工单). On a list the model holds only the columns
/// the selection shows (`ColumnsRead for repair_order::Entity`); the others hold
/// placeholders no selected field reads.
pub struct RepairOrder(pub repair_order::Model);

#[Object]
impl RepairOrder {
    async fn id(&self) -> ID {
        ids::encode(Kind::RepairOrder, self.0.id)
    }
    async fn state(&self) -> RepairState {
        self.0.state.into()
    }
    async fn channel(&self) -> RepairChannel {
        self.0.channel.into()
    }
    async fn category(&self) -> RepairCategory {
        self.0.category.into()
    }
    async fn priority(&self) -> RepairPriority {
        self.0.priority.into()
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn preferred_visit_at(&self) -> Option<DateTime<Utc>> {
        self.0.preferred_visit_at
    }
    /// The number to call about this order.
    async fn contact_phone(&self) -> Option<&str> {
        self.0.contact_phone.as_deref()
    }
    /// Empty for a public area of the building.
    async fn unit(&self, ctx: &Context<'_>) -> Result<Option<InTurn<Unit>>> {
        match self.0.unit_id {
            Some(id) => Ok(load_one::<unit::Entity>(ctx, id).await?.map(|unit| InTurn(Unit(unit)))),
            None => Ok(None),
        }
    }
    async fn building(&self, ctx: &Context<'_>) -> Result<Option<InTurn<Building>>> {
        Ok(load_one::<building::Entity>(ctx, self.0.building_id).await?.map(|building| InTurn(Building(building))))
    }
    /// The resident the order is for; empty for patrol findings.
    async fn resident(&self, ctx: &Context<'_>) -> Result<Option<InTurn<User>>> {
        load_user(ctx, self.0.resident_id).await
    }
    /// Who entered the order: the resident, or staff on their behalf.
    async fn submitted_by(&self, ctx: &Context<'_>) -> Result<Option<InTurn<User>>> {
        load_user(ctx, Some(self.0.created_by)).await
    }
    /// The technician the order is dispatched to.
    async fn assignee(&self, ctx: &Context<'_>) -> Result<Option<InTurn<User>>> {
        load_user(ctx, self.0.assignee_id).await
    }
    async fn completion_note(&self) -> Option<&str> {
        self.0.completion_note.as_deref()
    }
    async fn materials(&self) -> Option<&str> {
        self.0.materials.as_deref()
    }
    /// What the resident pays for paid work; empty when free.
    async fn charge(&self) -> Option<Money> {
        self.0.charge_cents.map(|amount_cents| Money { amount_cents, currency: "CNY" })
    }
    /// The resident's rating, 1–5.
    async fn rating(&self) -> Option<i32> {
        self.0.rating
    }
    async fn rating_comment(&self) -> Option<&str> {
        self.0.rating_comment.as_deref()
    }
    async fn cancel_reason(&self) -> Option<&str> {
        self.0.cancel_reason.as_deref()
    }
    /// When someone must be on site (the order started) by.
    async fn response_due_at(&self) -> DateTime<Utc> {
        self.0.response_due_at
    }
    /// When the work must be completed by.
    async fn completion_due_at(&self) -> DateTime<Utc> {
        self.0.completion_due_at
    }
    /// Whether either deadline has been missed.
    async fn overdue(&self) -> bool {
        self.0.response_overdue || self.0.completion_overdue
    }
    async fn response_overdue(&self) -> bool {
        self.0.response_overdue
    }
    async fn completion_overdue(&self) -> bool {
        self.0.completion_overdue
    }
    async fn assigned_at(&self) -> Option<DateTime<Utc>> {
        self.0.assigned_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }
    /// Increases with every change; pass it as `expectedVersion` to refuse a
    /// change when someone else changed the order first.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Every change, oldest first: what, who, when.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<RepairOrderChange>> {
        let changes = load_children::<TimelineByOrder>(ctx, self.0.id).await?;
        Ok(changes.into_iter().map(RepairOrderChange).collect())
    }
    async fn photos(&self, ctx: &Context<'_>) -> Result<Vec<RepairPhoto>> {
        let photos = load_children::<PhotosByOrder>(ctx, self.0.id).await?;
        Ok(photos.into_iter().map(RepairPhoto).collect())
    }
    /// Follow-up visits and calls (回访) after the order was closed.
    async fn follow_ups(&self, ctx: &Context<'_>) -> Result<Vec<RepairFollowUp>> {
        let follow_ups = load_children::<FollowUpsByOrder>(ctx, self.0.id).await?;
        Ok(follow_ups.into_iter().map(RepairFollowUp).collect())
    }
}

/// An order's unit, building and assignee wait for nothing when the request
/// already holds their rows (a page, or an order's detail, reads them with
/// the order), and nor does what is selected on them but the unit's
/// building, which is the order's and held with it.
impl Waits for RepairOrder {
    fn may_wait(&self, ctx: &ContextSelectionSet<'_>, selected: Selected<'_>, field: &Field) -> bool {
        let rows_read = ctx.data_opt::<RowsRead>();
        let held = |holds: fn(&RowsRead, i64) -> bool, id| rows_read.is_some_and(|rows| holds(rows, id));
        let shows_only_its_columns = |field| !selected.under(field).any(&mut |shown| has_selection(shown));
        let building_waits = |building| {
            !held(RowsRead::holds::<building::Entity>, self.0.building_id) || !shows_only_its_columns(building)
        };
        match field.name.node.as_str() {
            "charge" => false,
            "unit" => self.0.unit_id.is_some_and(|id| {
                !held(RowsRead::holds::<unit::Entity>, id)
                    || selected.under(field).any(&mut |shown| {
                        has_selection(shown) && (shown.name.node != "building" || building_waits(shown))
                    })
            }),
            "building" => building_waits(field),
            "assignee" => self
                .0
                .assignee_id
                .is_some_and(|id| !held(RowsRead::holds::<user::Entity>, id) || !shows_only_its_columns(field)),
            _ => has_selection(field),
        }
    }
}

/// A list reads the order's columns its selection shows, with the id every
/// list's cursor needs, and no others.
impl ColumnsRead for repair_order::Entity {
    fn columns_read_by<'a>(fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<repair_order::Column> {
        use repair_order::Column::*;
        columns_named::<repair_order::Entity>(fields.map(|field| -> Option<&'static [repair_order::Column]> {
            Some(match field.name() {
                "__typename" | "id" | "timeline" | "photos" | "followUps" => &[],
                "state" => &[State],
                "channel" => &[Channel],
                "category" => &[Category],
                "priority" => &[Priority],
                "description" => &[Description],
                "preferredVisitAt" => &[PreferredVisitAt],
                "contactPhone" => &[ContactPhone],
                "unit" => &[UnitId],
                "building" => &[BuildingId],
                "resident" => &[ResidentId],
                "submittedBy" => &[CreatedBy],
                "assignee" => &[AssigneeId],
                "completionNote" => &[CompletionNote],
                "materials" => &[Materials],
                "charge" => &[ChargeCents],
                "rating" => &[Rating],
                "ratingComment" => &[RatingComment],
                "cancelReason" => &[CancelReason],
                "responseDueAt" => &[ResponseDueAt],
                "completionDueAt" => &[CompletionDueAt],
                "overdue" => &[ResponseOverdue, CompletionOverdue],
                "responseOverdue" => &[ResponseOverdue],
                "completionOverdue" => &[CompletionOverdue],
                "assignedAt" => &[AssignedAt],
                "startedAt" => &[StartedAt],
                "completedAt" => &[CompletedAt],
                "closedAt" => &[ClosedAt],
                "version" => &[Version],
                "createdAt" => &[CreatedAt],
                "updatedAt" => &[UpdatedAt],
                _ => return None,
            })
        }))
    }
}

async fn load_user(ctx: &Context<'_>, id: Option<i64>) -> Result<Option<InTurn<User>>> {
    match id {
        Some(id) => Ok(load_one::<user::Entity>(ctx, id).await?.map(|user| InTurn(User(user)))),
        None => Ok(None),
    }
}

async fn load_children<L>(ctx: &Context<'_>, order_id: i64) -> Result<L::Value>
where
    L: async_graphql::dataloader::Loader<i64, Error = std::sync::Arc<sea_orm::DbErr>>,
    L::Value: Default,
{
    Ok(boxed_wait(ctx.data_unchecked::<DataLoader<L>>().load_one(order_id))
        .await
        .map_err(|err| ApiError::Internal(format!("batch load failed: {err}")))?
        .unwrap_or_default())
}

/// One entry of a repair order's timeline.
pub struct RepairOrderChange(pub repair_order_change::Model);

#[Object]
impl RepairOrderChange {
    async fn action(&self) -> RepairAction {
        self.0.action.into()
    }
    /// Who acted; empty when the system did (auto-close, overdue marking).
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<InTurn<User>>> {
        load_user(ctx, self.0.actor_id).await
    }
    async fn from_state(&self) -> Option<RepairState> {
        self.0.from_state.map(Into::into)
    }
    async fn to_state(&self) -> Option<RepairState> {
        self.0.to_state.map(Into::into)
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A photo attached to a repair order.
pub struct RepairPhoto(pub repair_photo::Model);

#[Object]
impl RepairPhoto {
    async fn id(&self) -> ID {
        ids::encode(Kind::RepairPhoto, self.0.id)
    }
    /// `image/jpeg`, `image/png` or `image/webp`.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }
    async fn byte_size(&self) -> i64 {
        self.0.byte_size
    }
    /// A signed URL to fetch the image with, valid for a short time
    /// (MEDIA_URL_TTL); ask for the order again for a fresh one.
    async fn url(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(super::photos::signed_url(ctx.app(), self.0.id)?)
    }
}

/// A follow-up visit or call (回访).
pub struct RepairFollowUp(pub repair_follow_up::Model);

#[Object]
impl RepairFollowUp {
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    /// Whether the resident was satisfied.
    async fn satisfied(&self) -> bool {
        self.0.satisfied
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn recorded_by(&self, ctx: &Context<'_>) -> Result<Option<InTurn<User>>> {
        load_user(ctx, Some(self.0.author_id)).await
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A repair request: for a unit (by a resident of it, or by staff on a
/// resident's behalf) or, found on patrol, for a public area of a building.
#[derive(InputObject)]
pub struct SubmitRepairOrderInput {
    /// The unit; required except for PATROL findings in a public area.
    pub unit_id: Option<ID>,
    /// The building, for PATROL findings in a public area (ignored with a unit).
    pub building_id: Option<ID>,
    /// Staff and butlers: the resident the order is for (a current resident of the unit).
    pub resident_id: Option<ID>,
    /// Defaults to APP for residents; staff choose PHONE, FRONT_DESK or PATROL.
    pub channel: Option<RepairChannel>,
    pub category: RepairCategory,
    /// What is wrong, 1–2000 characters.
    pub description: String,
    #[graphql(default_with = "RepairPriority::Normal")]
    pub priority: RepairPriority,
    pub preferred_visit_at: Option<DateTime<Utc>>,
    /// Defaults to the resident's own number.
    pub contact_phone: Option<String>,
    /// Up to 6 JPEG, PNG or WebP images of at most 5 MiB each (multipart upload).
    pub photos: Option<Vec<Upload>>,
    /// An idempotency key (like the Idempotency-Key header, which it
    /// overrides): a retry with the same key and input returns the order the
    /// first attempt created; with other input it is a CONFLICT.
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct RepairOrderPayload {
    pub repair_order: RepairOrder,
}

#[derive(InputObject)]
pub struct AssignRepairOrderInput {
    pub repair_order_id: ID,
    pub technician_id: ID,
    /// Refuse with CONFLICT unless the order is still at this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct StartRepairOrderInput {
    pub repair_order_id: ID,
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct CompleteRepairOrderInput {
    pub repair_order_id: ID,
    /// What was done, 1–2000 characters.
    pub note: String,
    /// Materials used, up to 1000 characters.
    pub materials: Option<String>,
    /// The charge for paid work in fen, 0–10,000,000 (100,000 yuan).
    pub charge_cents: Option<i64>,
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct ConfirmRepairOrderInput {
    pub repair_order_id: ID,
    /// 1–5.
    pub rating: i32,
    /// Up to 1000 characters.
    pub comment: Option<String>,
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct CancelRepairOrderInput {
    pub repair_order_id: ID,
    /// Why, 1–500 characters.
    pub reason: String,
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct AddRepairFollowUpInput {
    pub repair_order_id: ID,
    /// What the resident said, 1–1000 characters.
    pub outcome: String,
    pub satisfied: bool,
    /// Up to 2000 characters.
    pub note: Option<String>,
}

/// Filters for `repairOrders`; all given filters must match.
#[derive(InputObject, Default)]
pub struct RepairOrderFilter {
    pub states: Option<Vec<RepairState>>,
    pub priority: Option<RepairPriority>,
    pub overdue: Option<bool>,
    pub building_id: Option<ID>,
    pub unit_id: Option<ID>,
    pub assignee_id: Option<ID>,
    /// Submitted at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Submitted before.
    pub created_to: Option<DateTime<Utc>>,
    /// Part of the description.
    pub text: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RepairOrderEventKind {
    Submitted,
    Assigned,
    Started,
    Completed,
    Closed,
    Cancelled,
    FollowedUp,
    Overdue,
}

/// A change to a repair order, pushed to those it concerns.
#[derive(SimpleObject)]
pub struct RepairOrderEvent {
    /// Pass as `after` when resubscribing to receive only what came later.
    pub cursor: String,
    pub kind: RepairOrderEventKind,
    pub occurred_at: DateTime<Utc>,
    /// The order as it is now.
    pub repair_order: RepairOrder,
}
