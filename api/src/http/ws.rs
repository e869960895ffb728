//! GraphQL over WebSocket: graphql-transport-ws (and the legacy graphql-ws),
//! with the close codes of the graphql-transport-ws PROTOCOL.md:
//!
//! | code | when |
//! |------|------|
//! | 4400 | a message that is not valid for the protocol |
//! | 4401 | `subscribe` before the connection was acknowledged |
//! | 4403 | missing or rejected credentials, or the access token expired |
//! | 4406 | none of the offered subprotocols is supported |
//! | 4408 | no `connection_init` within WS_INIT_TIMEOUT |
//! | 4409 | a second operation with an id that is still running |
//! | 4429 | a second `connection_init` |
//!
//! The socket authenticates once, with `{"authorization": "Bearer <token>"}`
//! in the `connection_init` payload, and is closed when that token expires so
//! the app reconnects with a fresh one.
//!
//! Limits: WS_MAX_CONNECTIONS_PER_USER sockets per person on one instance
//! (another is closed with 1008), WS_MAX_OPERATIONS running operations per
//! socket (another gets an `error` with LIMIT_EXCEEDED), and a client that
//! stops reading is disconnected once a message has waited WS_SEND_TIMEOUT,
//! instead of the server buffering for it without bound. Its subscriptions
//! resume from their cursors when it reconnects.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use actix_http::ws::{CloseCode, CloseReason, Message};
use actix_web::{HttpRequest, HttpResponse, http::header};
use async_graphql::{ErrorExtensions, Pos, Request};
use async_stream::stream;
use chrono::Utc;
use futures_util::{
    StreamExt,
    future::LocalBoxFuture,
    stream::{AbortHandle, Abortable, BoxStream, SelectAll, abortable},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{net::TcpStream, time::Sleep};

use super::{
    authenticate, request_data,
    socket::{Incoming, Socket},
};
use crate::{
    AppContext,
    auth::{Caller, Principal},
    graphql::{AppSchema, Auth},
};

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";
/// Largest accepted message, so a client cannot make the server buffer without bound.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages ready together are written together up to about this many bytes.
const MAX_WRITE_BYTES: usize = 64 * 1024;
/// How often the legacy protocol's keep-alive is sent.
const LEGACY_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The WebSockets each person holds open on this instance.
#[derive(Default)]
pub struct OpenSockets(Arc<Mutex<HashMap<i64, usize>>>);

/// One counted socket; dropping it frees the place.
struct SocketSlot {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    user_id: i64,
}

impl OpenSockets {
    fn claim(&self, user_id: i64, max: usize) -> Option<SocketSlot> {
        let mut open = self.0.lock().ok()?;
        let count = open.entry(user_id).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SocketSlot { open: self.0.clone(), user_id })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.user_id)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    TransportWs,
    LegacyWs,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => TRANSPORT_WS,
            Protocol::LegacyWs => LEGACY_WS,
        }
    }

    fn next_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        }
    }
}

fn close_reason(code: u16, description: &str) -> CloseReason {
    CloseReason { code: CloseCode::Other(code), description: Some(description.to_owned()) }
}

/// Which of our subprotocols the client `offered`, if any. A client that
/// names none gets graphql-transport-ws.
fn negotiate(offered: Option<&str>) -> Option<Protocol> {
    let Some(offered) = offered else {
        return Some(Protocol::TransportWs);
    };
    offered.split(',').map(str::trim).find_map(|name| match name {
        TRANSPORT_WS => Some(Protocol::TransportWs),
        LEGACY_WS => Some(Protocol::LegacyWs),
        _ => None,
    })
}

/// Answers a WebSocket handshake. The socket itself is served once the
/// answer is on its way (see `upgrade`), from the [`Accepted`] it carries.
pub fn accept(req: &HttpRequest, schema: AppSchema, app: Arc<AppContext>, client_ip: String) -> HttpResponse {
    let mut handshake = match actix_http::ws::handshake(req.head()) {
        Ok(handshake) => handshake,
        Err(refusal) => return HttpResponse::from_error(refusal),
    };
    let offered = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    let protocol = negotiate(offered);
    let answered = offered.and_then(|offered| match protocol {
        Some(protocol) => Some(protocol.name()),
        // Echo an unsupported subprotocol so the handshake completes and the
        // client can read the 4406 close code.
        None => offered.split(',').map(str::trim).next().filter(|name| !name.is_empty()),
    });
    if let Some(name) = answered {
        handshake.insert_header((header::SEC_WEBSOCKET_PROTOCOL, name));
    }
    let mut response = HttpResponse::from(handshake.finish().map_into_boxed_body());
    response.extensions_mut().insert(Accepted { schema, app, protocol, client_ip });
    response
}

/// A WebSocket whose handshake the app accepted, waiting for its connection.
pub struct Accepted {
    schema: AppSchema,
    app: Arc<AppContext>,
    protocol: Option<Protocol>,
    client_ip: String,
}

impl Accepted {
    /// The whole conversation on the connection; `received` is what the
    /// client sent after its handshake, already read. Boxed, so that an open
    /// socket holds exactly the room its conversation needs.
    pub fn serve(self, stream: TcpStream, received: &[u8]) -> LocalBoxFuture<'static, ()> {
        let socket = Socket::new(stream, received, MAX_MESSAGE_BYTES);
        let send_timeout = self.app.settings.ws_send_timeout;
        match self.protocol {
            Some(protocol) => Box::pin(Connection::new(socket, self.schema, self.app, protocol, self.client_ip).run()),
            None => Box::pin(socket.close(Some(close_reason(4406, "Subprotocol not acceptable")), send_timeout)),
        }
    }
}

/// What a running operation gives the connection to send.
enum Outgoing {
    Next(String, async_graphql::Response),
    Error(String, Vec<async_graphql::ServerError>),
    Complete(String),
}

/// The operations running on one socket, polled by the socket's own task: a
/// client that stops reading holds back its own operations (which catch up
/// from the outbox), and an idle socket keeps no task or queue per operation.
type Operations = SelectAll<Abortable<BoxStream<'static, Outgoing>>>;

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<Value>,
}

fn disconnected(err: std::io::Error) -> Flow {
    if err.kind() == std::io::ErrorKind::TimedOut {
        tracing::info!("disconnecting a WebSocket whose client stopped reading");
    }
    Flow::Disconnect
}

enum Flow {
    Continue,
    Close(CloseReason),
    /// The connection failed or the client stopped reading: no close frame
    /// can reach it.
    Disconnect,
}

struct Connection {
    socket: Socket,
    schema: AppSchema,
    app: Arc<AppContext>,
    protocol: Protocol,
    client_ip: String,
    principal: Option<Principal>,
    slot: Option<SocketSlot>,
    expires_in: Option<Pin<Box<Sleep>>>,
    /// How to stop each running operation, by the client's id for it.
    operations: HashMap<String, AbortHandle>,
    running: Operations,
}

impl Connection {
    fn new(socket: Socket, schema: AppSchema, app: Arc<AppContext>, protocol: Protocol, client_ip: String) -> Self {
        Self {
            socket,
            schema,
            app,
            protocol,
            client_ip,
            principal: None,
            slot: None,
            expires_in: None,
            operations: HashMap::new(),
            running: SelectAll::new(),
        }
    }

    async fn run(mut self) {
        let init_deadline = tokio::time::sleep(self.app.settings.ws_init_timeout);
        tokio::pin!(init_deadline);
        let mut keep_alive = tokio::time::interval(LEGACY_KEEP_ALIVE);
        let mut shutting_down = self.app.shutting_down.subscribe();
        let close = loop {
            let expiry = async {
                match self.expires_in.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                message = self.socket.next_message() => match message {
                    // Boxed: handling a message (authentication, starting an
                    // operation) needs far more room than waiting, and every
                    // idle socket would otherwise keep that room.
                    Some(Ok(message)) => Box::pin(self.on_message(message)).await,
                    Some(Err(_)) => Flow::Close(close_reason(4400, "Invalid message")),
                    None => break None,
                },
                Some(out) = self.running.next() => self.send_ready(out).await,
                _ = &mut init_deadline, if self.principal.is_none() => {
                    Flow::Close(close_reason(4408, "Connection initialisation timeout"))
                }
                _ = expiry => Flow::Close(close_reason(4403, "Forbidden: the access token expired")),
                _ = shutting_down.wait_for(|stopping| *stopping) => {
                    Flow::Close(CloseReason { code: CloseCode::Away, description: Some("server restarting".into()) })
                }
                _ = keep_alive.tick(), if self.protocol == Protocol::LegacyWs && self.principal.is_some() => {
                    self.send_json(json!({ "type": "ka" })).await
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(reason) => break Some(reason),
                Flow::Disconnect => break None,
            }
        };
        if let Some(reason) = close {
            let within = self.app.settings.ws_send_timeout;
            Box::pin(self.into_socket().close(Some(reason), within)).await;
        }
    }

    /// The socket alone: the person's place and the running operations end
    /// with the conversation, not when the client has answered the close.
    fn into_socket(self) -> Socket {
        self.socket
    }

    async fn send_json(&mut self, message: Value) -> Flow {
        self.send_message(Message::Text(message.to_string().into())).await
    }

    async fn send_message(&mut self, message: Message) -> Flow {
        match self.socket.send(message, self.app.settings.ws_send_timeout).await {
            Ok(()) => Flow::Continue,
            Err(err) => disconnected(err),
        }
    }

    /// Sends `out` and whatever else the running operations have ready, in
    /// one write: events that commit together reach a subscriber together,
    /// and a write to a socket costs about as much for one as for many.
    async fn send_ready(&mut self, mut out: Outgoing) -> Flow {
        loop {
            let message = self.outgoing_message(out);
            if self.socket.queue(Message::Text(message.to_string().into())).is_err() {
                return Flow::Disconnect;
            }
            if self.socket.queued_bytes() >= MAX_WRITE_BYTES {
                break;
            }
            // Polled with this task's waker, so whatever is not ready yet
            // wakes the connection as it would have.
            match std::future::poll_fn(|cx| Poll::Ready(self.running.poll_next_unpin(cx))).await {
                Poll::Ready(Some(next)) => out = next,
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        match self.socket.flush(self.app.settings.ws_send_timeout).await {
            Ok(()) => Flow::Continue,
            Err(err) => disconnected(err),
        }
    }

    fn outgoing_message(&mut self, out: Outgoing) -> Value {
        match out {
            Outgoing::Next(id, response) => json!({ "type": self.protocol.next_type(), "id": id, "payload": response }),
            // An `error` ends the operation: no `complete` follows it.
            Outgoing::Error(id, errors) => {
                self.operations.remove(&id);
                json!({ "type": "error", "id": id, "payload": errors })
            }
            Outgoing::Complete(id) => {
                self.operations.remove(&id);
                json!({ "type": "complete", "id": id })
            }
        }
    }

    async fn on_message(&mut self, message: Incoming) -> Flow {
        match message {
            Incoming::Text(text) => match serde_json::from_slice::<ClientMessage>(&text) {
                Ok(message) => self.on_client_message(message).await,
                Err(_) => Flow::Close(close_reason(4400, "Invalid message")),
            },
            Incoming::Binary => Flow::Close(close_reason(4400, "Binary messages are not supported")),
            Incoming::Ping(payload) => self.send_message(Message::Pong(payload)).await,
            Incoming::Pong => Flow::Continue,
            Incoming::Close => Flow::Close(CloseReason { code: CloseCode::Normal, description: None }),
        }
    }

    async fn on_client_message(&mut self, message: ClientMessage) -> Flow {
        match (self.protocol, message.kind.as_str()) {
            (_, "connection_init") => self.on_init(message.payload).await,
            (Protocol::TransportWs, "ping") => self.send_json(json!({ "type": "pong" })).await,
            (Protocol::TransportWs, "pong") => Flow::Continue,
            (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => {
                self.on_subscribe(message.id, message.payload).await
            }
            (Protocol::TransportWs, "complete") | (Protocol::LegacyWs, "stop") => {
                // Aborted, it yields nothing more, not even its `complete`.
                if let Some(operation) = message.id.and_then(|id| self.operations.remove(&id)) {
                    operation.abort();
                }
                Flow::Continue
            }
            (Protocol::LegacyWs, "connection_terminate") => {
                Flow::Close(CloseReason { code: CloseCode::Normal, description: None })
            }
            _ => Flow::Close(close_reason(4400, "Invalid message type")),
        }
    }

    async fn on_init(&mut self, payload: Option<Value>) -> Flow {
        if self.principal.is_some() {
            return Flow::Close(close_reason(4429, "Too many initialisation requests"));
        }
        let authorization = payload
            .as_ref()
            .and_then(|p| p.get("authorization").or_else(|| p.get("Authorization")))
            .and_then(Value::as_str);
        let Some((Caller::User(principal), expires_at)) = authenticate(&self.app, authorization).await else {
            if self.protocol == Protocol::LegacyWs {
                let _ =
                    self.send_json(json!({ "type": "connection_error", "payload": { "message": "Forbidden" } })).await;
            }
            return Flow::Close(close_reason(4403, "Forbidden"));
        };
        let Some(slot) = self.app.open_sockets.claim(principal.user_id, self.app.settings.ws_max_connections_per_user)
        else {
            return Flow::Close(CloseReason {
                code: CloseCode::Policy,
                description: Some("too many connections for this account".into()),
            });
        };
        self.slot = Some(slot);
        let remaining = (expires_at - Utc::now()).to_std().unwrap_or_default();
        self.expires_in = Some(Box::pin(tokio::time::sleep(remaining)));
        self.principal = Some(principal);
        tracing::debug!("websocket connection acknowledged");
        self.send_json(json!({ "type": "connection_ack" })).await
    }

    async fn on_subscribe(&mut self, id: Option<String>, payload: Option<Value>) -> Flow {
        let Some(principal) = self.principal.clone() else {
            return Flow::Close(close_reason(4401, "Unauthorized"));
        };
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Flow::Close(close_reason(4400, "Subscribe without an id"));
        };
        let Some(request) = payload.and_then(|payload| serde_json::from_value::<Request>(payload).ok()) else {
            return Flow::Close(close_reason(4400, "Invalid subscribe payload"));
        };
        if self.operations.contains_key(&id) {
            return Flow::Close(close_reason(4409, &format!("Subscriber for {id} already exists")));
        }
        let max_operations = self.app.settings.ws_max_operations;
        if self.operations.len() >= max_operations {
            let message = format!("at most {max_operations} operations at once on one connection");
            let refusal = json!([{ "message": message, "extensions": { "code": "LIMIT_EXCEEDED" } }]);
            return self.send_json(json!({ "id": id, "type": "error", "payload": refusal })).await;
        }
        // Operations over the socket draw from the same bucket as over HTTP.
        let caller = Caller::User(principal);
        if let Err(refusal) = self.app.limiter.admit(&caller.rate_bucket(), self.app.settings.caller_limit(), 1).await {
            let errors = [refusal.extend().into_server_error(Pos::default())];
            return self.send_json(json!({ "id": id, "type": "error", "payload": errors })).await;
        }
        let mut request = request;
        request.data = request_data(&self.app, Auth::Authenticated(caller), &self.client_ip, None);
        let responses = match self.app.documents.execute_stream(&self.schema, request) {
            Ok(responses) => responses,
            Err(errors) => {
                return self.send_json(json!({ "type": "error", "id": id, "payload": errors })).await;
            }
        };
        let operation_id = id.clone();
        let operation = stream! {
            let mut responses = std::pin::pin!(responses);
            let mut first = true;
            while let Some(response) = responses.next().await {
                // A document refused before it ran is an `error`, not a result.
                if first && response.data == async_graphql::Value::Null && !response.errors.is_empty() {
                    yield Outgoing::Error(operation_id, response.errors);
                    return;
                }
                first = false;
                yield Outgoing::Next(operation_id.clone(), response);
            }
            yield Outgoing::Complete(operation_id);
        };
        let (operation, stop) = abortable(operation.boxed());
        self.running.push(operation);
        self.operations.insert(id, stop);
        Flow::Continue
    }
}
