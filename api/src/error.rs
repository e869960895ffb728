//! The one error type of the API and its mapping onto GraphQL `extensions.code`.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    BadInput { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Shown as "internal error", or as SERVICE_UNAVAILABLE (worth a retry)
    /// while the database cannot be reached.
    #[error("internal error")]
    Database(#[from] DbErr),
    #[error("internal error")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput { field: field.into(), message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Database(err) if is_unavailable(err) => "SERVICE_UNAVAILABLE",
            Self::Database(_) | Self::Internal(_) => "INTERNAL",
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        match self {
            Self::Database(err) if is_unavailable(err) => tracing::warn!(error = %err, "database unreachable"),
            Self::Database(err) => tracing::error!(error = %err, "database error"),
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ => {}
        }
        let message = match self {
            Self::Database(err) if is_unavailable(err) => "temporarily unavailable, retry shortly".to_owned(),
            _ => self.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadInput { field, .. } => ext.set("field", field.as_str()),
                Self::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
                _ => {}
            }
        })
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        err.extend()
    }
}

/// A unique constraint turned down the write: the caller raced another request
/// for the same natural key, which is a conflict rather than a fault.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// CONFLICT with `message` when a unique constraint turned the write down,
/// otherwise the error as it is.
pub fn unique_conflict(err: DbErr, message: impl Into<String>) -> ApiError {
    if is_unique_violation(&err) { ApiError::conflict(message) } else { err.into() }
}

/// The database could not be reached (down, restarting, pool exhausted), as
/// opposed to a statement that failed: the request may succeed when retried.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx::Error as SqlxError};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => matches!(
            err.as_ref(),
            SqlxError::Io(_) | SqlxError::PoolTimedOut | SqlxError::PoolClosed | SqlxError::WorkerCrashed
        ),
        _ => false,
    }
}
