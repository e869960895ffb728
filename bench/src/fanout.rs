//! S5: thousands of residents' phones subscribed to `parcelEvents`, each in a
//! unit of their own, while the desk registers parcels for random units at a
//! fixed rate. Each registration carries its send time and its number in the
//! tracking number, so the phone that receives it measures publish → deliver
//! end to end, and the warm-up's events are told from the runs'.

use std::{
    net::Ipv4Addr,
    ops::Range,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    fixture::{self, Child, Fixture, try_call},
    load::{ms, percentile},
    sockets,
};

const PARCEL_EVENTS: &str = "subscription { parcelEvents { kind parcel { trackingNumber } } }";
/// Registrations open at most this many HTTP connections at once, so that
/// beside 19,000 phones' sockets they fit the open-file limit when the server
/// falls behind. One that waits for a connection is still timed from when it
/// was due: its tracking number carries that time.
const MAX_REGISTRATIONS_IN_FLIGHT: usize = 256;
/// How long the desk keeps a connection it is not using: less than the
/// server's keep-alive (actix's 5 s), whose close may cross a request sent
/// on the connection, which then fails with no answer. Connections opened
/// when the server fell behind sit idle the longest.
const DESK_IDLE: Duration = Duration::from_secs(3);
const REGISTER: &str = "mutation($unit: ID!, $tracking: String!) { registerParcel(input: {kind: PARCEL, carrier: \"顺丰\", trackingNumber: $tracking, recipientName: \"住户\", unitId: $unit}) { parcel { id } } }";

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

/// How S5 measures: a warm-up, then `runs` runs of `seconds` each.
pub struct Timing {
    pub warmup: u64,
    pub seconds: u64,
    pub runs: usize,
}

pub async fn s5(fixture: &Fixture, subscribers: usize, per_second: u64, timing: Timing, phone_processes: usize) {
    let servers = Child::apis(fixture).await;
    let seeded = fixture.seed_orders(&servers[0], 0).await;
    let residents = fixture.seed_households(&seeded, subscribers).await;
    let instances = servers.len();
    let addrs: Vec<&str> = servers.iter().map(Child::addr).collect();
    let tokens: Vec<&str> = residents.iter().map(|household| household.token.as_str()).collect();
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    // Each instance and each process of phones keeps its sockets within the
    // open-file limit; past what this process holds, the phones are spread
    // over processes of their own (still on this core).
    let per_process =
        usize::try_from(fixture::open_file_limit()).unwrap_or(usize::MAX).saturating_sub(FILES_BESIDE_PHONES);
    assert!(
        subscribers.div_ceil(instances) <= per_process,
        "each instance holds at most {per_process} phones under the open-file limit: add instances"
    );
    let phone_processes = phone_processes.max(subscribers.div_ceil(per_process));
    let _phone_processes = if phone_processes <= 1 {
        let phones = connect_phones(&addrs, &tokens, 0).await;
        let deliveries = deliveries.clone();
        listen(phones, 0, instances, move |delivery| deliveries.lock().expect("deliveries").push(delivery));
        Vec::new()
    } else {
        let share = subscribers.div_ceil(phone_processes);
        (0..phone_processes)
            .map(|p| PhoneProcess::start(&addrs, &tokens, p * share, share, deliveries.clone()))
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "S5 {subscribers} subscribed phones, one-recipient parcel events at {per_second}/s, {} runs of {} s after \
         {} s of warm-up, {instances} API instance(s); phones held {}",
        timing.runs,
        timing.seconds,
        timing.warmup,
        if phone_processes <= 1 {
            "by the load generator".to_owned()
        } else {
            format!("by {phone_processes} processes of their own")
        }
    );

    let desk = Desk {
        http: reqwest::Client::builder().pool_idle_timeout(DESK_IDLE).build().expect("http client"),
        // With several instances the registrations alternate between them,
        // so about half of the events reach a phone on another instance.
        urls: servers.iter().map(|server| server.url("/graphql")).collect(),
        token: seeded.desk_token.clone(),
        unit_ids: residents.iter().map(|household| household.unit_id).collect(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_REGISTRATIONS_IN_FLIGHT)),
    };
    // The first registrations open the desk's connections and the servers'
    // database sessions; their events are delivered but not measured.
    let mut next = per_second * timing.warmup;
    desk.register(0..next, per_second).await;
    let mut runs = Vec::with_capacity(timing.runs);
    for run in 1..=timing.runs {
        let measured = next..next + per_second * timing.seconds;
        next = measured.end;
        let refused = desk.register(measured.clone(), per_second).await;
        let registered = measured.clone().count() - refused.len();
        let measured_deliveries = || -> Vec<Delivery> {
            let deliveries = deliveries.lock().expect("deliveries");
            deliveries.iter().filter(|delivery| measured.contains(&delivery.registration)).copied().collect()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while measured_deliveries().len() < registered && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(first) = refused.first() {
            println!(
                "  refused {} of {} registrations, the first with {first}",
                refused.len(),
                measured.clone().count()
            );
        }
        let delivered = measured_deliveries();
        let latencies = Latencies::of(delivered.iter().map(|delivery| delivery.latency).collect());
        println!("  run {run}: delivered {} of {registered} registered; {latencies}", delivered.len());
        if instances > 1 {
            for (crossed, path) in
                [(false, "registered on the phone's instance"), (true, "registered on the other instance")]
            {
                let on_path: Vec<Duration> = delivered
                    .iter()
                    .filter(|delivery| delivery.crossed == crossed)
                    .map(|delivery| delivery.latency)
                    .collect();
                println!("    {path}: {} events, {}", on_path.len(), Latencies::of(on_path));
            }
        }
        runs.push(latencies);
    }
    println!("  median of {} runs: {} (targets 15 / 15 / 50 ms)", runs.len(), Latencies::median(&runs));
}

/// The percentiles S5's targets name.
#[derive(Clone, Copy)]
struct Latencies {
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

impl Latencies {
    fn of(mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self {
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
        }
    }

    /// Each percentile's median over the runs.
    fn median(runs: &[Self]) -> Self {
        let middle = |of: fn(&Self) -> Duration| {
            let mut values: Vec<Duration> = runs.iter().map(of).collect();
            values.sort_unstable();
            values.get(values.len() / 2).copied().unwrap_or_default()
        };
        Self { p50: middle(|l| l.p50), p99: middle(|l| l.p99), p999: middle(|l| l.p999) }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms", ms(self.p50), ms(self.p99), ms(self.p999))
    }
}

/// The desk registering parcels for the residents' units.
struct Desk {
    http: reqwest::Client,
    urls: Vec<String>,
    token: String,
    unit_ids: Vec<i64>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Desk {
    /// Registers the parcels `numbers` at `per_second`, each for a random
    /// unit, its send time and number in its tracking number. Answers the
    /// errors of those the API refused: a refused registration publishes
    /// nothing, so it is counted, not awaited.
    async fn register(&self, numbers: Range<u64>, per_second: u64) -> Vec<Value> {
        let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
        let mut sends = Vec::with_capacity(numbers.clone().count());
        for n in numbers {
            ticker.tick().await;
            let unit_id = self.unit_ids[rand::random_range(0..self.unit_ids.len())];
            let (http, url, token) =
                (self.http.clone(), self.urls[n as usize % self.urls.len()].clone(), self.token.clone());
            let variables = json!({ "unit": format!("unit_{unit_id}"), "tracking": format!("T{}-{n}", micros_now()) });
            let in_flight = self.in_flight.clone();
            sends.push(tokio::spawn(async move {
                let _connection = in_flight.acquire_owned().await.expect("semaphore");
                try_call(&http, &url, &token, REGISTER, variables).await
            }));
        }
        let mut refused = Vec::new();
        for send in sends {
            if let Err(errors) = send.await.expect("registration") {
                refused.push(errors);
            }
        }
        refused
    }
}

/// A parcel's event as a phone received it.
#[derive(Clone, Copy)]
struct Delivery {
    /// The parcel's number in the invocation, the warm-up's first.
    registration: u64,
    latency: Duration,
    /// Whether the parcel was registered on another instance than the
    /// phone's (its event then reaches the phone through Redis, unless the
    /// phone's instance numbered it).
    crossed: bool,
}

impl Delivery {
    /// Phone `n`'s delivery in a `next` message, from the tracking number's
    /// send time and number (`T<micros>-<n>`).
    fn of(text: &str, n: usize, instances: usize) -> Option<Self> {
        let (sent, rest) = text.split("\"T").nth(1)?.split_once('-')?;
        let (registration, _) = rest.split_once('"')?;
        let (sent, registration) = (sent.parse::<u64>().ok()?, registration.parse::<u64>().ok()?);
        Some(Self {
            registration,
            latency: Duration::from_micros(micros_now().saturating_sub(sent)),
            crossed: registration % instances as u64 != n as u64 % instances as u64,
        })
    }

    /// As a process of phones reports it to the load generator.
    fn line(&self) -> String {
        format!("{} {} {}", self.registration, self.latency.as_micros(), u8::from(self.crossed))
    }

    fn read(line: &str) -> Option<Self> {
        let mut fields = line.split(' ');
        let registration = fields.next()?.parse().ok()?;
        let latency = Duration::from_micros(fields.next()?.parse().ok()?);
        Some(Self { registration, latency, crossed: fields.next()? == "1" })
    }
}

/// Descriptors a process of phones keeps for everything else: the
/// registrations' connections, the database's, the runtime's.
const FILES_BESIDE_PHONES: usize = 1_000;

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

/// Reads each phone's events, phones numbered from `first` on, handing each
/// delivery to `record`.
fn listen(
    phones: Vec<sockets::Socket>,
    first: usize,
    instances: usize,
    record: impl Fn(Delivery) + Clone + Send + 'static,
) {
    for (i, mut phone) in phones.into_iter().enumerate() {
        let record = record.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = phone.next().await {
                if let Message::Text(text) = message
                    && let Some(delivery) = Delivery::of(&text, first + i, instances)
                {
                    record(delivery);
                }
            }
        });
    }
}

/// A child process of this executable holding a share of the phones
/// (`bench phones`): told the servers and its phones' tokens on its input, it
/// answers `ready` once they are subscribed, then a line per event received,
/// `<registration> <latency µs> <crossed 0|1>`.
struct PhoneProcess {
    process: std::process::Child,
}

impl PhoneProcess {
    fn start(
        addrs: &[&str],
        tokens: &[&str],
        first: usize,
        count: usize,
        deliveries: Arc<Mutex<Vec<Delivery>>>,
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
                if let Some(delivery) = Delivery::read(&line) {
                    deliveries.lock().expect("deliveries").push(delivery);
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
    listen(phones, first, instances, move |delivery| {
        let _ = deliveries.send(delivery);
    });
    let mut output = std::io::stdout().lock();
    while let Some(delivery) = received.recv().await {
        // The parent is gone when its end of the pipe is.
        if writeln!(output, "{}", delivery.line()).and_then(|()| output.flush()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_read_from_its_tracking_number_and_survives_the_pipe() {
        let sent = micros_now() - 5_000;
        let text = format!(
            r#"{{"type":"next","payload":{{"data":{{"parcelEvents":{{"parcel":{{"trackingNumber":"T{sent}-1203"}}}}}}}}}}"#
        );
        let delivery = Delivery::of(&text, 7, 2).expect("a delivery");
        assert_eq!(delivery.registration, 1203);
        assert!(delivery.latency >= Duration::from_millis(5));
        // Parcel 1203 was registered on instance 1, phone 7 sits on instance 1.
        assert!(!delivery.crossed);
        assert!(Delivery::of(&text, 8, 2).expect("a delivery").crossed);
        assert!(!Delivery::of(&text, 8, 1).expect("a delivery").crossed);

        let read = Delivery::read(&delivery.line()).expect("its line");
        assert_eq!((read.registration, read.latency, read.crossed), (1203, delivery.latency, false));
        assert!(Delivery::read("garbled").is_none());
        assert!(Delivery::of(r#"{"type":"next","payload":{}}"#, 0, 1).is_none());
    }

    #[test]
    fn the_median_is_taken_percentile_by_percentile() {
        let ms = Duration::from_millis;
        let runs = [
            Latencies { p50: ms(1), p99: ms(40), p999: ms(90) },
            Latencies { p50: ms(3), p99: ms(5), p999: ms(9) },
            Latencies { p50: ms(2), p99: ms(6), p999: ms(8) },
        ];
        let median = Latencies::median(&runs);
        assert_eq!((median.p50, median.p99, median.p999), (ms(2), ms(6), ms(9)));
    }
}
