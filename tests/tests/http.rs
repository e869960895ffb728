//! The HTTP surface: content types, methods, body limits, health checks and the
//! WebSocket upgrade.

use serde_json::json;
use tests::{WsEvent, error_code, spawn_app};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn get_without_a_query_serves_graphiql() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("graphiql"));
}

#[tokio::test]
async fn get_runs_queries_but_refuses_mutations() {
    let app = spawn_app().await;
    let token = app.token("owner").await;
    let query = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ me { name } }")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body: serde_json::Value = query.json().await.unwrap();
    assert_eq!(body["data"]["me"]["name"], "王建国");

    let mutation = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout(input: {refreshToken: \"x\"}) { revoked } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);

    let named = app
        .http
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query A { me { name } } mutation B { logout(input: {refreshToken: \"x\"}) { revoked } }"),
            ("operationName", "B"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 405);
}

#[tokio::test]
async fn refuses_bodies_a_browser_could_send_cross_site() {
    let app = spawn_app().await;
    let mutation = r#"{"query":"mutation { logout(input: {refreshToken: \"x\"}) { revoked } }"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", content_type)
            .body(mutation)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{content_type}");
    }
    let multipart = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 400);
}

#[tokio::test]
async fn oversize_and_malformed_bodies_are_rejected_cleanly() {
    let app = spawn_app().await;
    let huge = format!(r#"{{"query":"{{ me {{ name }} }}","variables":{{"pad":"{}"}}}}"#, "x".repeat(2 * 1024 * 1024));
    let response =
        app.http.post(app.url("/graphql")).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(response.status(), 413);

    let malformed = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    let bad_graphql = app.graphql(None, "{ me { ", json!({})).await;
    assert_eq!(error_code(&bad_graphql), Some("GRAPHQL_VALIDATION_FAILED"));

    let unknown_field = app.graphql(None, "{ me { salary } }", json!({})).await;
    assert_eq!(error_code(&unknown_field), Some("GRAPHQL_VALIDATION_FAILED"));

    let token = app.token("front_desk").await;
    let wrong_enum = app
        .graphql(
            Some(&token),
            "mutation($unit: ID!) { moveIn(input: {unitId: $unit, phone: \"13700000001\", name: \"x\", relation: LANDLORD}) { membership { id } } }",
            json!({ "unit": tests::id_of("unit", app.home.unit("1-201").id) }),
        )
        .await;
    assert_eq!(error_code(&wrong_enum), Some("GRAPHQL_VALIDATION_FAILED"));
}

/// A document is validated in full once per set of variables it comes with;
/// variables it was not accepted with are refused just as a new document's.
#[tokio::test]
async fn a_document_accepted_once_still_refuses_other_variables() {
    let app = spawn_app().await;
    let token = app.token("owner").await;
    let page = "query($first: Int!) { repairOrders(first: $first) { edges { node { id state } } } }";
    let never_accepted = format!("{page} ");
    let submit =
        "mutation($input: SubmitRepairOrderInput!) { submitRepairOrder(input: $input) { repairOrder { id } } }";
    let unit = tests::id_of("unit", app.home.unit("1-101").id);
    let order = json!({ "input": { "unitId": unit, "category": "PLUMBING", "description": "厨房水龙头漏水" } });
    app.data(Some(&token), submit, order).await;

    let first = app.data(Some(&token), page, json!({ "first": 5 })).await;
    assert!(!first["repairOrders"]["edges"].as_array().expect("edges").is_empty());
    let again = app.data(Some(&token), page, json!({ "first": 5 })).await;
    assert_eq!(again, first);

    for variables in [json!({ "first": "five" }), json!({ "first": 1.5 }), json!({ "first": null }), json!({})] {
        let refused = app.graphql(Some(&token), page, variables.clone()).await;
        assert!(refused["errors"].as_array().is_some_and(|errors| !errors.is_empty()), "{variables}: {refused}");
        let refused_new = app.graphql(Some(&token), &never_accepted, variables.clone()).await;
        assert_eq!(refused, refused_new, "{variables}");
    }
    assert_eq!(
        error_code(&app.graphql(Some(&token), page, json!({ "first": "five" })).await),
        Some("GRAPHQL_VALIDATION_FAILED")
    );
}

#[tokio::test]
async fn websocket_authenticates_in_connection_init() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let mut socket = app.websocket().await;
    match socket.init(&token).await {
        WsEvent::Message(message) => assert_eq!(message["type"], "connection_ack"),
        other => panic!("expected connection_ack, got {other:?}"),
    }
    socket.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { name } }" } })).await;
    let next = socket.next_message().await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["payload"]["data"]["me"]["name"], "李娜");
    assert_eq!(socket.next_message().await["type"], "complete");
}

#[tokio::test]
async fn websocket_refuses_bad_credentials() {
    let app = spawn_app().await;
    let mut socket = app.websocket().await;
    match socket.init("not-a-token").await {
        WsEvent::Closed(_) => {}
        WsEvent::Message(message) => assert_ne!(message["type"], "connection_ack", "must not ack"),
    }
    let anonymous = app.graphql(None, "{ me { name } }", json!({})).await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));
}
