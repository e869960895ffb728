//! The property-management customer-service backend: one GraphQL schema over
//! HTTP and WebSocket for residents, butlers, staff and integrators.

pub mod allocator;
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
pub mod statements;
pub mod telemetry;
pub mod validate;

use std::{net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use actix_codec::Framed;
use actix_http::{HttpService, Request, h1};
use actix_service::{ServiceFactory, fn_factory, fn_service, map_config};
use actix_web::{App, dev::AppConfig, web};
use futures_util::FutureExt;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tokio::net::TcpStream;
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
/// A pooled connection idle this long is pinged before it is handed out, as
/// the server, a proxy or a firewall may have dropped it meanwhile. One in use
/// is not: pinging at every checkout cost each statement a second round trip
/// (S3 in `bench/RESULTS.md`). A connection that broke while in use fails its
/// statement with SERVICE_UNAVAILABLE and is discarded when it is returned.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);
/// Connections waiting to be accepted, as `HttpServer` has by default.
const LISTEN_BACKLOG: i32 = 1024;

/// Connects to the database named by the settings and brings its schema up to date.
pub async fn connect_database(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    if settings.is_sqlite() {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|err| DbErr::Custom(format!("cannot create the data directory: {err}")))?;
    }
    let mut options = connect_options(settings, false);
    options.max_connections(settings.pool_size()).acquire_timeout(POOL_ACQUIRE_TIMEOUT);
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// SQLite's writers' own connection (see `db::WriteQueue`): one, held by the
/// transaction they write into in turn. Taking it back from the pool after a
/// commit may wait as long as an operation may run, never less than the pool's
/// timeout, which also bounds opening the connection at start: a short
/// EXECUTION_TIMEOUT must not keep the server from starting.
async fn connect_sqlite_writer(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let mut options = connect_options(settings, true);
    let wait = settings.execution_timeout.max(POOL_ACQUIRE_TIMEOUT);
    options.min_connections(1).max_connections(1).acquire_timeout(wait);
    Database::connect(options).await
}

/// `sqlite_writer`: the connection is SQLite's writers' own, which waits for
/// another connection's lock briefly (see `db::WRITER_LOCK_WAIT`) where the
/// pool's connections wait [`db::LOCK_WAIT`] before answering "database is locked".
fn connect_options(settings: &Settings, sqlite_writer: bool) -> ConnectOptions {
    let sqlite_lock_wait = if sqlite_writer { db::WRITER_LOCK_WAIT } else { db::LOCK_WAIT };
    let mut options = ConnectOptions::new(settings.database_url.clone());
    options
        .sqlx_logging(false)
        .test_before_acquire_if_idle_for(PING_AFTER_IDLE)
        // SQLite: readers do not block the writer.
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = opts
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(sqlite_lock_wait)
                .foreign_keys(true);
            // Each writer's savepoint keeps the pages it changes in a journal
            // of its own, for its rollback. In a temporary file, as by
            // default, that took a system call a page (S3 in
            // bench/RESULTS.md); it lasts one writer's turn, so memory holds it.
            // Checkpoints are left to `db::checkpoints`. A writer's first
            // statement comes in three forms (see `db::Savepoint`), each
            // prepared and kept apart: room for three times the default.
            if sqlite_writer {
                opts.pragma("temp_store", "memory").pragma("wal_autocheckpoint", "0").statement_cache_capacity(300)
            } else {
                opts
            }
        });
    if let Some(schema) = &settings.database_schema {
        options.set_schema_search_path(schema.clone());
    }
    options
}

/// A Redis client whose connections send each command at once. With Nagle's
/// algorithm, a command written while an earlier one is unacknowledged, as
/// concurrent requests' commands are on one multiplexed connection, waits
/// for the server's delayed ACK: up to 40 ms on Linux.
pub(crate) fn redis_client(url: &str) -> redis::RedisResult<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp))
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
        sea_orm::DatabaseBackend::Sqlite => {
            db::WriteQueue::sqlite(connect_sqlite_writer(&settings).await?, db.get_sqlite_connection_pool().clone())
        }
        _ => db::WriteQueue::RowLocks(db.clone()),
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
///
/// Assembled from actix-http's parts rather than `HttpServer`, which has no
/// place for an upgrade service: WebSocket upgrades are handed over with their
/// connection (see `http::answer_upgrade`), so that an idle socket does not
/// keep an HTTP/1 dispatcher and its buffers.
pub fn serve(app: Arc<AppContext>) -> std::io::Result<Running> {
    let schema = graphql::build_schema(app.clone());
    let workers = app.settings.workers;
    let listeners = bind_listeners(&app.settings.bind)?;
    let addr = listeners.first().ok_or_else(|| std::io::Error::other("no address bound"))?.local_addr()?;
    let routes = move || {
        let app = App::new()
            .wrap(TracingLogger::<http::RequestSpan>::new())
            .app_data(web::Data::new(schema.clone()))
            .app_data(web::Data::new(app.clone()))
            .configure(http::routes);
        // The app reads no host or address from its config: requests carry both.
        map_config(app, |_| AppConfig::default())
    };
    let mut builder = actix_server::Server::build()
        // The process handles SIGTERM itself (see main), to close WebSockets first.
        .disable_signals()
        .shutdown_timeout(10);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    for listener in listeners {
        let local_addr = listener.local_addr()?;
        let routes = routes.clone();
        let stopping = builder.graceful_shutdown_signal();
        builder = builder.listen("api", listener, move || {
            let stopping = stopping.clone();
            let upgrade_routes = routes.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                // As `HttpServer`: a client whose body is refused unread gets
                // a second to take the answer before its connection closes.
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local_addr)
                .upgrade(fn_factory(move || {
                    let routes = upgrade_routes();
                    async move {
                        let routes = Rc::new(routes.new_service(()).await?);
                        Ok::<_, ()>(fn_service(
                            move |(request, connection): (Request, Framed<TcpStream, h1::Codec>)| {
                                http::answer_upgrade(routes.clone(), request, connection).boxed_local()
                            },
                        ))
                    }
                }))
                .finish(routes())
                .tcp()
        })?;
    }
    Ok(Running { addr, server: builder.run() })
}

/// Listens on every address `bind` resolves to, as `HttpServer` would.
fn bind_listeners(bind: &str) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::new();
    for addr in std::net::ToSocketAddrs::to_socket_addrs(bind)? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        listeners.push(socket.into());
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_connections_send_commands_without_waiting_for_acks() {
        let client = super::redis_client("redis://127.0.0.1:6379/0").expect("a valid URL");
        assert!(client.get_connection_info().tcp_settings().nodelay());
    }

    #[test]
    fn pooled_connections_are_pinged_only_after_sitting_idle() {
        let options = super::connect_options(&super::config::Settings::default(), false);
        assert!(!options.get_test_before_acquire(), "no ping at every checkout");
        assert_eq!(options.get_test_before_acquire_if_idle_for(), Some(super::PING_AFTER_IDLE));
    }

    #[tokio::test]
    async fn only_sqlites_writer_connection_keeps_scratch_data_in_memory_and_runs_no_checkpoint() {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let dir = tempfile::tempdir().expect("temporary directory");
        let settings = super::config::Settings {
            database_url: format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display()),
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let pragma = async |db: &sea_orm::DatabaseConnection, name: &str| -> i64 {
            let pragma = Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"));
            let row = db.query_one_raw(pragma).await.expect("pragma").expect("a row");
            row.try_get_by_index(0).expect("a number")
        };
        const TEMP_STORE_DEFAULT: i64 = 0;
        const TEMP_STORE_MEMORY: i64 = 2;
        let pool = super::connect_database(&settings).await.expect("pool");
        assert_eq!(pragma(&pool, "temp_store").await, TEMP_STORE_DEFAULT);
        assert_eq!(pragma(&pool, "wal_autocheckpoint").await, 1000, "SQLite's default");
        let writer = super::connect_sqlite_writer(&settings).await.expect("writer");
        assert_eq!(pragma(&writer, "temp_store").await, TEMP_STORE_MEMORY);
        assert_eq!(pragma(&writer, "wal_autocheckpoint").await, 0, "left to db::checkpoints");
    }
}
