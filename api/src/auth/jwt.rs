//! Short-lived HS256 access tokens. The algorithm is pinned, and `exp`, `iss`,
//! `aud` and `sub` are required, so `alg: none`, another algorithm, a foreign
//! issuer or audience, or a malformed `exp` are all rejected alike.

use std::{
    num::NonZeroUsize,
    path::Path,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::enums::{Role, StaffPosition};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{Caller, Integrator, Principal, Scope};
use crate::{
    config::Settings,
    error::{ApiError, ApiResult},
};

const ALGORITHM: Algorithm = Algorithm::HS256;
/// `sub` of integrators' tokens: `client:<id>`, never a user id.
const CLIENT_SUBJECT_PREFIX: &str = "client:";
/// Tolerated clock skew between instances, in seconds.
const LEEWAY_SECS: u64 = 30;
/// Tokens kept verified: a phone sends the same token with every request
/// until it expires, and checking its signature and claims again cost about
/// 2 % of a page of orders.
const VERIFIED_TOKENS: usize = 4096;

/// Claims of an access token. People's tokens carry `role` (and `pos`, `cid`);
/// integrators' tokens have a `sub` of `client:<id>` and carry `cid` and `scp`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<StaffPosition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    /// Tokens that passed every check, with what they carry; only their
    /// expiry is checked again.
    verified: Mutex<VerifiedTokens>,
}

/// Verified tokens, with the caller each carries and its expiry.
type VerifiedTokens = LruCache<Box<str>, (Caller, DateTime<Utc>)>;

/// An access token and the moment it stops working.
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl TokenService {
    pub fn new(secret: &[u8], settings: &Settings) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl: settings.access_token_ttl,
            verified: Mutex::new(LruCache::new(NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(NonZeroUsize::MIN))),
        }
    }

    pub fn issue(&self, principal: &Principal) -> ApiResult<AccessToken> {
        self.sign(principal.user_id.to_string(), |claims| {
            claims.role = Some(principal.role);
            claims.pos = principal.position;
            claims.cid = principal.community_id;
        })
    }

    pub fn issue_for_integrator(&self, integrator: &Integrator) -> ApiResult<AccessToken> {
        self.sign(format!("{CLIENT_SUBJECT_PREFIX}{}", integrator.client_id), |claims| {
            claims.cid = Some(integrator.community_id);
            claims.scp = Some(Scope::format_list(&integrator.scopes));
        })
    }

    fn sign(&self, sub: String, fill: impl FnOnce(&mut Claims)) -> ApiResult<AccessToken> {
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(self.access_ttl)
                .map_err(|_| ApiError::Internal("access token TTL out of range".into()))?;
        let mut claims = Claims {
            sub,
            role: None,
            pos: None,
            cid: None,
            scp: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        fill(&mut claims);
        let token = encode(&Header::new(ALGORITHM), &claims, &self.encoding)
            .map_err(|err| ApiError::Internal(format!("token signing failed: {err}")))?;
        Ok(AccessToken { token, expires_at })
    }

    /// Verifies signature, algorithm, expiry, issuer and audience; returns the
    /// caller and the token's expiry. A token that passed is remembered, and
    /// only its expiry checked when it comes again.
    pub fn verify(&self, token: &str) -> ApiResult<(Caller, DateTime<Utc>)> {
        let invalid = || ApiError::Unauthenticated("invalid or expired access token");
        let mut verified = self.verified();
        if let Some((caller, expires_at)) = verified.get(token) {
            // The same rule as the full check: expired once `exp` is more than the leeway ago.
            let expired = expires_at.timestamp() < Utc::now().timestamp() - LEEWAY_SECS as i64;
            if !expired {
                return Ok((caller.clone(), *expires_at));
            }
            verified.pop(token);
            return Err(invalid());
        }
        drop(verified);
        let checked = self.check(token).ok_or_else(invalid)?;
        self.verified().put(token.into(), checked.clone());
        Ok(checked)
    }

    /// Every check of `verify`, with nothing remembered.
    fn check(&self, token: &str) -> Option<(Caller, DateTime<Utc>)> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation).ok()?.claims;
        let expires_at = DateTime::from_timestamp(claims.exp, 0)?;
        let caller = match claims.sub.strip_prefix(CLIENT_SUBJECT_PREFIX) {
            Some(client_id) => Caller::Integrator(Integrator {
                client_id: client_id.parse().ok()?,
                community_id: claims.cid?,
                scopes: Scope::parse_list(claims.scp.as_deref().unwrap_or_default()),
            }),
            None => Caller::User(Principal {
                user_id: claims.sub.parse().ok()?,
                role: claims.role?,
                position: claims.pos,
                community_id: claims.cid,
            }),
        };
        Some((caller, expires_at))
    }

    fn verified(&self) -> MutexGuard<'_, VerifiedTokens> {
        // Each call leaves the cache whole, so a panic elsewhere cannot corrupt it.
        self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The signing secret: `JWT_SECRET`, or in development a random one generated
/// once and kept in the data directory so tokens survive restarts.
pub fn load_or_create_secret(settings: &Settings) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &secret)?;
    tracing::warn!(path = %path.display(), "JWT_SECRET is not set: generated a development secret; set JWT_SECRET in production");
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new(&[7u8; 32], &Settings::default())
    }

    fn principal() -> Principal {
        Principal { user_id: 42, role: Role::Staff, position: Some(StaffPosition::Manager), community_id: Some(3) }
    }

    #[test]
    fn round_trips_the_principal() {
        let tokens = service();
        let issued = tokens.issue(&principal()).unwrap();
        let (verified, expires_at) = tokens.verify(&issued.token).unwrap();
        assert_eq!(verified, Caller::User(principal()));
        assert_eq!(expires_at.timestamp(), issued.expires_at.timestamp());
    }

    #[test]
    fn a_remembered_token_is_refused_once_expired() {
        let tokens = service();
        let issued = tokens.issue(&principal()).unwrap();
        assert!(tokens.verify(&issued.token).is_ok());
        assert!(tokens.verify(&issued.token).is_ok(), "served again while valid");
        let long_ago = Utc::now() - chrono::Duration::seconds(LEEWAY_SECS as i64 + 1);
        tokens.verified().put(issued.token.as_str().into(), (Caller::User(principal()), long_ago));
        assert!(tokens.verify(&issued.token).is_err());
        assert!(tokens.verified().peek(issued.token.as_str()).is_none(), "forgotten once refused");
    }

    #[test]
    fn integrator_tokens_are_never_read_as_people() {
        let tokens = service();
        let integrator = Integrator { client_id: 42, community_id: 3, scopes: vec![Scope::ParcelsRead] };
        let issued = tokens.issue_for_integrator(&integrator).unwrap();
        assert_eq!(tokens.verify(&issued.token).unwrap().0, Caller::Integrator(integrator));
    }

    #[test]
    fn rejects_a_token_signed_with_another_key() {
        let other = TokenService::new(&[8u8; 32], &Settings::default());
        let issued = other.issue(&principal()).unwrap();
        assert!(service().verify(&issued.token).is_err());
    }

    #[test]
    fn rejects_a_foreign_audience() {
        let settings = Settings { jwt_audience: "someone-else".into(), ..Settings::default() };
        let foreign = TokenService::new(&[7u8; 32], &settings);
        let issued = foreign.issue(&principal()).unwrap();
        assert!(service().verify(&issued.token).is_err());
    }
}
