//! A closed-loop HTTP load generator: N clients on keep-alive connections,
//! each sending its next request when the last answer arrived. Every body is
//! checked for GraphQL errors, which still come with status 200.

use std::{
    fmt,
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

/// The request a client sends, built afresh each time (client index, sequence number).
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Runs `clients` closed-loop clients for `warmup` (not counted), then for
/// `measure`.
pub async fn run(clients: usize, warmup: Duration, measure: Duration, make: MakeRequest) -> Stats {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("http client");
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let workers = (0..clients).map(|client| {
        let (http, make) = (http.clone(), make.clone());
        async move {
            let mut latencies = Vec::new();
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
                    latencies.push(sent.elapsed());
                    failures += usize::from(!ok);
                }
            }
            (latencies, failures)
        }
    });
    let results = join_all(workers).await;
    let failures = results.iter().map(|(_, failed)| failed).sum();
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|(latencies, _)| latencies).collect();
    latencies.sort_unstable();
    Stats {
        requests: latencies.len(),
        failures,
        per_second: latencies.len() as f64 / measure.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The run with the median rate of `runs`.
pub fn median(mut runs: Vec<Stats>) -> Stats {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs[runs.len() / 2]
}
