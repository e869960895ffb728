//! Idempotency keys on the mutations that create things (submitRepairOrder,
//! registerParcel, registerParcels), against the real server: retries with
//! the Idempotency-Key header or `clientMutationId` return the first result
//! without a second write, other input with the same key is a CONFLICT, keys
//! are per caller, twins racing with one key write once, and keys are
//! forgotten after the retention period.

use chrono::{Duration, Utc};
use entity::{event, parcel, repair_order};
use futures_util::future::join_all;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tests::{TestApp, WsEvent, error_code, error_field, id_of, spawn_app};

const SUBMIT: &str =
    "mutation($input: SubmitRepairOrderInput!) { submitRepairOrder(input: $input) { repairOrder { id description } } }";
const REGISTER: &str =
    "mutation($input: ParcelInput!) { registerParcel(input: $input) { parcel { id trackingNumber } } }";
const REGISTER_MANY: &str =
    "mutation($input: RegisterParcelsInput!) { registerParcels(input: $input) { parcels { id trackingNumber } } }";

/// POSTs one operation with an optional Idempotency-Key header.
async fn post(app: &TestApp, token: &str, query: &str, variables: Value, key: Option<&str>) -> Value {
    let mut request =
        app.http.post(app.url("/graphql")).bearer_auth(token).json(&json!({ "query": query, "variables": variables }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON body")
}

fn repair(app: &TestApp, description: &str) -> Value {
    json!({ "input": { "unitId": id_of("unit", app.home.unit("1-101").id), "category": "PLUMBING", "description": description } })
}

fn parcel(app: &TestApp, tracking: &str) -> Value {
    json!({ "kind": "PARCEL", "carrier": "顺丰", "trackingNumber": tracking, "recipientName": "李娜", "unitId": id_of("unit", app.home.unit("1-101").id) })
}

fn order_id(body: &Value) -> String {
    body["data"]["submitRepairOrder"]["repairOrder"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no order: {body}"))
        .to_owned()
}

async fn orders(app: &TestApp) -> u64 {
    repair_order::Entity::find().count(&app.db).await.expect("count orders")
}

async fn parcels(app: &TestApp) -> u64 {
    parcel::Entity::find().count(&app.db).await.expect("count parcels")
}

async fn events(app: &TestApp) -> u64 {
    app.settle_events().await;
    event::Entity::find().count(&app.db).await.expect("count events")
}

#[tokio::test]
async fn a_retried_submission_returns_the_first_order_without_a_second_write() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let first = post(&app, &owner, SUBMIT, repair(&app, "厨房漏水"), Some("order-7f3a")).await;
    let id = order_id(&first);
    let events_after_first = events(&app).await;

    let retry = post(&app, &owner, SUBMIT, repair(&app, "厨房漏水"), Some("order-7f3a")).await;
    assert_eq!(order_id(&retry), id, "{retry}");
    assert_eq!(retry["data"], first["data"]);
    assert_eq!(orders(&app).await, 1);
    assert_eq!(events(&app).await, events_after_first, "no second notification");

    // The same key with other input is refused and changes nothing.
    let other = post(&app, &owner, SUBMIT, repair(&app, "卫生间漏水"), Some("order-7f3a")).await;
    assert_eq!(error_code(&other), Some("CONFLICT"), "{other}");
    assert_eq!(orders(&app).await, 1);

    // Without a key, or with a new one, each request creates.
    post(&app, &owner, SUBMIT, repair(&app, "厨房漏水"), None).await;
    post(&app, &owner, SUBMIT, repair(&app, "厨房漏水"), Some("order-8b21")).await;
    assert_eq!(orders(&app).await, 3);
}

#[tokio::test]
async fn keys_belong_to_one_caller() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let family = app.token("family").await;
    let mine = order_id(&post(&app, &owner, SUBMIT, repair(&app, "门锁坏了"), Some("shared-key")).await);
    let theirs = order_id(&post(&app, &family, SUBMIT, repair(&app, "门锁坏了"), Some("shared-key")).await);
    assert_ne!(mine, theirs, "another person's key never returns my order");
    assert_eq!(orders(&app).await, 2);
}

#[tokio::test]
async fn client_mutation_id_does_the_same_over_the_websocket() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let mut socket = app.websocket().await;
    assert!(matches!(socket.init(&owner).await, WsEvent::Message(ack) if ack["type"] == "connection_ack"));
    let mut variables = repair(&app, "灯不亮");
    variables["input"]["clientMutationId"] = json!("ws-retry-1");
    let mut ids = Vec::new();
    for attempt in ["first", "retry"] {
        socket
            .send(json!({ "id": attempt, "type": "subscribe", "payload": { "query": SUBMIT, "variables": variables } }))
            .await;
        let next = socket.next_message().await;
        assert_eq!(next["type"], "next", "{next}");
        ids.push(order_id(&next["payload"]));
        assert_eq!(socket.next_message().await["type"], "complete");
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(orders(&app).await, 1);

    // Over HTTP the input field overrides the header.
    let over_http = post(&app, &owner, SUBMIT, variables, Some("some-other-key")).await;
    assert_eq!(order_id(&over_http), ids[0]);
    assert_eq!(orders(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_racing_with_one_key_create_one_order() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let attempts = (0..6)
        .map(|_| post(&app, &owner, SUBMIT, repair(&app, "暖气不热"), Some("flaky-network-42")))
        .collect::<Vec<_>>();
    let answers = join_all(attempts).await;
    let ids: Vec<String> = answers.iter().map(order_id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{answers:?}");
    assert_eq!(orders(&app).await, 1);
}

#[tokio::test]
async fn a_failed_request_leaves_the_key_unused() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let invalid = post(&app, &owner, SUBMIT, repair(&app, ""), Some("fix-and-retry")).await;
    assert_eq!((error_code(&invalid), error_field(&invalid)), (Some("BAD_USER_INPUT"), Some("description")));
    let fixed = post(&app, &owner, SUBMIT, repair(&app, "窗户关不上"), Some("fix-and-retry")).await;
    assert_eq!(fixed["data"]["submitRepairOrder"]["repairOrder"]["description"], "窗户关不上", "{fixed}");
    assert_eq!(orders(&app).await, 1);
}

#[tokio::test]
async fn malformed_keys_are_bad_user_input() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    for key in ["has space", "中文键", &"k".repeat(256)] {
        let body = post(&app, &owner, SUBMIT, repair(&app, "漏水"), Some(key)).await;
        assert_eq!((error_code(&body), error_field(&body)), (Some("BAD_USER_INPUT"), Some("Idempotency-Key")), "{key}");
        let mut variables = repair(&app, "漏水");
        variables["input"]["clientMutationId"] = json!(key);
        let body = post(&app, &owner, SUBMIT, variables, None).await;
        assert_eq!(
            (error_code(&body), error_field(&body)),
            (Some("BAD_USER_INPUT"), Some("clientMutationId")),
            "{key}"
        );
    }
    assert_eq!(orders(&app).await, 0);
}

#[tokio::test]
async fn a_retried_parcel_registration_returns_the_parcel_instead_of_a_conflict() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let first = post(&app, &desk, REGISTER, json!({ "input": parcel(&app, "SF7001") }), Some("desk-1")).await;
    let retry = post(&app, &desk, REGISTER, json!({ "input": parcel(&app, "SF7001") }), Some("desk-1")).await;
    assert!(first["errors"].is_null(), "{first}");
    assert_eq!(retry["data"], first["data"]);
    assert_eq!(parcels(&app).await, 1);
    // Without the key the held tracking number is a conflict, as before.
    let again = post(&app, &desk, REGISTER, json!({ "input": parcel(&app, "SF7001") }), None).await;
    assert_eq!(error_code(&again), Some("CONFLICT"), "{again}");
    let other = post(&app, &desk, REGISTER, json!({ "input": parcel(&app, "SF7002") }), Some("desk-1")).await;
    assert_eq!(error_code(&other), Some("CONFLICT"), "{other}");
    assert_eq!(parcels(&app).await, 1);
}

#[tokio::test]
async fn a_retried_bulk_registration_returns_the_same_parcels_in_order() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let batch = |key: Option<&str>| {
        let mut input = json!({ "parcels": (0..20).map(|n| parcel(&app, &format!("YT90{n:02}"))).collect::<Vec<_>>() });
        if let Some(key) = key {
            input["clientMutationId"] = json!(key);
        }
        json!({ "input": input })
    };
    let first = post(&app, &desk, REGISTER_MANY, batch(Some("morning-delivery")), None).await;
    assert_eq!(first["data"]["registerParcels"]["parcels"].as_array().map(Vec::len), Some(20), "{first}");
    let retry = post(&app, &desk, REGISTER_MANY, batch(Some("morning-delivery")), None).await;
    assert_eq!(retry["data"], first["data"]);
    assert_eq!(parcels(&app).await, 20);

    // The key belongs on the registration, not on a parcel.
    let mut misplaced = batch(None);
    misplaced["input"]["parcels"][3]["clientMutationId"] = json!("x");
    let body = post(&app, &desk, REGISTER_MANY, misplaced, None).await;
    assert_eq!((error_code(&body), error_field(&body)), (Some("BAD_USER_INPUT"), Some("parcels.3.clientMutationId")));
    assert_eq!(parcels(&app).await, 20);
}

#[tokio::test]
async fn keys_are_kept_for_the_retention_period_then_forgotten() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let first = order_id(&post(&app, &owner, SUBMIT, repair(&app, "空调滴水"), Some("day-old")).await);

    let forgotten = api::idempotency::purge(&app.context, Utc::now() + Duration::hours(23)).await.expect("purge");
    assert_eq!(forgotten, 0, "kept for 24 hours");
    assert_eq!(order_id(&post(&app, &owner, SUBMIT, repair(&app, "空调滴水"), Some("day-old")).await), first);

    let forgotten = api::idempotency::purge(&app.context, Utc::now() + Duration::hours(25)).await.expect("purge");
    assert_eq!(forgotten, 1);
    let later = order_id(&post(&app, &owner, SUBMIT, repair(&app, "空调滴水"), Some("day-old")).await);
    assert_ne!(later, first, "after the retention period the key is new again");
    assert_eq!(orders(&app).await, 2);
}
