//! Every setting, read once at start-up from the environment (and an optional
//! `.env`), each with the default documented in the README.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::ratelimit::Limit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub app_env: AppEnv,
    /// Address the HTTP server listens on.
    pub bind: String,
    pub database_url: String,
    /// The pool's connections; by default [`Settings::pool_size`]'s.
    pub db_max_connections: Option<u32>,
    /// PostgreSQL schema to use instead of the connection's default search path.
    pub database_schema: Option<String>,
    /// Where the embedded database, the development JWT secret and uploads live.
    pub data_dir: PathBuf,
    /// Redis for fan-out and shared limits when several instances run side by side.
    pub redis_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    pub login_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub login_failure_window: Duration,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests per minute from one client IP (token bucket), and its burst.
    pub rate_limit_ip_per_minute: u32,
    pub rate_limit_ip_burst: u32,
    /// Requests per minute from one signed-in caller, and its burst.
    pub rate_limit_caller_per_minute: u32,
    pub rate_limit_caller_burst: u32,
    /// Logins, refreshes and client-credential exchanges per minute from one IP.
    pub rate_limit_auth_per_minute: u32,
    pub rate_limit_auth_burst: u32,
    /// Pickup-code attempts per minute from one caller.
    pub rate_limit_code_per_minute: u32,
    pub rate_limit_code_burst: u32,
    /// Take the client IP from X-Forwarded-For / Forwarded (only behind a trusted proxy).
    pub trust_proxy_headers: bool,
    /// Prefix of every Redis key and channel, so deployments can share a Redis.
    pub redis_key_prefix: String,
    /// Operations nested deeper than this are refused.
    pub max_query_depth: usize,
    /// Refused above this cost: a field costs 1, a list field `first` times its items.
    pub max_query_complexity: usize,
    pub max_recursive_depth: usize,
    pub max_directives: usize,
    pub max_aliases: usize,
    /// Operations in one HTTP batch.
    pub max_batch: usize,
    /// A request running longer is cut off.
    #[serde(with = "humantime_serde")]
    pub execution_timeout: Duration,
    /// Introspection; off by default in production.
    pub introspection: Option<bool>,
    /// GraphiQL on GET /graphql; off by default in production.
    pub graphiql: Option<bool>,
    /// Repair SLA: from submission until someone is on site (the order is started).
    #[serde(with = "humantime_serde")]
    pub repair_urgent_response: Duration,
    /// Repair SLA: from submission until the work is completed.
    #[serde(with = "humantime_serde")]
    pub repair_urgent_completion: Duration,
    #[serde(with = "humantime_serde")]
    pub repair_normal_response: Duration,
    #[serde(with = "humantime_serde")]
    pub repair_normal_completion: Duration,
    /// A completed order the resident has not confirmed is closed after this long.
    #[serde(with = "humantime_serde")]
    pub repair_auto_close_after: Duration,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_key_ttl: Duration,
    pub repair_max_photos: usize,
    pub repair_max_photo_bytes: usize,
    /// How long a signed photo URL stays valid.
    #[serde(with = "humantime_serde")]
    pub media_url_ttl: Duration,
    /// First reminder for a parcel not picked up, after it was registered.
    #[serde(with = "humantime_serde")]
    pub parcel_reminder_delay: Duration,
    /// Time between further reminders.
    #[serde(with = "humantime_serde")]
    pub parcel_reminder_interval: Duration,
    /// Reminders sent at most; after the last one the parcel shows as overdue.
    pub parcel_reminder_count: i32,
    /// Wrong pickup codes in a row that lock a parcel for staff review.
    pub parcel_code_attempts: i32,
    /// The community's offset from UTC in minutes, for daily summaries (480 = UTC+8).
    pub local_utc_offset_minutes: i32,
    /// How often the background jobs (SLA marking, auto-close, parcel reminders) run.
    #[serde(with = "humantime_serde")]
    pub job_interval: Duration,
    /// How often the event relay reads the outbox when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub event_poll_interval: Duration,
    /// Events buffered per person for slow subscriptions before they re-read the outbox.
    pub event_buffer: usize,
    /// How long a WebSocket may stay open without `connection_init`.
    #[serde(with = "humantime_serde")]
    pub ws_init_timeout: Duration,
    /// Operations (subscriptions, queries, mutations) running at once on one WebSocket.
    pub ws_max_operations: usize,
    /// WebSockets one person may hold open on one instance.
    pub ws_max_connections_per_user: usize,
    /// A WebSocket whose client has not taken a message for this long is closed.
    #[serde(with = "humantime_serde")]
    pub ws_send_timeout: Duration,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub log_level: String,
    pub log_format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_env: AppEnv::Development,
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://data/app.db?mode=rwc".into(),
            db_max_connections: None,
            database_schema: None,
            data_dir: PathBuf::from("data"),
            redis_url: None,
            jwt_secret: None,
            jwt_issuer: "property-service".into(),
            jwt_audience: "property-apps".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            login_max_failures: 5,
            login_failure_window: Duration::from_secs(15 * 60),
            max_body_bytes: 1024 * 1024,
            rate_limit_ip_per_minute: 600,
            rate_limit_ip_burst: 120,
            rate_limit_caller_per_minute: 300,
            rate_limit_caller_burst: 60,
            rate_limit_auth_per_minute: 30,
            rate_limit_auth_burst: 20,
            rate_limit_code_per_minute: 20,
            rate_limit_code_burst: 10,
            trust_proxy_headers: false,
            redis_key_prefix: "property-service".into(),
            max_query_depth: 10,
            max_query_complexity: 1000,
            max_recursive_depth: 32,
            max_directives: 10,
            max_aliases: 30,
            max_batch: 5,
            execution_timeout: Duration::from_secs(10),
            introspection: None,
            graphiql: None,
            repair_urgent_response: Duration::from_secs(30 * 60),
            repair_urgent_completion: Duration::from_secs(4 * 3600),
            repair_normal_response: Duration::from_secs(24 * 3600),
            repair_normal_completion: Duration::from_secs(72 * 3600),
            repair_auto_close_after: Duration::from_secs(72 * 3600),
            idempotency_key_ttl: Duration::from_secs(24 * 3600),
            repair_max_photos: 6,
            repair_max_photo_bytes: 5 * 1024 * 1024,
            media_url_ttl: Duration::from_secs(15 * 60),
            parcel_reminder_delay: Duration::from_secs(24 * 3600),
            parcel_reminder_interval: Duration::from_secs(24 * 3600),
            parcel_reminder_count: 3,
            parcel_code_attempts: 5,
            local_utc_offset_minutes: 480,
            job_interval: Duration::from_secs(30),
            event_poll_interval: Duration::from_secs(1),
            event_buffer: 64,
            ws_init_timeout: Duration::from_secs(3),
            ws_max_operations: 20,
            ws_max_connections_per_user: 5,
            ws_send_timeout: Duration::from_secs(10),
            workers: 0,
            log_level: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

impl std::fmt::Debug for Settings {
    // Hand-written so that the JWT secret and credentials in URLs never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_env", &self.app_env)
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .finish_non_exhaustive()
    }
}

/// The cores this process may run on, as its CPU affinity allows.
fn cores_to_run_on() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores).unwrap_or(u32::MAX)
}

/// Drops the password part of `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("APP_ENV=production requires JWT_SECRET (at least 32 bytes)")]
    MissingProductionSecret,
    #[error("JWT_SECRET must be at least 32 bytes long")]
    WeakSecret,
    #[error("LOGIN_MAX_FAILURES must be at least 1")]
    NoLoginAttempts,
    #[error("every RATE_LIMIT_*_PER_MINUTE and RATE_LIMIT_*_BURST must be at least 1")]
    EmptyRateLimit,
    #[error("DB_MAX_CONNECTIONS must be at least 1")]
    NoConnections,
}

/// PostgreSQL's pool by default: on the two-core benchmark host the server
/// answered S3 best with about ten connections (bench/RESULTS.md).
const POSTGRES_POOL: u32 = 10;

impl Settings {
    /// Reads `.env` when present, then the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        let _ = dotenvy::dotenv();
        let settings: Settings = config::Config::builder()
            .add_source(config::Environment::default().try_parsing(false))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.login_max_failures == 0 {
            return Err(SettingsError::NoLoginAttempts);
        }
        let limits = [self.ip_limit(), self.caller_limit(), self.auth_limit(), self.code_limit()];
        if limits.iter().any(|limit| limit.per_minute == 0 || limit.burst == 0) {
            return Err(SettingsError::EmptyRateLimit);
        }
        if self.db_max_connections == Some(0) {
            return Err(SettingsError::NoConnections);
        }
        match (&self.jwt_secret, self.app_env) {
            (None, AppEnv::Production) => Err(SettingsError::MissingProductionSecret),
            (Some(secret), _) if secret.len() < 32 => Err(SettingsError::WeakSecret),
            _ => Ok(()),
        }
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The connections the pool holds: `DB_MAX_CONNECTIONS`, or else ten on
    /// PostgreSQL and on SQLite two for each core the process may run on.
    /// SQLite's readers run in the process, each on a thread of its own
    /// with a page cache of its own that every commit leaves partly stale.
    /// Two for each core keep a request from queueing behind another's
    /// statement; more only take turns with the writer and the HTTP worker.
    /// On the one-core benchmark server ten readers raised S3's p99 by a
    /// sixth over two, and one queued requests behind it (bench/RESULTS.md,
    /// thirty-eighth round).
    pub fn pool_size(&self) -> u32 {
        self.db_max_connections
            .unwrap_or_else(|| if self.is_sqlite() { cores_to_run_on().saturating_mul(2) } else { POSTGRES_POOL })
    }

    pub fn ip_limit(&self) -> Limit {
        Limit::new(self.rate_limit_ip_per_minute, self.rate_limit_ip_burst)
    }

    pub fn caller_limit(&self) -> Limit {
        Limit::new(self.rate_limit_caller_per_minute, self.rate_limit_caller_burst)
    }

    pub fn auth_limit(&self) -> Limit {
        Limit::new(self.rate_limit_auth_per_minute, self.rate_limit_auth_burst)
    }

    pub fn code_limit(&self) -> Limit {
        Limit::new(self.rate_limit_code_per_minute, self.rate_limit_code_burst)
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(!self.is_production())
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(!self.is_production())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
        assert_eq!(redact_url("sqlite://data/app.db?mode=rwc"), "sqlite://data/app.db?mode=rwc");
    }

    #[test]
    fn production_requires_a_strong_secret() {
        let mut settings = Settings { app_env: AppEnv::Production, ..Settings::default() };
        assert!(matches!(settings.validate(), Err(SettingsError::MissingProductionSecret)));
        settings.jwt_secret = Some("short".into());
        assert!(matches!(settings.validate(), Err(SettingsError::WeakSecret)));
        settings.jwt_secret = Some("x".repeat(32));
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn the_pool_suits_the_database_unless_sized() {
        assert_eq!(Settings::default().pool_size(), 2 * cores_to_run_on());
        let postgres = Settings { database_url: "postgres://app@db/app".into(), ..Settings::default() };
        assert_eq!(postgres.pool_size(), 10);
        let sized = Settings { db_max_connections: Some(3), ..postgres };
        assert_eq!(sized.pool_size(), 3);
        assert!(sized.validate().is_ok());
        let empty = Settings { db_max_connections: Some(0), ..Settings::default() };
        assert!(matches!(empty.validate(), Err(SettingsError::NoConnections)));
    }
}
