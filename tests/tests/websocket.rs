//! The WebSocket transport: graphql-transport-ws close codes, ping/pong, token
//! expiry, and the legacy graphql-ws subprotocol.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use tests::{TEST_JWT_SECRET, WsEvent, spawn_app, spawn_app_with};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

fn closed_with(event: WsEvent) -> Option<u16> {
    match event {
        WsEvent::Closed(code) => code,
        WsEvent::Message(message) => panic!("expected the socket to close, got {message}"),
    }
}

fn acked(event: WsEvent) -> bool {
    matches!(event, WsEvent::Message(message) if message["type"] == "connection_ack")
}

/// A valid access token for the tenant that expires in `seconds`.
fn token_expiring_in(user_id: i64, seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user_id.to_string(), "role": "RESIDENT", "iss": "property-service", "aud": "property-apps",
        "iat": now, "exp": now + seconds,
    });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes())).unwrap()
}

#[tokio::test]
async fn rejected_or_missing_credentials_close_with_4403() {
    let app = spawn_app().await;
    let mut forged = app.websocket().await;
    assert_eq!(closed_with(forged.init("forged").await), Some(4403));

    let mut anonymous = app.websocket().await;
    anonymous.send(json!({ "type": "connection_init" })).await;
    assert_eq!(closed_with(anonymous.next_event(WAIT).await), Some(4403));
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let app = spawn_app_with(|s| s.ws_init_timeout = Duration::from_millis(300)).await;
    let mut socket = app.websocket().await;
    assert_eq!(closed_with(socket.next_event(WAIT).await), Some(4408));
}

#[tokio::test]
async fn subscribe_before_the_ack_closes_with_4401() {
    let app = spawn_app().await;
    let mut socket = app.websocket().await;
    socket.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { id } }" } })).await;
    assert_eq!(closed_with(socket.next_event(WAIT).await), Some(4401));
}

#[tokio::test]
async fn a_second_init_closes_with_4429() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    assert_eq!(closed_with(socket.init(&token).await), Some(4429));
}

#[tokio::test]
async fn a_duplicate_operation_id_closes_with_4409() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    let subscribe = json!({ "id": "same", "type": "subscribe", "payload": { "query": "subscription { repairOrderEvents { cursor } }" } });
    socket.send(subscribe.clone()).await;
    socket.send(subscribe).await;
    assert_eq!(closed_with(socket.next_event(WAIT).await), Some(4409));
}

#[tokio::test]
async fn invalid_messages_close_with_4400() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let invalid: [Message; 4] = [
        Message::Text("{not json".into()),
        Message::Text(json!({ "type": "no_such_type" }).to_string().into()),
        Message::Text(json!({ "type": "subscribe", "payload": { "query": "{ me { id } }" } }).to_string().into()),
        Message::Binary(vec![1, 2, 3].into()),
    ];
    for message in invalid {
        let mut socket = app.websocket().await;
        assert!(acked(socket.init(&token).await));
        let shown = format!("{message:?}");
        socket.send_raw(message).await;
        assert_eq!(closed_with(socket.next_event(WAIT).await), Some(4400), "{shown}");
    }
}

#[tokio::test]
async fn an_unsupported_subprotocol_closes_with_4406() {
    let app = spawn_app().await;
    let mut socket = app.websocket_with_protocol("mqtt").await;
    assert_eq!(closed_with(socket.next_event(WAIT).await), Some(4406));
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    socket.send(json!({ "type": "ping" })).await;
    assert_eq!(socket.next_message().await["type"], "pong");
}

#[tokio::test]
async fn the_socket_closes_with_4403_when_the_access_token_expires() {
    let app = spawn_app().await;
    let token = token_expiring_in(app.home.account("tenant").user_id, 2);
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    socket
        .send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { repairOrderEvents { cursor } }" } }))
        .await;
    assert_eq!(closed_with(socket.next_event(Duration::from_secs(6)).await), Some(4403));
}

#[tokio::test]
async fn validation_errors_come_back_as_error_messages() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    socket
        .send(json!({ "id": "bad", "type": "subscribe", "payload": { "query": "subscription { noSuchField }" } }))
        .await;
    let error = socket.next_message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "bad");
    assert_eq!(error["payload"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    // The error ended the operation: no `complete` follows, the next message
    // is the answer to a ping.
    socket.send(json!({ "type": "ping" })).await;
    assert_eq!(socket.next_message().await["type"], "pong");
}

#[tokio::test]
async fn completing_an_operation_stops_it() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    socket
        .send(json!({ "id": "s", "type": "subscribe", "payload": { "query": "subscription { repairOrderEvents { cursor } }" } }))
        .await;
    socket.send(json!({ "id": "s", "type": "complete" })).await;
    // The id is free again: reusing it is not a duplicate.
    socket.send(json!({ "id": "s", "type": "subscribe", "payload": { "query": "{ me { name } }" } })).await;
    let next = socket.next_message().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["me"]["name"], "李娜");
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_works() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket_with_protocol("graphql-ws").await;
    assert!(acked(socket.init(&token).await));
    socket.send(json!({ "id": "1", "type": "start", "payload": { "query": "{ me { name } }" } })).await;
    let mut data = socket.next_message().await;
    // The legacy protocol sends keep-alives ("ka") after the ack.
    while data["type"] == "ka" {
        data = socket.next_message().await;
    }
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["me"]["name"], "李娜");
    assert_eq!(socket.next_message().await["type"], "complete");
}
