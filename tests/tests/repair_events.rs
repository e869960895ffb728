//! The `repairOrderEvents` subscription over graphql-transport-ws against the
//! real server: who receives which event, replay after a cursor, the switch
//! from replay to live, events that commit late, several instances (with and
//! without Redis), and residents who move out. Only event delivery is tested
//! here, not the WebSocket protocol itself.

use std::{collections::HashMap, time::Duration};

use api::{
    demo::SeededCommunity,
    events::{NewEvent, cursor, feed::feed},
    repair,
};
use entity::{event, unit_membership};
use futures_util::{StreamExt, future::join_all};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tests::{
    EVENT_WAIT, QUIET, SUBSCRIPTION_ID, Subscriber, TestApp, id_of, number_of, seq, spawn_app, spawn_app_with,
};
use tokio::sync::oneshot;

const EVENTS: &str = "subscription($after: String) { repairOrderEvents(after: $after) { cursor kind occurredAt repairOrder { id state } } }";
const SUBMIT: &str = "mutation($unit: ID!) { submitRepairOrder(input: {unitId: $unit, category: PLUMBING, description: \"the tap drips\"}) { repairOrder { id } } }";
const ASSIGN: &str = "mutation($order: ID!, $tech: ID!) { assignRepairOrder(input: {repairOrderId: $order, technicianId: $tech}) { repairOrder { state } } }";
const START: &str =
    "mutation($order: ID!) { startRepairOrder(input: {repairOrderId: $order}) { repairOrder { state } } }";
const COMPLETE: &str = "mutation($order: ID!) { completeRepairOrder(input: {repairOrderId: $order, note: \"new washer\"}) { repairOrder { state } } }";
const CONFIRM: &str =
    "mutation($order: ID!) { confirmRepairOrder(input: {repairOrderId: $order, rating: 5}) { repairOrder { state } } }";
const MOVE_OUT: &str = "mutation($id: ID!) { moveOut(input: {membershipId: $id}) { membership { id movedOutOn } } }";

/// Every demo account, in both communities.
const KEYS: [&str; 9] =
    ["owner", "family", "tenant", "owner2", "butler", "front_desk", "technician", "supervisor", "manager"];

// ---------------------------------------------------------------------------
// A graphql-transport-ws subscriber that can also tell "nothing arrived".
// ---------------------------------------------------------------------------

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    /// The cursor decoded to its position in the delivery order.
    seq: i64,
    cursor: String,
    kind: String,
    order: String,
}

/// `(kind, order id)` of each event, for comparing with what was expected.
fn kinds_and_orders(events: &[Event]) -> Vec<(String, String)> {
    events.iter().map(|event| (event.kind.clone(), event.order.clone())).collect()
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(kind, order)| (kind.to_string(), order.to_string())).collect()
}

fn assert_strictly_increasing(who: &str, events: &[Event]) {
    for pair in events.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "{who}: cursors out of order or repeated: {events:#?}");
    }
}

/// A phone or office screen subscribed to `repairOrderEvents`.
struct Phone(Subscriber);

impl Phone {
    async fn open(app: &TestApp, token: &str, who: impl Into<String>, after: Option<&str>) -> Self {
        Self(Subscriber::open(app, token, who, EVENTS, "repairOrderEvents", after).await)
    }

    async fn next_event(&mut self) -> Event {
        self.next_event_within(EVENT_WAIT).await
    }

    async fn next_event_within(&mut self, wait: Duration) -> Event {
        let event = self.0.next_event_within(wait).await;
        self.parse(&event)
    }

    async fn exactly(&mut self, count: usize) -> Vec<Event> {
        self.0.exactly(count).await.iter().map(|event| self.parse(event)).collect()
    }

    fn parse(&self, event: &Value) -> Event {
        let who = &self.0.who;
        Event {
            seq: seq(event),
            cursor: event["cursor"].as_str().unwrap_or_default().to_owned(),
            kind: event["kind"].as_str().unwrap_or_else(|| panic!("{who}: no kind in {event}")).to_owned(),
            order: event["repairOrder"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{who}: no repair order in {event}"))
                .to_owned(),
        }
    }

    async fn expect_quiet(&mut self, wait: Duration) {
        self.0.expect_quiet(wait).await;
    }

    async fn recv(&mut self, wait: Duration) -> Option<Value> {
        self.0.recv(wait).await
    }

    async fn close(self) {
        self.0.close().await;
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The cursor of the newest committed event: subscribing after it receives
/// exactly what happens from now on, however long the subscription takes to
/// start listening.
async fn now_cursor(app: &TestApp) -> String {
    cursor::encode(app.context.events.position_now().await.expect("position"))
}

async fn submit(app: &TestApp, token: &str, unit: &str) -> String {
    let data = app.data(Some(token), SUBMIT, json!({ "unit": id_of("unit", app.home.unit(unit).id) })).await;
    data["submitRepairOrder"]["repairOrder"]["id"].as_str().expect("repair order id").to_owned()
}

async fn assign(app: &TestApp, token: &str, order: &str) {
    let tech = id_of("usr", app.home.account("technician").user_id);
    app.data(Some(token), ASSIGN, json!({ "order": order, "tech": tech })).await;
}

async fn act(app: &TestApp, token: &str, mutation: &str, order: &str) {
    app.data(Some(token), mutation, json!({ "order": order })).await;
}

/// The id of `key`'s current membership of unit `number` in the home community.
async fn membership_id(app: &TestApp, number: &str, key: &str) -> String {
    let membership = unit_membership::Entity::find()
        .filter(unit_membership::Column::UserId.eq(app.home.account(key).user_id))
        .filter(unit_membership::Column::UnitId.eq(app.home.unit(number).id))
        .filter(unit_membership::Column::MovedOutOn.is_null())
        .one(&app.db)
        .await
        .expect("read memberships")
        .unwrap_or_else(|| panic!("{key} does not live in {number}"));
    id_of("mbr", membership.id)
}

/// The code (and field) of the error a subscription ended with, whether sent
/// as a `next` carrying errors or as an `error` message.
fn subscription_error(message: &Value) -> (Option<&str>, Option<&str>) {
    let errors = match message["type"].as_str() {
        Some("next") => &message["payload"]["errors"],
        Some("error") => &message["payload"],
        _ => panic!("expected an error for the subscription, got {message}"),
    };
    assert_eq!(message["id"], SUBSCRIPTION_ID, "{message}");
    (errors[0]["extensions"]["code"].as_str(), errors[0]["extensions"]["field"].as_str())
}

// ---------------------------------------------------------------------------
// 1. Recipients
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_event_reaches_exactly_the_people_it_concerns() {
    let app = spawn_app().await;
    let start = now_cursor(&app).await;

    // Everyone of both communities subscribes.
    let people: Vec<(String, &SeededCommunity, &str)> = [("home", &app.home), ("other", &app.other)]
        .into_iter()
        .flat_map(|(name, community)| KEYS.map(|key| (format!("{name}.{key}"), community, key)))
        .collect();
    let tokens = join_all(people.iter().map(|(_, community, key)| app.token_in(community, key))).await;
    let mut subscribers = Vec::new();
    for ((who, ..), token) in people.iter().zip(&tokens) {
        subscribers.push(Phone::open(&app, token, who.clone(), Some(&start)).await);
    }
    let token = |who: &str| &tokens[people.iter().position(|(name, ..)| name == who).expect("a person")];

    // An order of 1-101 (building 1号楼), dispatched to the technician, and
    // one of 2-202 (building 2号楼).
    let first = submit(&app, token("home.owner"), "1-101").await;
    assign(&app, token("home.supervisor"), &first).await;
    let second = submit(&app, token("home.owner2"), "2-202").await;

    let of_first = [("SUBMITTED", first.as_str()), ("ASSIGNED", first.as_str())];
    let everything = [of_first[0], of_first[1], ("SUBMITTED", second.as_str())];
    let mut wanted: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for who in ["home.owner", "home.family", "home.butler"] {
        wanted.insert(who, of_first.to_vec());
    }
    for who in ["home.supervisor", "home.manager"] {
        wanted.insert(who, everything.to_vec());
    }
    wanted.insert("home.technician", vec![("ASSIGNED", first.as_str())]);
    wanted.insert("home.owner2", vec![("SUBMITTED", second.as_str())]);

    for subscriber in &mut subscribers {
        let wants = wanted.get(subscriber.0.who.as_str()).cloned().unwrap_or_default();
        let mut received = Vec::new();
        for _ in 0..wants.len() {
            received.push(subscriber.next_event().await);
        }
        assert_eq!(kinds_and_orders(&received), expected(&wants), "{}", subscriber.0.who);
        assert_strictly_increasing(&subscriber.0.who, &received);
    }
    // Once everyone has what they should, nobody receives anything more:
    // not the tenant, owner2 or the front desk, not the butler of 1号楼 for
    // the order of 2号楼, not the technician for the submission, and nobody
    // of the other community.
    join_all(subscribers.iter_mut().map(|subscriber| subscriber.expect_quiet(QUIET))).await;
}

// ---------------------------------------------------------------------------
// 2. Replay after a cursor
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_resident_who_reconnects_with_a_cursor_receives_exactly_what_was_missed() {
    let app = spawn_app().await;
    let (tenant, owner, supervisor, technician) = (
        app.token("tenant").await,
        app.token("owner").await,
        app.token("supervisor").await,
        app.token("technician").await,
    );
    let mut phone = Phone::open(&app, &tenant, "tenant", Some(&now_cursor(&app).await)).await;
    let order = submit(&app, &tenant, "1-102").await;
    let first = phone.next_event().await;
    assert_eq!((first.kind.as_str(), first.order.as_str()), ("SUBMITTED", order.as_str()));
    phone.close().await;

    // While the phone is offline: three changes of the tenant's order, and an
    // order of another unit that is none of the tenant's business.
    assign(&app, &supervisor, &order).await;
    submit(&app, &owner, "1-101").await;
    act(&app, &technician, START, &order).await;
    act(&app, &technician, COMPLETE, &order).await;

    let mut phone = Phone::open(&app, &tenant, "tenant (reconnected)", Some(&first.cursor)).await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(phone.next_event().await);
    }
    assert_eq!(
        kinds_and_orders(&missed),
        expected(&[("ASSIGNED", &order), ("STARTED", &order), ("COMPLETED", &order)]),
        "the replay after the first event"
    );
    assert!(missed[0].seq > first.seq, "no repeat of the event the cursor names: {first:?} then {missed:?}");
    assert_strictly_increasing("tenant (reconnected)", &missed);
    phone.expect_quiet(QUIET).await;

    // And then live events follow on the same subscription.
    act(&app, &tenant, CONFIRM, &order).await;
    let live = phone.next_event().await;
    assert_eq!((live.kind.as_str(), live.order.as_str()), ("CLOSED", order.as_str()));
    assert!(live.seq > missed[2].seq, "{missed:?} then {live:?}");
    phone.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn a_phone_that_resumes_up_to_date_reads_nothing_from_the_outbox() {
    // No timer-driven reads of the outbox during the counts: commits still
    // wake the relay at once.
    let app = spawn_app_with(|settings| settings.event_poll_interval = Duration::from_secs(600)).await;
    let (tenant, supervisor, technician) =
        (app.token("tenant").await, app.token("supervisor").await, app.token("technician").await);
    let order = submit(&app, &tenant, "1-102").await;
    let mut first = Phone::open(&app, &tenant, "tenant", Some(&now_cursor(&app).await)).await;
    assign(&app, &supervisor, &order).await;
    let assigned = first.next_event().await;
    first.close().await;

    let (connected, for_connecting) =
        app.count_queries(Subscriber::connect(&app, &tenant, "tenant (connected only)", "repairOrderEvents")).await;
    connected.close().await;
    let (mut resumed, for_up_to_date) = app
        .count_queries(async {
            let resumed = Phone::open(&app, &tenant, "tenant (up to date)", Some(&assigned.cursor)).await;
            // Time for the subscription to start, and to read, were it to.
            tokio::time::sleep(Duration::from_millis(300)).await;
            resumed
        })
        .await;
    assert_eq!(for_up_to_date, for_connecting, "subscribing up to date adds no statement to connecting");

    let one_behind = cursor::encode(assigned.seq - 1);
    let ((mut behind, missed), for_behind) = app
        .count_queries(async {
            let mut behind = Phone::open(&app, &tenant, "tenant (one behind)", Some(&one_behind)).await;
            let missed = behind.next_event().await;
            (behind, missed)
        })
        .await;
    assert_eq!(missed, assigned, "the missed event, from the outbox");
    assert!(for_behind > for_connecting, "a phone behind reads what it missed");

    // Both are live: the next change reaches each once.
    act(&app, &technician, START, &order).await;
    for phone in [&mut resumed, &mut behind] {
        let live = phone.next_event().await;
        assert_eq!((live.kind.as_str(), live.order.as_str()), ("STARTED", order.as_str()));
        phone.expect_quiet(QUIET).await;
    }
}

#[tokio::test]
async fn without_a_cursor_only_what_happens_from_now_on_arrives() {
    let app = spawn_app().await;
    let (tenant, supervisor) = (app.token("tenant").await, app.token("supervisor").await);
    let from_now = now_cursor(&app).await;
    let mut office = Phone::open(&app, &supervisor, "supervisor", Some(&from_now)).await;
    let order = submit(&app, &tenant, "1-102").await;
    // Once the office has it, the server has handed the submission out.
    assert_eq!(office.next_event().await.order, order);
    let mut phone = Phone::open(&app, &tenant, "tenant", None).await;
    // Nothing from before subscribing (and time for the subscription to start).
    phone.expect_quiet(QUIET).await;

    assign(&app, &supervisor, &order).await;
    let received = phone.exactly(1).await;
    assert_eq!(kinds_and_orders(&received), expected(&[("ASSIGNED", &order)]));
}

/// A phone may subscribe and submit at once; the server may run the
/// submission before the subscription's stream first runs. Here the stream
/// is held back until the order has committed and its event is numbered.
#[tokio::test]
async fn an_order_submitted_while_a_subscription_starts_reaches_it() {
    let app = spawn_app().await;
    let tenant = app.token("tenant").await;
    let starting = feed(app.context.clone(), app.home.account("tenant").user_id, repair::service::ENTITY_TYPE, None);
    let order = submit(&app, &tenant, "1-102").await;
    app.settle_events().await;

    let mut events = std::pin::pin!(starting);
    let first = tokio::time::timeout(EVENT_WAIT, events.next()).await.expect("an event in time");
    let first = first.expect("the feed goes on").expect("no error");
    assert_eq!((first.kind.as_str(), id_of("ro", first.entity_id)), ("SUBMITTED", order));
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_user_input() {
    let app = spawn_app().await;
    let tenant = app.token("tenant").await;
    // "ZXYtMQ" is "ev-1" in base64: well-formed, but no position.
    for garbage in ["garbage", "ev12", "ZXYtMQ", ""] {
        let mut phone = Phone::open(&app, &tenant, format!("tenant after {garbage:?}"), Some(garbage)).await;
        let message = phone.recv(EVENT_WAIT).await.unwrap_or_else(|| panic!("no answer to after: {garbage:?}"));
        assert_eq!(subscription_error(&message), (Some("BAD_USER_INPUT"), Some("after")), "{garbage:?}: {message}");
        phone.close().await;
    }
}

// ---------------------------------------------------------------------------
// 3. The switch from replay to live
// ---------------------------------------------------------------------------

#[tokio::test]
async fn subscribing_while_orders_change_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    let keys = ["owner", "family", "tenant", "owner2", "supervisor", "technician"];
    let tokens: HashMap<&str, String> = keys.into_iter().zip(join_all(keys.map(|key| app.token(key))).await).collect();
    let start = now_cursor(&app).await;

    // Five orders before anyone subscribes: these come from the replay.
    let placed =
        [("owner", "1-101"), ("family", "1-101"), ("tenant", "1-102"), ("owner", "2-201"), ("owner2", "2-202")];
    let mut orders = Vec::new();
    for (key, unit) in placed {
        orders.push((key, submit(&app, &tokens[key], unit).await));
    }
    let before_changes = app.context.events.position_now().await.expect("position");

    // Twenty changes, five lifecycles side by side, while the supervisor and
    // the owner subscribe from `start` once the first few have committed.
    let changes = join_all(orders.iter().map(|(resident, order)| {
        let (app, tokens) = (&app, &tokens);
        async move {
            assign(app, &tokens["supervisor"], order).await;
            act(app, &tokens["technician"], START, order).await;
            act(app, &tokens["technician"], COMPLETE, order).await;
            act(app, &tokens[resident], CONFIRM, order).await;
        }
    }));
    let subscribe = async {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        while app.context.events.position_now().await.expect("position") < before_changes + 4
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let supervisor = Phone::open(&app, &tokens["supervisor"], "supervisor", Some(&start)).await;
        let owner = Phone::open(&app, &tokens["owner"], "owner", Some(&start)).await;
        (supervisor, owner)
    };
    let (_, (mut supervisor, mut owner)) = tokio::join!(changes, subscribe);

    let lifecycle = ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED", "CLOSED"];
    for (subscriber, count, concerned) in [
        (&mut supervisor, 25, orders.iter().map(|(_, order)| order.clone()).collect::<Vec<_>>()),
        (&mut owner, 15, vec![orders[0].1.clone(), orders[1].1.clone(), orders[3].1.clone()]),
    ] {
        let who = subscriber.0.who.clone();
        let live = subscriber.exactly(count).await;
        assert_strictly_increasing(&who, &live);
        for order in &concerned {
            let kinds: Vec<_> = live.iter().filter(|e| &e.order == order).map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, lifecycle, "{who}: the events of {order}");
        }
        assert!(live.iter().all(|e| concerned.contains(&e.order)), "{who}: events of other orders: {live:#?}");

        // A replay from the same cursor, now that everything has committed,
        // returns the very same events.
        let mut again = Phone::open(&app, &tokens[who.as_str()], format!("{who} (replay)"), Some(&start)).await;
        let replayed = again.exactly(count).await;
        assert_eq!(replayed, live, "{who}: what arrived while subscribing versus a replay afterwards");
    }
}

// ---------------------------------------------------------------------------
// 4. Events that commit late
// ---------------------------------------------------------------------------

/// An event whose transaction commits late is delivered, and in the order
/// events became visible: none is skipped, none overtakes one already sent.
/// On SQLite writers take turns, so a submission waits for the transaction
/// that appended first and comes after it. PostgreSQL numbers events after
/// their transactions commit, so the submission does not wait and comes first.
#[tokio::test]
async fn an_event_that_commits_late_is_delivered_and_not_overtaken() {
    let app = spawn_app().await;
    let numbered_after_commit = app.db.get_database_backend() == DbBackend::Postgres;
    let tenant = app.token("tenant").await;
    let tenant_id = app.home.account("tenant").user_id;
    let existing = submit(&app, &tenant, "1-102").await;
    let before = now_cursor(&app).await;
    let mut phone = Phone::open(&app, &tenant, "tenant", Some(&before)).await;
    phone.expect_quiet(Duration::from_millis(200)).await;

    // A writer appends an event and holds its transaction open...
    let late = NewEvent {
        community_id: app.home.community.id,
        kind: "STARTED",
        entity_type: "REPAIR_ORDER",
        entity_id: number_of("ro", &existing),
        recipients: vec![tenant_id],
    };
    let (appended_now, appended) = oneshot::channel();
    let (commit_now, may_commit) = oneshot::channel::<()>();
    let writer = tokio::spawn({
        let writers = app.context.writers.clone();
        async move {
            writers
                .write(async |txn| {
                    api::events::append(txn, vec![late]).await?;
                    appended_now.send(()).expect("test waits");
                    may_commit.await.expect("test lets it commit");
                    Ok(())
                })
                .await
        }
    });
    appended.await.expect("appended");
    // ...while another order is submitted through the API.
    let (http, url, token) = (app.http.clone(), app.url("/graphql"), tenant.clone());
    let unit = id_of("unit", app.home.unit("1-102").id);
    let second = tokio::spawn(async move {
        let response = http
            .post(url)
            .bearer_auth(token)
            .json(&json!({ "query": SUBMIT, "variables": { "unit": unit } }))
            .send()
            .await
            .expect("request");
        response.json::<Value>().await.expect("JSON body")
    });
    let let_the_writer_commit = async || {
        commit_now.send(()).expect("writer waits");
        writer.await.expect("task").expect("commit");
    };
    let mut live = Vec::new();
    let body = if numbered_after_commit {
        let body = tokio::time::timeout(EVENT_WAIT, second).await.expect("the submission does not wait").expect("task");
        live.extend(phone.exactly(1).await);
        let_the_writer_commit().await;
        body
    } else {
        phone.expect_quiet(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the submission did not wait for the open transaction that appended an event");
        let_the_writer_commit().await;
        tokio::time::timeout(EVENT_WAIT, second).await.expect("the submission finishes").expect("task")
    };
    assert!(body.get("errors").is_none(), "{body}");
    let second = body["data"]["submitRepairOrder"]["repairOrder"]["id"].as_str().expect("order id").to_owned();
    live.extend(phone.exactly(2 - live.len()).await);

    let wanted = if numbered_after_commit {
        expected(&[("SUBMITTED", &second), ("STARTED", &existing)])
    } else {
        expected(&[("STARTED", &existing), ("SUBMITTED", &second)])
    };
    assert_eq!(kinds_and_orders(&live), wanted, "live, the late event included");
    assert_strictly_increasing("tenant", &live);
    let mut again = Phone::open(&app, &tenant, "tenant (replay)", Some(&before)).await;
    let replayed = again.exactly(2).await;
    assert_eq!(replayed, live, "a replay from before both");
}

// ---------------------------------------------------------------------------
// 5. Several instances
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_subscriber_on_one_instance_receives_what_happens_on_another() {
    let app = spawn_app().await;
    let b = app.peer(|settings| settings.event_poll_interval = Duration::from_millis(200)).await;
    let (tenant, supervisor) = (app.token("tenant").await, app.token("supervisor").await);
    let start = now_cursor(&app).await;
    let mut on_a = Phone::open(&app, &tenant, "tenant on A", Some(&start)).await;
    let mut on_b = Phone::open(&b, &tenant, "tenant on B", Some(&start)).await;

    let order = submit(&app, &tenant, "1-102").await;
    assign(&b, &supervisor, &order).await;

    let wanted = expected(&[("SUBMITTED", &order), ("ASSIGNED", &order)]);
    let received_b = on_b.exactly(2).await;
    assert_eq!(kinds_and_orders(&received_b), wanted, "on B, the submission made on A");
    let received_a = on_a.exactly(2).await;
    assert_eq!(kinds_and_orders(&received_a), wanted, "on A, the assignment made on B");
    assert_eq!(received_a, received_b, "the same events under the same cursors on both instances");
}

/// Two instances whose relays read the outbox on their own only every ten
/// minutes, so what reaches one from the other at once came through Redis;
/// `None`, and the test skips, without TEST_REDIS_URL.
async fn instances_joined_by_redis() -> Option<(TestApp, TestApp)> {
    if std::env::var("TEST_REDIS_URL").is_err() {
        eprintln!("TEST_REDIS_URL is not set: skipping a test of events through Redis");
        return None;
    }
    let slow = Duration::from_secs(600);
    let app = spawn_app_with(|settings| settings.event_poll_interval = slow).await;
    let b = app.peer(|settings| settings.event_poll_interval = slow).await;
    Some((app, b))
}

#[tokio::test]
async fn with_redis_other_instances_are_woken_at_once() {
    let Some((app, b)) = instances_joined_by_redis().await else { return };
    let (tenant, supervisor) = (app.token("tenant").await, app.token("supervisor").await);
    let start = now_cursor(&app).await;
    let mut on_a = Phone::open(&app, &tenant, "tenant on A", Some(&start)).await;
    let mut on_b = Phone::open(&b, &tenant, "tenant on B", Some(&start)).await;
    // Let both instances' Redis subscriptions and the replays settle.
    on_a.expect_quiet(Duration::from_millis(700)).await;
    on_b.expect_quiet(Duration::from_millis(10)).await;

    let order = submit(&app, &tenant, "1-102").await;
    let event = on_b.next_event_within(Duration::from_secs(1)).await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("SUBMITTED", order.as_str()), "on B");
    assert_eq!(on_a.next_event().await, event);

    assign(&b, &supervisor, &order).await;
    let event = on_a.next_event_within(Duration::from_secs(1)).await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("ASSIGNED", order.as_str()), "on A");
    assert_eq!(on_b.next_event().await, event);

    on_a.expect_quiet(QUIET).await;
    on_b.expect_quiet(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn with_redis_on_postgres_other_instances_receive_the_events_without_reading_the_outbox() {
    let Some((app, b)) = instances_joined_by_redis().await else { return };
    if app.db.get_database_backend() != DbBackend::Postgres {
        eprintln!("events travel through Redis only from PostgreSQL's numberer: skipping");
        return;
    }
    let tenant = app.token("tenant").await;
    let start = now_cursor(&app).await;
    let mut on_a = Phone::open(&app, &tenant, "tenant on A", Some(&start)).await;
    let mut on_b = Phone::open(&b, &tenant, "tenant on B", Some(&start)).await;
    // Let both instances' Redis subscriptions settle.
    on_a.expect_quiet(Duration::from_millis(700)).await;

    let order = submit(&app, &tenant, "1-102").await;
    let event = on_b.next_event_within(Duration::from_secs(1)).await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("SUBMITTED", order.as_str()), "on B");
    assert_eq!(on_a.next_event().await, event, "the same event under the same cursor on A");
    on_b.close().await;

    // B, with no phone to read an order for, reads nothing for A's events.
    let ((order, event), read_by_b) = b
        .count_queries(async {
            let order = submit(&app, &tenant, "1-102").await;
            let event = on_a.next_event().await;
            // Anything B still read for it would come now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            (order, event)
        })
        .await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("SUBMITTED", order.as_str()));
    assert_eq!(read_by_b, 0, "B took A's event from Redis, not from the outbox");
}

#[tokio::test]
async fn with_redis_unreachable_events_still_arrive_and_none_is_lost() {
    let app = spawn_app().await;
    let b = app
        .peer(|settings| {
            settings.redis_url = Some("redis://127.0.0.1:1".into());
            settings.event_poll_interval = Duration::from_millis(200);
        })
        .await;
    let (tenant, supervisor) = (app.token("tenant").await, app.token("supervisor").await);
    let start = now_cursor(&app).await;
    let mut on_a = Phone::open(&app, &tenant, "tenant on A", Some(&start)).await;
    let mut on_b = Phone::open(&b, &tenant, "tenant on B (Redis down)", Some(&start)).await;

    let first = submit(&app, &tenant, "1-102").await;
    let second = submit(&app, &tenant, "1-102").await;
    assign(&b, &supervisor, &first).await;
    let third = submit(&b, &tenant, "1-102").await;

    let wanted =
        expected(&[("SUBMITTED", &first), ("SUBMITTED", &second), ("ASSIGNED", &first), ("SUBMITTED", &third)]);
    let received_b = on_b.exactly(4).await;
    assert_eq!(kinds_and_orders(&received_b), wanted, "on B, whose Redis is unreachable");
    assert_strictly_increasing("tenant on B", &received_b);
    let received_a = on_a.exactly(4).await;
    assert_eq!(received_a, received_b, "on A, including what B could not announce");
}

/// Appends `count` events for `order`, addressed to `recipient`, each in a
/// transaction of its own through `app`'s writers, as mutations do.
async fn append_one_by_one(app: &TestApp, count: usize, recipient: i64, order: &str) {
    for _ in 0..count {
        let event = NewEvent {
            community_id: app.home.community.id,
            kind: "OVERDUE",
            entity_type: "REPAIR_ORDER",
            entity_id: number_of("ro", order),
            recipients: vec![recipient],
        };
        app.context.writers.write(async |txn| Ok(api::events::append(txn, vec![event]).await?)).await.expect("append");
        app.context.events.committed();
    }
}

#[tokio::test]
async fn events_committed_on_two_instances_at_once_reach_both_in_the_same_order() {
    const PER_INSTANCE: usize = 30;
    let app = spawn_app().await;
    let b = app.peer(|_| {}).await;
    let tenant = app.token("tenant").await;
    let order = submit(&app, &tenant, "1-102").await;
    let start = now_cursor(&app).await;
    let mut on_a = Phone::open(&app, &tenant, "tenant on A", Some(&start)).await;
    let mut on_b = Phone::open(&b, &tenant, "tenant on B", Some(&start)).await;
    on_a.expect_quiet(Duration::from_millis(300)).await;

    // Each instance numbers (on PostgreSQL) and hands out its own events
    // while the other does the same: each must fill the gaps, from the
    // other's Redis messages or from the outbox.
    let tenant_id = app.home.account("tenant").user_id;
    tokio::join!(
        append_one_by_one(&app, PER_INSTANCE, tenant_id, &order),
        append_one_by_one(&b, PER_INSTANCE, tenant_id, &order)
    );
    app.settle_events().await;

    let committed: Vec<i64> = event::Entity::find()
        .filter(event::Column::EntityId.eq(number_of("ro", &order)))
        .filter(event::Column::Kind.eq("OVERDUE"))
        .order_by_asc(event::Column::Seq)
        .all(&app.db)
        .await
        .expect("the appended events")
        .iter()
        .map(|row| row.seq)
        .collect();
    let received_a = on_a.exactly(2 * PER_INSTANCE).await;
    let received_b = on_b.exactly(2 * PER_INSTANCE).await;
    assert_eq!(received_a.iter().map(|e| e.seq).collect::<Vec<_>>(), committed, "on A: every event once, in order");
    assert_eq!(received_a, received_b, "on B: the same events under the same cursors");
}

// ---------------------------------------------------------------------------
// 6. Moving out
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_resident_who_moves_out_stops_receiving_that_units_events() {
    let app = spawn_app().await;
    let (owner, family, supervisor, desk) = (
        app.token("owner").await,
        app.token("family").await,
        app.token("supervisor").await,
        app.token("front_desk").await,
    );
    let start = now_cursor(&app).await;
    let mut phone = Phone::open(&app, &owner, "owner", Some(&start)).await;
    let mut office = Phone::open(&app, &supervisor, "supervisor", Some(&start)).await;

    // The owner lives in 1-101 and 2-201 and follows an order of 2-201...
    let order = submit(&app, &owner, "2-201").await;
    let submitted = phone.next_event().await;
    assert_eq!((submitted.kind.as_str(), submitted.order.as_str()), ("SUBMITTED", order.as_str()));
    assert_eq!(office.next_event().await.order, order);

    // ...until moving out of 2-201.
    let membership = membership_id(&app, "2-201", "owner").await;
    app.data(Some(&desk), MOVE_OUT, json!({ "id": membership })).await;
    assign(&app, &supervisor, &order).await;
    let assigned = office.next_event().await;
    assert_eq!((assigned.kind.as_str(), assigned.order.as_str()), ("ASSIGNED", order.as_str()));

    // 1-101's events still arrive, and nothing of 2-201 before or after them.
    let other = submit(&app, &family, "1-101").await;
    let next = phone.next_event().await;
    assert_eq!((next.kind.as_str(), next.order.as_str()), ("SUBMITTED", other.as_str()), "after moving out of 2-201");
    phone.expect_quiet(QUIET).await;

    // Replaying from before the move shows nothing of 2-201 any more either.
    let mut again = Phone::open(&app, &owner, "owner (replay)", Some(&start)).await;
    let replayed = again.exactly(1).await;
    assert_eq!(kinds_and_orders(&replayed), expected(&[("SUBMITTED", &other)]), "replay after moving out");
}

// ---------------------------------------------------------------------------
// Bursts and long replays
// ---------------------------------------------------------------------------

/// Appends and commits, in one transaction, `count` events about `order`
/// for `recipient` (and, between them, as many for `bystander` about
/// `their_order`), as a busy outbox would hold; returns the recipient's seqs.
async fn append_burst(
    app: &TestApp,
    count: usize,
    (recipient, order): (i64, &str),
    (bystander, their_order): (i64, &str),
) -> Vec<i64> {
    let event = |user: i64, order: &str| NewEvent {
        community_id: app.home.community.id,
        kind: "OVERDUE",
        entity_type: "REPAIR_ORDER",
        entity_id: number_of("ro", order),
        recipients: vec![user],
    };
    let events = (0..count).flat_map(|_| [event(recipient, order), event(bystander, their_order)]).collect();
    app.context.writers.write(async |txn| Ok(api::events::append(txn, events).await?)).await.expect("append");
    app.context.events.committed();
    app.settle_events().await;
    let appended = event::Entity::find()
        .filter(event::Column::EntityId.eq(number_of("ro", order)))
        .filter(event::Column::Kind.eq("OVERDUE"))
        .order_by_asc(event::Column::Seq)
        .all(&app.db)
        .await
        .expect("the appended events");
    let seqs: Vec<i64> = appended.iter().map(|row| row.seq).collect();
    assert_eq!(seqs.len(), count, "{seqs:?}");
    assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 2), "interleaved with the bystander's: {seqs:?}");
    seqs
}

/// The tenant's phone, subscribed from now, before a burst of `count`
/// events for the tenant's order, interleaved with as many for the owner's.
struct LiveBurst {
    phone: Phone,
    tenant: String,
    mine: String,
    /// The burst's events for the tenant: what the phone should receive.
    seqs: Vec<i64>,
}

async fn live_burst(app: &TestApp, count: usize) -> LiveBurst {
    let (tenant, owner) = (app.token("tenant").await, app.token("owner").await);
    let mine = submit(app, &tenant, "1-102").await;
    let theirs = submit(app, &owner, "1-101").await;
    let mut phone = Phone::open(app, &tenant, "tenant", Some(&now_cursor(app).await)).await;
    phone.expect_quiet(Duration::from_millis(200)).await;

    let tenant_id = app.home.account("tenant").user_id;
    let owner_id = app.home.account("owner").user_id;
    let seqs = append_burst(app, count, (tenant_id, &mine), (owner_id, &theirs)).await;
    LiveBurst { phone, tenant, mine, seqs }
}

#[tokio::test]
async fn a_burst_larger_than_the_broadcast_buffer_loses_nothing() {
    let app = spawn_app_with(|settings| settings.event_buffer = 16).await;
    let LiveBurst { mut phone, tenant, mine, seqs } = live_burst(&app, 60).await;
    let received = phone.exactly(60).await;
    assert_eq!(received.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs, "all 60, in order, none twice");
    assert!(received.iter().all(|e| e.kind == "OVERDUE" && e.order == mine), "{received:#?}");

    // The subscription is still live afterwards.
    let next = submit(&app, &tenant, "1-102").await;
    let event = phone.next_event().await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("SUBMITTED", next.as_str()));
}

#[tokio::test]
async fn a_live_burst_longer_than_the_relays_batch_arrives_whole() {
    // A buffer that holds the whole burst: the phone never lags, so every
    // event comes through the relay, which reads 500 at a time and must go
    // on to the next 500 at once, not at its next timer.
    let app = spawn_app_with(|settings| {
        settings.event_buffer = 1024;
        settings.event_poll_interval = Duration::from_secs(60);
    })
    .await;
    let LiveBurst { mut phone, seqs, .. } = live_burst(&app, 700).await;
    let received = phone.exactly(700).await;
    assert_eq!(received.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs, "all 700 of 1,400, in order, none twice");
}

#[tokio::test]
async fn a_replay_longer_than_one_page_returns_everything_in_order() {
    let app = spawn_app().await;
    let (tenant, owner) = (app.token("tenant").await, app.token("owner").await);
    let mine = submit(&app, &tenant, "1-102").await;
    let theirs = submit(&app, &owner, "1-101").await;
    let before = now_cursor(&app).await;

    let tenant_id = app.home.account("tenant").user_id;
    let owner_id = app.home.account("owner").user_id;
    let seqs = append_burst(&app, 450, (tenant_id, &mine), (owner_id, &theirs)).await;
    let mut phone = Phone::open(&app, &tenant, "tenant", Some(&before)).await;
    let received = phone.exactly(450).await;
    assert_eq!(received.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs, "all 450, in order, none twice");

    let next = submit(&app, &tenant, "1-102").await;
    let event = phone.next_event().await;
    assert_eq!((event.kind.as_str(), event.order.as_str()), ("SUBMITTED", next.as_str()), "then live");
}
