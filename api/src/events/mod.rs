//! Events: every state change writes a thin row to the outbox in its own
//! transaction; a relay in each instance reads new rows in order and hands them
//! to the subscriptions connected to that instance. Redis, when configured,
//! only wakes the relays of other instances early; the outbox is the truth.

pub mod cursor;
pub mod feed;
pub mod outbox;
mod redis_fanout;
pub mod relay;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast};

pub use self::outbox::{NewEvent, append};

/// An event as delivered to subscribers: ids and who may receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub community_id: i64,
    pub kind: String,
    pub entity_type: String,
    pub entity_id: i64,
    pub created_at: DateTime<Utc>,
    /// Sorted user ids.
    pub recipients: Vec<i64>,
}

impl OutboxEvent {
    /// One binary search: the whole per-connection cost of a broadcast.
    pub fn is_for(&self, user_id: i64) -> bool {
        self.recipients.binary_search(&user_id).is_ok()
    }
}

/// The per-instance side of events: the broadcast that subscriptions listen to
/// and the means to wake the relay.
pub struct EventBus {
    sender: broadcast::Sender<Arc<OutboxEvent>>,
    wake: Arc<Notify>,
    redis: Option<redis_fanout::Publisher>,
}

impl EventBus {
    /// Starts the relay (and, with a Redis URL, the Redis fan-out) on the
    /// current runtime, delivering events committed from now on.
    pub async fn start(
        db: DatabaseConnection,
        buffer: usize,
        poll_interval: Duration,
        redis_url: Option<&str>,
        redis_prefix: &str,
    ) -> Result<Self, StartError> {
        let (sender, _) = broadcast::channel(buffer.max(16));
        let wake = Arc::new(Notify::new());
        let redis = redis_url.map(|url| redis_fanout::start(url, redis_prefix, wake.clone())).transpose()?;
        relay::start(db, sender.clone(), wake.clone(), poll_interval).await?;
        Ok(Self { sender, wake, redis })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OutboxEvent>> {
        self.sender.subscribe()
    }

    /// Call after committing a transaction that appended events: wakes this
    /// instance's relay now and, through Redis, the others.
    pub fn committed(&self) {
        self.wake.notify_one();
        if let Some(redis) = &self.redis {
            redis.announce();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot read the event outbox: {0}")]
    Database(#[from] sea_orm::DbErr),
}
