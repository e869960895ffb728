//! Events: every state change writes a thin row to the outbox in its own
//! transaction; a relay in each instance reads new rows in order and hands them
//! to the subscriptions connected to that instance. On PostgreSQL the instance
//! that numbers new rows hands them over itself, without reading them back,
//! and through Redis, when configured, to the other instances; otherwise Redis
//! wakes the other instances' relays early. The outbox is the truth: each
//! instance reads it for any gap in what it was handed.

pub mod audience;
pub mod cursor;
pub mod feed;
mod numbering;
pub mod outbox;
mod redis_fanout;
pub mod relay;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{Notify, broadcast};

pub use self::outbox::{NewEvent, NewRowId, append, append_about_new_row, append_after, draft_with};

/// An event as delivered to subscribers: ids and who may receive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEvent {
    pub seq: i64,
    pub community_id: i64,
    pub kind: String,
    pub entity_type: String,
    pub entity_id: i64,
    pub created_at: DateTime<Utc>,
    /// The people it is for, each once.
    pub recipients: Vec<i64>,
}

impl OutboxEvent {
    /// An outbox row with its recipients.
    pub fn from_row(row: entity::event::Model, recipients: Vec<i64>) -> Self {
        Self {
            seq: row.seq,
            community_id: row.community_id,
            kind: row.kind,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            created_at: row.created_at,
            recipients,
        }
    }
}

/// Live events routed to the people they are for: each person's
/// subscriptions on this instance share one channel, so an event wakes only
/// its recipients' subscriptions, however many others are connected.
#[derive(Clone)]
pub struct Router {
    channels: Arc<Mutex<Channels>>,
    buffer: usize,
}

struct Channels {
    by_user: HashMap<i64, broadcast::Sender<Arc<OutboxEvent>>>,
    /// Forget the channels of people no longer subscribed when the map grows past this.
    sweep_at: usize,
    /// The last event handed to the channels. Kept under the same lock as
    /// they are, so a new listener knows exactly which events it missed.
    delivered_up_to: i64,
    /// Events numbered past a gap, held until the events before them arrive:
    /// another instance numbered those, and they are on their way through
    /// Redis or, failing that, read from the outbox by the relay.
    held: BTreeMap<i64, OutboxEvent>,
}

/// Events held past a gap at most; beyond it the relay reads them from the
/// outbox like the gap itself.
const HELD_LIMIT: usize = 10_000;

/// How long events numbered past a gap wait for another instance's message
/// to fill it before the relay reads the gap from the outbox. Redis passes a
/// message on within a millisecond or two: reading the outbox for every gap
/// cost a statement per batch with two instances numbering in turn.
const GAP_GRACE: Duration = Duration::from_millis(5);

/// A person's live events, from the moment they started listening.
pub struct Listening {
    pub events: broadcast::Receiver<Arc<OutboxEvent>>,
    /// Every event numbered after this and addressed to the person reaches
    /// `events`; those up to it were handed out before, and only the outbox
    /// still has them.
    pub after: i64,
}

impl Router {
    fn new(buffer: usize) -> Self {
        let channels = Channels { by_user: HashMap::new(), sweep_at: 1024, delivered_up_to: 0, held: BTreeMap::new() };
        Self { channels: Arc::new(Mutex::new(channels)), buffer: buffer.max(16) }
    }

    fn subscribe(&self, user_id: i64) -> Listening {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if channels.by_user.len() >= channels.sweep_at {
            channels.by_user.retain(|_, sender| sender.receiver_count() > 0);
            channels.sweep_at = (channels.by_user.len() * 2).max(1024);
        }
        let buffer = self.buffer;
        let events = channels.by_user.entry(user_id).or_insert_with(|| broadcast::channel(buffer).0).subscribe();
        Listening { events, after: channels.delivered_up_to }
    }

    /// Where the relay starts: the events up to `seq` were committed before
    /// this instance began delivering.
    pub(super) fn start_after(&self, seq: i64) {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.delivered_up_to = channels.delivered_up_to.max(seq);
    }

    fn delivered_up_to(&self) -> i64 {
        self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).delivered_up_to
    }

    /// Hands `events`, read from the outbox in order, to their recipients,
    /// skipping those already handed out, then any held events they lead to.
    fn deliver(&self, events: Vec<OutboxEvent>) {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events {
            if event.seq > channels.delivered_up_to {
                channels.send(event);
            }
        }
        channels.release_held();
    }

    /// Hands out `events` (numbered in order) where they continue what was
    /// handed out, skipping those already handed out, and holds the rest.
    /// Returns the first event still held: events numbered elsewhere come
    /// before it and have not arrived yet.
    fn deliver_next(&self, events: Vec<OutboxEvent>) -> Option<i64> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events {
            if event.seq > channels.delivered_up_to && channels.held.len() < HELD_LIMIT {
                channels.held.insert(event.seq, event);
            }
        }
        channels.release_held();
        channels.held.keys().next().copied()
    }

    /// Wakes `relay` after `GAP_GRACE` unless the events before `first_held`
    /// have been handed out by then.
    fn read_gap_unless_filled(&self, first_held: i64, relay: &Arc<Notify>) {
        let (router, relay) = (self.clone(), relay.clone());
        tokio::spawn(async move {
            tokio::time::sleep(GAP_GRACE).await;
            if router.delivered_up_to() < first_held - 1 {
                relay.notify_one();
            }
        });
    }
}

impl Channels {
    /// Hands out the held events that now continue the run, and forgets
    /// those the relay handed out meanwhile.
    fn release_held(&mut self) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.delivered_up_to + 1 {
                return;
            }
            let event = entry.remove();
            if event.seq > self.delivered_up_to {
                self.send(event);
            }
        }
    }

    fn send(&mut self, event: OutboxEvent) {
        self.delivered_up_to = event.seq;
        let event = Arc::new(event);
        for user_id in &event.recipients {
            let unsubscribed = self.by_user.get(user_id).is_some_and(|sender| sender.send(event.clone()).is_err());
            if unsubscribed {
                self.by_user.remove(user_id);
            }
        }
    }
}

/// The per-instance side of events: the channels subscriptions listen to and
/// the means to wake the relay.
pub struct EventBus {
    router: Router,
    db: DatabaseConnection,
    doorbell: Doorbell,
    /// On PostgreSQL, wakes this instance's numberer, which hands the
    /// drafts it numbered to this instance's subscribers and passes them on
    /// to the other instances.
    drafts: Option<Arc<Notify>>,
}

/// Wakes this instance's relay now and, through Redis, the others'.
#[derive(Clone)]
struct Doorbell {
    relay: Arc<Notify>,
    redis: Option<redis_fanout::Publisher>,
}

impl Doorbell {
    fn ring(&self) {
        self.relay.notify_one();
        if let Some(redis) = &self.redis {
            redis.ring();
        }
    }

    /// Hands events this instance numbered to the other instances; this
    /// instance's relay is not woken.
    fn pass_on(&self, events: &[OutboxEvent]) {
        if let Some(redis) = &self.redis {
            redis.pass_on(events);
        }
    }
}

impl EventBus {
    /// Starts the relay (and, with a Redis URL, the Redis fan-out; on
    /// PostgreSQL, the numberer) on the current runtime, delivering events
    /// committed from now on.
    pub async fn start(
        db: DatabaseConnection,
        buffer: usize,
        poll_interval: Duration,
        redis_url: Option<&str>,
        redis_prefix: &str,
    ) -> Result<Self, StartError> {
        let router = Router::new(buffer);
        let wake = Arc::new(Notify::new());
        let redis =
            redis_url.map(|url| redis_fanout::start(url, redis_prefix, router.clone(), wake.clone())).transpose()?;
        relay::start(db.clone(), router.clone(), wake.clone(), poll_interval).await?;
        let doorbell = Doorbell { relay: wake, redis };
        let drafts = (db.get_database_backend() == DbBackend::Postgres)
            .then(|| numbering::start(db.clone(), router.clone(), doorbell.clone(), poll_interval));
        Ok(Self { router, db, doorbell, drafts })
    }

    /// Live events addressed to `user_id`, from now on, and the last event
    /// this instance handed out before.
    pub fn subscribe(&self, user_id: i64) -> Listening {
        self.router.subscribe(user_id)
    }

    /// Call after committing a transaction that appended events: they reach
    /// this instance's relay now and, through Redis, the others'.
    pub fn committed(&self) {
        match &self.drafts {
            Some(drafts) => drafts.notify_one(),
            None => self.doorbell.ring(),
        }
    }

    /// The sequence number of the last event committed so far: a feed that
    /// starts after it receives nothing committed before this call. On
    /// PostgreSQL the drafts committed so far are numbered first.
    pub async fn position_now(&self) -> Result<i64, DbErr> {
        if self.drafts.is_none() {
            return relay::high_water_mark(&self.db).await;
        }
        let (numbered, last_seq) = numbering::number_drafts(&self.db).await?;
        if numbered > 0 {
            self.doorbell.ring();
        }
        Ok(last_seq)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot read the event outbox: {0}")]
    Database(#[from] sea_orm::DbErr),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event for unit tests of the routing, here and in `redis_fanout`.
    pub(super) fn event(seq: i64, recipients: Vec<i64>) -> OutboxEvent {
        OutboxEvent {
            seq,
            community_id: 1,
            kind: "SUBMITTED".into(),
            entity_type: "repair_order".into(),
            entity_id: seq,
            created_at: Utc::now(),
            recipients,
        }
    }

    #[test]
    fn an_event_reaches_only_its_recipients_channels() {
        let router = Router::new(16);
        let [mut alice, mut alice_again, mut bob] = [1, 1, 2].map(|user_id| router.subscribe(user_id).events);
        router.deliver(vec![event(10, vec![1, 3])]);
        assert_eq!(alice.try_recv().map(|e| e.seq), Ok(10));
        assert_eq!(alice_again.try_recv().map(|e| e.seq), Ok(10), "every subscription of the person");
        assert!(bob.try_recv().is_err(), "not addressed to bob");
    }

    #[test]
    fn a_listener_learns_which_events_it_missed() {
        let router = Router::new(16);
        router.start_after(7);
        assert_eq!(router.subscribe(1).after, 7, "committed before the relay started");
        router.deliver(vec![event(8, vec![2])]);
        let mut listening = router.subscribe(1);
        assert_eq!(listening.after, 8, "handed out before, even to someone else");
        router.deliver(vec![event(9, vec![1])]);
        assert_eq!(listening.events.try_recv().map(|e| e.seq), Ok(9), "after it, live");
        router.start_after(3);
        assert_eq!(router.subscribe(1).after, 9, "never moves back");
    }

    #[test]
    fn the_numberer_holds_what_comes_after_a_gap_until_it_is_filled() {
        let router = Router::new(16);
        router.start_after(10);
        let mut alice = router.subscribe(1).events;
        assert_eq!(router.deliver_next(vec![event(11, vec![1]), event(12, vec![1])]), None, "the next run");
        assert_eq!(router.deliver_next(vec![event(12, vec![1]), event(13, vec![1])]), None, "one already handed out");
        assert_eq!(router.deliver_next(vec![event(16, vec![1])]), Some(16), "14 and 15 are missing");
        assert_eq!(router.deliver_next(vec![event(14, vec![1])]), Some(16), "15 is still missing");
        assert_eq!(router.delivered_up_to(), 14);
        router.deliver(vec![event(15, vec![1]), event(16, vec![1])]);
        assert_eq!(
            router.deliver_next(vec![event(15, vec![1]), event(16, vec![1])]),
            None,
            "read by the relay meanwhile"
        );
        let received: Vec<i64> = std::iter::from_fn(|| alice.try_recv().ok()).map(|e| e.seq).collect();
        assert_eq!(received, [11, 12, 13, 14, 15, 16], "each once, in order");
        assert_eq!(router.delivered_up_to(), 16);
    }

    #[test]
    fn the_relay_releases_what_was_held_after_the_gap_it_read() {
        let router = Router::new(16);
        router.start_after(10);
        let mut alice = router.subscribe(1).events;
        assert_eq!(router.deliver_next(vec![event(13, vec![1]), event(14, vec![1])]), Some(13));
        router.deliver(vec![event(11, vec![1]), event(12, vec![1])]);
        let received: Vec<i64> = std::iter::from_fn(|| alice.try_recv().ok()).map(|e| e.seq).collect();
        assert_eq!(received, [11, 12, 13, 14], "the held events follow the gap at once");
    }

    #[test]
    fn events_past_the_limit_are_left_to_the_relay() {
        let router = Router::new(16);
        let last = HELD_LIMIT as i64 + 2;
        let past_the_gap = (2..=last).map(|seq| event(seq, vec![1])).collect();
        assert_eq!(router.deliver_next(past_the_gap), Some(2));
        assert_eq!(router.channels.lock().expect("channels").held.len(), HELD_LIMIT, "the last one is not held");
        router.deliver(vec![event(1, vec![1])]);
        assert_eq!(router.delivered_up_to(), last - 1, "what was held follows the gap the relay read");
        router.deliver(vec![event(last, vec![1])]);
        assert_eq!(router.delivered_up_to(), last, "the relay reads the rest");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_left_unfilled_wakes_the_relay_and_a_filled_one_does_not() {
        let (router, relay) = (Router::new(16), Arc::new(Notify::new()));
        router.start_after(10);
        router.read_gap_unless_filled(12, &relay);
        router.deliver_next(vec![event(11, vec![1])]);
        tokio::time::sleep(GAP_GRACE * 2).await;
        assert!(tokio::time::timeout(GAP_GRACE, relay.notified()).await.is_err(), "11 arrived in time");
        router.read_gap_unless_filled(14, &relay);
        tokio::time::sleep(GAP_GRACE * 2).await;
        assert!(tokio::time::timeout(GAP_GRACE, relay.notified()).await.is_ok(), "12 and 13 did not");
    }

    #[test]
    fn a_person_no_longer_subscribed_is_forgotten() {
        let router = Router::new(16);
        drop(router.subscribe(1));
        router.deliver(vec![event(1, vec![1])]);
        assert!(router.channels.lock().expect("channels").by_user.is_empty());
    }
}
