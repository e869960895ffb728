use async_graphql::{Context, ID, Object, Result};

use super::{
    service,
    types::{Building, Unit},
};
use crate::graphql::{
    ContextExt,
    ids::{self, Kind},
    pagination::{Page, PageRequest},
};

#[derive(Default)]
pub struct PropertyQuery;

#[Object]
impl PropertyQuery {
    /// Buildings the viewer may see: a resident's own, a butler's assigned ones,
    /// or the whole community for staff.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn buildings(&self, ctx: &Context<'_>, first: i32, after: Option<String>) -> Result<Page<Building>> {
        let principal = ctx.principal()?;
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::list_buildings(ctx.db(), principal, request).await?)
    }

    /// One building, if the viewer may see it.
    async fn building(&self, ctx: &Context<'_>, id: ID) -> Result<Building> {
        let principal = ctx.principal()?;
        let id = ids::decode(Kind::Building, &id, "id")?;
        Ok(Building::from(service::find_building(ctx.db(), principal, id).await?))
    }

    /// Units the viewer may see, optionally of one building.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn units(
        &self,
        ctx: &Context<'_>,
        building_id: Option<ID>,
        first: i32,
        after: Option<String>,
    ) -> Result<Page<Unit>> {
        let principal = ctx.principal()?;
        let building_id = building_id.map(|id| ids::decode(Kind::Building, &id, "buildingId")).transpose()?;
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::list_units(ctx.db(), principal, building_id, request).await?)
    }

    /// One unit, if the viewer may see it; NOT_FOUND otherwise.
    async fn unit(&self, ctx: &Context<'_>, id: ID) -> Result<Unit> {
        let principal = ctx.principal()?;
        let id = ids::decode(Kind::Unit, &id, "id")?;
        Ok(Unit::from(service::find_unit(ctx.db(), principal, id).await?))
    }
}
