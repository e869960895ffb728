//! Test harness: a real server on a random port over a fresh database (a temp
//! SQLite file, or a fresh PostgreSQL schema when TEST_DATABASE_URL is set),
//! seeded with the demo community and a second, unrelated community.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use api::{
    config::Settings,
    demo::{self, SeededCommunity},
};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

mod subscriber;
pub use subscriber::{EVENT_WAIT, QUIET, SUBSCRIPTION_ID, Subscriber, seq};

/// The secret test servers sign with, so tests can forge tokens.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

pub struct TestApp {
    pub addr: SocketAddr,
    /// What the server's handlers share, for running background jobs on demand.
    pub context: std::sync::Arc<api::AppContext>,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    pub settings: Settings,
    /// The demo community (phones 138…).
    pub home: SeededCommunity,
    /// Another community of the same company (phones 139…), out of everyone's scope in `home`.
    pub other: SeededCommunity,
    /// SQL statements the server has run so far (all instances sharing this database).
    pub queries: Arc<AtomicU64>,
    _cleanup: Option<Arc<PgSchema>>,
    _data_dir: Arc<tempfile::TempDir>,
}

struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs outside any async context we could borrow, so clean up on a
        // thread of our own; a failure only leaves an unused schema behind.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(db) = Database::connect(url).await {
                    let _ = db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

/// A rate limit no test reaches by accident.
const UNLIMITED: u32 = 1_000_000;

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server whose settings `customise` may change first.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: data_dir.path().to_path_buf(),
        database_url: format!("sqlite://{}/app.db?mode=rwc", data_dir.path().display()),
        jwt_secret: Some(TEST_JWT_SECRET.into()),
        workers: 1,
        db_max_connections: Some(5),
        // Every test server shares 127.0.0.1 (and Redis, in CI); tests of the
        // rate limits set their own.
        rate_limit_ip_per_minute: UNLIMITED,
        rate_limit_ip_burst: UNLIMITED,
        rate_limit_caller_per_minute: UNLIMITED,
        rate_limit_caller_burst: UNLIMITED,
        rate_limit_auth_per_minute: UNLIMITED,
        rate_limit_auth_burst: UNLIMITED,
        rate_limit_code_per_minute: UNLIMITED,
        rate_limit_code_burst: UNLIMITED,
        redis_key_prefix: format!("test-{}", hex_id()),
        ..Settings::default()
    };
    let mut cleanup = None;
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        let name = format!("t_{}", hex_id());
        let admin = Database::connect(url.clone()).await.expect("connect to TEST_DATABASE_URL");
        admin.execute_unprepared(&format!("CREATE SCHEMA {name}")).await.expect("create test schema");
        settings.database_url = url.clone();
        settings.database_schema = Some(name.clone());
        cleanup = Some(Arc::new(PgSchema { url, name }));
    }
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        settings.redis_url = Some(url);
    }
    customise(&mut settings);

    let queries = Arc::new(AtomicU64::new(0));
    let db = counting_connection(&settings, &queries).await;
    let home = demo::seed_community(&db, demo::DEMO_COMMUNITY, "138").await.expect("seed home community");
    let other = demo::seed_community(&db, "江畔名苑", "139").await.expect("seed other community");
    let context = api::app_context(db.clone(), settings.clone()).await.expect("app context");
    let running = api::serve(context.clone()).expect("bind");
    tokio::spawn(running.server);
    TestApp {
        queries,
        addr: running.addr,
        context,
        http: reqwest::Client::new(),
        db,
        settings,
        home,
        other,
        _cleanup: cleanup,
        _data_dir: Arc::new(data_dir),
    }
}

async fn counting_connection(settings: &Settings, queries: &Arc<AtomicU64>) -> DatabaseConnection {
    let mut db = api::connect_database(settings).await.expect("database");
    let counter = queries.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    db
}

fn hex_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl TestApp {
    /// A second server instance on the same database (and Redis, when
    /// configured), as when several instances run behind a load balancer.
    /// Its statements are counted apart from this instance's.
    pub async fn peer(&self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        customise(&mut settings);
        let queries = Arc::new(AtomicU64::new(0));
        let db = counting_connection(&settings, &queries).await;
        let context = api::app_context(db.clone(), settings.clone()).await.expect("app context");
        let running = api::serve(context.clone()).expect("bind");
        tokio::spawn(running.server);
        TestApp {
            addr: running.addr,
            context,
            http: reqwest::Client::new(),
            db,
            settings,
            home: self.home.clone(),
            other: self.other.clone(),
            queries,
            _cleanup: self._cleanup.clone(),
            _data_dir: self._data_dir.clone(),
        }
    }

    /// Returns once every event committed so far is in the outbox, which
    /// PostgreSQL fills just after the writers' commits.
    pub async fn settle_events(&self) {
        self.context.events.position_now().await.expect("number the committed events");
    }

    /// How many SQL statements the server ran while `work` ran.
    pub async fn count_queries<F: std::future::Future>(&self, work: F) -> (F::Output, u64) {
        let before = self.queries.load(Ordering::SeqCst);
        let output = work.await;
        (output, self.queries.load(Ordering::SeqCst) - before)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs one GraphQL operation and returns the whole response body.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self.http.post(self.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200, "GraphQL answers 200");
        response.json().await.expect("JSON body")
    }

    /// Like `graphql`, but asserts success and returns `data`.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Logs in with phone and the demo password; returns the whole payload.
    pub async fn login_phone(&self, phone: &str) -> Value {
        let data = self
            .data(
                None,
                "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken refreshToken accessTokenExpiresAt viewer { id name } } }",
                json!({ "phone": phone, "password": demo::DEMO_PASSWORD }),
            )
            .await;
        data["login"].clone()
    }

    /// An access token for a demo account of the home community, by key
    /// ("owner", "butler", "front_desk", …).
    pub async fn token(&self, key: &str) -> String {
        self.token_in(&self.home, key).await
    }

    pub async fn token_in(&self, community: &SeededCommunity, key: &str) -> String {
        let login = self.login_phone(&community.account(key).phone).await;
        login["accessToken"].as_str().expect("access token").to_owned()
    }

    /// Opens a graphql-transport-ws connection (not yet initialised).
    pub async fn websocket(&self) -> WsClient {
        self.websocket_with_protocol("graphql-transport-ws").await
    }

    /// Opens a WebSocket offering the given subprotocol(s).
    pub async fn websocket_with_protocol(&self, protocol: &'static str) -> WsClient {
        let mut request = format!("ws://{}/graphql", self.addr).into_client_request().expect("ws request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
        WsClient { stream }
    }
}

/// `errors[0].extensions.code` of a response, if any.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// `errors[0].extensions.field` of a response, if any.
pub fn error_field(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["field"].as_str()
}

pub fn id_of(kind: &str, id: i64) -> String {
    format!("{kind}_{id}")
}

/// The row number in an id of `kind` such as `ro_12`; the inverse of [`id_of`].
pub fn number_of(kind: &str, id: &str) -> i64 {
    id.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an id of kind {kind}: {id}"))
}

/// A graphql-transport-ws client speaking JSON messages.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent next.
#[derive(Debug)]
pub enum WsEvent {
    Message(Value),
    Closed(Option<u16>),
}

impl WsClient {
    /// Sends a raw frame, for protocol violations.
    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("ws send");
    }

    pub async fn send(&mut self, message: Value) {
        self.stream.send(Message::Text(message.to_string().into())).await.expect("ws send");
    }

    /// The next message or close, skipping pings; panics after `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> WsEvent {
        loop {
            let next = tokio::time::timeout(timeout, self.stream.next()).await.expect("ws event within timeout");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return WsEvent::Message(serde_json::from_str(&text).expect("JSON message"));
                }
                Some(Ok(Message::Close(frame))) => return WsEvent::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsEvent::Closed(None),
            }
        }
    }

    pub async fn next_message(&mut self) -> Value {
        match self.next_event(Duration::from_secs(5)).await {
            WsEvent::Message(message) => message,
            WsEvent::Closed(code) => panic!("socket closed ({code:?}) while a message was expected"),
        }
    }

    /// Sends `connection_init` with the token and returns the server's reply.
    pub async fn init(&mut self, token: &str) -> WsEvent {
        self.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        self.next_event(Duration::from_secs(5)).await
    }
}
