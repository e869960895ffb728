//! Argon2id password hashing. Hashing is deliberately slow, so it runs on the
//! blocking pool instead of an HTTP worker.

use std::sync::LazyLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

use crate::error::{ApiError, ApiResult};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

pub async fn hash(password: &str) -> ApiResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| ApiError::Internal(format!("password hashing failed: {err}")))
    })
    .await
    .map_err(|err| ApiError::Internal(format!("password hashing task failed: {err}")))?
}

/// Checks `password` against a stored PHC string. With no stored hash it still
/// spends the time of one verification, so a missing account cannot be told
/// apart from a wrong password by timing.
pub async fn verify(stored_hash: Option<String>, password: &str) -> ApiResult<bool> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let has_account = stored_hash.is_some();
        let reference = stored_hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&reference) else {
            return false;
        };
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        matches && has_account
    })
    .await
    .map_err(|err| ApiError::Internal(format!("password verification task failed: {err}")))
}

/// The hash of a random password nobody knows, verified against when the phone
/// number has no account.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let unknowable: [u8; 32] = rand::random();
    Argon2::default().hash_password(&unknowable).map(|hash| hash.to_string()).unwrap_or_default()
});

pub fn validate(password: &str, field: &str) -> ApiResult<()> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(ApiError::bad_input(
            field,
            format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let stored = hash("correct horse").await.unwrap();
        assert!(verify(Some(stored.clone()), "correct horse").await.unwrap());
        assert!(!verify(Some(stored), "wrong horse").await.unwrap());
        assert!(!verify(None, "anything").await.unwrap());
    }
}
