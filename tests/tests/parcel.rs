//! Parcels and mail (快递/邮件收发) against the real server: registration by the
//! desk and by integrators, validation, held tracking numbers, bulk
//! registration, pickup codes only the unit's residents can read, handing over
//! at the desk and from a locker, the lock after wrong codes, unidentified mail,
//! reminders on a controllable clock, the desk's daily summary, scoping per
//! role, the `parcelEvents` subscription, and integrators' API clients.

use std::{collections::HashSet, time::Duration};

use api::events::cursor;
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::join_all;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tests::{QUIET, Subscriber, TestApp, error_code, error_field, id_of, number_of, seq, spawn_app, spawn_app_with};

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// Every field of a parcel, appended to the operations that use `...P`.
const PARCEL_FIELDS: &str = "fragment P on Parcel { id kind status carrier trackingNumber itemCount recipientName \
     unit { id number } location pickupCode receivedBy { name } receivedAt reminderCount nextReminderAt overdue \
     locked authorizedCollector pickedUpAt pickedUpByName pickedUpVia returnedAt returnReason version }";

const REGISTER: &str = "mutation($input: ParcelInput!) { registerParcel(input: $input) { parcel { ...P } } }";
const REGISTER_MANY: &str =
    "mutation($parcels: [ParcelInput!]!) { registerParcels(input: {parcels: $parcels}) { parcels { ...P } } }";
const PICK_UP: &str = "mutation($id: ID!, $code: String!, $name: String) { pickUpParcel(input: {parcelId: $id, pickupCode: $code, collectorName: $name}) { parcel { ...P } } }";
const IDENTIFY: &str =
    "mutation($id: ID!, $unit: ID!) { identifyParcel(input: {parcelId: $id, unitId: $unit}) { parcel { ...P } } }";
const RETURN: &str = "mutation($id: ID!, $reason: String!) { returnParcel(input: {parcelId: $id, reason: $reason}) { parcel { ...P } } }";
const AUTHORIZE: &str = "mutation($id: ID!, $name: String!) { authorizeParcelCollector(input: {parcelId: $id, name: $name}) { parcel { ...P } } }";
const UNLOCK: &str = "mutation($id: ID!) { unlockParcel(input: {parcelId: $id}) { parcel { ...P } } }";
const PARCEL: &str = "query($id: ID!) { parcel(id: $id) { ...P } }";
/// Lists cost `first` times their selection, so they select little.
const PARCELS: &str = "query($filter: ParcelFilter, $first: Int!, $after: String) { parcels(filter: $filter, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { id status pickupCode } } }";
const SUMMARY: &str =
    "query($day: NaiveDate!) { parcelDeskSummary(day: $day) { day received pickedUp returned waiting overdue } }";

const CREATE_CLIENT: &str = "mutation($name: String!, $scopes: [ApiScope!]!) { createApiClient(input: {name: $name, scopes: $scopes}) { apiClient { id name scopes disabledAt createdAt } clientSecret } }";
const DISABLE_CLIENT: &str =
    "mutation($id: ID!) { disableApiClient(input: {apiClientId: $id}) { apiClient { id disabledAt } } }";
const ISSUE_TOKEN: &str = "mutation($id: ID!, $secret: String!) { issueClientToken(input: {clientId: $id, clientSecret: $secret}) { accessToken expiresAt scopes } }";
const API_CLIENTS: &str =
    "query { apiClients(first: 20) { totalCount edges { node { id name scopes disabledAt createdAt } } } }";

/// Runs an operation that spreads `...P`.
async fn op(app: &TestApp, token: Option<&str>, operation: &str, variables: Value) -> Value {
    app.graphql(token, &format!("{operation}\n{PARCEL_FIELDS}"), variables).await
}

/// Like `op`, but the operation must succeed; returns `data`.
async fn op_data(app: &TestApp, token: &str, operation: &str, variables: Value) -> Value {
    let body = op(app, Some(token), operation, variables).await;
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

#[track_caller]
fn assert_error(body: &Value, code: &str, what: &str) {
    assert_eq!(error_code(body), Some(code), "{what}: {body}");
    let data = &body["data"];
    let empty = data.is_null() || data.as_object().is_some_and(|d| d.values().all(Value::is_null));
    assert!(empty, "{what}: data despite the error: {body}");
}

#[track_caller]
fn assert_bad_input(body: &Value, field: &str, what: &str) {
    assert_eq!(error_code(body), Some("BAD_USER_INPUT"), "{what}: {body}");
    assert_eq!(error_field(body), Some(field), "{what}: {body}");
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn unit_id(app: &TestApp, number: &str) -> String {
    id_of("unit", app.home.unit(number).id)
}

/// A parcel for `unit` (an id; `None` for an unclear address).
fn parcel_input(unit: Option<&str>, tracking: &str) -> Value {
    json!({
        "kind": "PARCEL",
        "carrier": "顺丰",
        "trackingNumber": tracking,
        "itemCount": 1,
        "recipientName": "李娜",
        "unitId": unit,
        "location": "A-3",
    })
}

fn with(mut input: Value, field: &str, value: Value) -> Value {
    input[field] = value;
    input
}

async fn try_register(app: &TestApp, token: &str, input: Value) -> Value {
    op(app, Some(token), REGISTER, json!({ "input": input })).await
}

/// Registers and returns the parcel.
async fn register(app: &TestApp, token: &str, input: Value) -> Value {
    op_data(app, token, REGISTER, json!({ "input": input })).await["registerParcel"]["parcel"].clone()
}

/// Registers a parcel for unit `number` of the home community; returns its id.
async fn register_for(app: &TestApp, token: &str, number: &str, tracking: &str) -> String {
    let parcel = register(app, token, parcel_input(Some(&unit_id(app, number)), tracking)).await;
    assert_eq!(parcel["status"], "WAITING", "{parcel}");
    id(&parcel)
}

/// Registers a parcel with an unclear address; returns its id.
async fn register_unidentified(app: &TestApp, token: &str, tracking: &str) -> String {
    let parcel = register(app, token, parcel_input(None, tracking)).await;
    assert_eq!(parcel["status"], "UNIDENTIFIED", "{parcel}");
    id(&parcel)
}

async fn try_register_many(app: &TestApp, token: &str, parcels: Vec<Value>) -> Value {
    op(app, Some(token), REGISTER_MANY, json!({ "parcels": parcels })).await
}

fn id(parcel: &Value) -> String {
    parcel["id"].as_str().unwrap_or_else(|| panic!("no parcel id in {parcel}")).to_owned()
}

async fn try_read(app: &TestApp, token: &str, parcel_id: &str) -> Value {
    op(app, Some(token), PARCEL, json!({ "id": parcel_id })).await
}

async fn read(app: &TestApp, token: &str, parcel_id: &str) -> Value {
    op_data(app, token, PARCEL, json!({ "id": parcel_id })).await["parcel"].clone()
}

/// The pickup code as a resident of the unit reads it.
async fn code_for(app: &TestApp, resident: &str, parcel_id: &str) -> String {
    let parcel = read(app, resident, parcel_id).await;
    let code = parcel["pickupCode"].as_str().unwrap_or_else(|| panic!("no pickup code for the resident: {parcel}"));
    assert_six_digits(code);
    code.to_owned()
}

#[track_caller]
fn assert_six_digits(code: &str) {
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "not a six-digit code: {code:?}");
}

async fn pick_up(app: &TestApp, token: &str, parcel_id: &str, code: &str, collector: Option<&str>) -> Value {
    op(app, Some(token), PICK_UP, json!({ "id": parcel_id, "code": code, "name": collector })).await
}

/// A code that is certainly not `code`.
fn wrong(code: &str) -> String {
    let first = if code.starts_with('9') { '0' } else { '9' };
    format!("{first}{}", &code[1..])
}

async fn try_identify(app: &TestApp, token: &str, parcel_id: &str, unit: &str) -> Value {
    op(app, Some(token), IDENTIFY, json!({ "id": parcel_id, "unit": unit })).await
}

async fn try_return(app: &TestApp, token: &str, parcel_id: &str, reason: &str) -> Value {
    op(app, Some(token), RETURN, json!({ "id": parcel_id, "reason": reason })).await
}

async fn list(app: &TestApp, token: &str, filter: Value, first: i32, after: Option<&str>) -> Value {
    let body = app.graphql(Some(token), PARCELS, json!({ "filter": filter, "first": first, "after": after })).await;
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"]["parcels"].clone()
}

async fn total(app: &TestApp, token: &str, filter: Value) -> i64 {
    list(app, token, filter, 100, None).await["totalCount"].as_i64().expect("totalCount")
}

fn nodes(connection: &Value) -> Vec<Value> {
    connection["nodes"].as_array().expect("nodes").clone()
}

/// The ids a caller sees with `filter` (all of them fit on one page).
async fn visible_ids(app: &TestApp, token: &str, filter: Value) -> HashSet<String> {
    let connection = list(app, token, filter, 100, None).await;
    let ids: HashSet<String> = nodes(&connection).iter().map(id).collect();
    assert_eq!(connection["totalCount"].as_i64(), Some(ids.len() as i64), "{connection}");
    ids
}

fn set(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("not a date-time: {value}")))
        .unwrap_or_else(|err| panic!("not a date-time ({err}): {value}"))
        .with_timezone(&Utc)
}

#[track_caller]
fn assert_near(actual: DateTime<Utc>, expected: DateTime<Utc>, what: &str) {
    let off = (actual - expected).num_milliseconds().abs();
    assert!(off <= 5, "{what}: {actual} instead of {expected}");
}

/// Today in the community's time zone (UTC+8).
fn local_today() -> NaiveDate {
    (Utc::now() + chrono::Duration::hours(8)).date_naive()
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

async fn remind(app: &TestApp, now: DateTime<Utc>) -> usize {
    api::parcel::jobs::send_reminders(&app.context, now).await.expect("send reminders")
}

async fn summary(app: &TestApp, token: &str, day: NaiveDate) -> Value {
    let body = app.graphql(Some(token), SUMMARY, json!({ "day": day.to_string() })).await;
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"]["parcelDeskSummary"].clone()
}

#[track_caller]
fn assert_summary(summary: &Value, [received, picked_up, returned, waiting, overdue]: [i64; 5], what: &str) {
    let actual = ["received", "pickedUp", "returned", "waiting", "overdue"].map(|key| summary[key].as_i64());
    let expected = [received, picked_up, returned, waiting, overdue].map(Some);
    assert_eq!(actual, expected, "{what} (received, pickedUp, returned, waiting, overdue): {summary}");
}

/// An API client of the home community created by its manager: (id, secret).
async fn create_client(app: &TestApp, name: &str, scopes: &[&str]) -> (String, String) {
    let manager = app.token("manager").await;
    let data = app.data(Some(&manager), CREATE_CLIENT, json!({ "name": name, "scopes": scopes })).await;
    let created = &data["createApiClient"];
    (
        created["apiClient"]["id"].as_str().expect("client id").to_owned(),
        created["clientSecret"].as_str().expect("client secret").to_owned(),
    )
}

async fn issue_token(app: &TestApp, client_id: &str, secret: &str) -> Value {
    app.graphql(None, ISSUE_TOKEN, json!({ "id": client_id, "secret": secret })).await
}

/// An integrator's access token with `scopes`, through `issueClientToken`.
async fn integrator(app: &TestApp, scopes: &[&str]) -> String {
    let (client_id, secret) = create_client(app, "Hive Box lockers", scopes).await;
    integrator_token(app, &client_id, &secret).await
}

async fn integrator_token(app: &TestApp, client_id: &str, secret: &str) -> String {
    let body = issue_token(app, client_id, secret).await;
    body["data"]["issueClientToken"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no client token: {body}"))
        .to_owned()
}

async fn oauth(app: &TestApp, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value, Option<String>) {
    let mut request = app.http.post(app.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token request");
    let status = response.status().as_u16();
    let cache = response.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.json().await.expect("JSON body");
    (status, body, cache)
}

// ---------------------------------------------------------------------------
// A graphql-transport-ws subscriber to parcelEvents that can tell "nothing".
// ---------------------------------------------------------------------------

const EVENTS: &str = "subscription($after: String) { parcelEvents(after: $after) { cursor kind occurredAt parcel { id status trackingNumber pickupCode unit { number } } } }";

async fn now_cursor(app: &TestApp) -> String {
    cursor::encode(app.context.events.position_now().await.expect("position"))
}

/// A phone or desk screen subscribed to `parcelEvents` after `after`.
async fn subscribe(app: &TestApp, token: &str, who: &str, after: Option<&str>) -> Subscriber {
    Subscriber::open(app, token, who, EVENTS, "parcelEvents", after).await
}

/// `(kind, parcel id)` of each event.
fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events.iter().map(|event| (event["kind"].as_str().unwrap_or_default().to_owned(), id(&event["parcel"]))).collect()
}

fn expected(pairs: &[(&str, &String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(kind, parcel)| (kind.to_string(), parcel.to_string())).collect()
}

// ---------------------------------------------------------------------------
// 1. Registration and handing over, per role
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_front_desk_registers_a_parcel_and_hands_it_over_to_a_resident() {
    let app = spawn_app().await;
    let (desk, owner, family) = (app.token("front_desk").await, app.token("owner").await, app.token("family").await);
    let before = Utc::now();
    let input = json!({
        "kind": "REGISTERED_MAIL",
        "carrier": " 中国邮政 ",
        "trackingNumber": "EMS0001",
        "itemCount": 2,
        "recipientName": "王建国",
        "unitId": unit_id(&app, "1-101"),
        "location": "B-2",
    });
    let parcel = register(&app, &desk, input).await;
    let after = Utc::now();
    assert_eq!(parcel["status"], "WAITING");
    assert_eq!(parcel["kind"], "REGISTERED_MAIL");
    assert_eq!(parcel["carrier"], "中国邮政", "trimmed");
    assert_eq!(parcel["trackingNumber"], "EMS0001");
    assert_eq!(parcel["itemCount"], 2);
    assert_eq!(parcel["recipientName"], "王建国");
    assert_eq!(parcel["unit"]["number"], "1-101");
    assert_eq!(parcel["location"], "B-2");
    assert_eq!(parcel["receivedBy"]["name"], "刘前台", "received-by is recorded automatically");
    assert!(parcel["pickupCode"].is_null(), "the desk never reads the code: {parcel}");
    assert_eq!(parcel["reminderCount"], 0);
    assert_eq!(parcel["overdue"], false);
    assert_eq!(parcel["locked"], false);
    assert!(parcel["pickedUpAt"].is_null() && parcel["returnedAt"].is_null(), "{parcel}");
    let received_at = time(&parcel["receivedAt"]);
    assert!(received_at >= before - chrono::Duration::seconds(1) && received_at <= after, "{received_at}");
    assert_near(time(&parcel["nextReminderAt"]), received_at + hours(24), "first reminder after 24 h");
    let parcel_id = id(&parcel);

    // Both residents of 1-101 read the same code.
    let code = code_for(&app, &owner, &parcel_id).await;
    assert_eq!(code_for(&app, &family, &parcel_id).await, code);

    // At the desk the collector's name is required, and must be a resident or authorised.
    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &code, None).await, "collectorName", "no collector");
    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &code, Some("  ")).await, "collectorName", "blank collector");
    let stranger = pick_up(&app, &desk, &parcel_id, &code, Some("路人甲")).await;
    assert_bad_input(&stranger, "collectorName", "a stranger");
    let still = read(&app, &desk, &parcel_id).await;
    assert_eq!((still["status"].as_str(), still["locked"].as_bool()), (Some("WAITING"), Some(false)), "{still}");

    let body = pick_up(&app, &desk, &parcel_id, &code, Some("王小明")).await;
    assert!(body.get("errors").is_none(), "{body}");
    let done = &body["data"]["pickUpParcel"]["parcel"];
    assert_eq!(done["status"], "PICKED_UP");
    assert_eq!(done["pickedUpByName"], "王小明");
    assert_eq!(done["pickedUpVia"], "FRONT_DESK");
    assert!(time(&done["pickedUpAt"]) >= received_at, "{done}");
    assert!(done["nextReminderAt"].is_null(), "no reminders once picked up: {done}");
    assert_eq!(read(&app, &owner, &parcel_id).await["status"], "PICKED_UP");

    assert_error(&pick_up(&app, &desk, &parcel_id, &code, Some("王小明")).await, "CONFLICT", "a second pickup");
}

#[tokio::test]
async fn supervisors_and_managers_may_register_and_hand_over_too() {
    let app = spawn_app().await;
    let tenant = app.token("tenant").await;
    for (key, name, tracking) in [("supervisor", "孙主管", "SUP-1"), ("manager", "周经理", "MGR-1")] {
        let token = app.token(key).await;
        let parcel = register(&app, &token, parcel_input(Some(&unit_id(&app, "1-102")), tracking)).await;
        assert_eq!(parcel["status"], "WAITING", "{key}: {parcel}");
        assert_eq!(parcel["receivedBy"]["name"], name, "{key}");
        assert!(parcel["pickupCode"].is_null(), "{key} never reads the code");
        let parcel_id = id(&parcel);
        let code = code_for(&app, &tenant, &parcel_id).await;
        let body = pick_up(&app, &token, &parcel_id, &code, Some("李娜")).await;
        assert_eq!(body["data"]["pickUpParcel"]["parcel"]["status"], "PICKED_UP", "{key}: {body}");
    }
}

#[tokio::test]
async fn only_the_desk_and_integrators_with_parcels_write_may_register() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let reader = integrator(&app, &["PARCELS_READ"]).await;
    let unit = unit_id(&app, "1-101");
    for key in ["technician", "butler", "owner", "family", "tenant"] {
        let token = app.token(key).await;
        let single = try_register(&app, &token, parcel_input(Some(&unit), &format!("NO-{key}"))).await;
        assert_error(&single, "FORBIDDEN", key);
        let bulk = try_register_many(&app, &token, vec![parcel_input(Some(&unit), &format!("NOB-{key}"))]).await;
        assert_error(&bulk, "FORBIDDEN", key);
    }
    let read_only = try_register(&app, &reader, parcel_input(Some(&unit), "NO-reader")).await;
    assert_error(&read_only, "FORBIDDEN", "integrator with parcels:read only");
    let read_only = try_register_many(&app, &reader, vec![parcel_input(Some(&unit), "NOB-reader")]).await;
    assert_error(&read_only, "FORBIDDEN", "integrator with parcels:read only, bulk");
    let anonymous = op(&app, None, REGISTER, json!({ "input": parcel_input(Some(&unit), "NO-anon") })).await;
    assert_error(&anonymous, "UNAUTHENTICATED", "anonymous");
    assert_eq!(total(&app, &desk, json!({})).await, 0, "nothing was registered");

    // Nor may they hand over, return or unlock.
    let parcel_id = register_for(&app, &desk, "1-101", "SF-OK").await;
    let code = code_for(&app, &app.token("owner").await, &parcel_id).await;
    for key in ["technician", "butler", "owner"] {
        let token = app.token(key).await;
        assert_error(&pick_up(&app, &token, &parcel_id, &code, Some("王建国")).await, "FORBIDDEN", key);
        assert_error(&try_return(&app, &token, &parcel_id, "refused").await, "FORBIDDEN", key);
        let unlock = op(&app, Some(&token), UNLOCK, json!({ "id": parcel_id })).await;
        assert_error(&unlock, "FORBIDDEN", key);
    }
    assert_error(&pick_up(&app, &reader, &parcel_id, &code, None).await, "FORBIDDEN", "parcels:read locker");
    assert_eq!(read(&app, &desk, &parcel_id).await["status"], "WAITING");
}

// ---------------------------------------------------------------------------
// 2. Validation, held tracking numbers, bulk registration
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registration_input_is_validated_field_by_field() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let unit = unit_id(&app, "1-102");
    let good = parcel_input(Some(&unit), "VAL-1");
    let cases = [
        (with(good.clone(), "carrier", json!("")), "carrier"),
        (with(good.clone(), "carrier", json!("   ")), "carrier"),
        (with(good.clone(), "carrier", json!("承".repeat(51))), "carrier"),
        (with(good.clone(), "itemCount", json!(0)), "itemCount"),
        (with(good.clone(), "itemCount", json!(-1)), "itemCount"),
        (with(good.clone(), "itemCount", json!(100)), "itemCount"),
        (with(good.clone(), "trackingNumber", json!(" ")), "trackingNumber"),
        (with(good.clone(), "trackingNumber", json!("9".repeat(65))), "trackingNumber"),
        (with(good.clone(), "recipientName", json!("")), "recipientName"),
        (with(good.clone(), "location", json!("x".repeat(51))), "location"),
        (with(good.clone(), "unitId", json!("bld_1")), "unitId"),
        (with(good.clone(), "unitId", json!("unit_x")), "unitId"),
    ];
    for (input, field) in cases {
        let body = try_register(&app, &desk, input.clone()).await;
        assert_bad_input(&body, field, &input.to_string());
    }
    let foreign = with(good.clone(), "unitId", json!(id_of("unit", app.other.unit("1-101").id)));
    assert_error(&try_register(&app, &desk, foreign).await, "NOT_FOUND", "a unit of the other community");

    // In a bulk registration fields are named after their position.
    let bulk = |index: usize, bad: Value| -> Vec<Value> {
        (0..5).map(|i| if i == index { bad.clone() } else { parcel_input(Some(&unit), &format!("VAL-B{i}")) }).collect()
    };
    let cases = [
        (bulk(3, with(parcel_input(Some(&unit), "x"), "trackingNumber", json!(""))), "parcels.3.trackingNumber"),
        (bulk(2, with(parcel_input(Some(&unit), "VAL-B2"), "itemCount", json!(0))), "parcels.2.itemCount"),
        (bulk(1, with(parcel_input(Some(&unit), "VAL-B1"), "carrier", json!(" "))), "parcels.1.carrier"),
        (bulk(0, with(parcel_input(Some(&unit), "VAL-B0"), "recipientName", json!(""))), "parcels.0.recipientName"),
        (bulk(4, with(parcel_input(Some(&unit), "VAL-B4"), "unitId", json!("unit_x"))), "parcels.4.unitId"),
    ];
    for (parcels, field) in cases {
        assert_bad_input(&try_register_many(&app, &desk, parcels).await, field, field);
    }
    assert_bad_input(&try_register_many(&app, &desk, vec![]).await, "parcels", "an empty bulk registration");
    assert_eq!(total(&app, &desk, json!({})).await, 0, "nothing was registered");
    // The good input itself goes through.
    assert_eq!(register(&app, &desk, good).await["status"], "WAITING");
}

#[tokio::test]
async fn a_tracking_number_is_held_once_until_picked_up_or_returned() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let locker = integrator(&app, &["PARCELS_WRITE"]).await;
    let unit = unit_id(&app, "1-102");
    let first = register_for(&app, &desk, "1-102", "SF1001").await;

    let again = [
        parcel_input(Some(&unit), "SF1001"),
        parcel_input(Some(&unit_id(&app, "2-202")), "SF1001"),
        parcel_input(None, "SF1001"),
        parcel_input(Some(&unit), " SF1001 "),
    ];
    for input in again {
        assert_error(&try_register(&app, &desk, input.clone()).await, "CONFLICT", &input.to_string());
    }
    assert_error(&try_register(&app, &locker, parcel_input(Some(&unit), "SF1001")).await, "CONFLICT", "integrator");
    let bulk = vec![parcel_input(Some(&unit), "SF2001"), parcel_input(Some(&unit), "SF1001")];
    assert_error(&try_register_many(&app, &desk, bulk).await, "CONFLICT", "bulk with a held number");

    // Picked up: the number may come again.
    let code = code_for(&app, &tenant, &first).await;
    assert!(pick_up(&app, &desk, &first, &code, Some("李娜")).await.get("errors").is_none());
    let second = register_for(&app, &desk, "1-102", "SF1001").await;
    assert_ne!(second, first);
    assert_error(&try_register(&app, &desk, parcel_input(Some(&unit), "SF1001")).await, "CONFLICT", "held again");

    // Returned: the number may come again.
    let returned = try_return(&app, &desk, &second, "refused by the recipient").await;
    assert_eq!(returned["data"]["returnParcel"]["parcel"]["status"], "RETURNED", "{returned}");
    let third = register(&app, &locker, parcel_input(Some(&unit), "SF1001")).await;
    assert_eq!(third["status"], "WAITING");

    // An unidentified parcel holds its number too.
    register_unidentified(&app, &desk, "YT777").await;
    assert_error(&try_register(&app, &desk, parcel_input(Some(&unit), "YT777")).await, "CONFLICT", "unidentified");

    // The same number twice in one bulk registration is the input's fault.
    let twice = vec![
        parcel_input(Some(&unit), "ZT1"),
        parcel_input(Some(&unit), "ZT2"),
        parcel_input(Some(&unit_id(&app, "1-101")), "ZT1"),
    ];
    assert_bad_input(&try_register_many(&app, &desk, twice).await, "parcels.2.trackingNumber", "twice in a bulk");

    assert_eq!(total(&app, &desk, json!({ "trackingNumber": "SF1001" })).await, 3);
    assert_eq!(total(&app, &desk, json!({})).await, 4, "SF1001 three times and YT777");
}

#[tokio::test]
async fn concurrent_registrations_of_one_tracking_number_let_exactly_one_through() {
    let app = spawn_app().await;
    let (desk, supervisor) = (app.token("front_desk").await, app.token("supervisor").await);
    let unit = unit_id(&app, "1-101");
    let bodies = join_all((0..6).map(|i| {
        let token = if i % 2 == 0 { &desk } else { &supervisor };
        try_register(&app, token, parcel_input(Some(&unit), "RACE-1"))
    }))
    .await;
    let ok = bodies.iter().filter(|body| body.get("errors").is_none()).count();
    assert_eq!(ok, 1, "exactly one registration wins: {bodies:#?}");
    for body in bodies.iter().filter(|body| body.get("errors").is_some()) {
        assert_eq!(error_code(body), Some("CONFLICT"), "{body}");
    }
    assert_eq!(total(&app, &desk, json!({ "trackingNumber": "RACE-1" })).await, 1);
}

#[tokio::test]
async fn a_bulk_registration_takes_up_to_100_parcels_with_distinct_codes() {
    let app = spawn_app().await;
    let (desk, owner) = (app.token("front_desk").await, app.token("owner").await);
    let (first_unit, second_unit) = (unit_id(&app, "1-101"), unit_id(&app, "2-201"));
    let inputs: Vec<Value> = (0..101)
        .map(|i| parcel_input(Some(if i % 2 == 0 { &first_unit } else { &second_unit }), &format!("BULK{i:03}")))
        .collect();

    assert_bad_input(&try_register_many(&app, &desk, inputs.clone()).await, "parcels", "101 parcels");
    assert_eq!(total(&app, &desk, json!({})).await, 0);

    let body = try_register_many(&app, &desk, inputs[..100].to_vec()).await;
    assert!(body.get("errors").is_none(), "{body}");
    let parcels = body["data"]["registerParcels"]["parcels"].as_array().expect("parcels").clone();
    assert_eq!(parcels.len(), 100);
    for (i, parcel) in parcels.iter().enumerate() {
        assert_eq!(parcel["trackingNumber"], format!("BULK{i:03}"), "in the order given");
        assert_eq!(parcel["status"], "WAITING");
        assert!(parcel["pickupCode"].is_null(), "the desk never reads codes: {parcel}");
        assert_eq!(parcel["receivedBy"]["name"], "刘前台");
    }
    assert_eq!(total(&app, &desk, json!({})).await, 100);

    // The owner of both units reads all 100 codes: six digits, all different.
    let connection = list(&app, &owner, json!({}), 100, None).await;
    assert_eq!(connection["totalCount"], 100);
    let codes: Vec<String> =
        nodes(&connection).iter().map(|p| p["pickupCode"].as_str().expect("code for the owner").to_owned()).collect();
    codes.iter().for_each(|code| assert_six_digits(code));
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 100, "codes are unique among waiting parcels");
}

#[tokio::test]
async fn a_bulk_registration_is_all_or_nothing() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let unit = unit_id(&app, "1-102");
    register_for(&app, &desk, "1-101", "HELD-1").await;
    let mut phone = subscribe(&app, &tenant, "tenant", Some(&now_cursor(&app).await)).await;

    let held_last = vec![
        parcel_input(Some(&unit), "A1"),
        parcel_input(None, "A2"),
        parcel_input(Some(&unit), "A3"),
        parcel_input(Some(&unit), "HELD-1"),
    ];
    assert_error(&try_register_many(&app, &desk, held_last).await, "CONFLICT", "the fourth is held");
    assert_eq!(total(&app, &desk, json!({})).await, 1, "none of the bulk was registered");

    let foreign = id_of("unit", app.other.unit("1-102").id);
    let foreign_unit = vec![parcel_input(Some(&unit), "A1"), parcel_input(Some(&foreign), "A2")];
    assert_error(&try_register_many(&app, &desk, foreign_unit).await, "NOT_FOUND", "a unit of the other community");
    let bad_count = vec![parcel_input(Some(&unit), "A1"), with(parcel_input(Some(&unit), "A2"), "itemCount", json!(0))];
    assert_bad_input(&try_register_many(&app, &desk, bad_count).await, "parcels.1.itemCount", "bad item count");
    assert_eq!(total(&app, &desk, json!({})).await, 1, "still nothing of the bulk");

    let fixed = vec![parcel_input(Some(&unit), "A1"), parcel_input(None, "A2"), parcel_input(Some(&unit), "A3")];
    let body = try_register_many(&app, &desk, fixed).await;
    assert!(body.get("errors").is_none(), "{body}");
    let parcels = body["data"]["registerParcels"]["parcels"].as_array().expect("parcels").clone();
    let statuses: Vec<_> = parcels.iter().map(|p| p["status"].as_str().unwrap_or_default()).collect();
    assert_eq!(statuses, ["WAITING", "UNIDENTIFIED", "WAITING"]);
    assert_eq!(total(&app, &desk, json!({})).await, 4);

    // The tenant heard of the two of 1-102 that went through, and of nothing refused.
    let events = phone.exactly(2).await;
    assert_eq!(kinds(&events), expected(&[("REGISTERED", &id(&parcels[0])), ("REGISTERED", &id(&parcels[2]))]));
}

// ---------------------------------------------------------------------------
// 3. Pickup codes and handing over
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pickup_codes_are_shown_to_the_units_residents_and_nobody_else() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let reader = integrator(&app, &["PARCELS_READ", "PARCELS_WRITE"]).await;
    let parcel_id = register_for(&app, &desk, "1-101", "CODE-1").await;
    let code = code_for(&app, &app.token("owner").await, &parcel_id).await;
    assert_eq!(code_for(&app, &app.token("family").await, &parcel_id).await, code);

    for key in ["front_desk", "butler", "supervisor", "manager", "technician"] {
        let token = app.token(key).await;
        let parcel = read(&app, &token, &parcel_id).await;
        assert!(parcel["pickupCode"].is_null(), "{key} reads the code: {parcel}");
        let listed = nodes(&list(&app, &token, json!({}), 10, None).await);
        assert!(listed.iter().all(|p| p["pickupCode"].is_null()), "{key} lists the code: {listed:?}");
    }
    let parcel = read(&app, &reader, &parcel_id).await;
    assert!(parcel["pickupCode"].is_null(), "an integrator reads the code: {parcel}");
    let listed = nodes(&list(&app, &reader, json!({}), 10, None).await);
    assert!(listed.iter().all(|p| p["pickupCode"].is_null()), "an integrator lists the code: {listed:?}");
    let registered = register(&app, &reader, parcel_input(Some(&unit_id(&app, "1-101")), "CODE-2")).await;
    assert!(registered["pickupCode"].is_null(), "an integrator registering reads the code: {registered}");

    for key in ["tenant", "owner2"] {
        let token = app.token(key).await;
        assert_error(&try_read(&app, &token, &parcel_id).await, "NOT_FOUND", key);
        assert_eq!(total(&app, &token, json!({})).await, 0, "{key}");
    }
    let other_desk = app.token_in(&app.other, "front_desk").await;
    assert_error(&try_read(&app, &other_desk, &parcel_id).await, "NOT_FOUND", "the other community's desk");
    let other_owner = app.token_in(&app.other, "owner").await;
    assert_error(&try_read(&app, &other_owner, &parcel_id).await, "NOT_FOUND", "the other community's owner");
}

#[tokio::test]
async fn a_resident_may_authorise_someone_else_to_collect() {
    let app = spawn_app().await;
    let (desk, tenant, owner) = (app.token("front_desk").await, app.token("tenant").await, app.token("owner").await);
    let parcel_id = register_for(&app, &desk, "1-102", "AUTH-1").await;
    let code = code_for(&app, &tenant, &parcel_id).await;

    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &code, Some("赵六")).await, "collectorName", "not yet");
    let by_owner = op(&app, Some(&owner), AUTHORIZE, json!({ "id": parcel_id, "name": "赵六" })).await;
    assert_error(&by_owner, "NOT_FOUND", "a resident of another unit");
    let by_desk = op(&app, Some(&desk), AUTHORIZE, json!({ "id": parcel_id, "name": "赵六" })).await;
    assert_error(&by_desk, "FORBIDDEN", "the desk");
    let blank = op(&app, Some(&tenant), AUTHORIZE, json!({ "id": parcel_id, "name": " " })).await;
    assert_bad_input(&blank, "name", "a blank name");

    let authorised = op_data(&app, &tenant, AUTHORIZE, json!({ "id": parcel_id, "name": "赵六" })).await;
    assert_eq!(authorised["authorizeParcelCollector"]["parcel"]["authorizedCollector"], "赵六");
    assert_eq!(read(&app, &desk, &parcel_id).await["authorizedCollector"], "赵六", "the desk sees whom to expect");

    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &code, Some("钱七")).await, "collectorName", "someone else");
    let body = pick_up(&app, &desk, &parcel_id, &code, Some("赵六")).await;
    assert!(body.get("errors").is_none(), "{body}");
    let parcel = &body["data"]["pickUpParcel"]["parcel"];
    assert_eq!(parcel["status"], "PICKED_UP");
    assert_eq!(parcel["pickedUpByName"], "赵六");

    let late = op(&app, Some(&tenant), AUTHORIZE, json!({ "id": parcel_id, "name": "孙八" })).await;
    assert_error(&late, "CONFLICT", "authorising for a parcel already picked up");
}

#[tokio::test]
async fn a_locker_integrator_registers_and_hands_over_against_the_code() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let locker = integrator(&app, &["PARCELS_WRITE"]).await;

    let parcel = register(&app, &locker, parcel_input(Some(&unit_id(&app, "1-102")), "LOCK-1")).await;
    assert_eq!(parcel["status"], "WAITING");
    assert!(parcel["receivedBy"].is_null(), "no staff member received it: {parcel}");
    let parcel_id = id(&parcel);
    let from_desk = read(&app, &desk, &parcel_id).await;
    assert_eq!(from_desk["trackingNumber"], "LOCK-1");
    let code = code_for(&app, &tenant, &parcel_id).await;

    assert_bad_input(&pick_up(&app, &locker, &parcel_id, &wrong(&code), None).await, "pickupCode", "wrong code");
    let body = pick_up(&app, &locker, &parcel_id, &code, None).await;
    assert!(body.get("errors").is_none(), "{body}");
    let done = &body["data"]["pickUpParcel"]["parcel"];
    assert_eq!(done["status"], "PICKED_UP");
    assert_eq!(done["pickedUpVia"], "LOCKER");
    assert!(done["pickedUpAt"].is_string(), "{done}");
    assert_eq!(read(&app, &tenant, &parcel_id).await["pickedUpVia"], "LOCKER");

    // A parcel the desk registered may be handed over from the locker too.
    let desk_parcel = register_for(&app, &desk, "1-102", "LOCK-2").await;
    let code = code_for(&app, &tenant, &desk_parcel).await;
    let body = pick_up(&app, &locker, &desk_parcel, &code, None).await;
    assert_eq!(body["data"]["pickUpParcel"]["parcel"]["pickedUpVia"], "LOCKER", "{body}");
}

#[tokio::test]
async fn five_wrong_codes_lock_a_parcel_until_the_desk_unlocks_it() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let locker = integrator(&app, &["PARCELS_WRITE"]).await;
    let parcel_id = register_for(&app, &desk, "1-102", "WRONG-1").await;
    let code = code_for(&app, &tenant, &parcel_id).await;
    let bad = wrong(&code);

    let not_locked = op(&app, Some(&desk), UNLOCK, json!({ "id": parcel_id })).await;
    assert_error(&not_locked, "CONFLICT", "unlocking a parcel that is not locked");

    for attempt in 1..=5 {
        // Desk and locker alike: five wrong codes in a row.
        let token = if attempt % 2 == 0 { &locker } else { &desk };
        let body = pick_up(&app, token, &parcel_id, &bad, Some("李娜")).await;
        assert_bad_input(&body, "pickupCode", &format!("wrong code #{attempt}"));
        let locked = read(&app, &desk, &parcel_id).await["locked"].as_bool();
        assert_eq!(locked, Some(attempt == 5), "locked after attempt {attempt}");
    }
    assert_error(&pick_up(&app, &desk, &parcel_id, &code, Some("李娜")).await, "CONFLICT", "locked, right code");
    assert_error(&pick_up(&app, &locker, &parcel_id, &code, None).await, "CONFLICT", "locked, from the locker");
    assert_eq!(read(&app, &tenant, &parcel_id).await["status"], "WAITING");

    for key in ["butler", "tenant", "technician"] {
        let token = app.token(key).await;
        let body = op(&app, Some(&token), UNLOCK, json!({ "id": parcel_id })).await;
        assert_error(&body, "FORBIDDEN", key);
    }
    let unlock = op(&app, Some(&locker), UNLOCK, json!({ "id": parcel_id })).await;
    assert_error(&unlock, "FORBIDDEN", "an integrator");

    let unlocked = op_data(&app, &desk, UNLOCK, json!({ "id": parcel_id })).await;
    assert_eq!(unlocked["unlockParcel"]["parcel"]["locked"], false);
    // Unlocking starts the count afresh: four more wrong codes do not lock it.
    for attempt in 1..=4 {
        assert_bad_input(&pick_up(&app, &desk, &parcel_id, &bad, Some("李娜")).await, "pickupCode", "after unlock");
        assert_eq!(read(&app, &desk, &parcel_id).await["locked"], false, "after unlock, attempt {attempt}");
    }
    let body = pick_up(&app, &desk, &parcel_id, &code, Some("李娜")).await;
    assert_eq!(body["data"]["pickUpParcel"]["parcel"]["status"], "PICKED_UP", "{body}");
}

#[tokio::test]
async fn the_number_of_wrong_codes_before_the_lock_is_configurable() {
    let app = spawn_app_with(|settings| settings.parcel_code_attempts = 2).await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let parcel_id = register_for(&app, &desk, "1-102", "WRONG-2").await;
    let code = code_for(&app, &tenant, &parcel_id).await;
    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &wrong(&code), Some("李娜")).await, "pickupCode", "first");
    assert_eq!(read(&app, &desk, &parcel_id).await["locked"], false);
    assert_bad_input(&pick_up(&app, &desk, &parcel_id, &wrong(&code), Some("李娜")).await, "pickupCode", "second");
    assert_eq!(read(&app, &desk, &parcel_id).await["locked"], true);
    assert_error(&pick_up(&app, &desk, &parcel_id, &code, Some("李娜")).await, "CONFLICT", "locked");
}

#[tokio::test]
async fn concurrent_pickups_of_one_parcel_hand_it_over_once() {
    let app = spawn_app().await;
    let (desk, supervisor, tenant) =
        (app.token("front_desk").await, app.token("supervisor").await, app.token("tenant").await);
    let locker = integrator(&app, &["PARCELS_WRITE"]).await;
    let parcel_id = register_for(&app, &desk, "1-102", "TWICE-1").await;
    let code = code_for(&app, &tenant, &parcel_id).await;
    let bodies = join_all((0..6).map(|i| match i % 3 {
        0 => pick_up(&app, &desk, &parcel_id, &code, Some("李娜")),
        1 => pick_up(&app, &supervisor, &parcel_id, &code, Some("李娜")),
        _ => pick_up(&app, &locker, &parcel_id, &code, None),
    }))
    .await;
    let ok = bodies.iter().filter(|body| body.get("errors").is_none()).count();
    assert_eq!(ok, 1, "handed over exactly once: {bodies:#?}");
    for body in bodies.iter().filter(|body| body.get("errors").is_some()) {
        assert_eq!(error_code(body), Some("CONFLICT"), "{body}");
    }
}

// ---------------------------------------------------------------------------
// 4. Unidentified mail and illegal transitions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unidentified_parcels_are_identified_by_the_desk_or_a_butler_or_returned() {
    let app = spawn_app().await;
    let (desk, butler, tenant, owner2) = (
        app.token("front_desk").await,
        app.token("butler").await,
        app.token("tenant").await,
        app.token("owner2").await,
    );
    let first = register(&app, &desk, parcel_input(None, "UNK-1")).await;
    assert_eq!(first["status"], "UNIDENTIFIED");
    assert!(first["unit"].is_null() && first["pickupCode"].is_null(), "{first}");
    assert!(first["nextReminderAt"].is_null(), "no reminders without a unit: {first}");
    let first = id(&first);
    let second = register_unidentified(&app, &desk, "UNK-2").await;
    let third = register_unidentified(&app, &desk, "UNK-3").await;

    // Seen by the desk, staff and the butler; not by residents.
    let unidentified = json!({ "statuses": ["UNIDENTIFIED"] });
    for key in ["front_desk", "supervisor", "manager", "butler"] {
        let token = app.token(key).await;
        assert_eq!(visible_ids(&app, &token, unidentified.clone()).await, set(&[&first, &second, &third]), "{key}");
        assert_eq!(read(&app, &token, &first).await["status"], "UNIDENTIFIED", "{key}");
    }
    for key in ["owner", "family", "tenant", "owner2"] {
        let token = app.token(key).await;
        assert_eq!(total(&app, &token, json!({})).await, 0, "{key}");
        assert_error(&try_read(&app, &token, &first).await, "NOT_FOUND", key);
    }
    let other_desk = app.token_in(&app.other, "front_desk").await;
    assert_error(&try_read(&app, &other_desk, &first).await, "NOT_FOUND", "the other community's desk");

    // Nobody else identifies; nobody hands an unidentified parcel over.
    for key in ["owner", "technician"] {
        let token = app.token(key).await;
        assert_error(&try_identify(&app, &token, &first, &unit_id(&app, "1-102")).await, "FORBIDDEN", key);
    }
    assert_error(&pick_up(&app, &desk, &first, "123456", Some("李娜")).await, "CONFLICT", "pick up unidentified");

    // The butler of 1号楼 identifies for 1号楼 only.
    let elsewhere = try_identify(&app, &butler, &first, &unit_id(&app, "2-202")).await;
    assert_error(&elsewhere, "NOT_FOUND", "the butler, a unit of 2号楼");
    let foreign = try_identify(&app, &desk, &first, &id_of("unit", app.other.unit("1-102").id)).await;
    assert_error(&foreign, "NOT_FOUND", "the desk, a unit of the other community");
    assert_eq!(read(&app, &desk, &first).await["status"], "UNIDENTIFIED");
    let body = try_identify(&app, &butler, &first, &unit_id(&app, "1-102")).await;
    assert!(body.get("errors").is_none(), "{body}");
    let identified = &body["data"]["identifyParcel"]["parcel"];
    assert_eq!(identified["status"], "WAITING");
    assert_eq!(identified["unit"]["number"], "1-102");
    assert!(identified["pickupCode"].is_null(), "the butler never reads the code: {identified}");
    assert!(identified["nextReminderAt"].is_string(), "reminders start: {identified}");
    code_for(&app, &tenant, &first).await;
    assert_error(&try_identify(&app, &butler, &first, &unit_id(&app, "1-101")).await, "CONFLICT", "identify twice");

    // The desk identifies for 2号楼; the butler of 1号楼 then no longer sees it.
    let body = try_identify(&app, &desk, &second, &unit_id(&app, "2-202")).await;
    assert_eq!(body["data"]["identifyParcel"]["parcel"]["status"], "WAITING", "{body}");
    code_for(&app, &owner2, &second).await;
    assert_error(&try_read(&app, &butler, &second).await, "NOT_FOUND", "the butler, a parcel of 2号楼");

    // Nobody identified: back to the post office, with the reason.
    assert_error(&try_return(&app, &butler, &third, "nobody of that name").await, "FORBIDDEN", "the butler");
    assert_bad_input(&try_return(&app, &desk, &third, " ").await, "reason", "a blank reason");
    let body = try_return(&app, &desk, &third, "nobody of that name").await;
    assert!(body.get("errors").is_none(), "{body}");
    let returned = &body["data"]["returnParcel"]["parcel"];
    assert_eq!(returned["status"], "RETURNED");
    assert_eq!(returned["returnReason"], "nobody of that name");
    assert!(returned["returnedAt"].is_string(), "{returned}");
    assert_eq!(total(&app, &desk, unidentified).await, 0);
}

#[tokio::test]
async fn illegal_transitions_are_conflicts() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let unit = unit_id(&app, "1-102");

    let waiting = register_for(&app, &desk, "1-102", "ILL-1").await;
    assert_error(&try_identify(&app, &desk, &waiting, &unit).await, "CONFLICT", "identify a WAITING parcel");

    let returned = register_for(&app, &desk, "1-102", "ILL-2").await;
    let code = code_for(&app, &tenant, &returned).await;
    let body = try_return(&app, &desk, &returned, "damaged").await;
    assert_eq!(body["data"]["returnParcel"]["parcel"]["status"], "RETURNED", "a WAITING parcel may be returned");
    assert_error(&pick_up(&app, &desk, &returned, &code, Some("李娜")).await, "CONFLICT", "pick up a RETURNED one");
    assert_error(&try_identify(&app, &desk, &returned, &unit).await, "CONFLICT", "identify a RETURNED one");
    assert_error(&try_return(&app, &desk, &returned, "again").await, "CONFLICT", "return a RETURNED one");

    let picked = register_for(&app, &desk, "1-102", "ILL-3").await;
    let code = code_for(&app, &tenant, &picked).await;
    assert!(pick_up(&app, &desk, &picked, &code, Some("李娜")).await.get("errors").is_none());
    assert_error(&try_return(&app, &desk, &picked, "too late").await, "CONFLICT", "return a PICKED_UP one");
    assert_error(&try_identify(&app, &desk, &picked, &unit).await, "CONFLICT", "identify a PICKED_UP one");
    assert_eq!(read(&app, &desk, &picked).await["status"], "PICKED_UP");
}

#[tokio::test]
async fn a_change_made_against_a_stale_version_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let parcel_id = register_for(&app, &desk, "1-102", "VER-1").await;
    let version = read(&app, &desk, &parcel_id).await["version"].as_i64().expect("version");
    // The resident authorises a collector meanwhile: the parcel moves on.
    let authorize = "mutation($id: ID!, $v: Int) { authorizeParcelCollector(input: {parcelId: $id, name: \"王师傅\", expectedVersion: $v}) { parcel { version } } }";
    let body = app.graphql(Some(&tenant), authorize, json!({ "id": parcel_id, "v": version })).await;
    assert_eq!(body["data"]["authorizeParcelCollector"]["parcel"]["version"], version + 1, "{body}");

    let stale = json!({ "id": parcel_id, "v": version });
    let returned = "mutation($id: ID!, $v: Int) { returnParcel(input: {parcelId: $id, reason: \"破损\", expectedVersion: $v}) { parcel { status } } }";
    assert_error(&app.graphql(Some(&desk), returned, stale.clone()).await, "CONFLICT", "return at a stale version");
    assert_error(&app.graphql(Some(&tenant), authorize, stale).await, "CONFLICT", "authorise at a stale version");
    let now = read(&app, &desk, &parcel_id).await;
    assert_eq!((now["status"].as_str(), now["version"].as_i64()), (Some("WAITING"), Some(version + 1)));

    let current = json!({ "id": parcel_id, "v": version + 1 });
    let body = app.graphql(Some(&desk), returned, current).await;
    assert_eq!(body["data"]["returnParcel"]["parcel"]["status"], "RETURNED", "{body}");
}

// ---------------------------------------------------------------------------
// 5. Reminders
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reminders_follow_the_schedule_and_then_the_parcel_is_overdue() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let base = Utc::now();
    let parcel_id = register_for(&app, &desk, "1-102", "REM-1").await;
    // Neither a parcel picked up nor one without a unit is reminded.
    let collected = register_for(&app, &desk, "1-102", "REM-2").await;
    let code = code_for(&app, &tenant, &collected).await;
    assert!(pick_up(&app, &desk, &collected, &code, Some("李娜")).await.get("errors").is_none());
    register_unidentified(&app, &desk, "REM-3").await;
    let mut phone = subscribe(&app, &tenant, "tenant", Some(&now_cursor(&app).await)).await;

    assert_eq!(remind(&app, base + hours(23)).await, 0, "nothing before 24 h");
    assert_eq!(read(&app, &tenant, &parcel_id).await["reminderCount"], 0);

    let schedule = [(25, 1), (49, 2), (73, 3)];
    for (at, number) in schedule {
        let now = base + hours(at);
        assert_eq!(remind(&app, now).await, 1, "reminder {number} at +{at} h");
        let parcel = read(&app, &tenant, &parcel_id).await;
        assert_eq!(parcel["reminderCount"], number, "{parcel}");
        assert_eq!(parcel["status"], "WAITING");
        assert_eq!(parcel["overdue"], number == 3, "overdue only after the third: {parcel}");
        if number < 3 {
            assert_near(time(&parcel["nextReminderAt"]), now + hours(24), "the next reminder a day later");
        } else {
            assert!(parcel["nextReminderAt"].is_null(), "no reminder after the last: {parcel}");
        }
        let event = phone.next_event().await;
        assert_eq!((event["kind"].as_str(), id(&event["parcel"])), (Some("REMINDED"), parcel_id.clone()));
    }
    assert_eq!(remind(&app, base + hours(200)).await, 0, "three reminders at most");
    phone.expect_quiet(QUIET).await;

    // Each reminder is recorded.
    let reminders = entity::parcel_reminder::Entity::find()
        .filter(entity::parcel_reminder::Column::ParcelId.eq(number_of("pcl", &parcel_id)))
        .order_by_asc(entity::parcel_reminder::Column::Number)
        .all(&app.db)
        .await
        .expect("reminders");
    assert_eq!(reminders.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2, 3]);
    for (reminder, (at, _)) in reminders.iter().zip(schedule) {
        assert_near(reminder.sent_at, base + hours(at), "recorded when sent");
    }
    let others = entity::parcel_reminder::Entity::find()
        .filter(entity::parcel_reminder::Column::ParcelId.ne(number_of("pcl", &parcel_id)))
        .all(&app.db)
        .await
        .expect("reminders");
    assert!(others.is_empty(), "only the waiting parcel was reminded: {others:?}");

    // Overdue shows in lists, for the desk and the resident alike.
    for token in [&desk, &tenant] {
        assert_eq!(visible_ids(&app, token, json!({ "overdue": true })).await, set(&[&parcel_id]));
        assert!(!visible_ids(&app, token, json!({ "overdue": false })).await.contains(&parcel_id));
    }
    // Picked up at last, it is no longer overdue.
    let code = code_for(&app, &tenant, &parcel_id).await;
    let body = pick_up(&app, &desk, &parcel_id, &code, Some("李娜")).await;
    assert_eq!(body["data"]["pickUpParcel"]["parcel"]["overdue"], false, "{body}");
    assert_eq!(total(&app, &desk, json!({ "overdue": true })).await, 0);
}

#[tokio::test]
async fn the_reminder_schedule_is_configurable() {
    let app = spawn_app_with(|settings| {
        settings.parcel_reminder_delay = Duration::from_secs(3600);
        settings.parcel_reminder_interval = Duration::from_secs(2 * 3600);
        settings.parcel_reminder_count = 2;
    })
    .await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let base = Utc::now();
    let parcel_id = register_for(&app, &desk, "1-102", "CFG-1").await;
    let minutes = chrono::Duration::minutes;

    assert_eq!(remind(&app, base + minutes(50)).await, 0, "not before the delay");
    assert_eq!(remind(&app, base + minutes(65)).await, 1, "after the delay");
    assert_eq!(remind(&app, base + minutes(65 + 110)).await, 0, "not before the interval");
    assert_eq!(remind(&app, base + minutes(65 + 125)).await, 1, "after the interval");
    let parcel = read(&app, &tenant, &parcel_id).await;
    assert_eq!((parcel["reminderCount"].as_i64(), parcel["overdue"].as_bool()), (Some(2), Some(true)), "{parcel}");
    assert_eq!(remind(&app, base + hours(48)).await, 0, "two reminders at most");
}

#[tokio::test]
async fn concurrent_reminder_runs_send_each_reminder_once() {
    let app = spawn_app().await;
    let peer = app.peer(|_| {}).await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let base = Utc::now();
    let mut parcels = Vec::new();
    for (i, number) in ["1-102", "1-101", "1-102", "2-202", "1-102", "2-201"].into_iter().enumerate() {
        parcels.push(register_for(&app, &desk, number, &format!("CON-{i}")).await);
    }
    let mut phone = subscribe(&app, &tenant, "tenant", Some(&now_cursor(&app).await)).await;

    for (round, at) in [(1, 25), (2, 49)] {
        let now = base + hours(at);
        let (a, b, c) = tokio::join!(
            api::parcel::jobs::send_reminders(&app.context, now),
            api::parcel::jobs::send_reminders(&app.context, now),
            api::parcel::jobs::send_reminders(&peer.context, now),
        );
        let sent = a.expect("run a") + b.expect("run b") + c.expect("run c on another instance");
        assert_eq!(sent, parcels.len(), "round {round}: each parcel reminded once");
        for parcel_id in &parcels {
            assert_eq!(read(&app, &desk, parcel_id).await["reminderCount"], round, "round {round}: {parcel_id}");
        }
        let recorded = entity::parcel_reminder::Entity::find().all(&app.db).await.expect("reminders");
        assert_eq!(recorded.len(), parcels.len() * round as usize, "round {round}: {recorded:?}");
        let distinct: HashSet<_> = recorded.iter().map(|r| (r.parcel_id, r.number)).collect();
        assert_eq!(distinct.len(), recorded.len(), "no reminder recorded twice");
        // The tenant's three parcels, one REMINDED each.
        let events = phone.exactly(3).await;
        let reminded: HashSet<String> = events.iter().map(|e| id(&e["parcel"])).collect();
        assert_eq!(reminded, set(&[&parcels[0], &parcels[2], &parcels[4]]), "round {round}");
        assert!(events.iter().all(|e| e["kind"] == "REMINDED"), "{events:?}");
    }
}

// ---------------------------------------------------------------------------
// 6. The desk's daily summary
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_desk_summary_counts_the_local_day() {
    let app = spawn_app().await;
    let (desk, owner, tenant) = (app.token("front_desk").await, app.token("owner").await, app.token("tenant").await);
    let day = local_today();
    assert_summary(&summary(&app, &desk, day).await, [0, 0, 0, 0, 0], "an empty day");

    // Two parcels reminded three times; one of them then collected.
    let base = Utc::now();
    let collected = register_for(&app, &desk, "1-101", "DAY-1").await;
    let overdue = register_for(&app, &desk, "1-102", "DAY-2").await;
    for at in [25, 49, 73] {
        assert_eq!(remind(&app, base + hours(at)).await, 2);
    }
    let code = code_for(&app, &owner, &collected).await;
    assert!(pick_up(&app, &desk, &collected, &code, Some("王建国")).await.get("errors").is_none());
    // One fresh parcel, and one unclear one sent back.
    register_for(&app, &desk, "2-202", "DAY-3").await;
    let unclear = register_unidentified(&app, &desk, "DAY-4").await;
    assert!(try_return(&app, &desk, &unclear, "unknown addressee").await.get("errors").is_none());
    // The other community's desk has its own day.
    let other_desk = app.token_in(&app.other, "front_desk").await;
    let other_unit = id_of("unit", app.other.unit("1-101").id);
    register(&app, &other_desk, parcel_input(Some(&other_unit), "DAY-X")).await;
    assert_eq!(read(&app, &tenant, &overdue).await["overdue"], true);

    if local_today() != day {
        eprintln!("the local day changed while the test ran; skipping the day's counts");
        return;
    }
    let today = summary(&app, &desk, day).await;
    assert_eq!(today["day"], day.to_string());
    assert_summary(&today, [4, 1, 1, 2, 1], "today");
    for key in ["supervisor", "manager"] {
        let token = app.token(key).await;
        assert_summary(&summary(&app, &token, day).await, [4, 1, 1, 2, 1], key);
    }
    // Waiting and overdue are counted now, whatever the day asked for.
    let yesterday = day.pred_opt().expect("a day before");
    assert_summary(&summary(&app, &desk, yesterday).await, [0, 0, 0, 2, 1], "yesterday");
    assert_summary(&summary(&app, &other_desk, day).await, [1, 0, 0, 1, 0], "the other community");
    assert_eq!(total(&app, &desk, json!({ "overdue": true })).await, 1);

    for key in ["owner", "tenant", "technician", "butler"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), SUMMARY, json!({ "day": day.to_string() })).await;
        assert_error(&body, "FORBIDDEN", key);
    }
    let reader = integrator(&app, &["PARCELS_READ", "PARCELS_WRITE"]).await;
    let body = app.graphql(Some(&reader), SUMMARY, json!({ "day": day.to_string() })).await;
    assert_error(&body, "FORBIDDEN", "an integrator");
}

#[tokio::test]
async fn the_desk_summary_days_run_from_midnight_to_midnight_in_utc_plus_8() {
    let app = spawn_app().await;
    let (desk, tenant) = (app.token("front_desk").await, app.token("tenant").await);
    let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("date-time").with_timezone(&Utc);
    // Received at the edges of 10 March 2026, local time.
    let received = [
        ("EDGE-1", "2026-03-09T15:59:59Z"), // 9 March, 23:59:59
        ("EDGE-2", "2026-03-09T16:00:00Z"), // 10 March, 00:00:00
        ("EDGE-3", "2026-03-10T15:59:59Z"), // 10 March, 23:59:59
        ("EDGE-4", "2026-03-10T16:00:00Z"), // 11 March, 00:00:00
    ];
    let mut ids = Vec::new();
    for (tracking, when) in received {
        let parcel_id = register_for(&app, &desk, "1-102", tracking).await;
        entity::parcel::ActiveModel {
            id: Set(number_of("pcl", &parcel_id)),
            received_at: Set(at(when)),
            ..Default::default()
        }
        .update(&app.db)
        .await
        .expect("backdate the parcel");
        ids.push(parcel_id);
    }
    // EDGE-1 collected at 04:00 on 10 March, EDGE-4 returned at 23:30 on 9 March (local).
    let code = code_for(&app, &tenant, &ids[0]).await;
    assert!(pick_up(&app, &desk, &ids[0], &code, Some("李娜")).await.get("errors").is_none());
    assert!(try_return(&app, &desk, &ids[3], "refused").await.get("errors").is_none());
    let backdate = |id: &str, picked: Option<&str>, returned: Option<&str>| entity::parcel::ActiveModel {
        id: Set(number_of("pcl", id)),
        picked_up_at: Set(picked.map(at)),
        returned_at: Set(returned.map(at)),
        ..Default::default()
    };
    backdate(&ids[0], Some("2026-03-09T20:00:00Z"), None).update(&app.db).await.expect("backdate pickup");
    backdate(&ids[3], None, Some("2026-03-09T15:30:00Z")).update(&app.db).await.expect("backdate return");

    let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a day");
    assert_summary(&summary(&app, &desk, day("2026-03-09")).await, [1, 0, 1, 2, 0], "9 March");
    assert_summary(&summary(&app, &desk, day("2026-03-10")).await, [2, 1, 0, 2, 0], "10 March");
    assert_summary(&summary(&app, &desk, day("2026-03-11")).await, [1, 0, 0, 2, 0], "11 March");

    // The list filter takes instants: [from, to).
    let filter = json!({ "receivedFrom": "2026-03-09T16:00:00Z", "receivedTo": "2026-03-10T16:00:00Z" });
    assert_eq!(visible_ids(&app, &desk, filter).await, set(&[&ids[1], &ids[2]]));
}

// ---------------------------------------------------------------------------
// 7. Who sees which parcels
// ---------------------------------------------------------------------------

#[tokio::test]
async fn parcels_are_scoped_to_the_caller_and_filtered() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let with_carrier = |number: &str, tracking: &str, carrier: &str| {
        with(parcel_input(Some(&unit_id(&app, number)), tracking), "carrier", json!(carrier))
    };
    let a = id(&register(&app, &desk, with_carrier("1-101", "SC-A", "顺丰")).await);
    let b = id(&register(&app, &desk, with_carrier("1-102", "SC-B", "中通")).await);
    let c = id(&register(&app, &desk, with_carrier("2-201", "SC-C", "顺丰")).await);
    let d = id(&register(&app, &desk, with_carrier("2-202", "SC-D", "京东")).await);
    let u = id(&register(&app, &desk, with(parcel_input(None, "SC-U"), "carrier", json!("EMS"))).await);
    let other_desk = app.token_in(&app.other, "front_desk").await;
    let other_unit = id_of("unit", app.other.unit("1-101").id);
    // The other community may hold the same tracking number: communities are independent.
    let x = id(&register(&app, &other_desk, parcel_input(Some(&other_unit), "SC-A")).await);
    let reader = integrator(&app, &["PARCELS_READ"]).await;

    let everything = set(&[&a, &b, &c, &d, &u]);
    let expectations = [
        ("owner", set(&[&a, &c])),
        ("family", set(&[&a])),
        ("tenant", set(&[&b])),
        ("owner2", set(&[&d])),
        ("butler", set(&[&a, &b, &u])),
        ("front_desk", everything.clone()),
        ("technician", everything.clone()),
        ("supervisor", everything.clone()),
        ("manager", everything.clone()),
    ];
    for (key, wanted) in expectations {
        let token = app.token(key).await;
        assert_eq!(visible_ids(&app, &token, json!({})).await, wanted, "{key}");
        for hidden in everything.difference(&wanted) {
            assert_error(&try_read(&app, &token, hidden).await, "NOT_FOUND", &format!("{key} reads {hidden}"));
        }
        assert_error(&try_read(&app, &token, &x).await, "NOT_FOUND", &format!("{key} reads the other community's"));
    }
    assert_eq!(visible_ids(&app, &reader, json!({})).await, everything, "an integrator of the home community");
    assert_error(&try_read(&app, &reader, &x).await, "NOT_FOUND", "an integrator reads the other community's");
    assert_eq!(visible_ids(&app, &other_desk, json!({})).await, set(&[&x]), "the other community's desk");
    for hidden in &everything {
        assert_error(&try_read(&app, &other_desk, hidden).await, "NOT_FOUND", "the other community's desk");
    }
    let other_owner = app.token_in(&app.other, "owner").await;
    assert_eq!(visible_ids(&app, &other_owner, json!({})).await, set(&[&x]), "the other community's owner");

    // Filters.
    let filters = [
        (json!({ "statuses": ["UNIDENTIFIED"] }), set(&[&u])),
        (json!({ "statuses": ["WAITING"] }), set(&[&a, &b, &c, &d])),
        (json!({ "statuses": ["WAITING", "UNIDENTIFIED"] }), everything.clone()),
        (json!({ "statuses": ["PICKED_UP", "RETURNED"] }), set(&[])),
        (json!({ "unitId": unit_id(&app, "1-101") }), set(&[&a])),
        (json!({ "carrier": "顺丰" }), set(&[&a, &c])),
        (json!({ "trackingNumber": "SC-B" }), set(&[&b])),
        (json!({ "carrier": "顺丰", "unitId": unit_id(&app, "2-201") }), set(&[&c])),
        (json!({ "overdue": true }), set(&[])),
        (json!({ "overdue": false }), everything.clone()),
        (json!({ "receivedFrom": (Utc::now() + hours(1)).to_rfc3339() }), set(&[])),
        (json!({ "receivedTo": (Utc::now() - hours(1)).to_rfc3339() }), set(&[])),
        (json!({ "receivedFrom": (Utc::now() - hours(1)).to_rfc3339() }), everything.clone()),
    ];
    for (filter, wanted) in filters {
        assert_eq!(visible_ids(&app, &desk, filter.clone()).await, wanted, "desk, {filter}");
    }
    let owner = app.token("owner").await;
    assert_eq!(visible_ids(&app, &owner, json!({ "carrier": "顺丰" })).await, set(&[&a, &c]), "owner, carrier");
    assert_eq!(visible_ids(&app, &owner, json!({ "unitId": unit_id(&app, "1-102") })).await, set(&[]), "owner");
    let butler = app.token("butler").await;
    assert_eq!(visible_ids(&app, &butler, json!({ "unitId": unit_id(&app, "2-202") })).await, set(&[]), "butler");

    // Pages of two.
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    for page in 0..3 {
        let connection = list(&app, &desk, json!({}), 2, after.as_deref()).await;
        assert_eq!(connection["totalCount"], 5);
        let page_nodes = nodes(&connection);
        assert_eq!(page_nodes.len(), if page < 2 { 2 } else { 1 }, "page {page}");
        assert_eq!(connection["pageInfo"]["hasNextPage"], page < 2, "page {page}");
        seen.extend(page_nodes.iter().map(id));
        after = connection["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, everything, "every parcel once across the pages");
}

// ---------------------------------------------------------------------------
// 8. parcelEvents
// ---------------------------------------------------------------------------

#[tokio::test]
async fn parcel_events_reach_the_units_residents_the_buildings_butler_and_the_desk() {
    let app = spawn_app().await;
    let start = now_cursor(&app).await;
    let (desk, tenant, owner, owner2, butler) = (
        app.token("front_desk").await,
        app.token("tenant").await,
        app.token("owner").await,
        app.token("owner2").await,
        app.token("butler").await,
    );
    let other_desk = app.token_in(&app.other, "front_desk").await;
    let mut tenant_phone = subscribe(&app, &tenant, "tenant", Some(&start)).await;
    let mut desk_screen = subscribe(&app, &desk, "front desk", Some(&start)).await;
    let mut butler_phone = subscribe(&app, &butler, "butler", Some(&start)).await;
    let mut owner_phone = subscribe(&app, &owner, "owner", Some(&start)).await;
    let mut owner2_phone = subscribe(&app, &owner2, "owner2", Some(&start)).await;
    let mut other_screen = subscribe(&app, &other_desk, "other desk", Some(&start)).await;

    // A parcel of 1-102 (1号楼).
    let parcel_id = register_for(&app, &desk, "1-102", "EV-1").await;
    let code = code_for(&app, &tenant, &parcel_id).await;
    let event = tenant_phone.next_event().await;
    assert_eq!((event["kind"].as_str(), id(&event["parcel"])), (Some("REGISTERED"), parcel_id.clone()));
    assert_eq!(event["parcel"]["pickupCode"], code.as_str(), "the tenant receives the code: {event}");
    assert_eq!(event["parcel"]["status"], "WAITING");
    assert_eq!(event["parcel"]["unit"]["number"], "1-102");
    for subscriber in [&mut desk_screen, &mut butler_phone] {
        let event = subscriber.next_event().await;
        assert_eq!((event["kind"].as_str(), id(&event["parcel"])), (Some("REGISTERED"), parcel_id.clone()));
        assert!(event["parcel"]["pickupCode"].is_null(), "{}: receives the code: {event}", subscriber.who);
    }
    for subscriber in [&mut owner_phone, &mut owner2_phone, &mut other_screen] {
        subscriber.expect_quiet(QUIET).await;
    }

    // An unclear one: the desk and the butler hear of it, residents do not.
    let unclear = register_unidentified(&app, &desk, "EV-2").await;
    for subscriber in [&mut desk_screen, &mut butler_phone] {
        let event = subscriber.next_event().await;
        assert_eq!((event["kind"].as_str(), id(&event["parcel"])), (Some("REGISTERED"), unclear.clone()));
        assert!(event["parcel"]["unit"].is_null(), "{event}");
    }

    // A parcel of 2-202 (2号楼): owner2 and the desk, not the butler of 1号楼.
    let second = register_for(&app, &desk, "2-202", "EV-3").await;
    let event = owner2_phone.next_event().await;
    assert_eq!((event["kind"].as_str(), id(&event["parcel"])), (Some("REGISTERED"), second.clone()));
    assert_eq!(event["parcel"]["pickupCode"], code_for(&app, &owner2, &second).await.as_str());
    let event = desk_screen.next_event().await;
    assert_eq!(id(&event["parcel"]), second);
    assert!(event["parcel"]["pickupCode"].is_null(), "{event}");

    for subscriber in
        [&mut tenant_phone, &mut desk_screen, &mut butler_phone, &mut owner_phone, &mut owner2_phone, &mut other_screen]
    {
        subscriber.expect_quiet(QUIET).await;
    }
}

#[tokio::test]
async fn reminded_picked_up_returned_and_identified_events_arrive_and_replay() {
    let app = spawn_app().await;
    let start = now_cursor(&app).await;
    let (desk, tenant, butler) = (app.token("front_desk").await, app.token("tenant").await, app.token("butler").await);
    let mut tenant_phone = subscribe(&app, &tenant, "tenant", Some(&start)).await;
    let mut desk_screen = subscribe(&app, &desk, "front desk", Some(&start)).await;

    let base = Utc::now();
    let first = register_for(&app, &desk, "1-102", "LIFE-1").await;
    let registered = tenant_phone.next_event().await;
    assert_eq!(kinds(std::slice::from_ref(&registered)), expected(&[("REGISTERED", &first)]));
    let mark = registered["cursor"].as_str().expect("cursor").to_owned();

    assert_eq!(remind(&app, base + hours(25)).await, 1);
    let code = code_for(&app, &tenant, &first).await;
    assert!(pick_up(&app, &desk, &first, &code, Some("李娜")).await.get("errors").is_none());
    let elsewhere = register_for(&app, &desk, "1-101", "LIFE-2").await;
    let second = register_for(&app, &desk, "1-102", "LIFE-3").await;
    assert!(try_return(&app, &desk, &second, "damaged").await.get("errors").is_none());
    let unclear = register_unidentified(&app, &desk, "LIFE-4").await;
    let body = try_identify(&app, &butler, &unclear, &unit_id(&app, "1-102")).await;
    assert!(body.get("errors").is_none(), "{body}");

    let for_tenant = [
        ("REMINDED", &first),
        ("PICKED_UP", &first),
        ("REGISTERED", &second),
        ("RETURNED", &second),
        ("IDENTIFIED", &unclear),
    ];
    let live = tenant_phone.exactly(for_tenant.len()).await;
    assert_eq!(kinds(&live), expected(&for_tenant), "the tenant, live");
    assert!(live.windows(2).all(|pair| seq(&pair[0]) < seq(&pair[1])), "in order: {live:#?}");
    assert!(seq(&live[0]) > seq(&registered), "after the registration");
    assert_eq!(live[4]["parcel"]["pickupCode"], code_for(&app, &tenant, &unclear).await.as_str(), "identified");

    let for_desk = [
        ("REGISTERED", &first),
        ("REMINDED", &first),
        ("PICKED_UP", &first),
        ("REGISTERED", &elsewhere),
        ("REGISTERED", &second),
        ("RETURNED", &second),
        ("REGISTERED", &unclear),
        ("IDENTIFIED", &unclear),
    ];
    assert_eq!(kinds(&desk_screen.exactly(for_desk.len()).await), expected(&for_desk), "the desk, live");

    // The tenant's phone was offline after the registration: a replay after
    // that cursor brings exactly what was missed, then live events follow.
    tenant_phone.close().await;
    let mut again = subscribe(&app, &tenant, "tenant (replay)", Some(&mark)).await;
    let replayed = again.exactly(for_tenant.len()).await;
    assert_eq!(kinds(&replayed), expected(&for_tenant), "the replay");
    assert_eq!(replayed.iter().map(seq).collect::<Vec<_>>(), live.iter().map(seq).collect::<Vec<_>>());
    let third = register_for(&app, &desk, "1-102", "LIFE-5").await;
    assert_eq!(kinds(&again.exactly(1).await), expected(&[("REGISTERED", &third)]), "live after the replay");

    // From the start, the registration comes first.
    let mut whole = subscribe(&app, &tenant, "tenant (from the start)", Some(&start)).await;
    let everything = whole.exactly(for_tenant.len() + 2).await;
    assert_eq!(kinds(&everything)[0], ("REGISTERED".to_owned(), first.clone()));
    assert_eq!(kinds(&everything)[for_tenant.len() + 1], ("REGISTERED".to_owned(), third));
}

// ---------------------------------------------------------------------------
// 9. Integrators
// ---------------------------------------------------------------------------

#[tokio::test]
async fn only_a_manager_manages_api_clients_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let create = |name: &str| json!({ "name": name, "scopes": ["PARCELS_WRITE", "PARCELS_READ"] });
    for key in ["supervisor", "front_desk", "butler", "owner"] {
        let token = app.token(key).await;
        assert_error(&app.graphql(Some(&token), CREATE_CLIENT, create("lockers")).await, "FORBIDDEN", key);
        assert_error(&app.graphql(Some(&token), API_CLIENTS, json!({})).await, "FORBIDDEN", key);
    }
    assert_error(&app.graphql(None, CREATE_CLIENT, create("lockers")).await, "UNAUTHENTICATED", "anonymous");
    let blank = app.graphql(Some(&manager), CREATE_CLIENT, create(" ")).await;
    assert_bad_input(&blank, "name", "a blank name");
    let no_scopes = app.graphql(Some(&manager), CREATE_CLIENT, json!({ "name": "lockers", "scopes": [] })).await;
    assert_bad_input(&no_scopes, "scopes", "no scopes");

    let data = app.data(Some(&manager), CREATE_CLIENT, create("Hive Box, gate 2")).await;
    let created = &data["createApiClient"];
    let client_id = created["apiClient"]["id"].as_str().expect("id").to_owned();
    let secret = created["clientSecret"].as_str().expect("secret").to_owned();
    assert!(secret.len() >= 32, "a long secret: {secret}");
    assert_eq!(created["apiClient"]["name"], "Hive Box, gate 2");
    assert_eq!(created["apiClient"]["scopes"], json!(["PARCELS_READ", "PARCELS_WRITE"]));
    assert!(created["apiClient"]["disabledAt"].is_null());
    let another = app.data(Some(&manager), CREATE_CLIENT, create("courier")).await;
    assert_ne!(another["createApiClient"]["clientSecret"], secret.as_str(), "a secret per client");

    // The list never shows the secret, and has no field that could.
    let body = app.graphql(Some(&manager), API_CLIENTS, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["apiClients"]["totalCount"], 2);
    assert!(!body.to_string().contains(&secret), "the secret is listed: {body}");
    let listed = &body["data"]["apiClients"]["edges"][0]["node"];
    assert_eq!((listed["id"].as_str(), listed["name"].as_str()), (Some(client_id.as_str()), Some("Hive Box, gate 2")));
    let asked =
        app.graphql(Some(&manager), "{ apiClients(first: 5) { edges { node { clientSecret } } } }", json!({})).await;
    assert_eq!(error_code(&asked), Some("GRAPHQL_VALIDATION_FAILED"), "{asked}");
    let fields = app.data(Some(&manager), "{ __type(name: \"ApiClient\") { fields { name } } }", json!({})).await;
    let names: Vec<&str> =
        fields["__type"]["fields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(names.iter().all(|name| !name.to_lowercase().contains("secret")), "{names:?}");

    // Another community's manager neither sees nor disables it.
    let other_manager = app.token_in(&app.other, "manager").await;
    let theirs = app.data(Some(&other_manager), API_CLIENTS, json!({})).await;
    assert_eq!(theirs["apiClients"]["totalCount"], 0);
    let disable = app.graphql(Some(&other_manager), DISABLE_CLIENT, json!({ "id": client_id })).await;
    assert_error(&disable, "NOT_FOUND", "the other community's manager");
    let supervisor = app.token("supervisor").await;
    let disable = app.graphql(Some(&supervisor), DISABLE_CLIENT, json!({ "id": client_id })).await;
    assert_error(&disable, "FORBIDDEN", "a supervisor");
}

#[tokio::test]
async fn client_credentials_are_exchanged_by_mutation_and_at_the_oauth_endpoint() {
    let app = spawn_app().await;
    let (client_id, secret) = create_client(&app, "lockers", &["PARCELS_READ", "PARCELS_WRITE"]).await;

    let body = issue_token(&app, &client_id, &secret).await;
    assert!(body.get("errors").is_none(), "{body}");
    let issued = &body["data"]["issueClientToken"];
    assert_eq!(issued["scopes"], json!(["PARCELS_READ", "PARCELS_WRITE"]));
    let expires_at = time(&issued["expiresAt"]);
    assert!(expires_at > Utc::now() && expires_at <= Utc::now() + chrono::Duration::minutes(16), "{expires_at}");
    let token = issued["accessToken"].as_str().expect("token").to_owned();
    assert_eq!(total(&app, &token, json!({})).await, 0, "the token reads parcels");

    assert_error(&issue_token(&app, &client_id, "not-the-secret").await, "UNAUTHENTICATED", "wrong secret");
    assert_error(&issue_token(&app, &client_id, "").await, "UNAUTHENTICATED", "empty secret");
    assert_error(&issue_token(&app, "cli_999999", &secret).await, "UNAUTHENTICATED", "unknown client");
    assert_error(&issue_token(&app, "unit_1", &secret).await, "UNAUTHENTICATED", "not a client id");

    // POST /oauth/token, credentials in the form body...
    let grant =
        [("grant_type", "client_credentials"), ("client_id", client_id.as_str()), ("client_secret", secret.as_str())];
    let (status, body, cache) = oauth(&app, &grant, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "parcels:read parcels:write");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((1..=900).contains(&expires_in), "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    let form_token = body["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(total(&app, &form_token, json!({})).await, 0);

    // ...or in HTTP Basic authentication.
    let (status, body, _) =
        oauth(&app, &[("grant_type", "client_credentials")], Some((client_id.as_str(), secret.as_str()))).await;
    assert_eq!(status, 200, "{body}");
    let basic_token = body["access_token"].as_str().expect("access_token").to_owned();
    let parcel = register(&app, &basic_token, parcel_input(Some(&unit_id(&app, "1-101")), "OAUTH-1")).await;
    assert_eq!(parcel["status"], "WAITING");

    let wrong_grant =
        [("grant_type", "password"), ("client_id", client_id.as_str()), ("client_secret", secret.as_str())];
    let (status, body, _) = oauth(&app, &wrong_grant, None).await;
    assert_eq!((status, body), (400, json!({ "error": "unsupported_grant_type" })));
    let wrong_secret =
        [("grant_type", "client_credentials"), ("client_id", client_id.as_str()), ("client_secret", "nope")];
    let (status, body, _) = oauth(&app, &wrong_secret, None).await;
    assert_eq!((status, body), (401, json!({ "error": "invalid_client" })), "wrong secret in the form");
    let (status, body, _) =
        oauth(&app, &[("grant_type", "client_credentials")], Some((client_id.as_str(), "nope"))).await;
    assert_eq!((status, body), (401, json!({ "error": "invalid_client" })), "wrong secret in Basic");
    let (status, body, _) = oauth(&app, &[("grant_type", "client_credentials")], None).await;
    assert_eq!((status, body), (401, json!({ "error": "invalid_client" })), "no credentials");
    let unknown =
        [("grant_type", "client_credentials"), ("client_id", "cli_999999"), ("client_secret", secret.as_str())];
    let (status, body, _) = oauth(&app, &unknown, None).await;
    assert_eq!((status, body), (401, json!({ "error": "invalid_client" })), "unknown client");
}

#[tokio::test]
async fn an_integrator_is_limited_to_its_scopes_and_its_community() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let writer = integrator(&app, &["PARCELS_WRITE"]).await;
    let reader = integrator(&app, &["PARCELS_READ"]).await;
    let home_parcel = register_for(&app, &desk, "1-102", "INT-1").await;
    let other_desk = app.token_in(&app.other, "front_desk").await;
    let other_unit = id_of("unit", app.other.unit("1-102").id);
    let other_parcel = id(&register(&app, &other_desk, parcel_input(Some(&other_unit), "INT-X")).await);

    for (who, token) in [("writer", &writer), ("reader", &reader)] {
        let me = app.graphql(Some(token), "{ me { id } }", json!({})).await;
        assert_error(&me, "FORBIDDEN", &format!("{who}: me"));
        let orders = app.graphql(Some(token), "{ repairOrders(first: 5) { totalCount } }", json!({})).await;
        assert_error(&orders, "FORBIDDEN", &format!("{who}: repairOrders"));
        assert_error(&app.graphql(Some(token), API_CLIENTS, json!({})).await, "FORBIDDEN", who);
        let create = app.graphql(Some(token), CREATE_CLIENT, json!({ "name": "x", "scopes": ["PARCELS_READ"] })).await;
        assert_error(&create, "FORBIDDEN", who);
        let day = local_today().to_string();
        assert_error(&app.graphql(Some(token), SUMMARY, json!({ "day": day })).await, "FORBIDDEN", who);
        let identify = try_identify(&app, token, &home_parcel, &unit_id(&app, "1-101")).await;
        assert_error(&identify, "FORBIDDEN", who);
        assert_error(&try_return(&app, token, &home_parcel, "no").await, "FORBIDDEN", who);
        assert_error(&op(&app, Some(token), UNLOCK, json!({ "id": home_parcel })).await, "FORBIDDEN", who);
        let authorize = op(&app, Some(token), AUTHORIZE, json!({ "id": home_parcel, "name": "赵六" })).await;
        assert_error(&authorize, "FORBIDDEN", who);

        // The home community's parcels, never the other's, and never a code.
        assert_eq!(visible_ids(&app, token, json!({})).await, set(&[&home_parcel]), "{who}");
        assert!(read(&app, token, &home_parcel).await["pickupCode"].is_null(), "{who}");
        assert_error(&try_read(&app, token, &other_parcel).await, "NOT_FOUND", who);
    }

    // The writer registers for its own community only.
    let foreign = try_register(&app, &writer, parcel_input(Some(&other_unit), "INT-2")).await;
    assert_error(&foreign, "NOT_FOUND", "a unit of the other community");
    let bulk = try_register_many(&app, &writer, vec![parcel_input(Some(&other_unit), "INT-3")]).await;
    assert_error(&bulk, "NOT_FOUND", "a unit of the other community, bulk");
    assert_error(&pick_up(&app, &writer, &other_parcel, "123456", None).await, "NOT_FOUND", "the other's parcel");
    assert_eq!(total(&app, &other_desk, json!({})).await, 1, "nothing registered in the other community");

    // The reader registers and hands over nothing.
    let code = code_for(&app, &app.token("tenant").await, &home_parcel).await;
    assert_error(&pick_up(&app, &reader, &home_parcel, &code, None).await, "FORBIDDEN", "reader picks up");
    assert_error(&try_register(&app, &reader, parcel_input(None, "INT-4")).await, "FORBIDDEN", "reader registers");
    assert_eq!(read(&app, &desk, &home_parcel).await["status"], "WAITING");
}

#[tokio::test]
async fn a_disabled_client_loses_its_tokens_at_once() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let (client_id, secret) = create_client(&app, "lockers", &["PARCELS_READ", "PARCELS_WRITE"]).await;
    let (kept_id, kept_secret) = create_client(&app, "courier", &["PARCELS_READ"]).await;
    let body = issue_token(&app, &client_id, &secret).await;
    let token = body["data"]["issueClientToken"]["accessToken"].as_str().expect("token").to_owned();
    let grant =
        [("grant_type", "client_credentials"), ("client_id", client_id.as_str()), ("client_secret", secret.as_str())];
    let (status, body, _) = oauth(&app, &grant, None).await;
    assert_eq!(status, 200, "{body}");
    let oauth_token = body["access_token"].as_str().expect("access_token").to_owned();
    let kept = integrator_token(&app, &kept_id, &kept_secret).await;
    let parcel = register(&app, &token, parcel_input(Some(&unit_id(&app, "1-101")), "DIS-1")).await;
    let parcel_id = id(&parcel);

    let disabled = app.data(Some(&manager), DISABLE_CLIENT, json!({ "id": client_id })).await;
    assert!(disabled["disableApiClient"]["apiClient"]["disabledAt"].is_string(), "{disabled}");

    for (how, token) in [("issueClientToken", &token), ("/oauth/token", &oauth_token)] {
        let one = try_read(&app, token, &parcel_id).await;
        assert_error(&one, "UNAUTHENTICATED", how);
        let all = app.graphql(Some(token), PARCELS, json!({ "first": 5 })).await;
        assert_error(&all, "UNAUTHENTICATED", how);
        let write = try_register(&app, token, parcel_input(Some(&unit_id(&app, "1-101")), "DIS-2")).await;
        assert_error(&write, "UNAUTHENTICATED", how);
    }
    assert_error(&issue_token(&app, &client_id, &secret).await, "UNAUTHENTICATED", "exchange after disabling");
    let (status, body, _) = oauth(&app, &grant, None).await;
    assert_eq!((status, body), (401, json!({ "error": "invalid_client" })), "/oauth/token after disabling");

    // Other clients keep working; what the disabled one registered stays.
    assert_eq!(visible_ids(&app, &kept, json!({})).await, set(&[&parcel_id]));
    let desk = app.token("front_desk").await;
    assert!(read(&app, &desk, &parcel_id).await["receivedBy"].is_null());
    let clients = app.data(Some(&manager), API_CLIENTS, json!({})).await;
    let states: Vec<(String, bool)> = clients["apiClients"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e["node"]["id"].as_str().unwrap_or_default().to_owned(), e["node"]["disabledAt"].is_string()))
        .collect();
    assert!(states.contains(&(client_id.clone(), true)) && states.contains(&(kept_id, false)), "{states:?}");
    let again = app.graphql(Some(&manager), DISABLE_CLIENT, json!({ "id": client_id })).await;
    assert_error(&again, "CONFLICT", "disabling twice");
}
