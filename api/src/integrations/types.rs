use async_graphql::{Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::api_client;

use crate::{
    auth::Scope,
    graphql::ids::{self, Kind},
};

/// What an integrator may do.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ApiScope {
    /// `parcels:read`: read the community's parcels.
    ParcelsRead,
    /// `parcels:write`: register parcels and hand them over from a locker.
    ParcelsWrite,
}

impl From<ApiScope> for Scope {
    fn from(scope: ApiScope) -> Self {
        match scope {
            ApiScope::ParcelsRead => Scope::ParcelsRead,
            ApiScope::ParcelsWrite => Scope::ParcelsWrite,
        }
    }
}

impl From<Scope> for ApiScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::ParcelsRead => ApiScope::ParcelsRead,
            Scope::ParcelsWrite => ApiScope::ParcelsWrite,
        }
    }
}

/// A third-party system allowed to call the API with client credentials.
pub struct ApiClient(pub api_client::Model);

#[Object]
impl ApiClient {
    /// Also the `client_id` of the client-credentials grant.
    async fn id(&self) -> ID {
        ids::encode(Kind::ApiClient, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn scopes(&self) -> Vec<ApiScope> {
        Scope::parse_list(&self.0.scopes).into_iter().map(Into::into).collect()
    }
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct CreateApiClientInput {
    /// 1–100 characters, e.g. "Hive Box lockers, gate 2".
    pub name: String,
    pub scopes: Vec<ApiScope>,
}

#[derive(SimpleObject)]
pub struct CreateApiClientPayload {
    pub api_client: ApiClient,
    /// Shown once; only its hash is kept.
    pub client_secret: String,
}

#[derive(InputObject)]
pub struct DisableApiClientInput {
    pub api_client_id: ID,
}

#[derive(SimpleObject)]
pub struct DisableApiClientPayload {
    pub api_client: ApiClient,
}

#[derive(InputObject)]
pub struct IssueClientTokenInput {
    pub client_id: ID,
    pub client_secret: String,
}

#[derive(SimpleObject)]
pub struct IssueClientTokenPayload {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub scopes: Vec<ApiScope>,
}
