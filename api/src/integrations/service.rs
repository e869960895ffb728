use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use entity::api_client;
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use sha2::Sha256;

use crate::{
    AppContext,
    auth::{Action, Integrator, Principal, Scope, jwt::AccessToken, permissions},
    error::{ApiError, ApiResult},
    graphql::pagination::{self, Page, PageRequest},
    validate,
};

fn secret_mac(app: &AppContext) -> ApiResult<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(&app.hashing_key)
        .map_err(|_| ApiError::Internal("client secret key rejected".into()))
}

fn hash_secret(app: &AppContext, secret: &str) -> ApiResult<String> {
    let mut mac = secret_mac(app)?;
    mac.update(secret.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// A new client of the manager's community and its secret, shown only now.
#[tracing::instrument(skip_all, fields(user_id = principal.user_id))]
pub async fn create(
    app: &AppContext,
    principal: &Principal,
    name: &str,
    scopes: Vec<Scope>,
) -> ApiResult<(api_client::Model, String)> {
    permissions::require(principal, Action::ManageIntegrations)?;
    let community_id = principal.community_id.ok_or(ApiError::Forbidden)?;
    let name = validate::text(name, "name", 100)?;
    let mut scopes = scopes;
    scopes.sort_by_key(|scope| scope.as_str());
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::bad_input("scopes", "at least one scope"));
    }
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let client = api_client::ActiveModel {
        community_id: Set(community_id),
        name: Set(name),
        secret_hash: Set(hash_secret(app, &secret)?),
        scopes: Set(Scope::format_list(&scopes)),
        created_by: Set(principal.user_id),
        disabled_at: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    tracing::info!(client_id = client.id, "API client created");
    Ok((client, secret))
}

async fn find(db: &impl ConnectionTrait, principal: &Principal, id: i64) -> ApiResult<api_client::Model> {
    permissions::require(principal, Action::ManageIntegrations)?;
    api_client::Entity::find_by_id(id)
        .filter(api_client::Column::CommunityId.eq(principal.community_id.unwrap_or_default()))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("API client"))
}

/// Disables a client; its tokens stop working with the next request.
#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn disable(db: &impl ConnectionTrait, principal: &Principal, id: i64) -> ApiResult<api_client::Model> {
    let client = find(db, principal, id).await?;
    if client.disabled_at.is_some() {
        return Err(ApiError::conflict("the API client is already disabled"));
    }
    let now = Utc::now();
    api_client::Entity::update_many()
        .col_expr(api_client::Column::DisabledAt, Expr::value(now))
        .filter(api_client::Column::Id.eq(client.id))
        .filter(api_client::Column::DisabledAt.is_null())
        .exec(db)
        .await?;
    tracing::info!(client_id = client.id, "API client disabled");
    Ok(api_client::Model { disabled_at: Some(now), ..client })
}

pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    request: PageRequest,
) -> ApiResult<Page<super::types::ApiClient>> {
    permissions::require(principal, Action::ManageIntegrations)?;
    let select = api_client::Entity::find()
        .filter(api_client::Column::CommunityId.eq(principal.community_id.unwrap_or_default()));
    pagination::fetch(db, select, api_client::Column::Id, |client| client.id, request, super::types::ApiClient).await
}

pub async fn is_active(db: &impl ConnectionTrait, id: i64) -> ApiResult<bool> {
    Ok(api_client::Entity::find_by_id(id).filter(api_client::Column::DisabledAt.is_null()).one(db).await?.is_some())
}

/// The client-credentials grant: a client's id and secret for a short-lived token.
#[tracing::instrument(skip(app, secret))]
pub async fn exchange(app: &AppContext, client_id: i64, secret: &str) -> ApiResult<(AccessToken, Integrator)> {
    let refused = || ApiError::Unauthenticated("invalid client credentials");
    let client = api_client::Entity::find_by_id(client_id)
        .filter(api_client::Column::DisabledAt.is_null())
        .one(&app.db)
        .await?
        .ok_or_else(refused)?;
    let expected = hex::decode(&client.secret_hash).map_err(|_| refused())?;
    let mut mac = secret_mac(app)?;
    mac.update(secret.as_bytes());
    mac.verify_slice(&expected).map_err(|_| refused())?;
    let integrator = Integrator {
        client_id: client.id,
        community_id: client.community_id,
        scopes: Scope::parse_list(&client.scopes),
    };
    let token = app.tokens.issue_for_integrator(&integrator)?;
    Ok((token, integrator))
}
