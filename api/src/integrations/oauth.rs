//! `POST /oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4)
//! for integrators' servers, with the credentials in the form body or in HTTP
//! Basic authentication.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::json;

use super::service;
use crate::{
    AppContext,
    auth::Scope,
    error::ApiError,
    graphql::{
        admit_auth_attempt,
        ids::{self, Kind},
    },
    http::client_ip,
};

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: actix_web::http::StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(json!({ "error": error }))
}

/// `client_id:client_secret` from `Authorization: Basic …`.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

pub async fn token(req: HttpRequest, form: web::Form<TokenRequest>, app: web::Data<Arc<AppContext>>) -> HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(ApiError::RateLimited { retry_after_secs }) =
        admit_auth_attempt(&app, &client_ip(&req, app.settings.trust_proxy_headers)).await
    {
        return HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": "rate_limited" }));
    }
    if form.grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let credentials = match (&form.client_id, &form.client_secret) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => basic_credentials(&req),
    };
    let Some((client_id, secret)) = credentials else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Ok(client_id) = ids::decode(Kind::ApiClient, &async_graphql::ID(client_id), "client_id") else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    match service::exchange(&app, client_id, &secret).await {
        Ok((token, integrator)) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
            "access_token": token.token,
            "token_type": "Bearer",
            "expires_in": (token.expires_at - chrono::Utc::now()).num_seconds(),
            "scope": Scope::format_list(&integrator.scopes),
        })),
        Err(ApiError::Unauthenticated(_)) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        Err(err) => {
            tracing::error!(error = ?err, "client-credentials grant failed");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}
