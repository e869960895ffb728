//! A phone subscribed to one event stream over graphql-transport-ws, able to
//! tell "nothing arrived" apart from a late event.

use std::time::Duration;

use api::events::cursor;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::TestApp;

/// How long one expected event may take to arrive.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);
/// How long to listen before concluding that nothing (more) is coming.
pub const QUIET: Duration = Duration::from_millis(500);

/// The operation id every `Subscriber` subscribes under.
pub const SUBSCRIPTION_ID: &str = "events";

pub struct Subscriber {
    /// Who this is, for failure messages.
    pub who: String,
    /// The subscription's root field, e.g. `parcelEvents`.
    field: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    /// Connects to `app`, initialises with `token` and subscribes with
    /// `query` (one root `field` taking `$after`).
    pub async fn open(
        app: &TestApp,
        token: &str,
        who: impl Into<String>,
        query: &str,
        field: &str,
        after: Option<&str>,
    ) -> Self {
        let mut subscriber = Self::connect(app, token, who, field).await;
        subscriber.subscribe(query, after).await;
        subscriber
    }

    /// Connects and initialises, without subscribing yet.
    pub async fn connect(app: &TestApp, token: &str, who: impl Into<String>, field: &str) -> Self {
        let mut request = format!("ws://{}/graphql", app.addr).into_client_request().expect("ws request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
        let mut subscriber = Self { who: who.into(), field: field.to_owned(), ws };
        subscriber
            .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        let ack = subscriber.recv(EVENT_WAIT).await;
        assert!(
            ack.as_ref().is_some_and(|ack| ack["type"] == "connection_ack"),
            "{}: expected connection_ack, got {ack:?}",
            subscriber.who
        );
        subscriber
    }

    pub async fn subscribe(&mut self, query: &str, after: Option<&str>) {
        self.send(json!({
            "id": SUBSCRIPTION_ID,
            "type": "subscribe",
            "payload": { "query": query, "variables": { "after": after } },
        }))
        .await;
    }

    pub async fn send(&mut self, message: Value) {
        self.ws.send(Message::Text(message.to_string().into())).await.expect("ws send");
    }

    /// The next protocol message other than ping/pong, or `None` when nothing
    /// arrives within `wait`. A closed socket fails the test.
    pub async fn recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return None;
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|err| panic!("{}: not JSON ({err}): {text}", self.who));
                    match message["type"].as_str() {
                        Some("ping") => self.send(json!({ "type": "pong" })).await,
                        Some("pong") => {}
                        _ => return Some(message),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    panic!("{}: the socket was closed ({frame:?}) while waiting for events", self.who)
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("{}: socket error while waiting for events: {err}", self.who),
                None => panic!("{}: the socket ended while waiting for events", self.who),
            }
        }
    }

    /// The event object of the next event; fails the test if none arrives
    /// within `EVENT_WAIT`, or if it is malformed.
    pub async fn next_event(&mut self) -> Value {
        self.next_event_within(EVENT_WAIT).await
    }

    pub async fn next_event_within(&mut self, wait: Duration) -> Value {
        let message = self.recv(wait).await.unwrap_or_else(|| panic!("{}: no event within {wait:?}", self.who));
        self.event_of(&message)
    }

    /// The event object of a `next` message, checked for a cursor and a time.
    pub fn event_of(&self, message: &Value) -> Value {
        let who = &self.who;
        assert_eq!(message["type"], "next", "{who}: expected an event, got {message}");
        assert_eq!(message["id"], SUBSCRIPTION_ID, "{who}: {message}");
        assert!(message["payload"].get("errors").is_none(), "{who}: event with errors: {message}");
        let event = message["payload"]["data"][&self.field].clone();
        let cursor = event["cursor"].as_str().unwrap_or_else(|| panic!("{who}: no cursor in {message}"));
        assert!(cursor::decode(cursor, "cursor").is_ok(), "{who}: the cursor {cursor:?} is not an event cursor");
        assert!(event["occurredAt"].is_string(), "{who}: no occurredAt in {message}");
        event
    }

    /// Exactly `count` events (each within `EVENT_WAIT`), then nothing for `QUIET`.
    pub async fn exactly(&mut self, count: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next_event().await);
        }
        self.expect_quiet(QUIET).await;
        events
    }

    /// Fails the test if anything arrives within `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Some(message) = self.recv(wait).await {
            panic!("{}: expected nothing, received {message}", self.who);
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The position in the delivery order an event's cursor stands for.
pub fn seq(event: &Value) -> i64 {
    cursor::decode(event["cursor"].as_str().expect("cursor"), "cursor").expect("event cursor")
}
