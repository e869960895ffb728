//! The WebSocket transport: graphql-transport-ws close codes, ping/pong, token
//! expiry, the legacy graphql-ws subprotocol, and the framing under them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use tests::{TEST_JWT_SECRET, WsEvent, spawn_app, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, protocol::Role},
};

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
async fn a_restarting_server_closes_its_sockets_with_1001() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(acked(socket.init(&token).await));
    let mut uninitialised = app.websocket().await;
    app.context.begin_shutdown();
    assert_eq!(closed_with(socket.next_event(WAIT).await), Some(1001));
    assert_eq!(closed_with(uninitialised.next_event(WAIT).await), Some(1001));
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
    // The legacy protocol sends keep-alives ("ka") after the ack, between any two messages.
    let mut next_besides_keep_alives = async || loop {
        let message = socket.next_message().await;
        if message["type"] != "ka" {
            return message;
        }
    };
    let data = next_besides_keep_alives().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["me"]["name"], "李娜");
    assert_eq!(next_besides_keep_alives().await["type"], "complete");
}

/// A client frame (FIN set, masked, as clients must send them).
fn client_frame(opcode: u8, payload: &[u8], last: bool) -> Vec<u8> {
    let mask = [0x5a, 0x17, 0xc3, 0x08];
    let mut frame = vec![if last { 0x80 | opcode } else { opcode }];
    match u16::try_from(payload.len()) {
        Ok(short) if short < 126 => frame.push(0x80 | short as u8),
        Ok(medium) => {
            frame.push(0x80 | 126);
            frame.extend(medium.to_be_bytes());
        }
        Err(_) => {
            frame.push(0x80 | 127);
            frame.extend((payload.len() as u64).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
    frame
}

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;

/// Opens a graphql-transport-ws socket by hand, sending `first_frames` in the
/// same write as the handshake, and returns it once the server has answered.
async fn raw_socket(addr: std::net::SocketAddr, first_frames: &[u8]) -> WebSocketStream<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(first_frames);
    stream.write_all(&request).await.expect("write");
    // The answer's head, byte by byte, so that no frame after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tokio::time::timeout(WAIT, stream.read_u8()).await.expect("answer in time").expect("read"));
    }
    let head = String::from_utf8(head).expect("UTF-8 head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-protocol: graphql-transport-ws"), "{head}");
    WebSocketStream::from_raw_socket(stream, Role::Client, None).await
}

async fn next_text(socket: &mut WebSocketStream<tokio::net::TcpStream>) -> serde_json::Value {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

fn init_message(token: &str) -> Vec<u8> {
    json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_message_sent_right_behind_the_handshake_is_read() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = raw_socket(app.addr, &client_frame(TEXT, &init_message(&token), true)).await;
    assert_eq!(next_text(&mut socket).await["type"], "connection_ack");
    socket.send(Message::Text(json!({ "type": "ping" }).to_string().into())).await.expect("send");
    assert_eq!(next_text(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn a_message_in_fragments_is_joined_and_one_too_large_closes_with_4400() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let init = init_message(&token);
    let (first, rest) = init.split_at(10);
    let (middle, last) = rest.split_at(rest.len() / 2);
    // A ping between the fragments is answered without disturbing them.
    let mut frames = client_frame(TEXT, first, false);
    frames.extend(client_frame(0x9, b"between", true));
    frames.extend(client_frame(CONTINUATION, middle, false));
    frames.extend(client_frame(CONTINUATION, last, true));
    let mut socket = raw_socket(app.addr, &frames).await;
    let pong = tokio::time::timeout(WAIT, socket.next()).await.expect("pong in time");
    assert!(matches!(pong, Some(Ok(Message::Pong(ref payload))) if payload.as_ref() == b"between"), "{pong:?}");
    assert_eq!(next_text(&mut socket).await["type"], "connection_ack");

    // 64 KiB is the most a message may hold, however it is cut up.
    let part = vec![b' '; 40 * 1024];
    let mut frames = client_frame(TEXT, &part, false);
    frames.extend(client_frame(CONTINUATION, &part, true));
    let mut socket = raw_socket(app.addr, &frames).await;
    let closed = tokio::time::timeout(WAIT, socket.next()).await.expect("close in time");
    assert!(matches!(closed, Some(Ok(Message::Close(Some(ref frame)))) if u16::from(frame.code) == 4400), "{closed:?}");
}

#[tokio::test]
async fn a_refused_upgrade_is_answered_over_http_and_the_connection_closed() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let request = format!(
        "GET /no-such-place HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("closed in time").expect("read");
    let answer = String::from_utf8(answer).expect("UTF-8");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}
