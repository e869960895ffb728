//! The repair-order lifecycle end to end through the real server, with the
//! events a resident's phone receives.

use std::time::Duration;

use serde_json::json;
use tests::{WsEvent, id_of, spawn_app};

const SUBMIT: &str = "mutation($unit: ID!) { submitRepairOrder(input: {unitId: $unit, category: PLUMBING, description: \"kitchen tap leaks\"}) { repairOrder { id state version } } }";

#[tokio::test]
async fn a_resident_follows_an_order_from_submission_to_closing() {
    let app = spawn_app().await;
    let tenant = app.token("tenant").await;
    let mut socket = app.websocket().await;
    assert!(matches!(socket.init(&tenant).await, WsEvent::Message(m) if m["type"] == "connection_ack"));
    socket
        .send(json!({ "id": "events", "type": "subscribe", "payload": { "query": "subscription { repairOrderEvents { cursor kind repairOrder { id state } } }" } }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let unit = id_of("unit", app.home.unit("1-102").id);
    let submitted = app.data(Some(&tenant), SUBMIT, json!({ "unit": unit })).await;
    let order_id = submitted["submitRepairOrder"]["repairOrder"]["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["submitRepairOrder"]["repairOrder"]["state"], "SUBMITTED");

    let event = socket.next_message().await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["payload"]["data"]["repairOrderEvents"]["kind"], "SUBMITTED");
    assert_eq!(event["payload"]["data"]["repairOrderEvents"]["repairOrder"]["id"], order_id);

    let supervisor = app.token("supervisor").await;
    let technician_id = id_of("usr", app.home.account("technician").user_id);
    let assigned = app
        .data(
            Some(&supervisor),
            "mutation($order: ID!, $tech: ID!) { assignRepairOrder(input: {repairOrderId: $order, technicianId: $tech}) { repairOrder { state assignee { name } } } }",
            json!({ "order": order_id, "tech": technician_id }),
        )
        .await;
    assert_eq!(assigned["assignRepairOrder"]["repairOrder"]["state"], "ASSIGNED");
    let event = socket.next_message().await;
    assert_eq!(event["payload"]["data"]["repairOrderEvents"]["kind"], "ASSIGNED");

    let technician = app.token("technician").await;
    app.data(
        Some(&technician),
        "mutation($order: ID!) { startRepairOrder(input: {repairOrderId: $order}) { repairOrder { state } } }",
        json!({ "order": order_id }),
    )
    .await;
    app.data(
        Some(&technician),
        "mutation($order: ID!) { completeRepairOrder(input: {repairOrderId: $order, note: \"replaced the washer\", chargeCents: 3000}) { repairOrder { state charge { amountCents currency } } } }",
        json!({ "order": order_id }),
    )
    .await;
    let closed = app
        .data(
            Some(&tenant),
            "mutation($order: ID!) { confirmRepairOrder(input: {repairOrderId: $order, rating: 5}) { repairOrder { state rating timeline { action actor { name } fromState toState } } } }",
            json!({ "order": order_id }),
        )
        .await;
    let order = &closed["confirmRepairOrder"]["repairOrder"];
    assert_eq!(order["state"], "CLOSED");
    let actions: Vec<_> = order["timeline"].as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED", "CONFIRMED"]);
    for expected in ["STARTED", "COMPLETED", "CLOSED"] {
        let event = socket.next_message().await;
        assert_eq!(event["payload"]["data"]["repairOrderEvents"]["kind"], expected);
    }
}
