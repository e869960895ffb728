use std::sync::Arc;

use async_graphql::Context;
use sea_orm::DatabaseConnection;

use crate::{
    AppContext,
    auth::{Action, Principal, permissions},
    error::{ApiError, ApiResult},
};

/// What the transport learnt about the caller, attached to each request.
#[derive(Debug, Clone)]
pub enum Auth {
    Anonymous,
    Authenticated(Principal),
    /// A token was presented but did not verify; the caller is told so instead
    /// of being treated as anonymous.
    Rejected,
}

pub trait ContextExt {
    fn app(&self) -> &Arc<AppContext>;
    fn db(&self) -> &DatabaseConnection {
        &self.app().db
    }
    /// The verified caller, or UNAUTHENTICATED.
    fn principal(&self) -> ApiResult<&Principal>;
    /// The verified caller, if allowed to perform `action` (else FORBIDDEN).
    fn principal_for(&self, action: Action) -> ApiResult<&Principal> {
        let principal = self.principal()?;
        permissions::require(principal, action)?;
        Ok(principal)
    }
}

impl ContextExt for Context<'_> {
    fn app(&self) -> &Arc<AppContext> {
        self.data_unchecked::<Arc<AppContext>>()
    }

    fn principal(&self) -> ApiResult<&Principal> {
        match self.data_opt::<Auth>() {
            Some(Auth::Authenticated(principal)) => Ok(principal),
            Some(Auth::Rejected) => Err(ApiError::Unauthenticated("invalid or expired access token")),
            Some(Auth::Anonymous) | None => Err(ApiError::Unauthenticated("authentication required")),
        }
    }
}
