//! Hostile callers against the real server: documents shaped to exhaust it
//! (depth, cost, recursion, directives, aliases, batches, body size), page
//! sizes out of range, production's reduced surface, cross-site and malformed
//! requests, ids out of the caller's reach for every role, and property-based
//! fuzzing of the mutations that take free input.
//!
//! Refusals are checked by `extensions.code` and HTTP status; where the engine
//! refuses with one code for several reasons, the message tells which limit
//! fired.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Debug,
    future::Future,
    time::Duration,
};

use api::{config::AppEnv, demo::DEMO_PASSWORD};
use entity::{
    api_client, building, butler_assignment, emergency_contact, event, parcel, refresh_token, repair_follow_up,
    repair_order, repair_order_change, unit, unit_membership, user,
};
use proptest::{
    option,
    prelude::*,
    sample::{select, subsequence},
    test_runner::{Config, TestCaseError, TestRunner},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tests::{TestApp, WsEvent, error_code, error_field, id_of, spawn_app, spawn_app_with};

const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// POSTs `body` with `content_type` (no header when `None`).
async fn post(
    app: &TestApp,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/graphql")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

/// POSTs a JSON body; returns the status and the body (JSON or `null`).
async fn post_json(app: &TestApp, token: Option<&str>, body: &Value) -> (u16, Value) {
    let response = post(app, token, Some("application/json"), body.to_string()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GETs `/graphql` with `query` as the query string.
async fn get(app: &TestApp, token: Option<&str>, query: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.get(app.url("/graphql")).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

fn operation(query: &str, variables: Value) -> Value {
    json!({ "query": query, "variables": variables })
}

async fn count<E>(db: &DatabaseConnection) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(db).await.expect("count rows")
}

/// Asserts that the body is a refusal before execution: errors, all with
/// GRAPHQL_VALIDATION_FAILED, and no data.
#[track_caller]
fn assert_refused(body: &Value, what: &str) {
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{what}: not refused: {body}"));
    assert!(!errors.is_empty(), "{what}: not refused: {body}");
    for error in errors {
        assert_eq!(error["extensions"]["code"], VALIDATION_FAILED, "{what}: {body}");
    }
    assert!(body["data"].is_null(), "{what}: data despite the refusal: {body}");
}

#[track_caller]
fn assert_ran(body: &Value, what: &str) {
    assert!(body.get("errors").is_none(), "{what}: unexpected errors: {body}");
    assert!(body["data"].is_object(), "{what}: no data: {body}");
}

/// The first error message, for telling the engine's refusals apart.
fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

fn unit_of(app: &TestApp, number: &str) -> String {
    id_of("unit", app.home.unit(number).id)
}

// ---------------------------------------------------------------------------
// Query shape
// ---------------------------------------------------------------------------

/// `unit → building → units → edges → node → building → …`, `depth` fields deep
/// counting the scalar at the bottom; every list asks for one item, so the
/// cost stays far below the limit.
fn nested_query(depth: usize) -> String {
    const CYCLE: [(&str, &str); 4] =
        [("building", "id"), ("units(first: 1)", "totalCount"), ("edges", "cursor"), ("node", "id")];
    let mut fields = vec!["unit(id: $id)"];
    let mut leaf = "id";
    for step in 0..depth - 2 {
        let (field, scalar) = CYCLE[step % CYCLE.len()];
        fields.push(field);
        leaf = scalar;
    }
    let open: String = fields.iter().map(|field| format!("{field} {{ ")).collect();
    format!("query($id: ID!) {{ {open}{leaf}{} }}", " }".repeat(fields.len()))
}

#[tokio::test]
async fn selections_ten_fields_deep_run_and_eleven_are_refused() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let unit = unit_of(&app, "1-101");
    let inside = app.graphql(Some(&owner), &nested_query(10), json!({ "id": unit })).await;
    assert_ran(&inside, "ten levels");
    let building = &inside["data"]["unit"]["building"];
    let again = &building["units"]["edges"][0]["node"]["building"];
    assert_eq!(again["units"]["edges"][0]["node"]["id"], unit.as_str(), "{inside}");
    let beyond = app.graphql(Some(&owner), &nested_query(11), json!({ "id": unit })).await;
    assert_refused(&beyond, "eleven levels");
}

/// Ten points per building: totalCount 1, nodes 1 + id, name, community 3 = 6,
/// pageInfo 1 + 2 = 3.
const TEN_POINTS: &str = "totalCount nodes { id name community { id name } } pageInfo { hasNextPage hasPreviousPage }";
/// Eleven points per building.
const ELEVEN_POINTS: &str =
    "totalCount nodes { id name community { id name } } pageInfo { hasNextPage hasPreviousPage endCursor }";
/// `n × (1 + 2m)` points: each building's `nodes` costs 1 plus m units of 2.
const NESTED_PAGES: &str =
    "query($n: Int!, $m: Int!) { buildings(first: $n) { nodes { units(first: $m) { nodes { id } } } } }";

#[tokio::test]
async fn operations_cost_up_to_1000_with_lists_counted_first_times() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let thousand =
        app.graphql(Some(&manager), &format!("{{ buildings(first: 100) {{ {TEN_POINTS} }} }}"), json!({})).await;
    assert_ran(&thousand, "100 × 10 = 1000");
    assert_eq!(thousand["data"]["buildings"]["totalCount"], 2);
    let beyond =
        app.graphql(Some(&manager), &format!("{{ buildings(first: 91) {{ {ELEVEN_POINTS} }} }}"), json!({})).await;
    assert_refused(&beyond, "91 × 11 = 1001");
    assert!(message(&beyond).contains("too complex"), "refused for its cost: {beyond}");

    // The same through variables, with one list inside another.
    let nested = app.graphql(Some(&manager), NESTED_PAGES, json!({ "n": 8, "m": 62 })).await;
    assert_ran(&nested, "8 × (1 + 2 × 62) = 1000");
    let nested_beyond = app.graphql(Some(&manager), NESTED_PAGES, json!({ "n": 7, "m": 71 })).await;
    assert_refused(&nested_beyond, "7 × (1 + 2 × 71) = 1001");
    assert!(message(&nested_beyond).contains("too complex"), "refused for its cost: {nested_beyond}");
}

/// `{ ... on Query { ... on Query { … me { id } } } }`: two fields deep,
/// `fragments + 1` selection sets deep.
fn nested_fragments(fragments: usize) -> String {
    format!("{{ {} me {{ id }} {} }}", "... on Query { ".repeat(fragments), "} ".repeat(fragments))
}

#[tokio::test]
async fn selection_sets_nest_at_most_32_deep() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let inside = app.graphql(Some(&owner), &nested_fragments(31), json!({})).await;
    assert_ran(&inside, "32 selection sets");
    let beyond = app.graphql(Some(&owner), &nested_fragments(32), json!({})).await;
    assert_refused(&beyond, "33 selection sets");
    assert!(message(&beyond).contains("recursion depth"), "refused for its recursion: {beyond}");
}

#[tokio::test]
async fn deeply_nested_literals_and_variables_are_refused_without_harm() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let orders = |filter: &str| format!("{{ repairOrders(first: 1, filter: {filter}) {{ totalCount }} }}");
    let levels = 100_000;
    let lists = orders(&format!("{{states: {}SUBMITTED{}}}", "[".repeat(levels), "]".repeat(levels)));
    let objects = orders(&format!("{{text: {}1{}}}", "{a: ".repeat(levels), "}".repeat(levels)));
    for (what, document) in [("nested list literals", lists), ("nested object literals", objects)] {
        assert!(document.len() < app.settings.max_body_bytes, "{what} fit in a request");
        let (status, body) = post_json(&app, Some(&manager), &operation(&document, json!({}))).await;
        assert_eq!(status, 200, "{what}");
        assert_refused(&body, what);
    }

    let document = "query($filter: RepairOrderFilter) { repairOrders(first: 1, filter: $filter) { totalCount } }";
    let nested = |depth: usize| (0..depth).fold(json!("SUBMITTED"), |inner, _| json!([inner]));
    let (status, shallow) =
        post_json(&app, Some(&manager), &operation(document, json!({ "filter": { "states": nested(100) } }))).await;
    assert_eq!(status, 200, "variables nested 100 deep are read");
    assert_refused(&shallow, "variables of the wrong shape");
    let (status, _) =
        post_json(&app, Some(&manager), &operation(document, json!({ "filter": { "states": nested(1000) } }))).await;
    assert_eq!(status, 400, "variables nested 1000 deep are not even read");

    let after = app.graphql(Some(&manager), "{ me { name } }", json!({})).await;
    assert_eq!(after["data"]["me"]["name"], "周经理", "the server still answers: {after}");
}

fn with_directives(count: usize) -> String {
    format!("{{ me {}{{ id }} }}", "@include(if: true) ".repeat(count))
}

/// Repeating `@include` is also a validation error of its own, so the
/// message tells whether the directive limit refused the document first.
#[tokio::test]
async fn fields_carry_at_most_ten_directives() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let two = app.graphql(Some(&owner), "{ me @include(if: true) @skip(if: false) { id } }", json!({})).await;
    assert_ran(&two, "two directives");
    let ten = app.graphql(Some(&owner), &with_directives(10), json!({})).await;
    assert_refused(&ten, "ten repeated directives");
    assert!(message(&ten).contains("Duplicate directive"), "ten pass the limit: {ten}");
    let eleven = app.graphql(Some(&owner), &with_directives(11), json!({})).await;
    assert_refused(&eleven, "eleven directives");
    assert!(message(&eleven).contains("number of directives"), "eleven are refused by the limit: {eleven}");
    let many = app.graphql(Some(&owner), &with_directives(5000), json!({})).await;
    assert_refused(&many, "five thousand directives");
    assert!(message(&many).contains("number of directives"), "refused by the limit: {many}");
}

fn with_aliases(count: usize) -> String {
    let fields: String = (0..count).map(|n| format!("a{n}: me {{ id }} ")).collect();
    format!("{{ {fields}}}")
}

#[tokio::test]
async fn operations_carry_at_most_thirty_aliases() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let thirty = app.graphql(Some(&owner), &with_aliases(30), json!({})).await;
    assert_ran(&thirty, "thirty aliases");
    assert_eq!(thirty["data"]["a29"]["id"], id_of("usr", app.home.account("owner").user_id));
    let beyond = app.graphql(Some(&owner), &with_aliases(31), json!({})).await;
    assert_refused(&beyond, "thirty-one aliases");
    let spread = format!("{{ ...F }} fragment F on Query {{ {} }}", with_aliases(31).trim_matches(['{', '}']));
    let in_fragment = app.graphql(Some(&owner), &spread, json!({})).await;
    assert_refused(&in_fragment, "thirty-one aliases in a fragment");
}

/// GET and the WebSocket execute on the same schema as POST, limits included.
#[tokio::test]
async fn limits_hold_for_get_and_websocket_too() {
    let app = spawn_app().await;
    let owner = app.token("owner").await;
    let unit = unit_of(&app, "1-101");
    let variables = json!({ "id": unit }).to_string();
    let too_deep = nested_query(11);
    for query in [too_deep.as_str(), &with_aliases(31), &nested_fragments(32), &with_directives(11)] {
        let response = get(&app, Some(&owner), &[("query", query), ("variables", &variables)]).await;
        assert_eq!(response.status(), 200, "GET {query}");
        assert_refused(&response.json().await.expect("JSON body"), "over GET");
    }

    let mut socket = app.websocket().await;
    assert!(matches!(socket.init(&owner).await, WsEvent::Message(ack) if ack["type"] == "connection_ack"));
    for (id, query) in [("deep", too_deep), ("aliases", with_aliases(31))] {
        socket
            .send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": { "id": unit } } }))
            .await;
        let mut reply = socket.next_message().await;
        // The operation refused before is completed, too.
        while reply["type"] == "complete" {
            reply = socket.next_message().await;
        }
        assert_eq!(reply["type"], "error", "{id}: {reply}");
        assert_eq!(reply["payload"][0]["extensions"]["code"], VALIDATION_FAILED, "{id}: {reply}");
    }
    let with_nul = json!({ "id": format!("{unit}\u{0}") });
    socket
        .send(
            json!({ "id": "nul", "type": "subscribe", "payload": { "query": nested_query(2), "variables": with_nul } }),
        )
        .await;
    let reply = socket.next_message().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["payload"][0]["extensions"]["code"], "BAD_USER_INPUT", "{reply}");
    assert_eq!(reply["payload"][0]["extensions"]["field"], "id", "{reply}");
}

const REGISTER: &str = "mutation($input: ParcelInput!) { registerParcel(input: $input) { parcel { id status } } }";

/// A parcel for `unit` (an id; `None` for an unclear address).
fn parcel_input(unit: Option<&str>, tracking: &str) -> Value {
    json!({ "kind": "PARCEL", "carrier": "顺丰", "trackingNumber": tracking, "recipientName": "李娜", "unitId": unit })
}

fn registrations(app: &TestApp, prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|n| {
                let parcel = parcel_input(Some(&unit_of(app, "1-102")), &format!("{prefix}-{n}"));
                operation(REGISTER, json!({ "input": parcel }))
            })
            .collect(),
    )
}

#[tokio::test]
async fn batches_run_up_to_five_operations_and_refuse_six_whole() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let (status, five) = post_json(&app, Some(&desk), &registrations(&app, "SF-FIVE", 5)).await;
    assert_eq!(status, 200);
    let results = five.as_array().unwrap_or_else(|| panic!("a batch answers a list: {five}"));
    assert_eq!(results.len(), 5);
    for result in results {
        assert_eq!(result["data"]["registerParcel"]["parcel"]["status"], "WAITING", "{result}");
    }
    assert_eq!(count::<parcel::Entity>(&app.db).await, 5);

    let (status, _) = post_json(&app, Some(&desk), &registrations(&app, "SF-SIX", 6)).await;
    assert_eq!(status, 400, "six operations are refused");
    assert_eq!(count::<parcel::Entity>(&app.db).await, 5, "none of the six ran");
}

/// A registration padded with trailing whitespace to exactly `len` bytes.
fn padded_registration(app: &TestApp, tracking: &str, len: usize) -> String {
    let parcel = parcel_input(Some(&unit_of(app, "1-102")), tracking);
    let mut body = operation(REGISTER, json!({ "input": parcel })).to_string();
    assert!(body.len() <= len);
    body.push_str(&" ".repeat(len - body.len()));
    body
}

#[tokio::test]
async fn bodies_up_to_1_mib_are_read_and_larger_ones_refused_unread() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let limit = app.settings.max_body_bytes;
    assert_eq!(limit, 1024 * 1024);
    let at_limit = post(&app, Some(&desk), Some("application/json"), padded_registration(&app, "SF-FITS", limit)).await;
    assert_eq!(at_limit.status(), 200);
    let body: Value = at_limit.json().await.expect("JSON body");
    assert_ran(&body, "a body of exactly the limit");
    assert_eq!(count::<parcel::Entity>(&app.db).await, 1);

    let over = post(&app, Some(&desk), Some("application/json"), padded_registration(&app, "SF-OVER", limit + 1)).await;
    assert_eq!(over.status(), 413);
    let huge = post(&app, Some(&desk), Some("application/json"), padded_registration(&app, "SF-HUGE", 8 * limit)).await;
    assert_eq!(huge.status(), 413);
    assert_eq!(count::<parcel::Entity>(&app.db).await, 1, "nothing beyond the limit ran");
}

// ---------------------------------------------------------------------------
// Page sizes
// ---------------------------------------------------------------------------

/// Every connection of the schema, as `Type.field`, with a document taking `$first`.
const CONNECTIONS: [(&str, &str); 8] = [
    ("Query.buildings", "query($first: Int!) { buildings(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.units", "query($first: Int!) { units(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.residents", "query($first: Int!) { residents(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.staffMembers", "query($first: Int!) { staffMembers(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.repairOrders", "query($first: Int!) { repairOrders(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.parcels", "query($first: Int!) { parcels(first: $first) { totalCount edges { node { id } } } }"),
    ("Query.apiClients", "query($first: Int!) { apiClients(first: $first) { totalCount edges { node { id } } } }"),
    (
        "Building.units",
        "query($first: Int!, $id: ID!) { building(id: $id) { units(first: $first) { totalCount edges { node { id } } } } }",
    ),
];

#[tokio::test]
async fn every_connection_takes_first_between_1_and_100() {
    let in_schema: BTreeSet<String> = schema_types()
        .iter()
        .filter(|(_, block)| !block.input)
        .flat_map(|(name, block)| {
            block.fields.iter().filter_map(move |line| {
                let (field, arguments, _) = field_parts(line);
                arguments.iter().any(|(argument, _)| *argument == "first").then(|| format!("{name}.{field}"))
            })
        })
        .collect();
    let checked: BTreeSet<String> = CONNECTIONS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(checked, in_schema, "every connection of schema.graphql is checked here");

    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let building = id_of("bld", app.home.buildings[0].id);
    let mut failures = Vec::new();
    for (name, document) in CONNECTIONS {
        for first in [1, 100] {
            let body = app.graphql(Some(&manager), document, json!({ "first": first, "id": building })).await;
            if body.get("errors").is_some() {
                failures.push(format!("{name}(first: {first}) should run: {body}"));
            }
        }
        for first in [0, 101, -1, i32::MIN, i32::MAX] {
            let body = app.graphql(Some(&manager), document, json!({ "first": first, "id": building })).await;
            if error_code(&body) != Some("BAD_USER_INPUT") || error_field(&body) != Some("first") {
                failures.push(format!("{name}(first: {first}) should be BAD_USER_INPUT on first: {body}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Production
// ---------------------------------------------------------------------------

/// An operation that outlasts EXECUTION_TIMEOUT is answered with TIMEOUT, and
/// the server goes on serving. A login hashes a password (tens of
/// milliseconds, by design), so it outlasts a 2 ms limit.
#[tokio::test]
async fn an_operation_past_the_execution_timeout_is_answered_with_timeout() {
    let app = spawn_app_with(|settings| settings.execution_timeout = Duration::from_millis(2)).await;
    let login = "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken } }";
    let phone = app.home.account("owner").phone.clone();
    let (status, body) =
        post_json(&app, None, &json!({ "query": login, "variables": { "phone": phone, "password": DEMO_PASSWORD } }))
            .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body), Some("TIMEOUT"), "{body}");
    assert!(body.get("data").is_none_or(Value::is_null), "no partial result: {body}");
    assert_ran(&app.graphql(None, "{ __typename }", json!({})).await, "the next request");
}

const INTROSPECTION: &str = "{ __schema { types { name } } }";
const TYPE_INTROSPECTION: &str = "{ __type(name: \"Parcel\") { fields { name } } }";
const MISSPELLED: [&str; 2] = ["{ me { nam } }", "{ buildng(id: \"bld_1\") { id } }"];

#[tokio::test]
async fn production_hides_the_schema_graphiql_and_suggestions() {
    let development = spawn_app().await;
    let production = spawn_app_with(|settings| settings.app_env = AppEnv::Production).await;
    let token = production.token("manager").await;
    assert_ran(&production.graphql(Some(&token), "{ me { name } }", json!({})).await, "an ordinary query");

    for query in [INTROSPECTION, TYPE_INTROSPECTION] {
        for token in [Some(token.as_str()), None] {
            let body = production.graphql(token, query, json!({})).await;
            let schema = body["data"].as_object().and_then(|data| data.values().next()).cloned().unwrap_or_default();
            assert!(schema.is_null(), "{query}: introspection answered: {body}");
            let text = body.to_string();
            assert!(!text.contains("RepairOrder") && !text.contains("pickupCode"), "{query}: {text}");
        }
        let over_get = get(&production, None, &[("query", query)]).await.text().await.expect("body");
        assert!(!over_get.contains("RepairOrder") && !over_get.contains("pickupCode"), "GET {query}: {over_get}");
    }
    let graphiql = get(&production, None, &[]).await;
    assert_eq!(graphiql.status(), 404, "no GraphiQL in production");

    let dev_token = development.token("manager").await;
    for query in MISSPELLED {
        let suggested = development.graphql(Some(&dev_token), query, json!({})).await;
        assert!(message(&suggested).contains("Did you mean"), "development suggests: {suggested}");
        let body = production.graphql(Some(&token), query, json!({})).await;
        assert_refused(&body, query);
        assert!(!body.to_string().contains("Did you mean"), "production suggests nothing: {body}");
    }
}

#[tokio::test]
async fn production_serves_introspection_and_graphiql_when_configured() {
    let app = spawn_app_with(|settings| {
        settings.app_env = AppEnv::Production;
        settings.introspection = Some(true);
        settings.graphiql = Some(true);
    })
    .await;
    let body = app.graphql(None, INTROSPECTION, json!({})).await;
    let types = body["data"]["__schema"]["types"].as_array().unwrap_or_else(|| panic!("no types: {body}"));
    assert!(types.iter().any(|t| t["name"] == "RepairOrder"), "{body}");
    let graphiql = get(&app, None, &[]).await;
    assert_eq!(graphiql.status(), 200);
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

const CREATE_BUILDING: &str = "mutation { createBuilding(input: {name: \"3号楼\"}) { building { id } } }";
const QUERY_AND_MUTATION: &str =
    "query Q { me { id } } mutation M { createBuilding(input: {name: \"3号楼\"}) { building { id } } }";

#[tokio::test]
async fn mutations_over_get_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor").await;
    let desk = app.token("front_desk").await;
    let unit = unit_of(&app, "1-102");
    let register = format!(
        "mutation {{ registerParcel(input: {{kind: PARCEL, carrier: \"顺丰\", trackingNumber: \"SF-GET\", recipientName: \"李娜\", unitId: \"{unit}\"}}) {{ parcel {{ id }} }} }}"
    );
    let attempts: [(&str, &[(&str, &str)]); 4] = [
        (&supervisor, &[("query", CREATE_BUILDING)]),
        (&desk, &[("query", &register)]),
        (&supervisor, &[("query", QUERY_AND_MUTATION), ("operationName", "M")]),
        (&supervisor, &[("query", QUERY_AND_MUTATION)]),
    ];
    for (token, query) in attempts {
        let response = get(&app, Some(token), query).await;
        assert_eq!(response.status(), 405, "{query:?}");
        assert_eq!(response.headers()["allow"], "POST", "{query:?}");
    }
    assert_eq!(count::<building::Entity>(&app.db).await, 4, "no building was created");
    assert_eq!(count::<parcel::Entity>(&app.db).await, 0, "no parcel was registered");
}

/// A multipart body carrying `operations` for `query`, as a browser form could send it.
fn multipart(query: &str) -> (String, String) {
    let boundary = "----attack-boundary-7d3f";
    let operations = json!({ "query": query, "variables": {} }).to_string();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn bodies_a_browser_can_send_cross_site_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor").await;
    let json_body = json!({ "query": CREATE_BUILDING }).to_string();
    let form_body = format!("query={}", urlencode(CREATE_BUILDING));
    let attempts: [(Option<&str>, &str); 7] = [
        (Some("text/plain"), &json_body),
        (Some("text/plain;charset=UTF-8"), &json_body),
        (Some("application/x-www-form-urlencoded"), &form_body),
        (Some("application/x-www-form-urlencoded"), &json_body),
        (Some("application/graphql"), CREATE_BUILDING),
        (Some("text/html"), &json_body),
        (None, &json_body),
    ];
    for (content_type, body) in attempts {
        let response = post(&app, Some(&supervisor), content_type, body.to_owned()).await;
        assert_eq!(response.status(), 415, "{content_type:?}");
    }
    let (content_type, body) = multipart(CREATE_BUILDING);
    let response = post(&app, Some(&supervisor), Some(&content_type), body).await;
    assert_eq!(response.status(), 400, "multipart without a preflight header");
    assert_eq!(count::<building::Entity>(&app.db).await, 4, "no building was created");

    let (status, created) = post_json(&app, Some(&supervisor), &json!({ "query": CREATE_BUILDING })).await;
    assert_eq!(status, 200);
    assert_ran(&created, "the same mutation as JSON");
    assert_eq!(count::<building::Entity>(&app.db).await, 5);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

const CREATE_A: &str = "a: createBuilding(input: {name: \"3号楼\"}) { building { id } }";

#[tokio::test]
async fn malformed_requests_are_client_errors_and_write_nothing() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor").await;
    let valid_then_broken =
        format!("mutation {{ {CREATE_A} b: createBuilding(input: {{name: }}) {{ building {{ id }} }} }}");
    let valid_then_unknown =
        format!("mutation {{ {CREATE_A} b: createBuilding(input: {{name: \"4号楼\"}}) {{ building {{ salary }} }} }}");
    let two_operations = format!("mutation A {{ {CREATE_A} }} mutation B {{ {CREATE_A} }}");
    let complete = json!({ "query": CREATE_BUILDING }).to_string();
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        complete.as_bytes()[..complete.len() - 1].to_vec(),
        b"null".to_vec(),
        b"\"mutation\"".to_vec(),
        b"[1]".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        vec![0xff, 0xfe, b'{', b'}'],
        json!({ "query": 5 }).to_string().into_bytes(),
        json!({ "query": CREATE_BUILDING, "variables": [] }).to_string().into_bytes(),
        json!({ "query": CREATE_BUILDING, "variables": "x" }).to_string().into_bytes(),
        json!({ "query": CREATE_BUILDING, "extensions": 5 }).to_string().into_bytes(),
        json!({ "query": CREATE_BUILDING, "operationName": "Nope" }).to_string().into_bytes(),
        json!([{ "query": CREATE_BUILDING }, 5]).to_string().into_bytes(),
        br#"{"query":"{ me { name } }","variables":{"a":1e999}}"#.to_vec(),
        json!({ "query": "mutation { createBuilding(input: {" }).to_string().into_bytes(),
        json!({ "query": valid_then_broken }).to_string().into_bytes(),
        json!({ "query": valid_then_unknown }).to_string().into_bytes(),
        json!({ "query": two_operations }).to_string().into_bytes(),
        json!({ "query": "subscription { parcelEvents { cursor } }" }).to_string().into_bytes(),
    ];
    let mut failures = Vec::new();
    for body in bodies {
        let shown = String::from_utf8_lossy(&body).chars().take(120).collect::<String>();
        let response = post(&app, Some(&supervisor), Some("application/json"), body).await;
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        let clean = match status {
            400 => reply["errors"][0]["message"].is_string(),
            200 => reply["errors"].as_array().is_some_and(|errors| {
                !errors.is_empty() && errors.iter().all(|error| error["extensions"]["code"] == VALIDATION_FAILED)
            }),
            _ => false,
        };
        if !clean {
            failures.push(format!("{shown} => {status} {reply}"));
        }
    }
    let queries: [(&[(&str, &str)], u16); 4] = [
        (&[("query", CREATE_BUILDING), ("variables", "{")], 400),
        (&[("query", "{ me { name } }"), ("variables", "5")], 400),
        (&[("query", "{me")], 200),
        (&[("query", "")], 200),
    ];
    for (query, expected) in queries {
        let response = get(&app, Some(&supervisor), query).await;
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        let clean = match status {
            400 => reply["errors"][0]["message"].is_string(),
            _ => error_code(&reply) == Some(VALIDATION_FAILED),
        };
        if status != expected || !clean {
            failures.push(format!("GET {query:?} => {status} {reply}"));
        }
    }
    assert!(failures.is_empty(), "not answered as client errors:\n{}", failures.join("\n"));
    assert_eq!(count::<building::Entity>(&app.db).await, 4, "no building was created");
}

// ---------------------------------------------------------------------------
// Ids out of reach
// ---------------------------------------------------------------------------

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unit,
    Building,
    RepairOrder,
    Parcel,
    Membership,
    Technician,
    Butler,
    ApiClient,
}

impl Kind {
    /// An id of this kind that names nothing at all.
    fn nonexistent(self) -> String {
        let prefix = match self {
            Kind::Unit => "unit",
            Kind::Building => "bld",
            Kind::RepairOrder => "ro",
            Kind::Parcel => "pcl",
            Kind::Membership => "mbr",
            Kind::Technician | Kind::Butler => "usr",
            Kind::ApiClient => "cli",
        };
        id_of(prefix, 99_999_999)
    }
}

/// Where an object is, which decides who may see it.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the home community: the unit with this door number, or for a
    /// building the building of that unit.
    Home(&'static str),
    /// A home parcel whose unit is not known yet.
    Unidentified,
    /// Anywhere in the other community.
    Other,
}

/// A caller, as the README's tables tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A resident of these units.
    Resident(&'static [&'static str]),
    /// The butler of 1号楼.
    Butler,
    FrontDesk,
    Technician,
    Supervisor,
    Manager,
    /// A home API client with `parcels:read` and `parcels:write`.
    Integrator,
}

const CALLERS: [(&str, Who); 10] = [
    ("owner", Who::Resident(&["1-101", "2-201"])),
    ("family", Who::Resident(&["1-101"])),
    ("tenant", Who::Resident(&["1-102"])),
    ("owner2", Who::Resident(&["2-202"])),
    ("butler", Who::Butler),
    ("front_desk", Who::FrontDesk),
    ("technician", Who::Technician),
    ("supervisor", Who::Supervisor),
    ("manager", Who::Manager),
    ("integrator", Who::Integrator),
];

fn building_of(number: &str) -> &str {
    number.split('-').next().unwrap_or_default()
}

/// Whether an object of `kind` at `place` is in the reach of `who`: residents
/// their units (and those units' buildings), the butler 1号楼 and the
/// unidentified parcels, staff and integrators the community, except that
/// technicians see only the repair orders assigned to them (none here).
fn sees(who: Who, kind: Kind, place: Place) -> bool {
    match (who, place) {
        (_, Place::Other) => false,
        (Who::Resident(_), Place::Unidentified) => false,
        (_, Place::Unidentified) => true,
        (Who::Resident(units), Place::Home(number)) => match kind {
            Kind::Building => units.iter().any(|unit| building_of(unit) == building_of(number)),
            _ => units.contains(&number),
        },
        (Who::Butler, Place::Home(number)) => building_of(number) == "1",
        (Who::Technician, Place::Home(_)) => kind != Kind::RepairOrder,
        (_, Place::Home(_)) => true,
    }
}

fn people(who: Who) -> bool {
    who != Who::Integrator
}
fn residents(who: Who) -> bool {
    matches!(who, Who::Resident(_))
}
fn employees(who: Who) -> bool {
    people(who) && !residents(who)
}
fn desk(who: Who) -> bool {
    matches!(who, Who::FrontDesk | Who::Supervisor | Who::Manager)
}
fn desk_or_butler(who: Who) -> bool {
    desk(who) || who == Who::Butler
}
fn desk_or_integrator(who: Who) -> bool {
    desk(who) || who == Who::Integrator
}
fn anyone(_: Who) -> bool {
    true
}
fn residents_or_desk(who: Who) -> bool {
    residents(who) || desk(who)
}
fn supervisors(who: Who) -> bool {
    matches!(who, Who::Supervisor | Who::Manager)
}
fn dispatchers(who: Who) -> bool {
    supervisors(who) || who == Who::Butler
}
fn technicians(who: Who) -> bool {
    who == Who::Technician
}
fn managers(who: Who) -> bool {
    who == Who::Manager
}

/// What a caller who may use the field is told about an id out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// NOT_FOUND, as for an id that does not exist.
    NotFound,
    /// An empty page: the id only narrows a list the caller may read.
    Nothing,
}

/// One id-taking argument: `path` as in schema.graphql, tried with ids of
/// `kind` out of the caller's reach.
struct Probe {
    path: &'static str,
    document: &'static str,
    kind: Kind,
    hidden: Hidden,
    /// Who the README's permission table lets call the field at all.
    may_call: fn(Who) -> bool,
    variables: fn(&World, Who, &str) -> Value,
}

fn lookup(
    path: &'static str,
    document: &'static str,
    kind: Kind,
    may_call: fn(Who) -> bool,
    variables: fn(&World, Who, &str) -> Value,
) -> Probe {
    Probe { path, document, kind, hidden: Hidden::NotFound, may_call, variables }
}

fn filter(
    path: &'static str,
    document: &'static str,
    kind: Kind,
    may_call: fn(Who) -> bool,
    variables: fn(&World, Who, &str) -> Value,
) -> Probe {
    Probe { path, document, kind, hidden: Hidden::Nothing, may_call, variables }
}

const UNIT_QUERY: &str = "query($id: ID!) { unit(id: $id) { id number } }";
const BUILDING_QUERY: &str = "query($id: ID!) { building(id: $id) { id name } }";
const ORDER_QUERY: &str = "query($id: ID!) { repairOrder(id: $id) { id state } }";
const PARCEL_QUERY: &str = "query($id: ID!) { parcel(id: $id) { id status pickupCode } }";
const UNITS_IN: &str = "query($id: ID) { units(buildingId: $id, first: 50) { totalCount edges { node { id } } } }";
const RESIDENTS_IN: &str =
    "query($filter: ResidentFilter) { residents(filter: $filter, first: 50) { totalCount edges { node { id } } } }";
const ORDERS_IN: &str = "query($filter: RepairOrderFilter) { repairOrders(filter: $filter, first: 50) { totalCount edges { node { id } } } }";
const PARCELS_IN: &str =
    "query($filter: ParcelFilter) { parcels(filter: $filter, first: 50) { totalCount edges { node { id } } } }";
const CREATE_UNIT: &str = "mutation($input: CreateUnitInput!) { createUnit(input: $input) { unit { id } } }";
const MOVE_IN: &str = "mutation($input: MoveInInput!) { moveIn(input: $input) { membership { id } } }";
const MOVE_OUT: &str = "mutation($input: MoveOutInput!) { moveOut(input: $input) { membership { id movedOutOn } } }";
const SET_CONTACTS: &str = "mutation($input: SetEmergencyContactsInput!) { setEmergencyContacts(input: $input) { unit { id emergencyContacts { name } } } }";
const ASSIGN_BUTLER: &str =
    "mutation($input: ButlerAssignmentInput!) { assignButler(input: $input) { butler { id } building { id } } }";
const UNASSIGN_BUTLER: &str =
    "mutation($input: ButlerAssignmentInput!) { unassignButler(input: $input) { butler { id } building { id } } }";
const SUBMIT: &str =
    "mutation($input: SubmitRepairOrderInput!) { submitRepairOrder(input: $input) { repairOrder { id state } } }";
const ASSIGN: &str =
    "mutation($input: AssignRepairOrderInput!) { assignRepairOrder(input: $input) { repairOrder { id state } } }";
const START: &str =
    "mutation($input: StartRepairOrderInput!) { startRepairOrder(input: $input) { repairOrder { id state } } }";
const COMPLETE: &str =
    "mutation($input: CompleteRepairOrderInput!) { completeRepairOrder(input: $input) { repairOrder { id state } } }";
const CONFIRM: &str =
    "mutation($input: ConfirmRepairOrderInput!) { confirmRepairOrder(input: $input) { repairOrder { id state } } }";
const CANCEL: &str =
    "mutation($input: CancelRepairOrderInput!) { cancelRepairOrder(input: $input) { repairOrder { id state } } }";
const FOLLOW_UP: &str =
    "mutation($input: AddRepairFollowUpInput!) { addRepairFollowUp(input: $input) { repairOrder { id state } } }";
const REGISTER_MANY: &str =
    "mutation($input: RegisterParcelsInput!) { registerParcels(input: $input) { parcels { id } } }";
const PICK_UP: &str = "mutation($input: PickUpParcelInput!) { pickUpParcel(input: $input) { parcel { id status } } }";
const IDENTIFY: &str =
    "mutation($input: IdentifyParcelInput!) { identifyParcel(input: $input) { parcel { id status } } }";
const RETURN: &str = "mutation($input: ReturnParcelInput!) { returnParcel(input: $input) { parcel { id status } } }";
const AUTHORIZE: &str = "mutation($input: AuthorizeParcelCollectorInput!) { authorizeParcelCollector(input: $input) { parcel { id authorizedCollector } } }";
const UNLOCK: &str = "mutation($input: UnlockParcelInput!) { unlockParcel(input: $input) { parcel { id locked } } }";
const DISABLE_CLIENT: &str =
    "mutation($input: DisableApiClientInput!) { disableApiClient(input: $input) { apiClient { id disabledAt } } }";

fn input(value: Value) -> Value {
    json!({ "input": value })
}

/// A report of a leak at `place` (`unitId` or `buildingId`): through the app,
/// or found on patrol.
fn report(through_app: bool, place: &str, id: &str) -> Value {
    let mut report = json!({ "category": "PLUMBING", "description": "厨房水管漏水" });
    report[place] = json!(id);
    if !through_app {
        report["channel"] = json!("PATROL");
    }
    input(report)
}

/// Every id-taking argument of the schema, tried with ids out of reach.
fn probes() -> Vec<Probe> {
    use Kind::*;
    vec![
        lookup("unit.id", UNIT_QUERY, Unit, people, |_, _, id| json!({ "id": id })),
        lookup("building.id", BUILDING_QUERY, Building, people, |_, _, id| json!({ "id": id })),
        lookup("repairOrder.id", ORDER_QUERY, RepairOrder, people, |_, _, id| json!({ "id": id })),
        lookup("parcel.id", PARCEL_QUERY, Parcel, anyone, |_, _, id| json!({ "id": id })),
        filter("units.buildingId", UNITS_IN, Building, people, |_, _, id| json!({ "id": id })),
        filter(
            "residents.filter.buildingId",
            RESIDENTS_IN,
            Building,
            desk_or_butler,
            |_, _, id| json!({ "filter": { "buildingId": id } }),
        ),
        filter(
            "residents.filter.unitId",
            RESIDENTS_IN,
            Unit,
            desk_or_butler,
            |_, _, id| json!({ "filter": { "unitId": id } }),
        ),
        filter(
            "repairOrders.filter.buildingId",
            ORDERS_IN,
            Building,
            people,
            |_, _, id| json!({ "filter": { "buildingId": id } }),
        ),
        filter("repairOrders.filter.unitId", ORDERS_IN, Unit, people, |_, _, id| json!({ "filter": { "unitId": id } })),
        filter(
            "repairOrders.filter.assigneeId",
            ORDERS_IN,
            Technician,
            people,
            |_, _, id| json!({ "filter": { "assigneeId": id } }),
        ),
        filter("parcels.filter.unitId", PARCELS_IN, Unit, anyone, |_, _, id| json!({ "filter": { "unitId": id } })),
        lookup("createUnit.input.buildingId", CREATE_UNIT, Building, supervisors, |_, _, id| {
            input(json!({ "buildingId": id, "number": "9-901" }))
        }),
        lookup("moveIn.input.unitId", MOVE_IN, Unit, desk, |_, _, id| {
            input(json!({ "unitId": id, "phone": "13700000001", "name": "新住户", "relation": "TENANT" }))
        }),
        lookup("moveOut.input.membershipId", MOVE_OUT, Membership, desk, |_, _, id| {
            input(json!({ "membershipId": id }))
        }),
        lookup("setEmergencyContacts.input.unitId", SET_CONTACTS, Unit, residents_or_desk, |_, _, id| {
            input(json!({ "unitId": id, "contacts": [{ "name": "王芳", "phone": "13900000000", "relation": "女儿" }] }))
        }),
        lookup("assignButler.input.buildingId", ASSIGN_BUTLER, Building, supervisors, |w, _, id| {
            input(json!({ "butlerId": w.butler, "buildingId": id }))
        }),
        lookup("assignButler.input.butlerId", ASSIGN_BUTLER, Butler, supervisors, |w, _, id| {
            input(json!({ "butlerId": id, "buildingId": w.second_building }))
        }),
        lookup("unassignButler.input.buildingId", UNASSIGN_BUTLER, Building, supervisors, |w, _, id| {
            input(json!({ "butlerId": w.butler, "buildingId": id }))
        }),
        lookup("unassignButler.input.butlerId", UNASSIGN_BUTLER, Butler, supervisors, |w, _, id| {
            input(json!({ "butlerId": id, "buildingId": w.first_building }))
        }),
        lookup("submitRepairOrder.input.unitId", SUBMIT, Unit, people, |_, who, id| {
            report(residents(who), "unitId", id)
        }),
        lookup("submitRepairOrder.input.buildingId", SUBMIT, Building, employees, |_, who, id| {
            report(residents(who), "buildingId", id)
        }),
        lookup("assignRepairOrder.input.repairOrderId", ASSIGN, RepairOrder, dispatchers, |w, _, id| {
            input(json!({ "repairOrderId": id, "technicianId": w.technician }))
        }),
        lookup("assignRepairOrder.input.technicianId", ASSIGN, Technician, dispatchers, |w, _, id| {
            input(json!({ "repairOrderId": w.order, "technicianId": id }))
        }),
        lookup("startRepairOrder.input.repairOrderId", START, RepairOrder, technicians, |_, _, id| {
            input(json!({ "repairOrderId": id }))
        }),
        lookup("completeRepairOrder.input.repairOrderId", COMPLETE, RepairOrder, technicians, |_, _, id| {
            input(json!({ "repairOrderId": id, "note": "换了阀芯" }))
        }),
        lookup("confirmRepairOrder.input.repairOrderId", CONFIRM, RepairOrder, residents, |_, _, id| {
            input(json!({ "repairOrderId": id, "rating": 5 }))
        }),
        lookup("cancelRepairOrder.input.repairOrderId", CANCEL, RepairOrder, people, |_, _, id| {
            input(json!({ "repairOrderId": id, "reason": "不需要了" }))
        }),
        lookup("addRepairFollowUp.input.repairOrderId", FOLLOW_UP, RepairOrder, desk_or_butler, |_, _, id| {
            input(json!({ "repairOrderId": id, "outcome": "已回访", "satisfied": true }))
        }),
        lookup("registerParcel.input.unitId", REGISTER, Unit, desk_or_integrator, |_, _, id| {
            input(parcel_input(Some(id), "SF-OUT-OF-REACH"))
        }),
        lookup("registerParcels.input.parcels.unitId", REGISTER_MANY, Unit, desk_or_integrator, |_, _, id| {
            input(json!({ "parcels": [parcel_input(Some(id), "SF-OUT-OF-REACH")] }))
        }),
        lookup("pickUpParcel.input.parcelId", PICK_UP, Parcel, desk_or_integrator, |_, _, id| {
            input(json!({ "parcelId": id, "pickupCode": "000000", "collectorName": "李娜" }))
        }),
        lookup("identifyParcel.input.parcelId", IDENTIFY, Parcel, desk_or_butler, |w, _, id| {
            input(json!({ "parcelId": id, "unitId": w.unit }))
        }),
        lookup("identifyParcel.input.unitId", IDENTIFY, Unit, desk_or_butler, |w, _, id| {
            input(json!({ "parcelId": w.unidentified, "unitId": id }))
        }),
        lookup("returnParcel.input.parcelId", RETURN, Parcel, desk, |_, _, id| {
            input(json!({ "parcelId": id, "reason": "地址不详" }))
        }),
        lookup("authorizeParcelCollector.input.parcelId", AUTHORIZE, Parcel, residents, |_, _, id| {
            input(json!({ "parcelId": id, "name": "张三" }))
        }),
        lookup("unlockParcel.input.parcelId", UNLOCK, Parcel, desk, |_, _, id| input(json!({ "parcelId": id }))),
        lookup("disableApiClient.input.apiClientId", DISABLE_CLIENT, ApiClient, managers, |_, _, id| {
            input(json!({ "apiClientId": id }))
        }),
    ]
}

/// Id-taking arguments the matrix leaves out: a client id is a credential
/// (an unknown id and a wrong secret answer alike), and a resident id is
/// checked against the current residents of the unit given with it.
const NOT_LOOKUPS: [&str; 2] = ["issueClientToken.input.clientId", "submitRepairOrder.input.residentId"];

/// The objects the probes point at, and who they belong to.
struct World {
    targets: Vec<(Kind, Place, String)>,
    /// In reach of the callers that use them, for probes with a second id.
    butler: String,
    technician: String,
    first_building: String,
    second_building: String,
    /// A unit of 1号楼 and a SUBMITTED order there.
    unit: String,
    order: String,
    /// A home parcel waiting to be identified.
    unidentified: String,
}

/// The payload of a call's only root field, which must succeed.
async fn payload(app: &TestApp, token: &str, document: &str, variables: Value) -> Value {
    let data = app.data(Some(token), document, variables).await;
    data.as_object().and_then(|data| data.values().next()).cloned().unwrap_or_default()
}

async fn submitted_order(app: &TestApp, token: &str, unit: &str) -> String {
    let payload = payload(app, token, SUBMIT, report(true, "unitId", unit)).await;
    payload["repairOrder"]["id"].as_str().expect("order id").to_owned()
}

async fn registered_parcel(app: &TestApp, token: &str, unit: Option<&str>, tracking: &str) -> String {
    let payload = payload(app, token, REGISTER, input(parcel_input(unit, tracking))).await;
    payload["parcel"]["id"].as_str().expect("parcel id").to_owned()
}

async fn membership(app: &TestApp, community: &api::demo::SeededCommunity, key: &str, number: &str) -> String {
    let row = unit_membership::Entity::find()
        .filter(unit_membership::Column::UserId.eq(community.account(key).user_id))
        .filter(unit_membership::Column::UnitId.eq(community.unit(number).id))
        .one(&app.db)
        .await
        .expect("read membership")
        .expect("membership");
    id_of("mbr", row.id)
}

const CREATE_CLIENT: &str = "mutation($name: String!) { createApiClient(input: {name: $name, scopes: [PARCELS_READ, PARCELS_WRITE]}) { apiClient { id } clientSecret } }";
const ISSUE_TOKEN: &str = "mutation($id: ID!, $secret: String!) { issueClientToken(input: {clientId: $id, clientSecret: $secret}) { accessToken } }";

/// An API client of the manager's community: (id, secret).
async fn api_client(app: &TestApp, manager: &str, name: &str) -> (String, String) {
    let created = payload(app, manager, CREATE_CLIENT, json!({ "name": name })).await;
    let id = created["apiClient"]["id"].as_str().expect("client id").to_owned();
    (id, created["clientSecret"].as_str().expect("client secret").to_owned())
}

async fn build_world(app: &TestApp) -> World {
    let other = &app.other;
    let other_unit = id_of("unit", other.unit("1-101").id);
    let desk = app.token("front_desk").await;
    let other_desk = app.token_in(other, "front_desk").await;
    let other_manager = app.token_in(other, "manager").await;
    let (other_client, _) = api_client(app, &other_manager, "江畔 lockers").await;
    let mut targets = vec![
        (Kind::Unit, Place::Home("1-102"), unit_of(app, "1-102")),
        (Kind::Unit, Place::Home("2-202"), unit_of(app, "2-202")),
        (Kind::Unit, Place::Other, other_unit.clone()),
        (Kind::Building, Place::Home("1-102"), id_of("bld", app.home.buildings[0].id)),
        (Kind::Building, Place::Home("2-202"), id_of("bld", app.home.buildings[1].id)),
        (Kind::Building, Place::Other, id_of("bld", other.buildings[0].id)),
        (Kind::Membership, Place::Home("1-102"), membership(app, &app.home, "tenant", "1-102").await),
        (Kind::Membership, Place::Home("2-202"), membership(app, &app.home, "owner2", "2-202").await),
        (Kind::Membership, Place::Other, membership(app, other, "owner", "1-101").await),
        (Kind::Technician, Place::Other, id_of("usr", other.account("technician").user_id)),
        (Kind::Butler, Place::Other, id_of("usr", other.account("butler").user_id)),
        (Kind::ApiClient, Place::Other, other_client),
    ];
    let order = submitted_order(app, &app.token("tenant").await, &unit_of(app, "1-102")).await;
    targets.push((Kind::RepairOrder, Place::Home("1-102"), order.clone()));
    let owner2 = app.token("owner2").await;
    targets.push((
        Kind::RepairOrder,
        Place::Home("2-202"),
        submitted_order(app, &owner2, &unit_of(app, "2-202")).await,
    ));
    let other_owner = app.token_in(other, "owner").await;
    targets.push((Kind::RepairOrder, Place::Other, submitted_order(app, &other_owner, &other_unit).await));
    let unidentified = registered_parcel(app, &desk, None, "SF-UNCLEAR").await;
    targets.extend([
        (Kind::Parcel, Place::Home("1-102"), registered_parcel(app, &desk, Some(&unit_of(app, "1-102")), "SF-1").await),
        (Kind::Parcel, Place::Home("2-202"), registered_parcel(app, &desk, Some(&unit_of(app, "2-202")), "SF-2").await),
        (Kind::Parcel, Place::Unidentified, unidentified.clone()),
        (Kind::Parcel, Place::Other, registered_parcel(app, &other_desk, Some(&other_unit), "SF-3").await),
        (Kind::Parcel, Place::Other, registered_parcel(app, &other_desk, None, "SF-4").await),
    ]);
    World {
        targets,
        butler: id_of("usr", app.home.account("butler").user_id),
        technician: id_of("usr", app.home.account("technician").user_id),
        first_building: id_of("bld", app.home.buildings[0].id),
        second_building: id_of("bld", app.home.buildings[1].id),
        unit: unit_of(app, "1-101"),
        order,
        unidentified,
    }
}

/// Every row of the tables these fields touch, in a comparable form.
async fn snapshot(app: &TestApp) -> Vec<String> {
    async fn rows<E>(db: &DatabaseConnection) -> Vec<String>
    where
        E: EntityTrait,
        E::Model: Debug + Sync,
    {
        let mut rows: Vec<String> =
            E::find().all(db).await.expect("read rows").iter().map(|m| format!("{m:?}")).collect();
        rows.sort();
        rows
    }
    app.settle_events().await;
    let db = &app.db;
    let mut all = Vec::new();
    all.extend(rows::<building::Entity>(db).await);
    all.extend(rows::<unit::Entity>(db).await);
    all.extend(rows::<unit_membership::Entity>(db).await);
    all.extend(rows::<emergency_contact::Entity>(db).await);
    all.extend(rows::<butler_assignment::Entity>(db).await);
    all.extend(rows::<user::Entity>(db).await);
    all.extend(rows::<repair_order::Entity>(db).await);
    all.extend(rows::<repair_order_change::Entity>(db).await);
    all.extend(rows::<repair_follow_up::Entity>(db).await);
    all.extend(rows::<parcel::Entity>(db).await);
    all.extend(rows::<api_client::Entity>(db).await);
    all.extend(rows::<event::Entity>(db).await);
    all
}

/// Whether `body` is what a caller who may use the field is told about an id out of reach.
fn is_hidden_answer(body: &Value, hidden: Hidden) -> bool {
    match hidden {
        Hidden::NotFound => error_code(body) == Some("NOT_FOUND"),
        Hidden::Nothing => {
            body.get("errors").is_none()
                && body["data"]
                    .as_object()
                    .and_then(|data| data.values().next())
                    .is_some_and(|page| page["totalCount"] == 0 && page["edges"].as_array().is_some_and(Vec::is_empty))
        }
    }
}

/// An id out of the caller's reach gets exactly the answer an id that does
/// not exist gets: NOT_FOUND (or an empty page) for a caller who may use the
/// field, and for one the permission table turns away, the same refusal
/// whatever the id. Nothing is written either way.
#[tokio::test]
async fn ids_out_of_reach_read_as_not_found_and_change_nothing() {
    let probes = probes();
    let probed: BTreeSet<String> = probes.iter().map(|probe| probe.path.to_owned()).collect();
    let exempt: BTreeSet<String> = NOT_LOOKUPS.iter().map(|path| path.to_string()).collect();
    assert_eq!(&probed | &exempt, id_arguments(), "every id-taking argument of schema.graphql is probed");

    let app = spawn_app().await;
    let world = build_world(&app).await;
    let mut tokens = HashMap::new();
    for (key, who) in CALLERS {
        let token = match who {
            Who::Integrator => {
                let manager = app.token("manager").await;
                let (id, secret) = api_client(&app, &manager, "蜂巢快递柜").await;
                let issued = payload(&app, &manager, ISSUE_TOKEN, json!({ "id": id, "secret": secret })).await;
                issued["accessToken"].as_str().expect("client token").to_owned()
            }
            _ => app.token(key).await,
        };
        tokens.insert(key, token);
    }

    let mut reference = snapshot(&app).await;
    let mut failures = Vec::new();
    let mut tried = 0;
    for (key, who) in CALLERS {
        let token = tokens[key].as_str();
        for probe in &probes {
            let call = |id: String| {
                let variables = (probe.variables)(&world, who, &id);
                app.graphql(Some(token), probe.document, variables)
            };
            let nowhere = call(probe.kind.nonexistent()).await;
            let refused = matches!(error_code(&nowhere), Some("FORBIDDEN" | "NOT_FOUND" | "BAD_USER_INPUT"));
            let expected = if (probe.may_call)(who) { is_hidden_answer(&nowhere, probe.hidden) } else { refused };
            if !expected {
                failures.push(format!("{key} {}: an id that does not exist got {nowhere}", probe.path));
            }
            let hidden =
                world.targets.iter().filter(|(kind, place, _)| *kind == probe.kind && !sees(who, *kind, *place));
            for (_, place, id) in hidden {
                tried += 1;
                let body = call(id.clone()).await;
                if body != nowhere {
                    failures
                        .push(format!("{key} {}({id}, {place:?}): {body}, unlike a missing id: {nowhere}", probe.path));
                }
            }
            if probe.document.starts_with("mutation") {
                let now = snapshot(&app).await;
                if now != reference {
                    failures.push(format!("{key} {} changed the database", probe.path));
                    reference = now;
                }
            }
        }
    }
    assert!(tried > 300, "only {tried} out-of-reach ids were tried");
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

// ---------------------------------------------------------------------------
// schema.graphql
// ---------------------------------------------------------------------------

/// An object or input type of the schema, with its field lines (descriptions dropped).
struct Block {
    input: bool,
    fields: Vec<String>,
}

fn schema_types() -> BTreeMap<String, Block> {
    let sdl =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql")).expect("schema.graphql");
    let mut types = BTreeMap::new();
    let mut current: Option<(String, Block)> = None;
    let mut in_description = false;
    for line in sdl.lines().map(str::trim) {
        if line.starts_with("\"\"\"") {
            if line.len() < 6 || !line.ends_with("\"\"\"") {
                in_description = !in_description;
            }
            continue;
        }
        if in_description || line.is_empty() {
            continue;
        }
        let header = line.strip_prefix("type ").map(|name| (name, false));
        if let Some((name, input)) = header.or_else(|| line.strip_prefix("input ").map(|name| (name, true))) {
            current = Some((name.trim_end_matches('{').trim().to_owned(), Block { input, fields: Vec::new() }));
        } else if line == "}" {
            if let Some((name, block)) = current.take() {
                types.insert(name, block);
            }
        } else if let Some((_, block)) = current.as_mut() {
            block.fields.push(line.to_owned());
        }
    }
    types
}

/// `(name, arguments, type)` of a field line such as `unit(id: ID!): Unit!`
/// or `unitId: ID`.
fn field_parts(line: &str) -> (&str, Vec<(&str, &str)>, &str) {
    match line.split_once('(').filter(|(name, _)| !name.contains(':')) {
        Some((name, rest)) => {
            let (arguments, ty) = rest.rsplit_once("):").expect("closing parenthesis");
            let arguments =
                arguments.split(", ").map(|argument| argument.split_once(": ").expect("argument type")).collect();
            (name, arguments, ty.trim())
        }
        None => {
            let (name, ty) = line.split_once(':').expect("field type");
            (name, Vec::new(), ty.trim())
        }
    }
}

/// The named type of a type reference: `[ParcelInput!]!` → `ParcelInput`.
fn base_type(reference: &str) -> &str {
    reference.split_whitespace().next().unwrap_or_default().trim_matches(['[', ']', '!'])
}

/// Dotted paths of every ID among the arguments of Query and Mutation fields,
/// inputs included: `unit.id`, `moveIn.input.unitId`, ….
fn id_arguments() -> BTreeSet<String> {
    fn visit(types: &BTreeMap<String, Block>, path: String, reference: &str, found: &mut BTreeSet<String>) {
        let name = base_type(reference);
        if name == "ID" {
            found.insert(path);
        } else if let Some(block) = types.get(name).filter(|block| block.input) {
            for line in &block.fields {
                let (field, _, ty) = field_parts(line);
                visit(types, format!("{path}.{field}"), ty, found);
            }
        }
    }
    let types = schema_types();
    let mut found = BTreeSet::new();
    for root in ["Query", "Mutation"] {
        for line in &types[root].fields {
            let (field, arguments, _) = field_parts(line);
            for (argument, ty) in arguments {
                visit(&types, format!("{field}.{argument}"), ty, &mut found);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

/// Free text and dates in list filters go into SQL as parameters; a value the
/// database cannot store must be an input error or match nothing, never an
/// internal error.
#[tokio::test]
async fn hostile_filter_values_are_answered_without_internal_errors() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let filters = [
        (PARCELS_IN, json!({ "carrier": "顺\0丰" })),
        (PARCELS_IN, json!({ "trackingNumber": "\0" })),
        (PARCELS_IN, json!({ "receivedFrom": "-4714-01-01T00:00:00Z" })),
        (RESIDENTS_IN, json!({ "search": "王\0" })),
        (ORDERS_IN, json!({ "text": "\0" })),
        (ORDERS_IN, json!({ "createdFrom": "-262143-01-01T00:00:00Z" })),
    ];
    let mut failures = Vec::new();
    for (document, filter) in filters {
        let body = app.graphql(Some(&desk), document, json!({ "filter": filter })).await;
        let clean = match error_code(&body) {
            None => body["data"].is_object(),
            Some(code) => code != "INTERNAL",
        };
        if !clean {
            failures.push(format!("{filter}: {body}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------

/// Generated calls per mutation: enough to reach every kind of input, few
/// enough for a debug build.
const CASES: u32 = 64;

/// A table a mutation may add a row to.
#[derive(Debug, Clone, Copy)]
enum Table {
    RepairOrder,
    Parcel,
    Membership,
    User,
    RefreshToken,
    Event,
}

async fn counts(app: &TestApp, tables: &[Table]) -> Vec<u64> {
    app.settle_events().await;
    let db = &app.db;
    let mut counts = Vec::with_capacity(tables.len());
    for table in tables {
        counts.push(match table {
            Table::RepairOrder => count::<repair_order::Entity>(db).await,
            Table::Parcel => count::<parcel::Entity>(db).await,
            Table::Membership => count::<unit_membership::Entity>(db).await,
            Table::User => count::<user::Entity>(db).await,
            Table::RefreshToken => count::<refresh_token::Entity>(db).await,
            Table::Event => count::<event::Entity>(db).await,
        });
    }
    counts
}

/// One generated call: who makes it (a demo account's key) and its variables.
#[derive(Debug, Clone)]
struct Case {
    caller: Option<&'static str>,
    variables: Value,
}

/// One server for a whole property-based run, on a runtime of its own.
struct Fuzz {
    app: Option<TestApp>,
    tokens: HashMap<&'static str, String>,
    runtime: tokio::runtime::Runtime,
}

impl Fuzz {
    fn start(callers: &[&'static str]) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (app, tokens) = runtime.block_on(async {
            let app = spawn_app().await;
            let mut tokens = HashMap::new();
            for key in callers {
                tokens.insert(*key, app.token(key).await);
            }
            (app, tokens)
        });
        Self { app: Some(app), tokens, runtime }
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("the server runs")
    }

    fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.block_on(work)
    }

    /// Sends the `examples`, then `CASES` generated calls of `document`. Each
    /// is answered below 500 with data or with errors that all carry a code
    /// other than INTERNAL; a refused call adds no row to `tables`, an
    /// accepted one at most one to each. The server still answers afterwards.
    fn run(&self, document: &str, tables: &[Table], examples: Vec<Case>, cases: impl Strategy<Value = Case>) {
        for example in examples {
            let shown = format!("{example:?}");
            if let Err(failure) = self.block_on(self.check(document, tables, example)) {
                panic!("{failure}\n{shown}");
            }
        }
        let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
        let outcome = TestRunner::new(config).run(&cases, |case| self.block_on(self.check(document, tables, case)));
        if let Err(failure) = outcome {
            panic!("{failure}");
        }
        let health = self.block_on(self.app().http.get(self.app().url("/healthz")).send()).expect("health check");
        assert_eq!(health.status(), 200, "the server still answers");
    }

    async fn check(&self, document: &str, tables: &[Table], case: Case) -> Result<(), TestCaseError> {
        let app = self.app();
        let before = counts(app, tables).await;
        let token = case.caller.map(|key| self.tokens[key].as_str());
        let request = operation(document, case.variables).to_string();
        let response = post(app, token, Some("application/json"), request).await;
        let status = response.status();
        prop_assert!(!status.is_server_error(), "answered {}", status);
        let body: Value =
            response.json().await.map_err(|err| TestCaseError::fail(format!("{status}, not JSON: {err}")))?;
        let after = counts(app, tables).await;
        match body.get("errors").map(|errors| errors.as_array().cloned().unwrap_or_default()) {
            Some(errors) => {
                prop_assert!(!errors.is_empty(), "an empty error list: {}", body);
                for error in &errors {
                    let code = error["extensions"]["code"].as_str();
                    prop_assert!(code.is_some_and(|code| code != "INTERNAL"), "{}: {}", status, body);
                }
                prop_assert_eq!(&after, &before, "a refused call wrote rows to {:?}: {}", tables, body);
            }
            None => {
                prop_assert!(body["data"].is_object(), "neither data nor errors: {}", body);
                for (table, (before, after)) in tables.iter().zip(before.iter().zip(&after)) {
                    let added = after.checked_sub(*before);
                    prop_assert!(
                        added.is_some_and(|rows| rows <= 1),
                        "{:?}: {} → {} rows: {}",
                        table,
                        before,
                        after,
                        body
                    );
                }
            }
        }
        Ok(())
    }
}

impl Drop for Fuzz {
    fn drop(&mut self) {
        let app = self.app.take();
        self.runtime.block_on(async move { drop(app) });
    }
}

/// What attackers and unlucky typists send.
const NASTY: &[&str] = &[
    "",
    " ",
    "\t\r\n",
    "\0",
    "a\0b",
    "\u{7f}",
    "\u{1b}[31mred",
    "'; DROP TABLE parcel; --",
    "\" OR \"1\"=\"1",
    "1' OR '1'='1' --",
    "%",
    "_",
    "\\",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "\u{202e}gpj.exe",
    "שלום עולם",
    "مرحبا",
    "🚰💧👨‍👩‍👧‍👦",
    "\u{fffd}\u{feff}\u{200b}",
    "ｆｕｌｌｗｉｄｔｈ１２３",
    "../../etc/passwd",
    "null",
    "NaN",
    "-1",
    "1e309",
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 \u{4e00}-\u{9fa5}]{1,24}",
        3 => select(NASTY).prop_map(str::to_owned),
        2 => any::<String>(),
        1 => (0usize..4000, select(vec!["x", "长", "🚰", "\0", "'", "\u{202e}"])).prop_map(|(n, piece)| piece.repeat(n)),
        1 => Just("长".repeat(20_000)),
    ]
    .boxed()
}

/// Integers at the edges, and values that are not integers at all.
fn int() -> BoxedStrategy<Value> {
    let edges =
        vec![i64::from(i32::MIN), -1, 0, 1, 99, 100, i64::from(i32::MAX), i64::from(i32::MAX) + 1, i64::MIN, i64::MAX];
    prop_oneof![
        3 => (1i64..=99).prop_map(Value::from),
        3 => select(edges).prop_map(Value::from),
        1 => any::<i32>().prop_map(Value::from),
        1 => select(vec![json!(1.5), json!("1"), json!(true), Value::Null, json!([1])]),
    ]
    .boxed()
}

/// Ids of `prefix`: `real` ones, malformed ones and ones of other kinds.
fn id(prefix: &'static str, real: Vec<String>) -> BoxedStrategy<Value> {
    let malformed = vec![
        format!("{prefix}_-1"),
        format!("{prefix}_0"),
        format!("{prefix}_99999999999999999999"),
        format!("{prefix}_9223372036854775807"),
        format!("{prefix}_abc"),
        format!("{prefix}_"),
        format!("{prefix}_1 OR 1=1"),
        format!("{prefix}_１"),
        format!("{prefix}_+1"),
        format!(" {prefix}_1"),
        format!("{prefix}_1\0"),
        prefix.to_owned(),
        String::new(),
        "ro_1".to_owned(),
        "pcl_1".to_owned(),
        "unit_1".to_owned(),
    ];
    prop_oneof![
        4 => select(real).prop_map(Value::from),
        3 => select(malformed).prop_map(Value::from),
        1 => (1i64..40).prop_map(move |n| Value::from(format!("{prefix}_{n}"))),
        1 => any::<String>().prop_map(Value::from),
        1 => select(vec![json!(7), json!([]), json!({ "id": 1 })]),
    ]
    .boxed()
}

fn enumerated(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        5 => select(values).prop_map(Value::from),
        1 => select(vec![json!("BOGUS"), json!("plumbing"), json!(""), json!(3), Value::Null]),
    ]
    .boxed()
}

fn mobile() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "1[3-9][0-9]{9}",
        1 => "\\+86 1[3-9][0-9]{9}",
        1 => "[0-9]{1,25}",
        2 => text(),
    ]
    .boxed()
}

fn date() -> BoxedStrategy<Value> {
    let edges = vec![
        "2024-03-01",
        "0001-01-01",
        "9999-12-31",
        "+262142-12-31",
        "-262143-01-01",
        "-0001-12-31",
        "2024-02-30",
        "2023-02-29",
        "2024-3-1",
        "20240301",
        "today",
        "",
    ];
    prop_oneof![
        2 => select(edges).prop_map(Value::from),
        2 => (1i32..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| Value::from(format!("{y:04}-{m:02}-{d:02}"))),
        1 => any::<String>().prop_map(Value::from),
        1 => Just(json!(20240301)),
    ]
    .boxed()
}

fn datetime() -> BoxedStrategy<Value> {
    let soon = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let edges = vec![
        soon,
        "2099-01-01T00:00:00Z".to_owned(),
        "1970-01-01T00:00:00Z".to_owned(),
        "+262142-12-31T23:59:59Z".to_owned(),
        "-262143-01-01T00:00:00Z".to_owned(),
        "2024-13-01T00:00:00Z".to_owned(),
        "2024-01-01".to_owned(),
        String::new(),
    ];
    prop_oneof![3 => select(edges).prop_map(Value::from), 1 => any::<String>().prop_map(Value::from)].boxed()
}

fn idempotency_key() -> BoxedStrategy<String> {
    prop_oneof!["[a-zA-Z0-9-]{1,40}", text()].boxed()
}

/// Valid inputs from `base`, each with up to two fields replaced by a
/// hostile value or left out, so that calls get past the first check as
/// often as they trip over it.
fn tampered(
    base: impl Strategy<Value = (Option<&'static str>, Value)>,
    hostile: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> impl Strategy<Value = Case> {
    let (names, values): (Vec<&'static str>, Vec<_>) =
        hostile.into_iter().map(|(name, value)| (name, option::weighted(0.9, value))).unzip();
    let fields: Vec<usize> = (0..names.len()).collect();
    (base, values, subsequence(fields, 0..=2)).prop_map(move |((caller, mut valid), values, chosen)| {
        let object = valid.as_object_mut().expect("an input object");
        for index in chosen {
            match &values[index] {
                Some(value) => object.insert(names[index].to_owned(), value.clone()),
                None => object.remove(names[index]),
            };
        }
        Case { caller, variables: input(valid) }
    })
}

/// `valid` with each of `fields` in turn set to a NUL character, to a string
/// longer than any column takes, and to a number.
fn poisoned(caller: Option<&'static str>, valid: &Value, fields: &[(&str, BoxedStrategy<Value>)]) -> Vec<Case> {
    let mut cases = Vec::new();
    for (field, _) in fields {
        for value in [json!("\0"), json!("长".repeat(20_000)), json!(-1)] {
            let mut poisoned = valid.clone();
            poisoned[*field] = value;
            cases.push(Case { caller, variables: input(poisoned) });
        }
    }
    cases
}

fn unit_ids(app: &TestApp) -> Vec<String> {
    app.home.units.iter().chain(&app.other.units).map(|unit| id_of("unit", unit.id)).collect()
}

const CATEGORIES: &[&str] = &["PLUMBING", "ELECTRICAL", "DOORS_WINDOWS", "APPLIANCES", "PUBLIC_FACILITIES", "OTHER"];
const CHANNELS: &[&str] = &["APP", "PHONE", "FRONT_DESK", "PATROL"];
const PRIORITIES: &[&str] = &["NORMAL", "URGENT"];
const PARCEL_KINDS: &[&str] = &["PARCEL", "REGISTERED_MAIL", "LETTER", "PACKAGE"];
const RELATIONS: &[&str] = &["OWNER", "TENANT", "FAMILY"];

#[test]
fn fuzzed_repair_submissions_are_answered_cleanly() {
    let fuzz = Fuzz::start(&["owner", "front_desk", "technician"]);
    let app = fuzz.app();
    let first_building = id_of("bld", app.home.buildings[0].id);
    let bases = vec![
        (
            Some("owner"),
            json!({ "unitId": unit_of(app, "1-101"), "category": "PLUMBING", "description": "厨房水管漏水" }),
        ),
        (
            Some("front_desk"),
            json!({
                "unitId": unit_of(app, "1-102"),
                "residentId": id_of("usr", app.home.account("tenant").user_id),
                "channel": "PHONE",
                "category": "ELECTRICAL",
                "description": "客厅跳闸",
            }),
        ),
        (
            Some("technician"),
            json!({ "buildingId": first_building, "channel": "PATROL", "category": "PUBLIC_FACILITIES", "description": "楼道灯不亮" }),
        ),
    ];
    let buildings = app.home.buildings.iter().chain(&app.other.buildings).map(|b| id_of("bld", b.id)).collect();
    let people = app.home.accounts.iter().chain(&app.other.accounts).map(|a| id_of("usr", a.user_id)).collect();
    let hostile = vec![
        ("unitId", id("unit", unit_ids(app))),
        ("buildingId", id("bld", buildings)),
        ("residentId", id("usr", people)),
        ("channel", enumerated(CHANNELS)),
        ("category", enumerated(CATEGORIES)),
        ("priority", enumerated(PRIORITIES)),
        ("description", text().prop_map(Value::from).boxed()),
        ("preferredVisitAt", datetime()),
        ("contactPhone", mobile().prop_map(Value::from).boxed()),
        ("clientMutationId", idempotency_key().prop_map(Value::from).boxed()),
    ];
    let examples = bases.iter().flat_map(|(caller, valid)| poisoned(*caller, valid, &hostile)).collect();
    fuzz.run(SUBMIT, &[Table::RepairOrder, Table::Event], examples, tampered(select(bases), hostile));
}

#[test]
fn fuzzed_parcel_registrations_are_answered_cleanly() {
    let fuzz = Fuzz::start(&["front_desk"]);
    let app = fuzz.app();
    let valid = json!({
        "kind": "PARCEL",
        "carrier": "顺丰",
        "trackingNumber": "SF-EXAMPLE",
        "itemCount": 1,
        "recipientName": "李娜",
        "unitId": unit_of(app, "1-102"),
        "location": "A-3",
    });
    let template = valid.clone();
    let base = "SF[0-9]{10}".prop_map(move |tracking| {
        let mut parcel = template.clone();
        parcel["trackingNumber"] = json!(tracking);
        (Some("front_desk"), parcel)
    });
    let hostile = vec![
        ("kind", enumerated(PARCEL_KINDS)),
        ("carrier", text().prop_map(Value::from).boxed()),
        ("trackingNumber", text().prop_map(Value::from).boxed()),
        ("itemCount", int()),
        ("recipientName", text().prop_map(Value::from).boxed()),
        ("unitId", id("unit", unit_ids(app))),
        ("location", text().prop_map(Value::from).boxed()),
        ("clientMutationId", idempotency_key().prop_map(Value::from).boxed()),
    ];
    let examples = poisoned(Some("front_desk"), &valid, &hostile);
    fuzz.run(REGISTER, &[Table::Parcel, Table::Event], examples, tampered(base, hostile));
}

#[test]
fn fuzzed_pickups_are_answered_cleanly() {
    let fuzz = Fuzz::start(&["front_desk"]);
    let waiting = fuzz.block_on(async {
        let app = fuzz.app();
        let desk = &fuzz.tokens["front_desk"];
        let mut waiting = Vec::new();
        let residents = [("1-101", "owner", "王建国"), ("1-102", "tenant", "李娜"), ("2-202", "owner2", "张伟")];
        for (n, (number, resident, name)) in residents.iter().cycle().take(12).enumerate() {
            let parcel = registered_parcel(app, desk, Some(&unit_of(app, number)), &format!("SF-PICK-{n}")).await;
            let read = payload(app, &app.token(resident).await, PARCEL_QUERY, json!({ "id": parcel })).await;
            let code = read["pickupCode"].as_str().expect("pickup code").to_owned();
            waiting.push((parcel, code, *name));
        }
        waiting
    });
    let parcels = waiting.iter().map(|(parcel, ..)| parcel.clone()).collect();
    let codes: Vec<String> = waiting.iter().map(|(_, code, _)| code.clone()).collect();
    let bases = waiting
        .into_iter()
        .map(|(parcel, code, name)| {
            (Some("front_desk"), json!({ "parcelId": parcel, "pickupCode": code, "collectorName": name }))
        })
        .collect::<Vec<_>>();
    let code = prop_oneof![2 => select(codes), 1 => "[0-9]{6}", 2 => text()];
    let name = prop_oneof![select(vec!["王建国", "王小明", "李娜", "张伟"]).prop_map(str::to_owned), text()];
    let hostile = vec![
        ("parcelId", id("pcl", parcels)),
        ("pickupCode", code.prop_map(Value::from).boxed()),
        ("collectorName", name.prop_map(Value::from).boxed()),
    ];
    let examples = poisoned(bases[0].0, &bases[0].1, &hostile);
    fuzz.run(PICK_UP, &[Table::Parcel, Table::Event], examples, tampered(select(bases), hostile));
}

#[test]
fn fuzzed_move_ins_are_answered_cleanly() {
    let fuzz = Fuzz::start(&["front_desk"]);
    let app = fuzz.app();
    let valid =
        json!({ "unitId": unit_of(app, "1-201"), "phone": "13712345678", "name": "新住户", "relation": "TENANT" });
    let template = valid.clone();
    let base = "13[0-9]{9}".prop_map(move |phone| {
        let mut move_in = template.clone();
        move_in["phone"] = json!(phone);
        (Some("front_desk"), move_in)
    });
    let hostile = vec![
        ("unitId", id("unit", unit_ids(app))),
        ("phone", mobile().prop_map(Value::from).boxed()),
        ("name", text().prop_map(Value::from).boxed()),
        ("relation", enumerated(RELATIONS)),
        ("movedInOn", date()),
        ("initialPassword", prop_oneof!["[a-zA-Z0-9]{8,20}", text()].prop_map(Value::from).boxed()),
    ];
    let mut examples = poisoned(Some("front_desk"), &valid, &hostile);
    for ancient in ["-4714-01-01", "-262143-01-01"] {
        let mut move_in = valid.clone();
        move_in["movedInOn"] = json!(ancient);
        examples.push(Case { caller: Some("front_desk"), variables: input(move_in) });
    }
    fuzz.run(MOVE_IN, &[Table::Membership, Table::User], examples, tampered(base, hostile));
}

const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { accessToken viewer { id } } }";

#[test]
fn fuzzed_logins_are_answered_cleanly() {
    let fuzz = Fuzz::start(&[]);
    let app = fuzz.app();
    let phones: Vec<String> = app.home.accounts.iter().chain(&app.other.accounts).map(|a| a.phone.clone()).collect();
    let valid = json!({ "phone": app.home.account("owner").phone, "password": DEMO_PASSWORD });
    let base = select(phones.clone()).prop_map(|phone| (None, json!({ "phone": phone, "password": DEMO_PASSWORD })));
    let hostile = vec![
        ("phone", prop_oneof![select(phones), mobile()].prop_map(Value::from).boxed()),
        ("password", text().prop_map(Value::from).boxed()),
    ];
    let examples = poisoned(None, &valid, &hostile);
    fuzz.run(LOGIN, &[Table::RefreshToken, Table::User], examples, tampered(base, hostile));
}
