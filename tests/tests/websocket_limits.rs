//! WebSocket limits against the real server: sockets per person, operations
//! per socket, and clients that stop reading.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tests::{WsEvent, id_of, spawn_app_with};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const WAIT: Duration = Duration::from_secs(5);
const POLICY_VIOLATION: u16 = 1008;

fn acknowledged(event: &WsEvent) -> bool {
    matches!(event, WsEvent::Message(message) if message["type"] == "connection_ack")
}

#[tokio::test]
async fn a_person_holds_at_most_the_configured_number_of_sockets() {
    let app = spawn_app_with(|settings| settings.ws_max_connections_per_user = 2).await;
    let owner = app.token("owner").await;
    let mut first = app.websocket().await;
    let mut second = app.websocket().await;
    assert!(acknowledged(&first.init(&owner).await));
    assert!(acknowledged(&second.init(&owner).await));
    let mut third = app.websocket().await;
    match third.init(&owner).await {
        WsEvent::Closed(code) => assert_eq!(code, Some(POLICY_VIOLATION)),
        other => panic!("a third socket was accepted: {other:?}"),
    }

    // Someone else is not affected.
    let tenant = app.token("tenant").await;
    let mut theirs = app.websocket().await;
    assert!(acknowledged(&theirs.init(&tenant).await));

    // Closing a socket frees its place.
    first.send_raw(Message::Close(None)).await;
    assert!(matches!(first.next_event(WAIT).await, WsEvent::Closed(_)));
    let mut again = app.websocket().await;
    let mut accepted = acknowledged(&again.init(&owner).await);
    for _ in 0..20 {
        if accepted {
            break;
        }
        // The server notices the close asynchronously.
        tokio::time::sleep(Duration::from_millis(50)).await;
        again = app.websocket().await;
        accepted = acknowledged(&again.init(&owner).await);
    }
    assert!(accepted, "the freed place was not given back");
    second.send(json!({ "type": "ping" })).await;
    assert_eq!(second.next_message().await["type"], "pong", "the other sockets stay open");
}

#[tokio::test]
async fn a_socket_runs_at_most_the_configured_number_of_operations() {
    let app = spawn_app_with(|settings| settings.ws_max_operations = 2).await;
    let owner = app.token("owner").await;
    let mut socket = app.websocket().await;
    assert!(acknowledged(&socket.init(&owner).await));
    for (id, query) in [
        ("repairs", "subscription { repairOrderEvents { cursor } }"),
        ("parcels", "subscription { parcelEvents { cursor } }"),
    ] {
        socket.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } })).await;
    }
    let subscribe = |id: &str| json!({ "id": id, "type": "subscribe", "payload": { "query": "{ me { id } }" } });
    socket.send(subscribe("third")).await;
    let refusal = socket.next_message().await;
    assert_eq!((refusal["type"].as_str(), refusal["id"].as_str()), (Some("error"), Some("third")), "{refusal}");
    assert_eq!(refusal["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED", "{refusal}");

    // Completing one makes room.
    socket.send(json!({ "id": "parcels", "type": "complete" })).await;
    socket.send(subscribe("fourth")).await;
    let answer = socket.next_message().await;
    assert_eq!((answer["type"].as_str(), answer["id"].as_str()), (Some("next"), Some("fourth")), "{answer}");
    let me = &answer["payload"]["data"]["me"]["id"];
    assert_eq!(*me, json!(id_of("usr", app.home.account("owner").user_id)));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_instead_of_buffered_for() {
    let app = spawn_app_with(|settings| {
        settings.ws_send_timeout = Duration::from_secs(1);
        settings.ws_max_operations = 100;
    })
    .await;
    let owner = app.token("owner").await;
    // Large answers: 50 orders with 2000-character descriptions (~300 KB each time).
    let unit = id_of("unit", app.home.unit("1-101").id);
    for n in 0..50 {
        let description = format!("{n:02}{}", "漏".repeat(1998));
        app.data(
            Some(&owner),
            "mutation($input: SubmitRepairOrderInput!) { submitRepairOrder(input: $input) { repairOrder { id } } }",
            json!({ "input": { "unitId": unit, "category": "PLUMBING", "description": description } }),
        )
        .await;
    }
    let mut request = format!("ws://{}/graphql", app.addr).into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {owner}") } });
    socket.send(Message::Text(init.to_string().into())).await.expect("send");
    let ack = socket.next().await.expect("ack").expect("ack");
    assert!(ack.to_text().expect("text").contains("connection_ack"));

    const ASKED: usize = 80;
    let query = "{ repairOrders(first: 50) { edges { node { description } } } }";
    for n in 0..ASKED {
        let subscribe = json!({ "id": format!("q{n}"), "type": "subscribe", "payload": { "query": query } });
        socket.send(Message::Text(subscribe.to_string().into())).await.expect("send");
    }
    // Read nothing while the server's buffers fill and its sends time out.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut answers = 0;
    let mut close_frame = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the server ends the socket") {
            Some(Ok(Message::Text(text))) if text.contains("\"next\"") => answers += 1,
            Some(Ok(Message::Close(frame))) => {
                close_frame = Some(frame);
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(answers < ASKED, "all {ASKED} answers were buffered for a client that did not read");
    // Part of a frame may already be on its way, so no close frame can follow it.
    assert!(close_frame.is_none(), "the connection ended with a close frame: {close_frame:?}");

    // The server is fine and the person may reconnect.
    let mut again = app.websocket().await;
    assert!(acknowledged(&again.init(&owner).await));
}
