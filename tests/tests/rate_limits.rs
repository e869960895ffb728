//! Rate limits against the real server: per client IP, per caller, the
//! stricter buckets for sign-ins and pickup codes, batches counted per
//! operation, WebSocket operations, and buckets shared across instances when
//! Redis is configured.

use std::time::Duration;

use api::config::Settings;
use serde_json::{Value, json};
use tests::{TestApp, WsEvent, error_code, id_of, spawn_app_with};

const VIEWER: &str = "{ me { id } }";
const LOGIN: &str = "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken } }";
const REGISTER: &str = "mutation($unit: ID!, $tracking: String!) { registerParcel(input: {kind: PARCEL, carrier: \"顺丰\", trackingNumber: $tracking, recipientName: \"李娜\", unitId: $unit}) { parcel { id } } }";
const PICK_UP: &str =
    "mutation($id: ID!) { pickUpParcel(input: {parcelId: $id, pickupCode: \"000000\"}) { parcel { id } } }";

/// Posts `body` as JSON, optionally from the address in `forwarded_for`.
async fn post(app: &TestApp, token: Option<&str>, body: Value, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app.http.post(app.url("/graphql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.expect("request")
}

/// Asserts a 429 with RATE_LIMITED and a Retry-After of at least a second;
/// returns the seconds.
async fn assert_http_limited(response: reqwest::Response, what: &str) -> u64 {
    assert_eq!(response.status(), 429, "{what}");
    let header: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no numeric Retry-After"));
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{what}: {body}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], header, "{what}: {body}");
    assert!(header >= 1, "{what}: {header}");
    header
}

fn viewer() -> Value {
    json!({ "query": VIEWER })
}

fn ip_limit(burst: u32) -> impl FnOnce(&mut Settings) {
    move |settings| {
        settings.rate_limit_ip_per_minute = 60;
        settings.rate_limit_ip_burst = burst;
    }
}

#[tokio::test]
async fn a_client_ip_gets_its_burst_then_429_with_retry_after() {
    let app = spawn_app_with(ip_limit(3)).await;
    for n in 0..3 {
        assert_eq!(post(&app, None, viewer(), None).await.status(), 200, "request {n}");
    }
    let retry_after = assert_http_limited(post(&app, None, viewer(), None).await, "the fourth request").await;
    // 60 a minute refills one token a second.
    assert_eq!(retry_after, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200, "a token came back");
}

#[tokio::test]
async fn every_operation_of_a_batch_counts() {
    let app = spawn_app_with(ip_limit(4)).await;
    let batch = json!([{ "query": VIEWER }, { "query": VIEWER }, { "query": VIEWER }]);
    let response = post(&app, None, batch.clone(), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("JSON").as_array().map(Vec::len), Some(3));
    // One token left: a batch of three is refused whole, a single request passes.
    assert_http_limited(post(&app, None, batch, None).await, "a batch beyond the bucket").await;
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200);
}

#[tokio::test]
async fn reads_over_get_and_websocket_upgrades_draw_from_the_same_bucket() {
    let app = spawn_app_with(ip_limit(2)).await;
    let response = app.http.get(app.url("/graphql")).query(&[("query", VIEWER)]).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    let _socket = app.websocket().await;
    let response = app.http.get(app.url("/graphql")).query(&[("query", VIEWER)]).send().await.expect("GET");
    assert_http_limited(response, "a third request after a GET and an upgrade").await;
}

#[tokio::test]
async fn proxy_headers_are_ignored_unless_trusted() {
    let app = spawn_app_with(ip_limit(1)).await;
    assert_eq!(post(&app, None, viewer(), Some("203.0.113.1")).await.status(), 200);
    assert_http_limited(post(&app, None, viewer(), Some("203.0.113.2")).await, "a forged X-Forwarded-For").await;

    let app = spawn_app_with(|settings| {
        ip_limit(1)(settings);
        settings.trust_proxy_headers = true;
    })
    .await;
    assert_eq!(post(&app, None, viewer(), Some("203.0.113.1")).await.status(), 200);
    assert_eq!(post(&app, None, viewer(), Some("203.0.113.2")).await.status(), 200, "another client behind the proxy");
    assert_http_limited(post(&app, None, viewer(), Some("203.0.113.1")).await, "the first client again").await;
}

#[tokio::test]
async fn a_caller_is_limited_across_addresses() {
    let app = spawn_app_with(|settings| {
        settings.trust_proxy_headers = true;
        settings.rate_limit_caller_per_minute = 60;
        settings.rate_limit_caller_burst = 2;
    })
    .await;
    let owner = app.token("owner").await;
    let tenant = app.token("tenant").await;
    assert_eq!(post(&app, Some(&owner), viewer(), Some("198.51.100.1")).await.status(), 200);
    assert_eq!(post(&app, Some(&owner), viewer(), Some("198.51.100.2")).await.status(), 200);
    assert_http_limited(post(&app, Some(&owner), viewer(), Some("198.51.100.3")).await, "a third address").await;
    // Someone else on the same address is not affected.
    assert_eq!(post(&app, Some(&tenant), viewer(), Some("198.51.100.3")).await.status(), 200);
}

#[tokio::test]
async fn a_refused_request_draws_on_none_of_its_buckets() {
    let app = spawn_app_with(|settings| {
        settings.trust_proxy_headers = true;
        // One token a minute: nothing refills while the test runs.
        (settings.rate_limit_ip_per_minute, settings.rate_limit_ip_burst) = (1, 3);
        (settings.rate_limit_caller_per_minute, settings.rate_limit_caller_burst) = (1, 1);
    })
    .await;
    let owner = app.token("owner").await;
    let tenant = app.token("tenant").await;
    let from = Some("198.51.100.7");
    assert_eq!(post(&app, Some(&owner), viewer(), from).await.status(), 200);
    for n in 0..2 {
        assert_http_limited(post(&app, Some(&owner), viewer(), from).await, &format!("owner again ({n})")).await;
    }
    // The owner's refusals left the address its two tokens.
    assert_eq!(post(&app, Some(&tenant), viewer(), from).await.status(), 200, "the tenant's first");
    assert_http_limited(post(&app, Some(&tenant), viewer(), from).await, "the tenant's second").await;
    assert_eq!(post(&app, None, viewer(), from).await.status(), 200, "the address's last token");
    assert_http_limited(post(&app, None, viewer(), from).await, "the address, now empty").await;
}

#[tokio::test]
async fn sign_ins_and_refreshes_have_a_stricter_bucket_per_address() {
    let app = spawn_app_with(|settings| {
        settings.rate_limit_auth_per_minute = 6;
        settings.rate_limit_auth_burst = 3;
    })
    .await;
    let phone = app.home.account("owner").phone.clone();
    let wrong = json!({ "phone": phone, "password": "not-the-password" });
    for n in 0..3 {
        let body = app.graphql(None, LOGIN, wrong.clone()).await;
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "attempt {n}: {body}");
    }
    let right = json!({ "phone": phone, "password": api::demo::DEMO_PASSWORD });
    let body = app.graphql(None, LOGIN, right).await;
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    assert!(body["errors"][0]["extensions"]["retryAfter"].as_u64().is_some_and(|secs| (1..=10).contains(&secs)));
    let refresh =
        app.graphql(None, "mutation { refreshToken(input: {refreshToken: \"x\"}) { accessToken } }", json!({})).await;
    assert_eq!(error_code(&refresh), Some("RATE_LIMITED"), "{refresh}");

    // The token endpoint for integrators shares the bucket.
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "cli_1"), ("client_secret", "x")])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "rate_limited");

    // Signed-in work is not affected.
    let other = app.graphql(None, VIEWER, json!({})).await;
    assert_eq!(error_code(&other), Some("UNAUTHENTICATED"), "{other}");
}

#[tokio::test]
async fn pickup_code_guesses_are_limited_per_caller_across_parcels() {
    let app = spawn_app_with(|settings| {
        settings.rate_limit_code_per_minute = 6;
        settings.rate_limit_code_burst = 3;
    })
    .await;
    let desk = app.token("front_desk").await;
    let unit = id_of("unit", app.home.unit("1-101").id);
    let mut parcels = Vec::new();
    for n in 0..4 {
        let data = app.data(Some(&desk), REGISTER, json!({ "unit": unit, "tracking": format!("SF100{n}") })).await;
        parcels.push(data["registerParcel"]["parcel"]["id"].as_str().expect("parcel id").to_owned());
    }
    // One wrong code on each parcel stays under each parcel's own lock.
    for parcel in &parcels[..3] {
        let body = app.graphql(Some(&desk), PICK_UP, json!({ "id": parcel })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    }
    let body = app.graphql(Some(&desk), PICK_UP, json!({ "id": parcels[3] })).await;
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    // Another desk clerk's guesses are counted apart.
    let manager = app.token("manager").await;
    let body = app.graphql(Some(&manager), PICK_UP, json!({ "id": parcels[3] })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

#[tokio::test]
async fn websocket_operations_draw_from_the_callers_bucket() {
    let app = spawn_app_with(|settings| {
        settings.rate_limit_caller_per_minute = 60;
        settings.rate_limit_caller_burst = 2;
    })
    .await;
    let owner = app.token("owner").await;
    let mut socket = app.websocket().await;
    assert!(matches!(socket.init(&owner).await, WsEvent::Message(ack) if ack["type"] == "connection_ack"));
    for id in ["a", "b"] {
        socket.send(json!({ "id": id, "type": "subscribe", "payload": { "query": VIEWER } })).await;
        let next = socket.next_message().await;
        assert_eq!((next["type"].as_str(), next["id"].as_str()), (Some("next"), Some(id)), "{next}");
        assert_eq!(socket.next_message().await["type"], "complete");
    }
    socket.send(json!({ "id": "c", "type": "subscribe", "payload": { "query": VIEWER } })).await;
    let refusal = socket.next_message().await;
    assert_eq!((refusal["type"].as_str(), refusal["id"].as_str()), (Some("error"), Some("c")), "{refusal}");
    assert_eq!(refusal["payload"][0]["extensions"]["code"], "RATE_LIMITED", "{refusal}");
    // The connection stays open for when the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    socket.send(json!({ "id": "d", "type": "subscribe", "payload": { "query": VIEWER } })).await;
    assert_eq!(socket.next_message().await["type"], "next");
}

#[tokio::test]
async fn instances_share_buckets_through_redis_and_keep_their_own_without() {
    let app = spawn_app_with(ip_limit(2)).await;
    let peer = app.peer(|_| {}).await;
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200);
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200);
    let on_peer = post(&peer, None, viewer(), None).await;
    if app.settings.redis_url.is_some() {
        assert_http_limited(on_peer, "the same address on another instance").await;
    } else {
        assert_eq!(on_peer.status(), 200, "without Redis each instance counts for itself");
    }
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_to_the_instances_own_buckets() {
    let app = spawn_app_with(|settings| {
        ip_limit(2)(settings);
        // Nothing listens on port 9 (discard) on a test machine.
        settings.redis_url = Some("redis://127.0.0.1:9".into());
    })
    .await;
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200);
    assert_eq!(post(&app, None, viewer(), None).await.status(), 200);
    assert_http_limited(post(&app, None, viewer(), None).await, "the local bucket still limits").await;
}
