//! S5: thousands of residents' phones subscribed to `parcelEvents`, each in a
//! unit of their own, while the desk registers parcels for random units at a
//! fixed rate. Each registration carries its send time in the tracking number,
//! so the phone that receives it measures publish → deliver end to end.

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use api::auth::{Principal, TokenService};
use chrono::Utc;
use entity::{enums, unit, unit_membership, user};
use futures_util::{StreamExt, stream};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    fixture::{Child, Fixture, try_call},
    load::{ms, percentile},
    sockets,
};

const PARCEL_EVENTS: &str = "subscription { parcelEvents { kind parcel { trackingNumber } } }";
/// Registrations open at most this many HTTP connections at once, so that
/// beside 19,000 phones' sockets they fit the open-file limit when the server
/// falls behind. One that waits for a connection is still timed from when it
/// was due: its tracking number carries that time.
const MAX_REGISTRATIONS_IN_FLIGHT: usize = 256;
const REGISTER: &str = "mutation($unit: ID!, $tracking: String!) { registerParcel(input: {kind: PARCEL, carrier: \"顺丰\", trackingNumber: $tracking, recipientName: \"住户\", unitId: $unit}) { parcel { id } } }";

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

/// `residents` residents, each the only one of a new unit; their unit ids
/// and access tokens.
async fn seed_residents(fixture: &Fixture, building_id: i64, residents: usize) -> Vec<(i64, String)> {
    let now = Utc::now();
    let tokens = TokenService::new(crate::fixture::JWT_SECRET.as_bytes(), &fixture.settings);
    let mut seeded = Vec::with_capacity(residents);
    for chunk_start in (0..residents).step_by(500) {
        let range = chunk_start..(chunk_start + 500).min(residents);
        let units: Vec<_> = range
            .clone()
            .map(|n| unit::ActiveModel {
                building_id: Set(building_id),
                number: Set(format!("S5-{n:05}")),
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
        let units = unit::Entity::insert_many(units).exec_with_returning(fixture.db()).await.expect("units");
        let users = user::Entity::insert_many(users).exec_with_returning(fixture.db()).await.expect("users");
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
        unit_membership::Entity::insert_many(memberships).exec(fixture.db()).await.expect("memberships");
        for (unit, user) in units.iter().zip(&users) {
            let principal =
                Principal { user_id: user.id, role: enums::Role::Resident, position: None, community_id: None };
            seeded.push((unit.id, tokens.issue(&principal).expect("token").token));
        }
    }
    seeded
}

pub async fn s5(fixture: &Fixture, subscribers: usize, per_second: u64, seconds: u64, phone_processes: usize) {
    let servers = Child::apis(fixture).await;
    let seeded = fixture.seed_orders(&servers[0], 0).await;
    let residents = seed_residents(fixture, seeded.building_id, subscribers).await;
    let instances = servers.len();
    let addrs: Vec<&str> = servers.iter().map(Child::addr).collect();
    let tokens: Vec<&str> = residents.iter().map(|(_, token)| token.as_str()).collect();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    // Each instance and each process of phones keeps its sockets within the
    // open-file limit; past what this process holds, the phones are spread
    // over processes of their own (still on this core).
    let per_process = usize::try_from(open_file_limit()).unwrap_or(usize::MAX).saturating_sub(FILES_BESIDE_PHONES);
    assert!(
        subscribers.div_ceil(instances) <= per_process,
        "each instance holds at most {per_process} phones under the open-file limit: add instances"
    );
    let phone_processes = phone_processes.max(subscribers.div_ceil(per_process));
    let _phone_processes = if phone_processes <= 1 {
        for (n, mut phone) in connect_phones(&addrs, &tokens, 0).await.into_iter().enumerate() {
            let latencies = latencies.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = phone.next().await {
                    if let Message::Text(text) = message
                        && let Some(delivery) = delivery(&text, n, instances)
                    {
                        latencies.lock().expect("latencies").push(delivery);
                    }
                }
            });
        }
        Vec::new()
    } else {
        let share = subscribers.div_ceil(phone_processes);
        (0..phone_processes)
            .map(|p| PhoneProcess::start(&addrs, &tokens, p * share, share, latencies.clone()))
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "S5 {subscribers} subscribed phones, one-recipient parcel events at {per_second}/s for {seconds} s, \
         {instances} API instance(s); phones held {}",
        if phone_processes <= 1 {
            "by the load generator".to_owned()
        } else {
            format!("by {phone_processes} processes of their own")
        }
    );

    let desk = seeded.desk_token.clone();
    // With several instances the registrations alternate between them, so
    // about half of the events reach a phone on another instance.
    let urls: Vec<String> = servers.iter().map(|server| server.url("/graphql")).collect();
    let http = reqwest::Client::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_REGISTRATIONS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    let total = per_second * seconds;
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (unit_id, _) = &residents[rand::random_range(0..residents.len())];
        let (http, url, desk) = (http.clone(), urls[n as usize % urls.len()].clone(), desk.clone());
        let variables = json!({ "unit": format!("unit_{unit_id}"), "tracking": format!("T{}-{n}", micros_now()) });
        let in_flight = in_flight.clone();
        sends.push(tokio::spawn(async move {
            let _connection = in_flight.acquire_owned().await.expect("semaphore");
            try_call(&http, &url, &desk, REGISTER, variables).await
        }));
    }
    // A refused registration publishes nothing: it is counted, not awaited.
    let mut refused = Vec::new();
    for send in sends {
        if let Err(errors) = send.await.expect("registration") {
            refused.push(errors);
        }
    }
    let registered = total as usize - refused.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while latencies.lock().expect("latencies").len() < registered && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(first) = refused.first() {
        println!("  refused {} of {total} registrations, the first with {first}", refused.len());
    }
    let delivered = latencies.lock().expect("latencies").clone();
    let all: Vec<Duration> = delivered.iter().map(|(latency, _)| *latency).collect();
    println!("  delivered {} of {registered} registered; {} (targets 15 / 15 / 50 ms)", all.len(), summary(all));
    if instances > 1 {
        for (crossed, path) in
            [(false, "registered on the phone's instance"), (true, "registered on the other instance")]
        {
            let on_path: Vec<Duration> =
                delivered.iter().filter(|(_, c)| *c == crossed).map(|(latency, _)| *latency).collect();
            println!("    {path}: {} events, {}", on_path.len(), summary(on_path));
        }
    }
}

/// Descriptors a process of phones keeps for everything else: the
/// registrations' connections, the database's, the runtime's.
const FILES_BESIDE_PHONES: usize = 1_000;

fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Subscribes the phones with `tokens`, numbered from `first` on: phone n
/// connects to instance n mod the instances, from a source address of its own
/// among 127.0.0.2–201.
async fn connect_phones(addrs: &[&str], tokens: &[&str], first: usize) -> Vec<sockets::Socket> {
    stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let n = first + i;
            let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 200) as u8);
            sockets::subscribed(addrs[n % addrs.len()], token, source, PARCEL_EVENTS)
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// A `next` message's latency, and whether the parcel was registered on
/// another instance than phone `n`'s (its event then reaches the phone
/// through Redis, unless the phone's instance numbered it).
fn delivery(text: &str, n: usize, instances: usize) -> Option<(Duration, bool)> {
    let (sent, registration) = text.split("\"T").nth(1).and_then(parse_tracking)?;
    let latency = Duration::from_micros(micros_now().saturating_sub(sent));
    Some((latency, registration % instances != n % instances))
}

/// A child process of this executable holding a share of the phones
/// (`bench phones`): told the servers and its phones' tokens on its input, it
/// answers `ready` once they are subscribed, then a line per event received,
/// `<latency µs> <crossed 0|1>`.
struct PhoneProcess {
    process: std::process::Child,
}

impl PhoneProcess {
    fn start(
        addrs: &[&str],
        tokens: &[&str],
        first: usize,
        count: usize,
        latencies: Arc<Mutex<Vec<(Duration, bool)>>>,
    ) -> Self {
        use std::io::{BufRead, Write};
        let mut process = std::process::Command::new(std::env::current_exe().expect("own executable"))
            .args(["phones", "--first", &first.to_string(), "--servers", &addrs.join(",")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("a process of phones");
        let mut input = process.stdin.take().expect("its input");
        for token in tokens.iter().skip(first).take(count) {
            writeln!(input, "{token}").expect("a phone's token");
        }
        drop(input);
        let mut answers = std::io::BufReader::new(process.stdout.take().expect("its output")).lines();
        let ready = answers.next().and_then(Result::ok);
        assert_eq!(ready.as_deref(), Some("ready"), "a process of phones failed to subscribe them");
        std::thread::spawn(move || {
            for line in answers.map_while(Result::ok) {
                let mut fields = line.split(' ');
                if let (Some(Ok(micros)), Some(crossed)) = (fields.next().map(str::parse), fields.next()) {
                    latencies.lock().expect("latencies").push((Duration::from_micros(micros), crossed == "1"));
                }
            }
        });
        Self { process }
    }
}

impl Drop for PhoneProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `bench phones`: the child side of [`PhoneProcess`].
pub async fn phones(addrs: &[String], first: usize) {
    use std::io::{BufRead, Write};
    let tokens: Vec<String> = std::io::stdin().lock().lines().map_while(Result::ok).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let phones = connect_phones(&addrs, &tokens, first).await;
    println!("ready");
    let instances = addrs.len();
    let (deliveries, mut received) = tokio::sync::mpsc::unbounded_channel();
    for (i, mut phone) in phones.into_iter().enumerate() {
        let deliveries = deliveries.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = phone.next().await {
                if let Message::Text(text) = message
                    && let Some(delivery) = delivery(&text, first + i, instances)
                {
                    let _ = deliveries.send(delivery);
                }
            }
        });
    }
    drop(deliveries);
    let mut output = std::io::stdout().lock();
    while let Some((latency, crossed)) = received.recv().await {
        // The parent is gone when its end of the pipe is.
        if writeln!(output, "{} {}", latency.as_micros(), u8::from(crossed)).and_then(|()| output.flush()).is_err() {
            return;
        }
    }
}

/// The send time and the registration's number from a tracking number's
/// text after its `T`: `<micros>-<n>"…`.
fn parse_tracking(text: &str) -> Option<(u64, usize)> {
    let (sent, rest) = text.split_once('-')?;
    let (registration, _) = rest.split_once('"')?;
    Some((sent.parse().ok()?, registration.parse().ok()?))
}

fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort_unstable();
    format!(
        "latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999))
    )
}
