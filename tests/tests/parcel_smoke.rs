//! A parcel from the desk to the resident's hands, with the code only the
//! resident can read, and an integrator locker doing the same.

use serde_json::json;
use tests::{error_code, id_of, spawn_app};

const REGISTER: &str = "mutation($unit: ID!, $tracking: String!) { registerParcel(input: {kind: PARCEL, carrier: \"SF\", trackingNumber: $tracking, recipientName: \"李娜\", unitId: $unit, location: \"A-3\"}) { parcel { id status pickupCode } } }";

#[tokio::test]
async fn the_desk_registers_and_hands_over_a_parcel_against_its_code() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let tenant = app.token("tenant").await;
    let unit = id_of("unit", app.home.unit("1-102").id);

    let registered = app.data(Some(&desk), REGISTER, json!({ "unit": unit, "tracking": "SF100" })).await;
    let parcel = &registered["registerParcel"]["parcel"];
    assert_eq!(parcel["status"], "WAITING");
    assert!(parcel["pickupCode"].is_null(), "the desk never reads the code");
    let parcel_id = parcel["id"].as_str().unwrap().to_owned();

    let seen =
        app.data(Some(&tenant), "query($id: ID!) { parcel(id: $id) { pickupCode } }", json!({ "id": parcel_id })).await;
    let code = seen["parcel"]["pickupCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);

    let duplicate = app.graphql(Some(&desk), REGISTER, json!({ "unit": unit, "tracking": "SF100" })).await;
    assert_eq!(error_code(&duplicate), Some("CONFLICT"));

    let pick_up = "mutation($id: ID!, $code: String!, $name: String) { pickUpParcel(input: {parcelId: $id, pickupCode: $code, collectorName: $name}) { parcel { status pickedUpByName pickedUpVia } } }";
    let wrong = app.graphql(Some(&desk), pick_up, json!({ "id": parcel_id, "code": "000000x", "name": "李娜" })).await;
    assert_eq!(error_code(&wrong), Some("BAD_USER_INPUT"));
    let done = app.data(Some(&desk), pick_up, json!({ "id": parcel_id, "code": code, "name": "李娜" })).await;
    assert_eq!(done["pickUpParcel"]["parcel"]["status"], "PICKED_UP");
    assert_eq!(done["pickUpParcel"]["parcel"]["pickedUpVia"], "FRONT_DESK");
}

#[tokio::test]
async fn an_integrator_registers_with_client_credentials_until_disabled() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let created = app
        .data(
            Some(&manager),
            "mutation { createApiClient(input: {name: \"lockers\", scopes: [PARCELS_READ, PARCELS_WRITE]}) { apiClient { id } clientSecret } }",
            json!({}),
        )
        .await;
    let client_id = created["createApiClient"]["apiClient"]["id"].as_str().unwrap().to_owned();
    let secret = created["createApiClient"]["clientSecret"].as_str().unwrap().to_owned();

    let response = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &client_id), ("client_secret", &secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();

    let unit = id_of("unit", app.home.unit("1-102").id);
    let registered = app.data(Some(&token), REGISTER, json!({ "unit": unit, "tracking": "JD1" })).await;
    assert_eq!(registered["registerParcel"]["parcel"]["status"], "WAITING");
    let me = app.graphql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&me), Some("FORBIDDEN"));

    app.data(
        Some(&manager),
        "mutation($id: ID!) { disableApiClient(input: {apiClientId: $id}) { apiClient { disabledAt } } }",
        json!({ "id": client_id }),
    )
    .await;
    let refused = app.graphql(Some(&token), "{ parcels(first: 5) { totalCount } }", json!({})).await;
    assert_eq!(error_code(&refused), Some("UNAUTHENTICATED"));
}
