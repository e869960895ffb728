//! The property-management customer-service backend: one GraphQL schema over
//! HTTP and WebSocket for residents, butlers, staff and integrators.

pub mod auth;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod integrations;
pub mod jobs;
pub mod parcel;
pub mod property;
pub mod ratelimit;
pub mod repair;
pub mod rows;
pub mod telemetry;
pub mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, web};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tracing_actix_web::TracingLogger;

use crate::{auth::TokenService, config::Settings, events::EventBus};

/// What every request handler needs, shared by all workers.
pub struct AppContext {
    pub db: DatabaseConnection,
    pub settings: Settings,
    pub tokens: TokenService,
    /// Keys the hashes that stand in for phone numbers in the login-attempt
    /// log, and the signatures of media URLs.
    pub hashing_key: Vec<u8>,
    pub events: EventBus,
    pub limiter: ratelimit::RateLimiter,
    pub open_sockets: http::OpenSockets,
    pub writers: db::WriteQueue,
    /// Parsed documents, and the checks every request passes before it runs.
    pub documents: graphql::documents::Documents,
    /// Flips to true when the process is asked to stop; open WebSockets then
    /// close with 1001 (going away) so apps reconnect to another instance.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
}

impl AppContext {
    pub fn begin_shutdown(&self) {
        self.shutting_down.send_replace(true);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read or create the JWT secret: {0}")]
    Secret(#[from] std::io::Error),
    #[error(transparent)]
    Events(#[from] events::StartError),
    #[error("cannot open the database's writer connection: {0}")]
    Writer(#[from] DbErr),
}

/// How long a request waits for a pooled connection before it is refused
/// with SERVICE_UNAVAILABLE; opening a connection is bounded by it too.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the database named by the settings and brings its schema up to date.
pub async fn connect_database(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|err| DbErr::Custom(format!("cannot create the data directory: {err}")))?;
    }
    let mut options = connect_options(settings);
    options.max_connections(settings.db_max_connections).acquire_timeout(POOL_ACQUIRE_TIMEOUT);
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// SQLite's writers' own connection (see `db::WriteQueue`): one, which they
/// wait for in turn, for as long as an operation may run. Never less than the
/// pool's timeout, which also bounds opening the connection at start: a short
/// EXECUTION_TIMEOUT must not keep the server from starting.
async fn connect_sqlite_writer(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let mut options = connect_options(settings);
    let wait = settings.execution_timeout.max(POOL_ACQUIRE_TIMEOUT);
    options.min_connections(1).max_connections(1).acquire_timeout(wait);
    Database::connect(options).await
}

fn connect_options(settings: &Settings) -> ConnectOptions {
    let mut options = ConnectOptions::new(settings.database_url.clone());
    options
        .sqlx_logging(false)
        // SQLite: readers do not block the writer, and a writer waits its turn
        // instead of failing with "database is locked".
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    if let Some(schema) = &settings.database_schema {
        options.set_schema_search_path(schema.clone());
    }
    options
}

/// Everything the handlers share, with the event relay started on the
/// current runtime.
pub async fn app_context(db: DatabaseConnection, settings: Settings) -> Result<Arc<AppContext>, StartError> {
    let secret = auth::jwt::load_or_create_secret(&settings)?;
    let tokens = TokenService::new(&secret, &settings);
    let events = EventBus::start(
        db.clone(),
        settings.event_buffer,
        settings.event_poll_interval,
        settings.redis_url.as_deref(),
        &settings.redis_key_prefix,
    )
    .await?;
    let limiter = ratelimit::RateLimiter::new(&settings.redis_key_prefix, settings.redis_url.as_deref())
        .map_err(events::StartError::Redis)?;
    let (shutting_down, _) = tokio::sync::watch::channel(false);
    let documents = graphql::documents::Documents::new(settings.max_aliases);
    let writers = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => db::WriteQueue::Sqlite(connect_sqlite_writer(&settings).await?),
        _ => db::WriteQueue::RowLocks,
    };
    Ok(Arc::new(AppContext {
        db,
        settings,
        tokens,
        hashing_key: secret,
        events,
        limiter,
        open_sockets: http::OpenSockets::default(),
        writers,
        documents,
        shutting_down,
    }))
}

/// A bound, not yet awaited, HTTP server.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
}

/// Binds the HTTP server (port 0 picks a free port) with all routes.
pub fn serve(app: Arc<AppContext>) -> std::io::Result<Running> {
    let schema = graphql::build_schema(app.clone());
    let bind = app.settings.bind.clone();
    let workers = app.settings.workers;
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::<http::RequestSpan>::new())
            .app_data(web::Data::new(schema.clone()))
            .app_data(web::Data::new(app.clone()))
            .configure(http::routes)
    })
    // The process handles SIGTERM itself (see main), to close WebSockets first.
    .disable_signals()
    .shutdown_timeout(10);
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = server.bind(&bind)?;
    let addr = server.addrs().first().copied().ok_or_else(|| std::io::Error::other("no address bound"))?;
    Ok(Running { addr, server: server.run() })
}
