use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use entity::{parcel, unit, user};

use crate::{
    auth::Caller,
    graphql::{
        ContextExt,
        ids::{self, Kind},
        loader::load_one,
    },
    identity::types::User,
    property::types::Unit,
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::ParcelKind")]
pub enum ParcelKind {
    Parcel,
    RegisteredMail,
    Letter,
    Package,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::ParcelStatus")]
pub enum ParcelStatus {
    /// Held for the recipients, who have the pickup code.
    Waiting,
    /// The address is unclear; the desk or a butler must identify the unit.
    Unidentified,
    PickedUp,
    /// Sent back to the post office or carrier.
    Returned,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::PickupChannel")]
pub enum PickupChannel {
    FrontDesk,
    Locker,
}

/// A parcel, registered letter or package held for residents.
pub struct Parcel(pub parcel::Model);

#[Object]
impl Parcel {
    async fn id(&self) -> ID {
        ids::encode(Kind::Parcel, self.0.id)
    }
    async fn kind(&self) -> ParcelKind {
        self.0.kind.into()
    }
    async fn status(&self) -> ParcelStatus {
        self.0.status.into()
    }
    async fn carrier(&self) -> &str {
        &self.0.carrier
    }
    async fn tracking_number(&self) -> &str {
        &self.0.tracking_number
    }
    async fn item_count(&self) -> i32 {
        self.0.item_count
    }
    /// The name on the parcel.
    async fn recipient_name(&self) -> &str {
        &self.0.recipient_name
    }
    /// Empty while the parcel is UNIDENTIFIED.
    async fn unit(&self, ctx: &Context<'_>) -> Result<Option<Unit>> {
        match self.0.unit_id {
            Some(id) => Ok(load_one::<unit::Entity>(ctx, id).await?.map(Unit)),
            None => Ok(None),
        }
    }
    /// Shelf or locker where it waits.
    async fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }
    /// The code to collect it with: shown to the residents of the unit only.
    /// Staff verify codes; they never read them.
    async fn pickup_code(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let recipient = matches!(ctx.caller()?, Caller::User(principal) if principal.is_resident());
        // A resident reaches a parcel only through their own units.
        Ok(if recipient { self.0.pickup_code.as_deref() } else { None })
    }
    /// The staff member who received it; empty when an integrator registered it.
    async fn received_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0.received_by {
            Some(id) => Ok(load_one::<user::Entity>(ctx, id).await?.map(User)),
            None => Ok(None),
        }
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    async fn reminder_count(&self) -> i32 {
        self.0.reminder_count
    }
    async fn next_reminder_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_reminder_at
    }
    /// Still waiting after the last reminder.
    async fn overdue(&self, ctx: &Context<'_>) -> bool {
        self.0.status == entity::enums::ParcelStatus::Waiting
            && self.0.reminder_count >= ctx.app().settings.parcel_reminder_count
    }
    /// Locked after too many wrong pickup codes, until staff review it.
    async fn locked(&self) -> bool {
        self.0.locked_at.is_some()
    }
    /// Someone a resident allowed to collect it at the desk.
    async fn authorized_collector(&self) -> Option<&str> {
        self.0.authorized_collector.as_deref()
    }
    async fn picked_up_at(&self) -> Option<DateTime<Utc>> {
        self.0.picked_up_at
    }
    /// Who signed for it at the desk.
    async fn picked_up_by_name(&self) -> Option<&str> {
        self.0.picked_up_by_name.as_deref()
    }
    async fn picked_up_via(&self) -> Option<PickupChannel> {
        self.0.picked_up_via.map(Into::into)
    }
    async fn returned_at(&self) -> Option<DateTime<Utc>> {
        self.0.returned_at
    }
    async fn return_reason(&self) -> Option<&str> {
        self.0.return_reason.as_deref()
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
}

/// A parcel arriving at the desk.
#[derive(InputObject)]
pub struct ParcelInput {
    pub kind: ParcelKind,
    /// The carrier or post office, 1–50 characters.
    pub carrier: String,
    /// 1–64 characters; registered once while the parcel is held.
    pub tracking_number: String,
    /// 1–99.
    #[graphql(default = 1)]
    pub item_count: i32,
    /// The name on the parcel, 1–50 characters.
    pub recipient_name: String,
    /// The unit; leave empty when the address is unclear (the parcel is then UNIDENTIFIED).
    pub unit_id: Option<ID>,
    /// Shelf or locker, up to 50 characters.
    pub location: Option<String>,
    /// registerParcel: an idempotency key (like the Idempotency-Key header,
    /// which it overrides): a retry with the same key and input returns the
    /// parcel the first attempt registered; with other input it is a CONFLICT.
    /// In registerParcels, set it on the registration instead.
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct ParcelPayload {
    pub parcel: Parcel,
}

/// The morning delivery: up to 100 parcels, all registered or none.
#[derive(InputObject)]
pub struct RegisterParcelsInput {
    pub parcels: Vec<ParcelInput>,
    /// An idempotency key for the whole registration, as on registerParcel.
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct RegisterParcelsPayload {
    pub parcels: Vec<Parcel>,
}

#[derive(InputObject)]
pub struct PickUpParcelInput {
    pub parcel_id: ID,
    /// The six-digit code the recipient shows.
    pub pickup_code: String,
    /// At the desk: who collects it (a resident of the unit or the person they authorised).
    pub collector_name: Option<String>,
}

#[derive(InputObject)]
pub struct IdentifyParcelInput {
    pub parcel_id: ID,
    pub unit_id: ID,
    /// Refuse with CONFLICT unless the parcel is still at this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct ReturnParcelInput {
    pub parcel_id: ID,
    /// Why it goes back, 1–500 characters.
    pub reason: String,
    /// Refuse with CONFLICT unless the parcel is still at this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct AuthorizeParcelCollectorInput {
    pub parcel_id: ID,
    /// The name the collector will sign with, 1–50 characters.
    pub name: String,
    /// Refuse with CONFLICT unless the parcel is still at this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct UnlockParcelInput {
    pub parcel_id: ID,
    /// Refuse with CONFLICT unless the parcel is still at this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject, Default)]
pub struct ParcelFilter {
    pub statuses: Option<Vec<ParcelStatus>>,
    pub unit_id: Option<ID>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
    /// Still waiting after the last reminder.
    pub overdue: Option<bool>,
}

/// The desk's day.
#[derive(SimpleObject)]
pub struct ParcelDeskSummary {
    pub day: NaiveDate,
    /// Registered that day.
    pub received: u64,
    /// Collected that day.
    pub picked_up: u64,
    /// Sent back that day.
    pub returned: u64,
    /// Waiting now.
    pub waiting: u64,
    /// Waiting now after the last reminder.
    pub overdue: u64,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ParcelEventKind {
    Registered,
    Reminded,
    PickedUp,
    Returned,
    Identified,
}

/// A change to a parcel, pushed to the unit's residents, the building's
/// butler and the front desk.
#[derive(SimpleObject)]
pub struct ParcelEvent {
    /// Pass as `after` when resubscribing to receive only what came later.
    pub cursor: String,
    pub kind: ParcelEventKind,
    pub occurred_at: DateTime<Utc>,
    pub parcel: Parcel,
}
