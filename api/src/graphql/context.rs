use std::sync::Arc;

use async_graphql::Context;
use sea_orm::DatabaseConnection;

use crate::{
    AppContext,
    auth::{Caller, Principal},
    error::{ApiError, ApiResult},
};

/// What the transport learnt about the caller, attached to each request.
#[derive(Debug, Clone)]
pub enum Auth {
    Anonymous,
    Authenticated(Caller),
    /// A token was presented but did not verify; the caller is told so instead
    /// of being treated as anonymous.
    Rejected,
}

/// The client's address as the transport saw it, for per-IP limits.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl Caller {
    /// A stable key for state kept per caller: rate-limit buckets and
    /// idempotency keys.
    pub fn key(&self) -> String {
        match self {
            Caller::User(principal) => format!("user:{}", principal.user_id),
            Caller::Integrator(integrator) => format!("client:{}", integrator.client_id),
        }
    }

    /// The caller's own rate-limit bucket, drawn from over HTTP and WebSocket alike.
    pub fn rate_bucket(&self) -> String {
        format!("caller:{}", self.key())
    }
}

pub trait ContextExt {
    fn app(&self) -> &Arc<AppContext>;
    fn db(&self) -> &DatabaseConnection {
        &self.app().db
    }
    /// The verified caller, person or integrator, or UNAUTHENTICATED.
    fn caller(&self) -> ApiResult<&Caller>;
    fn client_ip(&self) -> &str;
    /// The verified person calling, or UNAUTHENTICATED. Integrators get
    /// FORBIDDEN: only the fields that take `caller()` serve them.
    fn principal(&self) -> ApiResult<&Principal> {
        match self.caller()? {
            Caller::User(principal) => Ok(principal),
            Caller::Integrator(_) => Err(ApiError::Forbidden),
        }
    }
}

impl ContextExt for Context<'_> {
    fn app(&self) -> &Arc<AppContext> {
        self.data_unchecked::<Arc<AppContext>>()
    }

    fn client_ip(&self) -> &str {
        self.data_opt::<ClientIp>().map_or("unknown", |ip| ip.0.as_str())
    }

    fn caller(&self) -> ApiResult<&Caller> {
        match self.data_opt::<Auth>() {
            Some(Auth::Authenticated(caller)) => Ok(caller),
            Some(Auth::Rejected) => Err(ApiError::Unauthenticated("invalid or expired access token")),
            Some(Auth::Anonymous) | None => Err(ApiError::Unauthenticated("authentication required")),
        }
    }
}

/// Draws one attempt from the client IP's bucket for logins, refreshes and
/// credential exchanges, which guessing would otherwise hammer.
pub async fn admit_auth_attempt(app: &AppContext, client_ip: &str) -> ApiResult<()> {
    app.limiter.admit(&format!("auth:{client_ip}"), app.settings.auth_limit(), 1).await
}
