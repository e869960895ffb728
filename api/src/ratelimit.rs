//! Token-bucket rate limits, per client IP and per caller, and stricter ones
//! for logins, refreshes and pickup codes. Buckets live in Redis when it is
//! configured, so limits hold across instances; in memory otherwise, and in
//! memory too while Redis cannot be reached, so the API keeps serving.

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

/// Takes `cost` tokens from the bucket at `key` if it has them; otherwise says
/// how long until it will.
fn take_from(bucket: &mut Bucket, limit: Limit, cost: u32, now: Instant) -> Result<(), Duration> {
    let rate = limit.per_ms();
    let elapsed_ms = now.saturating_duration_since(bucket.at).as_secs_f64() * 1000.0;
    bucket.tokens = (bucket.tokens + elapsed_ms * rate).min(f64::from(limit.burst));
    bucket.at = now;
    let cost = f64::from(cost);
    if bucket.tokens >= cost {
        bucket.tokens -= cost;
        Ok(())
    } else {
        Err(Duration::from_millis(((cost - bucket.tokens) / rate).ceil() as u64))
    }
}

/// Atomic in Redis: refill by elapsed time (by Redis's clock), take or refuse.
const REDIS_BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = math.ceil((cost - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return wait
";

pub struct RateLimiter {
    prefix: String,
    memory: Mutex<HashMap<String, Bucket>>,
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

impl RateLimiter {
    pub fn new(prefix: &str, redis_url: Option<&str>) -> Result<Self, redis::RedisError> {
        let redis = redis_url
            .map(|url| {
                crate::redis_client(url).map(|client| SharedRedis {
                    client,
                    script: redis::Script::new(REDIS_BUCKET),
                    state: Mutex::new(RedisState::Idle),
                })
            })
            .transpose()?;
        Ok(Self { prefix: prefix.to_owned(), memory: Mutex::new(HashMap::new()), redis })
    }

    /// Takes `cost` tokens for `key`, or answers the seconds to wait (at least 1).
    pub async fn check(&self, key: &str, limit: Limit, cost: u32) -> Result<(), u64> {
        let waited = match self.check_redis(key, limit, cost).await {
            Some(result) => result,
            None => self.check_memory(key, limit, cost),
        };
        waited.map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// [`check`](Self::check), refusing with RATE_LIMITED.
    pub async fn admit(&self, key: &str, limit: Limit, cost: u32) -> ApiResult<()> {
        self.check(key, limit, cost).await.map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
    }

    fn check_memory(&self, key: &str, limit: Limit, cost: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.memory.lock() else {
            // A panic elsewhere poisoned the map: let the request through
            // rather than turn a limiter fault into an outage.
            return Ok(());
        };
        if buckets.len() >= MEMORY_BUCKETS {
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at) < Duration::from_secs(600));
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: f64::from(limit.burst), at: now });
        take_from(bucket, limit, cost, now)
    }

    /// `None` when Redis is not configured or not reachable right now.
    async fn check_redis(&self, key: &str, limit: Limit, cost: u32) -> Option<Result<(), Duration>> {
        let redis = self.redis.as_ref()?;
        let mut connection = redis.connection().await?;
        let mut invocation = redis.script.key(format!("{}:rl:{key}", self.prefix));
        invocation.arg(limit.per_ms()).arg(limit.burst).arg(cost);
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
        let limit = Limit::new(60, 3);
        let start = Instant::now();
        let mut bucket = Bucket { tokens: 3.0, at: start };
        for _ in 0..3 {
            assert!(take_from(&mut bucket, limit, 1, start).is_ok());
        }
        let wait = take_from(&mut bucket, limit, 1, start).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        assert!(take_from(&mut bucket, limit, 1, start + Duration::from_secs(1)).is_ok());
        assert!(take_from(&mut bucket, limit, 2, start + Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn memory_buckets_are_per_key() {
        let limiter = RateLimiter::new("test", None).unwrap();
        let limit = Limit::new(1, 1);
        assert!(limiter.check("a", limit, 1).await.is_ok());
        assert!(limiter.check("a", limit, 1).await.is_err());
        assert!(limiter.check("b", limit, 1).await.is_ok());
    }
}
