//! Benchmarks of the API against raw baselines on the same machine and
//! database: `cargo run --release -p bench -- <scenario> [--db postgres]`.
//! The server under test (the API, or the baselines) runs as a child process
//! pinned to core 0; this load generator pins itself to core 1. Results and
//! how to read them: bench/RESULTS.md.

mod baseline;
mod fanout;
mod fixture;
mod load;
mod sockets;

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand, ValueEnum};

// The same allocator as the server binary, for the API and the baselines alike.
#[global_allocator]
static ALLOCATOR: api::allocator::Mimalloc = api::allocator::Mimalloc;
use serde_json::json;

use crate::{
    fixture::{Child, Fixture, Household},
    load::{Stats, ms},
};

#[derive(Parser)]
#[command(about = "Measures the API against raw baselines")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The database both the API and the baselines use.
    #[arg(long, value_enum, default_value = "sqlite", global = true)]
    db: Db,
    /// Seconds measured per run, after the warm-up.
    #[arg(long, default_value_t = 10, global = true)]
    seconds: u64,
    #[arg(long, default_value_t = 2, global = true)]
    warmup: u64,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32, global = true)]
    clients: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Scenario {
    /// S1: `{ __typename }` over HTTP against B0, a plain JSON handler.
    S1,
    /// S2: a resident's `repairOrders(first: 20)` with unit, building and
    /// assignee against B1, the same page from one SQL statement.
    S2 {
        /// Also measure where S2's time goes: the page with its ids only,
        /// and with 200 more fields for the GraphQL engine to resolve; and
        /// one order read alone with the same related rows, by one client.
        #[arg(long)]
        breakdown: bool,
    },
    /// S3: `submitRepairOrder` against B2, the raw INSERTs, counting every
    /// event at a subscriber.
    S3 {
        /// API instances sharing the database; more than one joins them
        /// through Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379).
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Households submitting, each client for one of them: 1 is the
        /// seeded owner for one unit from every client; more are residents
        /// alone in units of their own, and the counting subscriber is the
        /// community's supervisor, a recipient of every order's event.
        #[arg(long, default_value_t = 1)]
        households: usize,
    },
    /// S4: memory per idle subscribed WebSocket (RSS delta of the server).
    S4 {
        /// Connection counts to measure at, in ascending order.
        #[arg(long, value_delimiter = ',', default_value = "10000,19000")]
        connections: Vec<usize>,
    },
    /// S5: publish → deliver latency of one-recipient parcel events to
    /// thousands of subscribed phones.
    S5 {
        #[arg(long, default_value_t = 19000)]
        subscribers: usize,
        /// Parcel registrations per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// API instances sharing the database, joined through Redis when more than one.
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Processes of their own to hold the phones, beside the load
        /// generator that registers the parcels; 0 holds them in the load
        /// generator when the open-file limit allows.
        #[arg(long, default_value_t = 0)]
        phone_processes: usize,
    },
    /// Holds a share of S5's phones in a process of its own, told the tokens
    /// on its input (used by S5 past one process's open-file limit).
    #[command(hide = true)]
    Phones {
        /// Phone number of the first token, which places each phone.
        #[arg(long)]
        first: usize,
        /// The API instances' addresses, comma-separated.
        #[arg(long, value_delimiter = ',')]
        servers: Vec<String>,
    },
    /// Runs the API server from the environment (used by the scenarios).
    #[command(hide = true)]
    ServeApi,
    /// Runs the baselines' server (used by the scenarios).
    #[command(hide = true)]
    ServeBaselines { bind: String },
}

fn main() {
    // SQLite's allocations too, as the server binary routes them.
    // SAFETY: the process has no other thread yet, and has not used SQLite.
    unsafe { api::allocator::route_sqlite_allocations() };
    let cli = Cli::parse();
    match &cli.scenario {
        Scenario::ServeApi => serve_api(),
        Scenario::ServeBaselines { bind } => serve_baselines(bind),
        Scenario::Phones { first, servers } => {
            fixture::raise_file_limit();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(fanout::phones(servers, *first));
        }
        _ => {
            fixture::pin_this_process_to_core(1);
            fixture::raise_file_limit();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(measure(&cli));
        }
    }
}

fn serve_api() {
    actix_web::rt::System::new().block_on(async {
        let settings = api::config::Settings::from_env().expect("settings");
        let db = api::connect_database(&settings).await.expect("database");
        let app = api::app_context(db, settings).await.expect("app");
        let running = api::serve(app).expect("bind");
        running.server.await.expect("server");
    });
}

fn serve_baselines(bind: &str) {
    actix_web::rt::System::new().block_on(async {
        let settings = api::config::Settings::from_env().expect("settings");
        let db = api::connect_database(&settings).await.expect("database");
        baseline::serve(db, bind).await.expect("baselines");
    });
}

async fn measure(cli: &Cli) {
    let instances = match cli.scenario {
        Scenario::S3 { instances, .. } | Scenario::S5 { instances, .. } => instances.max(1),
        _ => 1,
    };
    let fixture = Fixture::create(cli.db, instances).await;
    println!("database: {}; server on core 0 (1 worker each), load generator on core 1", fixture.describe());
    match &cli.scenario {
        Scenario::S1 => s1(cli, &fixture).await,
        Scenario::S2 { breakdown } => s2(cli, &fixture, *breakdown).await,
        Scenario::S3 { households, .. } => s3(cli, &fixture, *households).await,
        Scenario::S4 { connections } => sockets::s4(&fixture, connections).await,
        Scenario::S5 { subscribers, rate, phone_processes, .. } => {
            let timing = fanout::Timing { warmup: cli.warmup, seconds: cli.seconds, runs: cli.runs };
            fanout::s5(&fixture, *subscribers, *rate, timing, *phone_processes).await
        }
        Scenario::ServeApi | Scenario::ServeBaselines { .. } | Scenario::Phones { .. } => {
            unreachable!("handled in main")
        }
    }
    fixture.remove().await;
}

/// The median of `cli.runs` runs of `make` at `clients` concurrent clients.
async fn repeat(cli: &Cli, clients: usize, make: load::MakeRequest) -> Stats {
    repeat_with(cli, clients, make, |_| {}).await
}

/// As [`repeat`], handing each run's measured requests to `each_run`
/// (most scenarios need only the figures, and drop them run by run).
async fn repeat_with(
    cli: &Cli,
    clients: usize,
    make: load::MakeRequest,
    mut each_run: impl FnMut(Vec<load::Measured>),
) -> Stats {
    let mut runs = Vec::with_capacity(cli.runs);
    for _ in 0..cli.runs {
        let (stats, measured) =
            load::run(clients, Duration::from_secs(cli.warmup), Duration::from_secs(cli.seconds), make.clone()).await;
        runs.push(stats);
        each_run(measured);
    }
    load::median(runs)
}

/// `cli.runs` runs of `baseline` and of `scenario` taken in turn, so that a
/// change in the host's speed during an invocation falls on both: each
/// one's median, and the scenario's rate over the baseline's, run by run.
async fn in_turn(cli: &Cli, baseline: load::MakeRequest, scenario: load::MakeRequest) -> (Stats, Stats, Vec<f64>) {
    let (warmup, seconds) = (Duration::from_secs(cli.warmup), Duration::from_secs(cli.seconds));
    let (mut baselines, mut scenarios) = (Vec::with_capacity(cli.runs), Vec::with_capacity(cli.runs));
    for _ in 0..cli.runs {
        baselines.push(load::run(cli.clients, warmup, seconds, baseline.clone()).await.0);
        scenarios.push(load::run(cli.clients, warmup, seconds, scenario.clone()).await.0);
    }
    let paired = baselines.iter().zip(&scenarios).map(|(baseline, run)| run.per_second / baseline.per_second).collect();
    (load::median(baselines), load::median(scenarios), paired)
}

fn report(name: &str, api: &Stats, baseline_name: &str, baseline: &Stats, target: f64) {
    println!("  {baseline_name:<4} {baseline}");
    println!("  {name:<4} {api}");
    let ratio = api.per_second / baseline.per_second;
    let verdict = if ratio >= target { "meets" } else { "misses" };
    println!(
        "  {name} / {baseline_name} = {:.0} % of the rate ({verdict} the ≥ {:.0} % target); p99 {:.2} ms vs {:.2} ms",
        ratio * 100.0,
        target * 100.0,
        ms(api.p99),
        ms(baseline.p99)
    );
}

/// Posts `query` as `token`; with several servers, each client keeps to one of them.
fn graphql(
    servers: &[Child],
    token: Option<&str>,
    query: &'static str,
    variables: serde_json::Value,
) -> load::MakeRequest {
    graphql_as(servers, query, vec![(token.map(str::to_owned), variables)])
}

/// Posts `query`, each client as one of `callers` (a token and the
/// variables), in turn, and to one of the servers.
fn graphql_as(
    servers: &[Child],
    query: &'static str,
    callers: Vec<(Option<String>, serde_json::Value)>,
) -> load::MakeRequest {
    let urls: Vec<String> = servers.iter().map(|server| server.url("/graphql")).collect();
    let callers: Vec<_> = callers
        .into_iter()
        .map(|(token, variables)| (token, json!({ "query": query, "variables": variables })))
        .collect();
    Arc::new(move |http, client, _| {
        let (token, body) = &callers[client % callers.len()];
        let request = http.post(&urls[client % urls.len()]).json(body);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    })
}

async fn s1(cli: &Cli, fixture: &Fixture) {
    let baselines = Child::baselines(fixture).await;
    let b0_url = baselines.url("/b0");
    let b0 = repeat(cli, cli.clients, Arc::new(move |http, _, _| http.get(&b0_url))).await;
    drop(baselines);
    let server = Child::api(fixture).await;
    let s1 = repeat(cli, cli.clients, graphql(&[server], None, "{ __typename }", json!({}))).await;
    println!("S1 `{{ __typename }}`, {} clients", cli.clients);
    report("S1", &s1, "B0", &b0, 0.40);
}

const RESIDENT_PAGE: &str = "query($first: Int!) { repairOrders(first: $first) { edges { node { id state description unit { number building { name } } building { name } assignee { name } } } } }";

/// S2's page with each node's `state` read ten more times under aliases:
/// 200 more fields, the cheapest kind, from the same SQL statement and rows.
const RESIDENT_PAGE_WITH_ALIASES: &str = "query($first: Int!) { repairOrders(first: $first) { edges { node { id state description unit { number building { name } } building { name } assignee { name } s1: state s2: state s3: state s4: state s5: state s6: state s7: state s8: state s9: state s10: state } } } }";
const ALIASED_FIELDS: f64 = 200.0;
/// S2's page with its ids only: no joined rows, three fields per order.
const RESIDENT_PAGE_IDS: &str = "query($first: Int!) { repairOrders(first: $first) { edges { node { id } } } }";
/// An order's detail, as the apps show it: read alone, with the same related
/// rows as S2's page shows beside each order.
const ORDER_ALONE: &str = "query($id: ID!) { repairOrder(id: $id) { id state description unit { number building { name } } building { name } assignee { name } } }";
/// Fields S2's page resolves: 20 edges, each with its node and the node's 11 fields.
const RESIDENT_PAGE_FIELDS: f64 = 20.0 * 13.0;

async fn s2(cli: &Cli, fixture: &Fixture, breakdown: bool) {
    let server = Child::api(fixture).await;
    let seeded = fixture.seed_orders(&server, 120).await;
    let baselines = Child::baselines(fixture).await;
    let b1_url = format!("{}?user={}", baselines.url("/b1"), seeded.owner_id);
    let servers = [server];
    let token = Some(seeded.owner_token.as_str());
    let first = json!({ "first": 20 });
    let (b1, s2, paired) = in_turn(
        cli,
        Arc::new(move |http, _, _| http.get(&b1_url)),
        graphql(&servers, token, RESIDENT_PAGE, first.clone()),
    )
    .await;
    let b1_engine = if breakdown {
        let url = format!("{}?user={}", baselines.url("/b1-engine"), seeded.owner_id);
        let body = Arc::new(json!({ "query": RESIDENT_PAGE, "variables": { "first": 20 } }));
        let answer = reqwest::Client::new().post(&url).json(body.as_ref()).send().await.expect("B1 through the engine");
        let answer = answer.text().await.expect("its answer");
        assert_eq!(answer.matches("\"node\"").count(), 20, "B1 through the engine answers a page of 20: {answer}");
        Some(repeat(cli, cli.clients, Arc::new(move |http, _, _| http.post(&url).json(body.as_ref()))).await)
    } else {
        None
    };
    drop(baselines);
    let parts = if breakdown {
        let aliased =
            repeat(cli, cli.clients, graphql(&servers, token, RESIDENT_PAGE_WITH_ALIASES, first.clone())).await;
        let ids = repeat(cli, cli.clients, graphql(&servers, token, RESIDENT_PAGE_IDS, first)).await;
        let order = json!({ "id": seeded.assigned_order.clone().expect("an assigned order") });
        let alone = repeat(cli, 1, graphql(&servers, token, ORDER_ALONE, order)).await;
        Some((aliased, ids, alone, b1_engine.expect("measured with the breakdown")))
    } else {
        None
    };
    drop(servers);
    println!("S2 a resident's repairOrders(first: 20) with unit, building, assignee; {} clients", cli.clients);
    report("S2", &s2, "B1", &b1, 0.70);
    let paired: Vec<String> = paired.iter().map(|ratio| format!("{:.0} %", ratio * 100.0)).collect();
    println!("  S2 / B1 run by run, each S2 run right after its B1 run: {}", paired.join(", "));
    println!("  p99 ratio {:.2} (target ≤ 2)", s2.p99.as_secs_f64() / b1.p99.as_secs_f64());
    let statements = fixture.statements_per_page(&seeded, RESIDENT_PAGE, &[20, 100]).await;
    println!("  SQL statements per request: first: 20 → {}, first: 100 → {}", statements[0], statements[1]);
    if let Some((aliased, ids, alone, b1_engine)) = parts {
        print_breakdown(&b1, &s2, &aliased, &ids);
        println!(
            "  B1 through the engine {b1_engine}\n    = {:.0} % of B1's rate: what the engine leaves of B1 for any API built on it",
            100.0 * b1_engine.per_second / b1.per_second
        );
        println!("  an order read alone with its unit, building and assignee, 1 client: {alone}");
    }
}

/// The server has one core and the clients keep it busy, so the inverse of a
/// rate is the core time one request takes (on SQLite; PostgreSQL's backends
/// run outside that core).
fn print_breakdown(b1: &Stats, s2: &Stats, aliased: &Stats, ids: &Stats) {
    let core_us = |stats: &Stats| 1e6 / stats.per_second;
    let per_field = (core_us(aliased) - core_us(s2)) / ALIASED_FIELDS;
    println!("  breakdown, µs of the server's core per request:");
    println!("    B1 {:.0}; S2 {:.0}; S2 with 200 more fields {:.0}", core_us(b1), core_us(s2), core_us(aliased));
    println!("    the page with ids only {:.0}", core_us(ids));
    println!(
        "    one more field {per_field:.2} µs; S2's {RESIDENT_PAGE_FIELDS:.0} fields at that cost ≈ {:.0} µs; \
         70 % of B1 allows {:.0} µs in all",
        per_field * RESIDENT_PAGE_FIELDS,
        core_us(b1) / 0.70
    );
}

const SUBMIT: &str = "mutation($unit: ID!) { submitRepairOrder(input: {unitId: $unit, category: PLUMBING, description: \"厨房水龙头漏水\"}) { repairOrder { id } } }";

async fn s3(cli: &Cli, fixture: &Fixture, households: usize) {
    let servers = Child::apis(fixture).await;
    let seeded = fixture.seed_orders(&servers[0], 0).await;
    let (submitters, subscriber_token) = if households > 1 {
        (fixture.seed_households(&seeded, households).await, &seeded.supervisor_token)
    } else {
        let owner =
            Household { unit_id: seeded.unit_id, resident_id: seeded.owner_id, token: seeded.owner_token.clone() };
        (vec![owner], &seeded.owner_token)
    };
    let b2 = {
        let baselines = Child::baselines(fixture).await;
        let urls: Vec<String> = submitters
            .iter()
            .map(|household| {
                format!(
                    "{}?user={}&unit={}&building={}&community={}",
                    baselines.url("/b2"),
                    household.resident_id,
                    household.unit_id,
                    seeded.building_id,
                    seeded.community_id
                )
            })
            .collect();
        repeat(cli, cli.clients, Arc::new(move |http, client, _| http.post(&urls[client % urls.len()]))).await
    };
    let before = fixture.count_orders().await;
    // With several instances the subscriber sits on the last one, so that
    // most events cross from the instance that committed them.
    let counter = sockets::EventCounter::start(servers.last().expect("a server"), subscriber_token).await;
    let callers = submitters
        .iter()
        .map(|household| (Some(household.token.clone()), json!({ "unit": format!("unit_{}", household.unit_id) })))
        .collect();
    let mut requests = Vec::new();
    let s3 = repeat_with(cli, cli.clients, graphql_as(&servers, SUBMIT, callers), |run| requests.extend(run)).await;
    let created = fixture.count_orders().await - before;
    let delivered = counter.wait_for(created, Duration::from_secs(30)).await;
    println!(
        "S3 submitRepairOrder, {} clients, {} API instance(s), {} household(s)",
        cli.clients,
        servers.len(),
        submitters.len()
    );
    report("S3", &s3, "B2", &b2, 0.50);
    println!("  p99 {:.2} ms (target ≤ 20 ms)", ms(s3.p99));
    print_apart_from_analyses(&requests, &fixture.analyses());
    println!("  events delivered to the subscriber: {delivered} of {created} orders created");
}

/// Where the harness analyses PostgreSQL's tables itself (autovacuum off),
/// its analyses take CPU from the servers; how the requests in flight
/// during one fared against the rest, over all runs. The target is on all.
fn print_apart_from_analyses(requests: &[load::Measured], analyses: &[Range<Instant>]) {
    if analyses.is_empty() {
        return;
    }
    let (during, clear) = load::apart(requests, analyses);
    let share = |part: &[Duration]| 100.0 * part.len() as f64 / requests.len().max(1) as f64;
    println!(
        "  all runs' requests in flight during one of the harness's analyses: {:.0} %, p99 {:.2} ms; the rest p99 {:.2} ms",
        share(&during),
        ms(load::percentile(&during, 0.99)),
        ms(load::percentile(&clear, 0.99))
    );
}
