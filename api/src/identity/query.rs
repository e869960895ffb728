use async_graphql::{Context, Object, Result};

use super::{
    service,
    types::{ResidentFilter, StaffMemberFilter, User, Viewer},
};
use crate::graphql::{
    ContextExt,
    ids::{self, Kind},
    pagination::{Page, PageRequest},
};

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The signed-in person.
    async fn me(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let principal = ctx.principal()?;
        Ok(Viewer(service::find_user(ctx.db(), principal.user_id).await?))
    }

    /// The resident directory (butlers and staff): people currently living in
    /// the units the viewer looks after, searchable by name, phone or unit number.
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn residents(
        &self,
        ctx: &Context<'_>,
        filter: Option<ResidentFilter>,
        first: i32,
        after: Option<String>,
    ) -> Result<Page<User>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let search = service::ResidentSearch {
            search: filter.search,
            building_id: filter
                .building_id
                .map(|id| ids::decode(Kind::Building, &id, "filter.buildingId"))
                .transpose()?,
            unit_id: filter.unit_id.map(|id| ids::decode(Kind::Unit, &id, "filter.unitId")).transpose()?,
        };
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::search_residents(ctx.db(), principal, search, request).await?)
    }

    /// Butlers and staff of the viewer's community (butlers and staff only).
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn staff_members(
        &self,
        ctx: &Context<'_>,
        filter: Option<StaffMemberFilter>,
        first: i32,
        after: Option<String>,
    ) -> Result<Page<User>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::list_staff(
            ctx.db(),
            principal,
            filter.role.map(Into::into),
            filter.position.map(Into::into),
            request,
        )
        .await?)
    }
}
