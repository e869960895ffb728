//! WebSocket clients speaking graphql-transport-ws: a subscriber that counts
//! the events it receives (S3), and S4, the memory the server spends per idle
//! subscribed connection.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::fixture::{Child, Fixture};

pub type Socket = WebSocketStream<TcpStream>;

const EVENTS: &str = "subscription { repairOrderEvents { cursor kind } }";

/// Opens a socket from `source` (spreading thousands of sockets over
/// 127.0.0.x keeps each source address within its ephemeral ports),
/// acknowledged and subscribed with `query`.
pub async fn subscribed(server: &str, token: &str, source: Ipv4Addr, query: &str) -> Socket {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind source address");
    let stream = socket.connect(server.parse().expect("server address")).await.expect("connect");
    let mut request = format!("ws://{server}/graphql").into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("handshake");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    ws.send(Message::Text(init.to_string().into())).await.expect("init");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_ack") => break,
            Some(Ok(_)) => {}
            other => panic!("no connection_ack: {other:?}"),
        }
    }
    let subscribe = json!({ "id": "events", "type": "subscribe", "payload": { "query": query } });
    ws.send(Message::Text(subscribe.to_string().into())).await.expect("subscribe");
    ws
}

/// Counts `next` messages on one subscribed socket.
pub struct EventCounter {
    received: Arc<AtomicU64>,
}

impl EventCounter {
    pub async fn start(server: &Child, token: &str) -> Self {
        let mut ws = subscribed(server.addr(), token, Ipv4Addr::LOCALHOST, EVENTS).await;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            // An event with errors is not counted, and anything but an event
            // is shown: either is why a count would fall short.
            while let Some(Ok(message)) = ws.next().await {
                match message {
                    Message::Text(text) if text.contains("\"next\"") && !text.contains("\"errors\"") => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Message::Text(text) => eprintln!("  the counting subscriber received {text}"),
                    Message::Close(frame) => eprintln!("  the counting subscriber was closed: {frame:?}"),
                    _ => {}
                }
            }
        });
        // Let the subscription reach the live stream before anything is sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self { received }
    }

    /// Waits until `expected` events arrived or `patience` ran out; answers the count.
    pub async fn wait_for(&self, expected: u64, patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        while self.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received.load(Ordering::Relaxed)
    }
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

pub async fn s4(fixture: &Fixture, counts: &[usize]) {
    let server = Child::api(fixture).await;
    let seeded = fixture.seed_orders(&server, 0).await;
    // One connection first, so start-up allocations are not counted.
    let mut sockets = vec![subscribed(server.addr(), &seeded.owner_token, Ipv4Addr::LOCALHOST, EVENTS).await];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(server.pid());
    println!("S4 idle subscribed graphql-transport-ws connections; server RSS with one: {baseline} KiB");
    for &count in counts {
        let missing = count.saturating_sub(sockets.len());
        let started = Instant::now();
        let opened: Vec<Socket> = stream::iter(0..missing)
            .map(|n| {
                let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 200) as u8);
                subscribed(server.addr(), &seeded.owner_token, source, EVENTS)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        sockets.extend(opened);
        // Let the server settle (subscriptions reach their live streams).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = rss_kib(server.pid());
        let per_connection = (rss.saturating_sub(baseline)) as f64 / (sockets.len() - 1) as f64;
        println!(
            "  {:>6} connections (opened in {:.1} s): RSS {rss} KiB, {per_connection:.1} KiB per connection ({:.0} per GiB; target ≤ 25 KiB)",
            sockets.len(),
            started.elapsed().as_secs_f64(),
            1024.0 * 1024.0 / per_connection
        );
    }
}
