use async_graphql::{Context, Object, Result};
use entity::enums::Role;

use super::{service, types::*};
use crate::{
    graphql::{
        ContextExt, admit_auth_attempt,
        ids::{self, Kind},
    },
    property::types::Building,
};

#[derive(Default)]
pub struct IdentityMutation;

impl From<service::Session> for AuthPayload {
    fn from(session: service::Session) -> Self {
        Self {
            access_token: session.access.token,
            access_token_expires_at: session.access.expires_at,
            refresh_token: session.refresh_token,
            refresh_token_expires_at: session.refresh_expires_at,
            viewer: Viewer(session.user),
        }
    }
}

#[Object]
impl IdentityMutation {
    /// Sign in with phone number and password.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        admit_auth_attempt(ctx.app(), ctx.client_ip()).await?;
        Ok(service::login(ctx.app(), &input.phone, &input.password).await?.into())
    }

    /// Trade a refresh token for a new access and refresh token. Each refresh
    /// token works once; reusing one ends the session everywhere.
    async fn refresh_token(&self, ctx: &Context<'_>, input: RefreshTokenInput) -> Result<AuthPayload> {
        admit_auth_attempt(ctx.app(), ctx.client_ip()).await?;
        Ok(service::refresh(ctx.app(), &input.refresh_token).await?.into())
    }

    /// End the session the refresh token belongs to.
    async fn logout(&self, ctx: &Context<'_>, input: LogoutInput) -> Result<LogoutPayload> {
        Ok(LogoutPayload { revoked: service::logout(ctx.app(), &input.refresh_token).await? })
    }

    /// Create a butler account in the manager's community (manager).
    async fn create_butler_account(
        &self,
        ctx: &Context<'_>,
        input: CreateButlerAccountInput,
    ) -> Result<CreateAccountPayload> {
        let principal = ctx.principal()?;
        let new = service::NewEmployee {
            phone: input.phone,
            name: input.name,
            password: input.password,
            role: Role::Butler,
            position: None,
        };
        Ok(CreateAccountPayload { user: User::from(service::create_employee(ctx.db(), principal, new).await?) })
    }

    /// Create a staff account in the manager's community (manager).
    async fn create_staff_account(
        &self,
        ctx: &Context<'_>,
        input: CreateStaffAccountInput,
    ) -> Result<CreateAccountPayload> {
        let principal = ctx.principal()?;
        let new = service::NewEmployee {
            phone: input.phone,
            name: input.name,
            password: input.password,
            role: Role::Staff,
            position: Some(input.position.into()),
        };
        Ok(CreateAccountPayload { user: User::from(service::create_employee(ctx.db(), principal, new).await?) })
    }

    /// Make a butler responsible for a building (supervisor, manager).
    async fn assign_butler(&self, ctx: &Context<'_>, input: ButlerAssignmentInput) -> Result<ButlerAssignmentPayload> {
        let principal = ctx.principal()?;
        let butler_id = ids::decode(Kind::User, &input.butler_id, "butlerId")?;
        let building_id = ids::decode(Kind::Building, &input.building_id, "buildingId")?;
        let (butler, building) = service::assign_butler(ctx.db(), principal, butler_id, building_id).await?;
        Ok(ButlerAssignmentPayload { butler: User::from(butler), building: Building::from(building) })
    }

    /// Take a building off a butler's list (supervisor, manager).
    async fn unassign_butler(
        &self,
        ctx: &Context<'_>,
        input: ButlerAssignmentInput,
    ) -> Result<ButlerAssignmentPayload> {
        let principal = ctx.principal()?;
        let butler_id = ids::decode(Kind::User, &input.butler_id, "butlerId")?;
        let building_id = ids::decode(Kind::Building, &input.building_id, "buildingId")?;
        let (butler, building) = service::unassign_butler(ctx.db(), principal, butler_id, building_id).await?;
        Ok(ButlerAssignmentPayload { butler: User::from(butler), building: Building::from(building) })
    }
}
