//! Token-bucket rate limits, per client IP and per caller, and stricter ones
//! for logins, refreshes and pickup codes. Buckets live in Redis when it is
//! configured, so limits hold across instances; in memory otherwise, and in
//! memory too while Redis cannot be reached, so the API keeps serving. A
//! request's buckets are checked together, in one step (one Redis call): it
//! takes a token from each or, refused, from none.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::error::{ApiError, ApiResult};

/// A bucket of `burst` tokens refilled at `per_minute` tokens a minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Limit {
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }

    fn per_ms(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60_000.0
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The tokens it holds at `now`, refilled since it was last looked at.
    fn refill(&mut self, limit: Limit, now: Instant) -> f64 {
        let elapsed_ms = now.saturating_duration_since(self.at).as_secs_f64() * 1000.0;
        self.tokens = (self.tokens + elapsed_ms * limit.per_ms()).min(f64::from(limit.burst));
        self.at = now;
        self.tokens
    }
}

/// Atomic in Redis: refill each bucket (KEYS) by elapsed time (by Redis's
/// clock), then take `cost` (ARGV[1]) from all or none. ARGV holds each
/// bucket's rate a millisecond and burst after it, in the keys' order.
const REDIS_BUCKETS: &str = r"
local cost = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tokens, refilled_within = {}, {}
local wait = 0
for i, key in ipairs(KEYS) do
    local rate = tonumber(ARGV[2 * i])
    local burst = tonumber(ARGV[2 * i + 1])
    local state = redis.call('HMGET', key, 'tokens', 'at')
    local at = tonumber(state[2]) or now
    tokens[i] = math.min(burst, (tonumber(state[1]) or burst) + math.max(0, now - at) * rate)
    refilled_within[i] = math.ceil(burst / rate) + 1000
    if tokens[i] < cost then wait = math.max(wait, math.ceil((cost - tokens[i]) / rate)) end
end
for i, key in ipairs(KEYS) do
    if wait == 0 then tokens[i] = tokens[i] - cost end
    redis.call('HSET', key, 'tokens', tostring(tokens[i]), 'at', now)
    redis.call('PEXPIRE', key, refilled_within[i])
end
return wait
";

pub struct RateLimiter {
    prefix: String,
    memory: Mutex<MemoryBuckets>,
    redis: Option<SharedRedis>,
}

/// One multiplexed connection shared by every check; after a failure Redis is
/// left alone for `REDIS_RETRY` so an outage does not slow every request.
struct SharedRedis {
    client: redis::Client,
    script: redis::Script,
    state: Mutex<RedisState>,
}

enum RedisState {
    Connected(redis::aio::MultiplexedConnection),
    Down { since: Instant },
    Idle,
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
const REDIS_RETRY: Duration = Duration::from_secs(5);

/// Buckets kept in memory before idle ones are dropped.
const MEMORY_BUCKETS: usize = 100_000;
/// How long a bucket goes unused before a full map drops it.
const IDLE: Duration = Duration::from_secs(600);
/// Idle buckets are looked for at most this often: when every bucket of a
/// full map is in use, each request would otherwise walk them all.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// This instance's own buckets, by key, and when idle ones were last dropped.
struct MemoryBuckets {
    by_key: HashMap<String, Bucket>,
    pruned_at: Instant,
}

impl RateLimiter {
    pub fn new(prefix: &str, redis_url: Option<&str>) -> Result<Self, redis::RedisError> {
        let redis = redis_url
            .map(|url| {
                crate::redis_client(url).map(|client| SharedRedis {
                    client,
                    script: redis::Script::new(REDIS_BUCKETS),
                    state: Mutex::new(RedisState::Idle),
                })
            })
            .transpose()?;
        Ok(Self {
            prefix: prefix.to_owned(),
            memory: Mutex::new(MemoryBuckets { by_key: HashMap::new(), pruned_at: Instant::now() }),
            redis,
        })
    }

    /// Takes `cost` tokens from each bucket (key and limit) or, when one of
    /// them lacks them, from none and answers the seconds to wait (at least 1).
    pub async fn check(&self, buckets: &[(&str, Limit)], cost: u32) -> Result<(), u64> {
        let waited = match self.check_redis(buckets, cost).await {
            Some(result) => result,
            None => self.take_from_memory(buckets, cost, Instant::now()),
        };
        waited.map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// [`check`](Self::check) of one bucket, refusing with RATE_LIMITED.
    pub async fn admit(&self, key: &str, limit: Limit, cost: u32) -> ApiResult<()> {
        self.check(&[(key, limit)], cost).await.map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
    }

    /// [`check`](Self::check) against this instance's own buckets, at `now`.
    fn take_from_memory(&self, buckets: &[(&str, Limit)], cost: u32, now: Instant) -> Result<(), Duration> {
        let Ok(mut memory) = self.memory.lock() else {
            // A panic elsewhere poisoned the map: let the request through
            // rather than turn a limiter fault into an outage.
            return Ok(());
        };
        let MemoryBuckets { by_key, pruned_at } = &mut *memory;
        if by_key.len() >= MEMORY_BUCKETS && now.saturating_duration_since(*pruned_at) >= PRUNE_EVERY {
            by_key.retain(|_, bucket| now.saturating_duration_since(bucket.at) < IDLE);
            *pruned_at = now;
        }
        let mut wait_ms: f64 = 0.0;
        for (key, limit) in buckets {
            let bucket = by_key.entry((*key).to_owned()).or_insert(Bucket { tokens: f64::from(limit.burst), at: now });
            wait_ms = wait_ms.max((f64::from(cost) - bucket.refill(*limit, now)) / limit.per_ms());
        }
        if wait_ms > 0.0 {
            return Err(Duration::from_millis(wait_ms.ceil() as u64));
        }
        for (key, _) in buckets {
            if let Some(bucket) = by_key.get_mut(*key) {
                bucket.tokens -= f64::from(cost);
            }
        }
        Ok(())
    }

    /// `None` when Redis is not configured or not reachable right now.
    async fn check_redis(&self, buckets: &[(&str, Limit)], cost: u32) -> Option<Result<(), Duration>> {
        let redis = self.redis.as_ref()?;
        let mut connection = redis.connection().await?;
        let mut invocation = redis.script.prepare_invoke();
        invocation.arg(cost);
        for (key, limit) in buckets {
            invocation.key(format!("{}:rl:{key}", self.prefix)).arg(limit.per_ms()).arg(limit.burst);
        }
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_ms)) => Some(Err(Duration::from_millis(wait_ms))),
            _ => {
                redis.mark_down();
                None
            }
        }
    }
}

impl SharedRedis {
    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        {
            let state = self.state.lock().ok()?;
            match &*state {
                RedisState::Connected(connection) => return Some(connection.clone()),
                RedisState::Down { since } if since.elapsed() < REDIS_RETRY => return None,
                RedisState::Down { .. } | RedisState::Idle => {}
            }
        }
        let connect = self.client.get_multiplexed_async_connection();
        match tokio::time::timeout(REDIS_TIMEOUT, connect).await {
            Ok(Ok(connection)) => {
                if let Ok(mut state) = self.state.lock() {
                    *state = RedisState::Connected(connection.clone());
                }
                Some(connection)
            }
            _ => {
                self.mark_down();
                None
            }
        }
    }

    fn mark_down(&self) {
        tracing::warn!("Redis unreachable; rate limits fall back to this instance's memory");
        if let Ok(mut state) = self.state.lock() {
            *state = RedisState::Down { since: Instant::now() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new("test", None).unwrap();
        let bucket = [("a", Limit::new(60, 3))];
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_from_memory(&bucket, 1, start).is_ok());
        }
        let wait = limiter.take_from_memory(&bucket, 1, start).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        let later = start + Duration::from_secs(1);
        assert!(limiter.take_from_memory(&bucket, 1, later).is_ok());
        assert!(limiter.take_from_memory(&bucket, 2, later).is_err());
    }

    #[tokio::test]
    async fn memory_buckets_are_per_key() {
        let limiter = RateLimiter::new("test", None).unwrap();
        let limit = Limit::new(1, 1);
        assert!(limiter.check(&[("a", limit)], 1).await.is_ok());
        assert!(limiter.check(&[("a", limit)], 1).await.is_err());
        assert!(limiter.check(&[("b", limit)], 1).await.is_ok());
    }

    #[test]
    fn buckets_checked_together_give_a_token_each_or_none() {
        let limiter = RateLimiter::new("test", None).unwrap();
        let (roomy, tight) = (("ip", Limit::new(60, 3)), ("caller", Limit::new(30, 1)));
        let now = Instant::now();
        assert!(limiter.take_from_memory(&[roomy, tight], 1, now).is_ok());
        // The tight bucket is empty: refused, the roomy one keeps its two.
        let wait = limiter.take_from_memory(&[roomy, tight], 1, now).unwrap_err();
        assert!(wait > Duration::from_millis(1900), "the emptier bucket's wait: {wait:?}");
        assert!(limiter.take_from_memory(&[roomy], 1, now).is_ok());
        assert!(limiter.take_from_memory(&[roomy], 1, now).is_ok());
        assert!(limiter.take_from_memory(&[roomy], 1, now).is_err());
    }

    #[test]
    fn a_full_map_drops_idle_buckets_at_most_once_a_second() {
        let limiter = RateLimiter::new("test", None).unwrap();
        let limit = Limit::new(60, 3);
        let start = Instant::now();
        let keys = (0..MEMORY_BUCKETS).map(|n| format!("ip:{n}")).collect::<Vec<_>>();
        for key in &keys {
            limiter.take_from_memory(&[(key, limit)], 1, start).unwrap();
        }
        let kept = || limiter.memory.lock().unwrap().by_key.len();
        let request_at = |key: &str, at: Instant| limiter.take_from_memory(&[(key, limit)], 1, at).unwrap();
        // Full, with nothing idle yet: a look that drops nothing.
        request_at("a", start + IDLE - Duration::from_millis(500));
        assert_eq!(kept(), MEMORY_BUCKETS + 1);
        // The first buckets are idle now, but the last look was half a second ago.
        request_at("b", start + IDLE);
        assert_eq!(kept(), MEMORY_BUCKETS + 2);
        request_at("c", start + IDLE + Duration::from_millis(500));
        assert_eq!(kept(), 3, "only the buckets used since are kept");
    }
}
