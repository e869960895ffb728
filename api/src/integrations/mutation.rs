use async_graphql::{Context, Object, Result};

use super::{service, types::*};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt, admit_auth_attempt,
        ids::{self, Kind},
    },
};

#[derive(Default)]
pub struct IntegrationMutation;

#[Object]
impl IntegrationMutation {
    /// Create an API client for an integrator (manager). The secret is in the
    /// payload and never again.
    async fn create_api_client(
        &self,
        ctx: &Context<'_>,
        input: CreateApiClientInput,
    ) -> Result<CreateApiClientPayload> {
        let principal = ctx.principal()?;
        let scopes = input.scopes.into_iter().map(Into::into).collect();
        let (client, client_secret) = service::create(ctx.app(), principal, &input.name, scopes).await?;
        Ok(CreateApiClientPayload { api_client: ApiClient(client), client_secret })
    }

    /// Disable an API client; its tokens stop working at once (manager).
    async fn disable_api_client(
        &self,
        ctx: &Context<'_>,
        input: DisableApiClientInput,
    ) -> Result<DisableApiClientPayload> {
        let principal = ctx.principal()?;
        let id = ids::decode(Kind::ApiClient, &input.api_client_id, "apiClientId")?;
        Ok(DisableApiClientPayload { api_client: ApiClient(service::disable(ctx.db(), principal, id).await?) })
    }

    /// The client-credentials grant (also at `POST /oauth/token`): an API
    /// client's id and secret for a short-lived access token.
    async fn issue_client_token(
        &self,
        ctx: &Context<'_>,
        input: IssueClientTokenInput,
    ) -> Result<IssueClientTokenPayload> {
        admit_auth_attempt(ctx.app(), ctx.client_ip()).await?;
        let client_id = ids::decode(Kind::ApiClient, &input.client_id, "clientId")
            .map_err(|_| ApiError::Unauthenticated("invalid client credentials"))?;
        let (token, integrator) = service::exchange(ctx.app(), client_id, &input.client_secret).await?;
        Ok(IssueClientTokenPayload {
            access_token: token.token,
            expires_at: token.expires_at,
            scopes: integrator.scopes.into_iter().map(Into::into).collect(),
        })
    }
}
