//! The database each scenario runs on (a fresh SQLite file, or a fresh
//! PostgreSQL schema), its demo data, and the server processes under test.

use std::{
    net::TcpListener,
    ops::Range,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use api::{
    auth::{Principal, TokenService},
    config::Settings,
};
use chrono::Utc;
use entity::{enums, repair_order, unit, unit_membership, user};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, Statement,
};
use serde_json::{Value, json};

use crate::Db;

pub const JWT_SECRET: &str = "bench-secret-that-is-at-least-32-bytes-long";
/// Limits no benchmark client should hit: they measure throughput, not abuse.
const UNLIMITED: &str = "1000000000";

pub struct Fixture {
    pub settings: Settings,
    db: DatabaseConnection,
    instances: usize,
    /// Keeps the PostgreSQL schema's statistics, where autovacuum does not.
    analyser: Option<tokio::task::JoinHandle<()>>,
    /// When the analyser ran its `ANALYZE`s, one after another.
    analyses: Analyses,
    _dir: tempfile::TempDir,
}

/// What a scenario needs to know of the seeded data.
pub struct Seeded {
    pub owner_id: i64,
    pub owner_token: String,
    pub supervisor_token: String,
    pub desk_token: String,
    pub unit_id: i64,
    pub building_id: i64,
    pub community_id: i64,
    /// One of the owner's orders with a technician assigned, if any were seeded.
    pub assigned_order: Option<String>,
}

/// A resident living alone in a unit of their own.
pub struct Household {
    pub unit_id: i64,
    pub resident_id: i64,
    pub token: String,
}

impl Fixture {
    /// A fresh database for `instances` API servers; more than one share
    /// events through Redis, under a key prefix of their own.
    pub async fn create(db: Db, instances: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            database_url: format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
            jwt_secret: Some(JWT_SECRET.into()),
            ..Settings::default()
        };
        if let Db::Postgres = db {
            let url = std::env::var("BENCH_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let schema = format!("bench_{:08x}", rand::random::<u32>());
            let admin = Database::connect(url.clone()).await.expect("connect to PostgreSQL");
            admin.execute_unprepared(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
            settings.database_url = url;
            settings.database_schema = Some(schema);
        }
        if instances > 1 {
            let url = std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            settings.redis_url = Some(url);
            settings.redis_key_prefix = format!("bench-{:08x}", rand::random::<u32>());
        }
        let db = api::connect_database(&settings).await.expect("database");
        let analyses = Analyses::default();
        let analyser = match &settings.database_schema {
            Some(schema) => analyse_where_autovacuum_is_off(&db, schema, analyses.clone()).await,
            None => None,
        };
        Self { settings, db, instances, analyser, analyses, _dir: dir }
    }

    /// Drops the PostgreSQL schema the run created, so runs do not pile up
    /// in the database; SQLite's file goes with its temporary directory.
    pub async fn remove(self) {
        if let Some(analyser) = &self.analyser {
            analyser.abort();
        }
        if let Some(schema) = &self.settings.database_schema
            && let Err(err) = self.db.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE")).await
        {
            eprintln!("could not drop schema {schema}: {err}");
        }
    }

    /// When the harness's own analyses ran so far, in order; one still
    /// running, until now.
    pub fn analyses(&self) -> Vec<Range<Instant>> {
        let log = self.analyses.lock().expect("analyses");
        log.finished.iter().cloned().chain(log.running.map(|began| began..Instant::now())).collect()
    }

    pub fn describe(&self) -> String {
        let database = match &self.settings.database_schema {
            Some(schema) => format!("PostgreSQL (schema {schema})"),
            None => "SQLite (WAL)".to_owned(),
        };
        match &self.settings.redis_url {
            Some(_) => format!("{database}; {} API instances through Redis", self.instances),
            None => database,
        }
    }

    /// Each API server's share of the database connections one server has
    /// by default, on PostgreSQL. Deployments size their instances' pools
    /// so: PostgreSQL on this host served S3 best with about that many in
    /// all, and two instances of ten raised its p99 by a fifth
    /// (twenty-seventh round). On SQLite, where each process reads through
    /// connections of its own, none: each takes its own default.
    fn pool_per_api(&self) -> Option<u32> {
        let instances = u32::try_from(self.instances).unwrap_or(u32::MAX);
        self.one_servers_pool().map(|pool| (pool / instances).max(1))
    }

    /// The database connections a server has by default on PostgreSQL;
    /// `None` on SQLite, where a server sizes its pool by the cores it may
    /// run on, and every server here runs on core 0 alone.
    fn one_servers_pool(&self) -> Option<u32> {
        (!self.settings.is_sqlite()).then(|| self.settings.pool_size())
    }

    /// The environment a server process with a pool of `pool` connections,
    /// or of its default, reads its settings from.
    fn env(&self, bind: &str, pool: Option<u32>) -> Vec<(String, String)> {
        let mut env = vec![
            ("BIND", bind.to_owned()),
            ("DATABASE_URL", self.settings.database_url.clone()),
            ("DATA_DIR", self.settings.data_dir.display().to_string()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("WORKERS", "1".to_owned()),
            ("LOG_LEVEL", "warn".to_owned()),
            ("ACCESS_TOKEN_TTL", "2h".to_owned()),
            ("WS_MAX_CONNECTIONS_PER_USER", UNLIMITED.to_owned()),
        ];
        if let Some(pool) = pool {
            env.push(("DB_MAX_CONNECTIONS", pool.to_string()));
        }
        if let Some(schema) = &self.settings.database_schema {
            env.push(("DATABASE_SCHEMA", schema.clone()));
        }
        if let Some(redis) = &self.settings.redis_url {
            env.push(("REDIS_URL", redis.clone()));
            env.push(("REDIS_KEY_PREFIX", self.settings.redis_key_prefix.clone()));
        }
        let mut env: Vec<(String, String)> = env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
        for limit in ["IP", "CALLER", "AUTH", "CODE"] {
            env.push((format!("RATE_LIMIT_{limit}_PER_MINUTE"), UNLIMITED.to_owned()));
            env.push((format!("RATE_LIMIT_{limit}_BURST"), UNLIMITED.to_owned()));
        }
        env
    }

    /// Seeds the demo community (once) and `orders` repair orders by the
    /// owner of two units, every other one assigned to the technician.
    pub async fn seed_orders(&self, server: &Child, orders: usize) -> Seeded {
        let community = api::demo::seed_community(&self.db, api::demo::DEMO_COMMUNITY, "138").await.expect("seed");
        let owner = community.account("owner");
        let http = reqwest::Client::new();
        let token = |phone: String| {
            let http = http.clone();
            let url = server.url("/graphql");
            async move {
                let body: Value = http
                    .post(url)
                    .json(&json!({
                        "query": "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken } }",
                        "variables": { "phone": phone, "password": api::demo::DEMO_PASSWORD },
                    }))
                    .send()
                    .await
                    .expect("login")
                    .json()
                    .await
                    .expect("login body");
                body["data"]["login"]["accessToken"].as_str().expect("access token").to_owned()
            }
        };
        let owner_token = token(owner.phone.clone()).await;
        let supervisor_token = token(community.account("supervisor").phone.clone()).await;
        let desk_token = token(community.account("front_desk").phone.clone()).await;
        let technician = format!("usr_{}", community.account("technician").user_id);
        let units = [community.unit("1-101"), community.unit("2-201")];
        let mut assigned_order = None;
        for n in 0..orders {
            let unit = format!("unit_{}", units[n % 2].id);
            let submitted = call(
                &http,
                &server.url("/graphql"),
                &owner_token,
                "mutation($unit: ID!, $d: String!) { submitRepairOrder(input: {unitId: $unit, category: PLUMBING, description: $d}) { repairOrder { id } } }",
                json!({ "unit": unit, "d": format!("第 {n} 号报修：厨房水龙头漏水") }),
            )
            .await;
            if n % 2 == 0 {
                let order = submitted["submitRepairOrder"]["repairOrder"]["id"].clone();
                call(
                    &http,
                    &server.url("/graphql"),
                    &supervisor_token,
                    "mutation($order: ID!, $tech: ID!) { assignRepairOrder(input: {repairOrderId: $order, technicianId: $tech}) { repairOrder { id } } }",
                    json!({ "order": order, "tech": technician }),
                )
                .await;
                assigned_order = order.as_str().map(str::to_owned);
            }
        }
        Seeded {
            owner_id: owner.user_id,
            owner_token,
            supervisor_token,
            desk_token,
            unit_id: units[0].id,
            building_id: units[0].building_id,
            community_id: community.community.id,
            assigned_order,
        }
    }

    /// `count` households in the seeded unit's building, written directly
    /// (thousands of logins would take longer than the runs).
    pub async fn seed_households(&self, seeded: &Seeded, count: usize) -> Vec<Household> {
        let now = Utc::now();
        let tokens = TokenService::new(JWT_SECRET.as_bytes(), &self.settings);
        let mut households = Vec::with_capacity(count);
        for chunk_start in (0..count).step_by(500) {
            let range = chunk_start..(chunk_start + 500).min(count);
            let units: Vec<_> = range
                .clone()
                .map(|n| unit::ActiveModel {
                    building_id: Set(seeded.building_id),
                    community_id: Set(seeded.community_id),
                    number: Set(format!("H-{n:05}")),
                    floor: Set(None),
                    contacts_version: Set(0),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            let users: Vec<_> = range
                .clone()
                .map(|n| user::ActiveModel {
                    phone: Set(format!("1770{n:07}")),
                    name: Set(format!("住户{n}")),
                    password_hash: Set(None),
                    role: Set(enums::Role::Resident),
                    position: Set(None),
                    community_id: Set(None),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            let units = unit::Entity::insert_many(units).exec_with_returning(&self.db).await.expect("units");
            let users = user::Entity::insert_many(users).exec_with_returning(&self.db).await.expect("users");
            let memberships: Vec<_> = units
                .iter()
                .zip(&users)
                .map(|(unit, user)| unit_membership::ActiveModel {
                    user_id: Set(user.id),
                    unit_id: Set(unit.id),
                    relation: Set(enums::UnitRelation::Owner),
                    moved_in_on: Set(now.date_naive()),
                    moved_out_on: Set(None),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            unit_membership::Entity::insert_many(memberships).exec(&self.db).await.expect("memberships");
            for (unit, user) in units.iter().zip(&users) {
                let principal =
                    Principal { user_id: user.id, role: enums::Role::Resident, position: None, community_id: None };
                let token = tokens.issue(&principal).expect("token").token;
                households.push(Household { unit_id: unit.id, resident_id: user.id, token });
            }
        }
        households
    }

    pub async fn count_orders(&self) -> u64 {
        repair_order::Entity::find().count(&self.db).await.expect("count orders")
    }

    /// SQL statements the API runs for `query` at each page size, measured on
    /// an in-process server whose connection counts them.
    pub async fn statements_per_page(&self, seeded: &Seeded, query: &str, sizes: &[usize]) -> Vec<u64> {
        let counted = Arc::new(AtomicU64::new(0));
        let mut db = api::connect_database(&self.settings).await.expect("database");
        let counter = counted.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        // Counting statements, not limits: a page of 100 with its nested
        // fields costs more than the default complexity allows.
        let settings = Settings {
            bind: "127.0.0.1:0".into(),
            workers: 1,
            max_query_complexity: 100_000,
            event_poll_interval: Duration::from_secs(3600),
            ..self.settings.clone()
        };
        let app = api::app_context(db, settings).await.expect("app");
        let running = api::serve(app).expect("bind");
        let url = format!("http://{}/graphql", running.addr);
        let handle = running.server.handle();
        tokio::spawn(running.server);
        let http = reqwest::Client::new();
        let mut counts = Vec::new();
        for first in sizes {
            let before = counted.load(Ordering::Relaxed);
            call(&http, &url, &seeded.owner_token, query, json!({ "first": first })).await;
            counts.push(counted.load(Ordering::Relaxed) - before);
        }
        handle.stop(false).await;
        counts
    }
}

type Analyses = Arc<Mutex<AnalysesLog>>;

#[derive(Default)]
struct AnalysesLog {
    finished: Vec<Range<Instant>>,
    running: Option<Instant>,
}

/// How often the harness looks for tables that autovacuum would analyse.
const ANALYSE_EVERY: Duration = Duration::from_secs(2);

/// A production PostgreSQL analyses a table once a tenth of it has changed
/// (autovacuum's defaults); without statistics the planner reads a
/// resident's orders by scanning the whole unit. Where autovacuum is off,
/// as on some benchmark hosts, the harness does that analysis itself, on
/// autovacuum's own thresholds, so that the API is measured against the
/// plans it gets in production.
async fn analyse_where_autovacuum_is_off(
    db: &DatabaseConnection,
    schema: &str,
    analyses: Analyses,
) -> Option<tokio::task::JoinHandle<()>> {
    let setting = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW autovacuum"))
        .await
        .expect("read autovacuum's setting")
        .and_then(|row| row.try_get_by_index::<String>(0).ok());
    if setting.as_deref() != Some("off") {
        return None;
    }
    println!("autovacuum is off here: the harness analyses the bench schema's tables on its thresholds");
    let db = db.clone();
    let due = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = $1 AND s.n_mod_since_analyze > \
         current_setting('autovacuum_analyze_threshold')::float8 \
         + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)",
        [schema.into()],
    );
    let schema = schema.to_owned();
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(ANALYSE_EVERY).await;
            let tables = match db.query_all_raw(due.clone()).await {
                Ok(rows) => rows.into_iter().filter_map(|row| row.try_get_by_index::<String>(0).ok()),
                Err(err) => {
                    eprintln!("could not read the bench schema's statistics: {err}");
                    return;
                }
            };
            for table in tables {
                analyses.lock().expect("analyses").running = Some(Instant::now());
                if let Err(err) = db.execute_unprepared(&format!("ANALYZE \"{schema}\".\"{table}\"")).await {
                    eprintln!("could not analyse {table}: {err}");
                }
                let mut log = analyses.lock().expect("analyses");
                if let Some(began) = log.running.take() {
                    log.finished.push(began..Instant::now());
                }
            }
        }
    }))
}

/// Posts an operation and returns its `data`; panics on errors.
pub async fn call(http: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Value {
    try_call(http, url, token, query, variables).await.unwrap_or_else(|errors| panic!("{errors}"))
}

/// The operation's `data`, or its `errors` when the API refused it.
pub async fn try_call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, Value> {
    let body: Value = http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    match body.get("errors") {
        Some(errors) => Err(errors.clone()),
        None => Ok(body["data"].clone()),
    }
}

/// A server process under test, pinned to core 0, killed when dropped.
pub struct Child {
    process: std::process::Child,
    addr: String,
}

impl Child {
    pub async fn api(fixture: &Fixture) -> Self {
        Self::start(fixture, &["serve-api"], "/healthz", fixture.pool_per_api()).await
    }

    /// As many API servers as the fixture was made for.
    pub async fn apis(fixture: &Fixture) -> Vec<Self> {
        let mut servers = Vec::with_capacity(fixture.instances);
        for _ in 0..fixture.instances {
            servers.push(Self::api(fixture).await);
        }
        servers
    }

    pub async fn baselines(fixture: &Fixture) -> Self {
        Self::start(fixture, &["serve-baselines"], "/b0", fixture.one_servers_pool()).await
    }

    async fn start(fixture: &Fixture, args: &[&str], ready_path: &str, pool: Option<u32>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let exe = std::env::current_exe().expect("own executable");
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]);
        // A profiler to run the server under, e.g. `heaptrack -o /tmp/api`.
        if let Ok(wrapper) = std::env::var("BENCH_SERVER_WRAPPER") {
            command.args(wrapper.split_whitespace());
        }
        command.arg(exe).args(args);
        if args == ["serve-baselines"] {
            command.arg(&addr);
        }
        // A group of its own, so that whatever a profiler left running can be
        // killed with it; and killed with this process, whose Ctrl-C it no
        // longer shares.
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let process = command
            .envs(fixture.env(&addr, pool))
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server (is taskset installed?)");
        let child = Self { process, addr };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(child.url(ready_path)).send().await.is_ok_and(|r| r.status().is_success()) {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server on {} did not come up", child.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for Child {
    /// Stops the server with SIGTERM, waits for its group to finish (a
    /// profiler wrapping it then writes its report), and kills whatever is
    /// left of the group after a grace period.
    fn drop(&mut self) {
        let group = self.process.id() as libc::pid_t;
        for server in servers_in_group(group) {
            // SAFETY: kill only sends a signal, to a process of this child's group.
            unsafe { libc::kill(server, libc::SIGTERM) };
        }
        // A profiler wrapping the server needs time to write its report.
        let grace = if std::env::var_os("BENCH_SERVER_WRAPPER").is_some() { 300 } else { 5 };
        let deadline = std::time::Instant::now() + Duration::from_secs(grace);
        while std::time::Instant::now() < deadline {
            if self.process.try_wait().is_ok_and(|status| status.is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever is left of the group goes.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.process.wait();
    }
}

/// The server processes (this executable) in process group `group`. Only
/// they are asked to stop: a wrapping profiler's own processes (heaptrack's
/// interpreter and compressor) must live on to write the report.
fn servers_in_group(group: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(own_exe) = std::env::current_exe() else { return vec![group] };
    let Ok(processes) = std::fs::read_dir("/proc") else { return vec![group] };
    processes
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            // SAFETY: getpgid only reads the process table.
            let pid_group = unsafe { libc::getpgid(*pid) };
            pid_group == group && runs_server(*pid, &own_exe)
        })
        .collect()
}

/// Whether process `pid` runs this executable: itself, or under valgrind,
/// whose tool is the process's executable and this one only its argument.
fn runs_server(pid: libc::pid_t, own_exe: &std::path::Path) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return false };
    if exe == own_exe {
        return true;
    }
    let under_valgrind = exe.components().any(|part| part.as_os_str() == "valgrind");
    under_valgrind
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            cmdline.split(|byte| *byte == 0).any(|arg| arg == own_exe.as_os_str().as_encoded_bytes())
        })
}

pub fn pin_this_process_to_core(core: usize) {
    let pid = std::process::id().to_string();
    let pinned =
        Command::new("taskset").args(["-a", "-p", "-c", &core.to_string(), &pid]).stdout(Stdio::null()).status();
    if !pinned.is_ok_and(|status| status.success()) {
        eprintln!("taskset unavailable: the load generator is not pinned");
    }
}

/// 20,000 WebSockets need as many descriptors on each side: raise the limit
/// as far as this process may (children inherit it).
pub fn raise_file_limit() {
    let wanted = libc::rlimit { rlim_cur: 200_000, rlim_max: 200_000 };
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return;
    }
    let mut limit = file_limit();
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    eprintln!("open files limited to {} per process; larger connection counts fail", open_file_limit());
}

/// How many files this process may hold open.
pub fn open_file_limit() -> u64 {
    file_limit().rlim_cur
}

fn file_limit() -> libc::rlimit {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit
}
