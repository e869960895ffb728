use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SelectionField, SimpleObject, dataloader::DataLoader,
};
use chrono::{DateTime, NaiveDate, Utc};
use entity::{building, community, emergency_contact, unit, unit_membership, user};

use crate::{
    graphql::{
        ContextExt, boxed_wait,
        ids::{self, Kind},
        in_turn::{InTurn, Waits},
        loader::{ColumnsRead, CurrentMembershipsByUnit, columns_named, load_one},
        pagination::Page,
    },
    identity::types::User,
};

/// How a resident is tied to a unit.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::UnitRelation")]
pub enum UnitRelation {
    /// 业主: owns the unit.
    Owner,
    /// 租户: rents the unit.
    Tenant,
    /// A family member living with the owner or tenant.
    Family,
}

/// A residential community (小区/园区) run by the property company.
pub struct Community(pub Arc<community::Model>);

impl From<community::Model> for Community {
    fn from(model: community::Model) -> Self {
        Self(Arc::new(model))
    }
}

#[Object]
impl Community {
    async fn id(&self) -> ID {
        ids::encode(Kind::Community, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// A building (楼栋) of a community.
pub struct Building(pub Arc<building::Model>);

impl From<building::Model> for Building {
    fn from(model: building::Model) -> Self {
        Self(Arc::new(model))
    }
}

#[Object]
impl Building {
    async fn id(&self) -> ID {
        ids::encode(Kind::Building, self.0.id)
    }
    /// The building's name as shown on site, e.g. "3号楼".
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn community(&self, ctx: &Context<'_>) -> Result<Option<Community>> {
        Ok(load_one::<community::Entity>(ctx, self.0.community_id).await?.map(Community))
    }
    /// The building's units that the viewer may see, by door number order of creation.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn units(&self, ctx: &Context<'_>, first: i32, after: Option<String>) -> Result<Page<Unit>> {
        let principal = ctx.principal()?;
        let request = crate::graphql::pagination::PageRequest::new(first, after.as_deref())?;
        Ok(boxed_wait(super::service::list_units(ctx.db(), principal, Some(self.0.id), request)).await?)
    }
}

/// A unit (房号) of a building: the home residents belong to.
pub struct Unit(pub Arc<unit::Model>);

impl From<unit::Model> for Unit {
    fn from(model: unit::Model) -> Self {
        Self(Arc::new(model))
    }
}

#[Object]
impl Unit {
    async fn id(&self) -> ID {
        ids::encode(Kind::Unit, self.0.id)
    }
    /// The door number as residents write it, e.g. "2-1503".
    async fn number(&self) -> &str {
        &self.0.number
    }
    async fn floor(&self) -> Option<i32> {
        self.0.floor
    }
    async fn building(&self, ctx: &Context<'_>) -> Result<Option<InTurn<Building>>> {
        Ok(load_one::<building::Entity>(ctx, self.0.building_id).await?.map(|building| InTurn(Building(building))))
    }
    /// The people currently living in the unit.
    async fn residents(&self, ctx: &Context<'_>) -> Result<Vec<Membership>> {
        let memberships = boxed_wait(ctx.data_unchecked::<DataLoader<CurrentMembershipsByUnit>>().load_one(self.0.id))
            .await
            .map_err(|err| crate::error::ApiError::Internal(format!("batch load failed: {err}")))?
            .unwrap_or_default();
        Ok(memberships.into_iter().map(Membership).collect())
    }
    /// Whom to call when the household cannot be reached (业户紧急联系人).
    async fn emergency_contacts(&self, ctx: &Context<'_>) -> Result<Vec<EmergencyContact>> {
        let contacts = boxed_wait(super::service::emergency_contacts(ctx.db(), self.0.id)).await?;
        Ok(contacts.into_iter().map(EmergencyContact).collect())
    }
    /// Raised each time the emergency contacts are replaced; pass it back as
    /// `expectedVersion` so that a stale edit is refused.
    async fn emergency_contacts_version(&self) -> i32 {
        self.0.contacts_version
    }
}

impl Waits for Building {}

impl Waits for Unit {}

impl ColumnsRead for community::Entity {}

impl ColumnsRead for building::Entity {
    fn columns_read_by<'a>(fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<building::Column> {
        use building::Column::*;
        columns_named::<building::Entity>(fields.map(|field| -> Option<&'static [building::Column]> {
            Some(match field.name() {
                "__typename" | "id" | "units" => &[],
                "name" => &[Name],
                "community" => &[CommunityId],
                _ => return None,
            })
        }))
    }
}

impl ColumnsRead for unit::Entity {
    fn columns_read_by<'a>(fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<unit::Column> {
        use unit::Column::*;
        columns_named::<unit::Entity>(fields.map(|field| -> Option<&'static [unit::Column]> {
            Some(match field.name() {
                "__typename" | "id" | "residents" | "emergencyContacts" => &[],
                "number" => &[Number],
                "floor" => &[Floor],
                "building" => &[BuildingId],
                "emergencyContactsVersion" => &[ContactsVersion],
                _ => return None,
            })
        }))
    }
}

/// A resident's tie to a unit, from move-in to move-out.
pub struct Membership(pub unit_membership::Model);

#[Object]
impl Membership {
    async fn id(&self) -> ID {
        ids::encode(Kind::Membership, self.0.id)
    }
    async fn relation(&self) -> UnitRelation {
        self.0.relation.into()
    }
    async fn moved_in_on(&self) -> NaiveDate {
        self.0.moved_in_on
    }
    /// Set once the resident has moved out; they then no longer see the unit.
    async fn moved_out_on(&self) -> Option<NaiveDate> {
        self.0.moved_out_on
    }
    async fn unit(&self, ctx: &Context<'_>) -> Result<Option<Unit>> {
        Ok(load_one::<unit::Entity>(ctx, self.0.unit_id).await?.map(Unit))
    }
    async fn resident(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<user::Entity>(ctx, self.0.user_id).await?.map(User))
    }
}

/// Someone to call in an emergency when the household cannot be reached.
pub struct EmergencyContact(pub emergency_contact::Model);

#[Object]
impl EmergencyContact {
    async fn id(&self) -> ID {
        ids::encode(Kind::EmergencyContact, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn phone(&self) -> &str {
        &self.0.phone
    }
    /// How the contact relates to the household, e.g. "daughter".
    async fn relation(&self) -> &str {
        &self.0.relation
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A new building in the viewer's community.
#[derive(InputObject)]
pub struct CreateBuildingInput {
    /// 1–100 characters, unique within the community.
    pub name: String,
}

#[derive(SimpleObject)]
pub struct CreateBuildingPayload {
    pub building: Building,
}

/// A new unit in a building.
#[derive(InputObject)]
pub struct CreateUnitInput {
    pub building_id: ID,
    /// The door number, 1–32 characters, unique within the building.
    pub number: String,
    pub floor: Option<i32>,
}

#[derive(SimpleObject)]
pub struct CreateUnitPayload {
    pub unit: Unit,
}

/// Add a resident to a unit, creating their account when the phone number is new.
#[derive(InputObject)]
pub struct MoveInInput {
    pub unit_id: ID,
    /// Mainland mobile number, 11 digits.
    pub phone: String,
    /// The resident's name, 1–50 characters (ignored when the account exists).
    pub name: String,
    pub relation: UnitRelation,
    /// Defaults to today.
    pub moved_in_on: Option<NaiveDate>,
    /// A first password for a new account, 8–128 characters; without one the
    /// account cannot log in until a password is set.
    pub initial_password: Option<String>,
}

#[derive(SimpleObject)]
pub struct MoveInPayload {
    pub membership: Membership,
}

/// End a resident's membership of a unit; their access to it ends at once.
#[derive(InputObject)]
pub struct MoveOutInput {
    pub membership_id: ID,
    /// Defaults to today; cannot be in the future nor before the move-in date.
    pub moved_out_on: Option<NaiveDate>,
}

#[derive(SimpleObject)]
pub struct MoveOutPayload {
    pub membership: Membership,
}

#[derive(InputObject)]
pub struct EmergencyContactInput {
    /// 1–50 characters.
    pub name: String,
    /// A phone number of 5–20 digits (landlines included), optionally with a leading +.
    pub phone: String,
    /// 1–30 characters, e.g. "daughter".
    pub relation: String,
}

/// Replace a unit's emergency contacts (at most 5).
#[derive(InputObject)]
pub struct SetEmergencyContactsInput {
    pub unit_id: ID,
    pub contacts: Vec<EmergencyContactInput>,
    /// Refuse with CONFLICT unless the contacts are still at this
    /// `emergencyContactsVersion`.
    pub expected_version: Option<i32>,
}

#[derive(SimpleObject)]
pub struct SetEmergencyContactsPayload {
    pub unit: Unit,
}
