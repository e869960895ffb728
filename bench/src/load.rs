//! A closed-loop HTTP load generator: N clients on keep-alive connections,
//! each sending its next request when the last answer arrived. Every body is
//! checked for GraphQL errors, which still come with status 200.

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;

/// What one measured run gave.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub requests: usize,
    pub failures: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests, {} failed)",
            self.per_second,
            ms(self.p50),
            ms(self.p99),
            self.requests,
            self.failures
        )
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The value at `quantile` (0–1) of sorted samples.
pub fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * quantile).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A measured request: when it was sent, and how long its answer took.
pub type Measured = (Instant, Duration);

/// The request a client sends, built afresh each time (client index, sequence number).
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Runs `clients` closed-loop clients for `warmup` (not counted), then for
/// `measure`; the figures, and every measured request.
pub async fn run(clients: usize, warmup: Duration, measure: Duration, make: MakeRequest) -> (Stats, Vec<Measured>) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("http client");
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let workers = (0..clients).map(|client| {
        let (http, make) = (http.clone(), make.clone());
        async move {
            let mut measured = Vec::new();
            let mut failures = 0;
            let mut sequence = 0;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = match make(&http, client, sequence).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await.unwrap_or_default();
                        status.is_success() && !contains(&body, b"\"errors\"")
                    }
                    Err(_) => false,
                };
                sequence += 1;
                if sent >= measure_from {
                    measured.push((sent, sent.elapsed()));
                    failures += usize::from(!ok);
                }
            }
            (measured, failures)
        }
    });
    let results = join_all(workers).await;
    let failures = results.iter().map(|(_, failed)| failed).sum();
    let requests: Vec<Measured> = results.into_iter().flat_map(|(measured, _)| measured).collect();
    let mut latencies: Vec<Duration> = requests.iter().map(|&(_, latency)| latency).collect();
    latencies.sort_unstable();
    let stats = Stats {
        requests: latencies.len(),
        failures,
        per_second: latencies.len() as f64 / measure.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    };
    (stats, requests)
}

/// The latencies of the requests that were in flight during one of `busy`
/// (ordered, not overlapping), and of the others, each sorted.
pub fn apart(requests: &[Measured], busy: &[Range<Instant>]) -> (Vec<Duration>, Vec<Duration>) {
    let (mut during, mut clear) = (Vec::new(), Vec::new());
    for &(sent, latency) in requests {
        // Of the spans begun before the answer came, the last one ends last.
        let begun = busy.partition_point(|span| span.start < sent + latency);
        let overlapped = begun > 0 && busy[begun - 1].end > sent;
        if overlapped { &mut during } else { &mut clear }.push(latency);
    }
    during.sort_unstable();
    clear.sort_unstable();
    (during, clear)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The run with the median rate of `runs`.
pub fn median(mut runs: Vec<Stats>) -> Stats {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs[runs.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_during_a_busy_span_are_told_from_the_rest() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let busy = [at(100)..at(200), at(300)..at(400)];
        let ms = Duration::from_millis;
        let requests = [
            (at(0), ms(50)),    // answered before the first span
            (at(90), ms(20)),   // answered during it
            (at(150), ms(10)),  // sent and answered within it
            (at(190), ms(60)),  // sent before it ended
            (at(200), ms(99)),  // sent as it ended, answered before the next
            (at(250), ms(500)), // through the whole second span
            (at(400), ms(30)),  // sent as the last ended
        ];
        let (during, clear) = apart(&requests, &busy);
        assert_eq!(during, [ms(10), ms(20), ms(60), ms(500)]);
        assert_eq!(clear, [ms(30), ms(50), ms(99)]);
        assert!(apart(&requests, &[]).0.is_empty());
    }
}
