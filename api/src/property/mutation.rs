use async_graphql::{Context, Object, Result};

use super::{service, types::*};
use crate::graphql::{
    ContextExt,
    ids::{self, Kind},
};

#[derive(Default)]
pub struct PropertyMutation;

#[Object]
impl PropertyMutation {
    /// Add a building to the viewer's community (supervisor, manager).
    async fn create_building(&self, ctx: &Context<'_>, input: CreateBuildingInput) -> Result<CreateBuildingPayload> {
        let principal = ctx.principal()?;
        let building = service::create_building(ctx.db(), principal, &input.name).await?;
        Ok(CreateBuildingPayload { building: Building::from(building) })
    }

    /// Add a unit to a building (supervisor, manager).
    async fn create_unit(&self, ctx: &Context<'_>, input: CreateUnitInput) -> Result<CreateUnitPayload> {
        let principal = ctx.principal()?;
        let building_id = ids::decode(Kind::Building, &input.building_id, "buildingId")?;
        let unit = service::create_unit(ctx.db(), principal, building_id, &input.number, input.floor).await?;
        Ok(CreateUnitPayload { unit: Unit::from(unit) })
    }

    /// Record a resident moving into a unit (front desk, supervisor, manager).
    async fn move_in(&self, ctx: &Context<'_>, input: MoveInInput) -> Result<MoveInPayload> {
        let principal = ctx.principal()?;
        let move_in = service::MoveIn {
            unit_id: ids::decode(Kind::Unit, &input.unit_id, "unitId")?,
            phone: input.phone,
            name: input.name,
            relation: input.relation.into(),
            moved_in_on: input.moved_in_on,
            initial_password: input.initial_password,
        };
        let membership = service::move_in(ctx.app(), principal, move_in).await?;
        Ok(MoveInPayload { membership: Membership(membership) })
    }

    /// Record a resident moving out (front desk, supervisor, manager).
    async fn move_out(&self, ctx: &Context<'_>, input: MoveOutInput) -> Result<MoveOutPayload> {
        let principal = ctx.principal()?;
        let membership_id = ids::decode(Kind::Membership, &input.membership_id, "membershipId")?;
        let membership = service::move_out(ctx.db(), principal, membership_id, input.moved_out_on).await?;
        Ok(MoveOutPayload { membership: Membership(membership) })
    }

    /// Replace a unit's emergency contacts (front desk, supervisor, manager, or
    /// a resident of the unit).
    async fn set_emergency_contacts(
        &self,
        ctx: &Context<'_>,
        input: SetEmergencyContactsInput,
    ) -> Result<SetEmergencyContactsPayload> {
        let principal = ctx.principal()?;
        let unit_id = ids::decode(Kind::Unit, &input.unit_id, "unitId")?;
        let contacts = input
            .contacts
            .into_iter()
            .map(|c| service::NewEmergencyContact { name: c.name, phone: c.phone, relation: c.relation })
            .collect();
        let unit =
            service::set_emergency_contacts(ctx.app(), principal, unit_id, contacts, input.expected_version).await?;
        Ok(SetEmergencyContactsPayload { unit: Unit::from(unit) })
    }
}
