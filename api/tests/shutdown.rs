//! The real binary stops cleanly on SIGTERM: WebSockets are closed with 1001
//! (going away) so apps reconnect elsewhere, and the process exits with 0.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--demo")
        .env("BIND", "127.0.0.1:0")
        .env("DATA_DIR", data.path())
        .env("DATABASE_URL", format!("sqlite://{}/app.db?mode=rwc", data.path().display()))
        .env("JWT_SECRET", "a-test-secret-that-is-at-least-32-bytes")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");

    // The server prints its GraphiQL URL once it listens.
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|line| {
            line.strip_prefix("GraphiQL: http://").map(|rest| rest.trim_end_matches("/graphql").to_owned())
        })
    })
    .await
    .unwrap()
    .expect("the server announces its address");

    let login: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": "mutation { login(input: {phone: \"13800001003\", password: \"demo-pass-2026\"}) { accessToken } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["login"]["accessToken"].as_str().expect("token").to_owned();

    let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    let ack = socket.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"));

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());

    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket is closed promptly");
    assert_eq!(close, Some(1001));

    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}
