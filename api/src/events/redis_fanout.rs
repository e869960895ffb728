//! Redis pub/sub between instances. An instance that numbered events
//! publishes them, and every other instance hands them to its subscribers
//! when they continue what it has handed out. Otherwise (a gap, a message
//! lost or too large, or a commit whose events are not at hand, as on
//! SQLite) a message only rings, and the relays read the outbox. The outbox
//! stays the truth: a lost message, or Redis being down, costs only latency
//! until the relays' next poll.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

use super::{OutboxEvent, Router};

const RETRY: Duration = Duration::from_secs(1);

/// A message that only rings.
const RING: &str = "1";

/// Larger batches (a backlog) are left to the relays: they read the outbox in
/// pages anyway, and a message this size still goes out at once.
const MAX_EVENTS_MESSAGE_BYTES: usize = 64 * 1024;

/// Event messages waiting to be published; beyond this a ring stands in.
const PENDING_EVENT_MESSAGES: usize = 256;

#[derive(Clone)]
pub struct Publisher {
    rings: mpsc::Sender<()>,
    events: mpsc::Sender<String>,
}

impl Publisher {
    pub fn ring(&self) {
        // A full doorbell already has a ring pending, which covers this commit too.
        let _ = self.rings.try_send(());
    }

    /// Passes events this instance numbered, in order, to the other instances.
    pub fn pass_on(&self, events: &[OutboxEvent]) {
        let message = serde_json::to_string(events).ok().filter(|json| json.len() <= MAX_EVENTS_MESSAGE_BYTES);
        let sent = message.is_some_and(|message| self.events.try_send(message).is_ok());
        if !sent {
            self.ring();
        }
    }
}

/// Starts publishing and listening for other instances' messages.
pub fn start(url: &str, prefix: &str, router: Router, wake: Arc<Notify>) -> Result<Publisher, redis::RedisError> {
    let client = crate::redis_client(url)?;
    let channel = format!("{prefix}:events");
    let (rings, ringing) = mpsc::channel(1);
    let (events, numbered) = mpsc::channel(PENDING_EVENT_MESSAGES);
    tokio::spawn(publish_forever(client.clone(), channel.clone(), ringing, numbered));
    tokio::spawn(subscribe_forever(client, channel, router, wake));
    Ok(Publisher { rings, events })
}

async fn publish_forever(
    client: redis::Client,
    channel: String,
    mut rings: mpsc::Receiver<()>,
    mut events: mpsc::Receiver<String>,
) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let message = tokio::select! {
            Some(()) = rings.recv() => RING.to_owned(),
            Some(events) = events.recv() => events,
            else => return,
        };
        if connection.is_none() {
            let connect = client.get_multiplexed_async_connection();
            connection = tokio::time::timeout(RETRY, connect).await.ok().and_then(Result::ok);
        }
        let Some(conn) = connection.as_mut() else {
            tracing::debug!("redis unreachable: other instances catch up on their next poll");
            continue;
        };
        let published: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(&channel).arg(message).query_async(conn).await;
        if let Err(err) = published {
            tracing::debug!(error = %err, "redis publish failed");
            connection = None;
        }
    }
}

async fn subscribe_forever(client: redis::Client, channel: String, router: Router, wake: Arc<Notify>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // Catch up on whatever was published while we were not listening.
                    wake.notify_one();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if !handed_over(&router, message.get_payload_bytes()) {
                            wake.notify_one();
                        }
                    }
                }
                tracing::warn!("redis subscription lost; reconnecting");
            }
            Err(err) => tracing::debug!(error = %err, "redis unreachable; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether `payload` carried events that continue what `router` handed out
/// (an instance's own, published back to it, are already handed out).
fn handed_over(router: &Router, payload: &[u8]) -> bool {
    match serde_json::from_slice::<Vec<OutboxEvent>>(payload) {
        Ok(events) => router.deliver_next(events),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> OutboxEvent {
        super::super::tests::event(seq, vec![7])
    }

    #[test]
    fn published_events_continuing_the_run_are_handed_over_and_anything_else_rings() {
        let router = Router::new(16);
        router.start_after(10);
        let mut phone = router.subscribe(7).events;
        let message = |events: &[OutboxEvent]| serde_json::to_vec(events).expect("json");
        let next = [event(11), event(12)];
        assert!(handed_over(&router, &message(&next)));
        assert!(handed_over(&router, &message(&[event(12)])), "already handed out");
        assert!(!handed_over(&router, &message(&[event(14)])), "13 is missing: the relay reads it");
        assert!(!handed_over(&router, RING.as_bytes()));
        assert!(!handed_over(&router, b"[{\"seq\":"), "garbled");
        let received: Vec<OutboxEvent> = std::iter::from_fn(|| phone.try_recv().ok()).map(|e| (*e).clone()).collect();
        assert_eq!(received, next, "each once, whole");
    }
}
