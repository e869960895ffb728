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

pub trait ContextExt {
    fn app(&self) -> &Arc<AppContext>;
    fn db(&self) -> &DatabaseConnection {
        &self.app().db
    }
    /// The verified caller, person or integrator, or UNAUTHENTICATED.
    fn caller(&self) -> ApiResult<&Caller>;
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

    fn caller(&self) -> ApiResult<&Caller> {
        match self.data_opt::<Auth>() {
            Some(Auth::Authenticated(caller)) => Ok(caller),
            Some(Auth::Rejected) => Err(ApiError::Unauthenticated("invalid or expired access token")),
            Some(Auth::Anonymous) | None => Err(ApiError::Unauthenticated("authentication required")),
        }
    }
}
