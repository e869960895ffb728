//! Redis pub/sub between instances. An instance that numbered events
//! publishes them, and every other instance hands them to its subscribers
//! when they continue what it has handed out, or holds them a moment for the
//! message that fills the gap before them. A gap still open after that, a
//! message too large, or a commit whose events are not at hand (as on
//! SQLite: the message only rings) leaves the relays to read the outbox. The
//! outbox stays the truth: a lost message, or Redis being down, costs only
//! latency until the relays' next poll.

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
                        match hand_over(&router, message.get_payload_bytes()) {
                            LeftToRelay::Nothing => {}
                            LeftToRelay::GapBefore(first_held) => router.read_gap_unless_filled(first_held, &wake),
                            LeftToRelay::Everything => wake.notify_one(),
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

/// What a message leaves to the relay's reading of the outbox.
#[derive(Debug, PartialEq, Eq)]
enum LeftToRelay {
    Nothing,
    /// The events before this one, unless another message brings them.
    GapBefore(i64),
    /// A ring, or a message that is not events.
    Everything,
}

/// Hands out the events `payload` carries where they continue what `router`
/// handed out (an instance's own, published back to it, already are), and
/// holds those past a gap.
fn hand_over(router: &Router, payload: &[u8]) -> LeftToRelay {
    match serde_json::from_slice::<Vec<OutboxEvent>>(payload) {
        Ok(events) => router.deliver_next(events).map_or(LeftToRelay::Nothing, LeftToRelay::GapBefore),
        Err(_) => LeftToRelay::Everything,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> OutboxEvent {
        super::super::tests::event(seq, vec![7])
    }

    #[test]
    fn published_events_are_handed_out_in_order_and_anything_else_rings() {
        let router = Router::new(16);
        router.start_after(10);
        let mut phone = router.subscribe(7).events;
        let message = |events: &[&OutboxEvent]| serde_json::to_vec(events).expect("json");
        let [e11, e12, e13, e14] = [11, 12, 13, 14].map(event);
        assert_eq!(hand_over(&router, &message(&[&e11, &e12])), LeftToRelay::Nothing);
        assert_eq!(hand_over(&router, &message(&[&e12])), LeftToRelay::Nothing, "already handed out");
        assert_eq!(hand_over(&router, &message(&[&e14])), LeftToRelay::GapBefore(14), "13 is missing");
        assert_eq!(hand_over(&router, &message(&[&e13])), LeftToRelay::Nothing, "13 releases 14");
        assert_eq!(hand_over(&router, RING.as_bytes()), LeftToRelay::Everything);
        assert_eq!(hand_over(&router, b"[{\"seq\":"), LeftToRelay::Everything, "garbled");
        let received: Vec<OutboxEvent> = std::iter::from_fn(|| phone.try_recv().ok()).map(|e| (*e).clone()).collect();
        assert_eq!(received, [e11, e12, e13, e14], "each once, whole, in order");
    }
}
