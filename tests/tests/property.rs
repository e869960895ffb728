//! Property records over GraphQL, and who may read and change them: buildings,
//! units, the resident directory, phone masking, move-in/move-out, emergency
//! contacts, butler assignments, employee accounts and the staff list.
//!
//! Every failure is checked by `extensions.code` (and `extensions.field`), never
//! by its English message.

use std::collections::BTreeSet;

use api::demo::{DEMO_PASSWORD, SeededCommunity};
use serde_json::{Value, json};
use tests::{TestApp, error_code, error_field, id_of, number_of, spawn_app};

// ---------------------------------------------------------------------------
// Queries and mutations
// ---------------------------------------------------------------------------

const LOGIN: &str = "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken viewer { id name role position } } }";

const ME: &str = "{ me { id name phone role position community { name } units { id relation unit { id number } } buildings { id name } } }";

const BUILDINGS: &str = "query($first: Int!, $after: String) { buildings(first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id name community { name } } } } }";

const BUILDING: &str = "query($id: ID!) { building(id: $id) { id name community { name } } }";

const BUILDING_UNITS: &str =
    "query($id: ID!) { building(id: $id) { id units(first: 100) { totalCount edges { node { id number } } } } }";

const UNIT: &str = "query($id: ID!) { unit(id: $id) { id number building { id name } } }";

const UNITS: &str = "query($buildingId: ID, $first: Int!, $after: String) { units(buildingId: $buildingId, first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id number } } } }";

const UNIT_RESIDENTS: &str = "query($id: ID!) { unit(id: $id) { id number residents { id relation movedOutOn resident { id name phone units { unit { number } } } } } }";

const UNIT_CONTACTS: &str = "query($id: ID!) { unit(id: $id) { id emergencyContacts { name phone relation } } }";

const RESIDENTS: &str = "query($filter: ResidentFilter, $first: Int!, $after: String) { residents(filter: $filter, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id name phone role units { unit { number } } } } } }";

const STAFF_MEMBERS: &str =
    "query($first: Int!) { staffMembers(first: $first) { totalCount edges { node { id name phone role position } } } }";

const CREATE_BUILDING: &str =
    "mutation($name: String!) { createBuilding(input: {name: $name}) { building { id name community { name } } } }";

const CREATE_UNIT: &str = "mutation($buildingId: ID!, $number: String!, $floor: Int) { createUnit(input: {buildingId: $buildingId, number: $number, floor: $floor}) { unit { id number floor building { id } } } }";

const MOVE_IN: &str = "mutation($input: MoveInInput!) { moveIn(input: $input) { membership { id relation movedInOn movedOutOn unit { id number } resident { id name phone role } } } }";

const MOVE_OUT: &str = "mutation($id: ID!, $on: NaiveDate) { moveOut(input: {membershipId: $id, movedOutOn: $on}) { membership { id movedInOn movedOutOn unit { number } resident { name } } } }";

const SET_CONTACTS: &str = "mutation($unitId: ID!, $contacts: [EmergencyContactInput!]!) { setEmergencyContacts(input: {unitId: $unitId, contacts: $contacts}) { unit { id emergencyContacts { name phone relation } } } }";

const SET_CONTACTS_AT: &str = "mutation($unitId: ID!, $contacts: [EmergencyContactInput!]!, $version: Int) { setEmergencyContacts(input: {unitId: $unitId, contacts: $contacts, expectedVersion: $version}) { unit { emergencyContactsVersion emergencyContacts { name } } } }";

const UNIT_CONTACTS_VERSION: &str =
    "query($id: ID!) { unit(id: $id) { emergencyContactsVersion emergencyContacts { name } } }";

const ASSIGN_BUTLER: &str = "mutation($butlerId: ID!, $buildingId: ID!) { assignButler(input: {butlerId: $butlerId, buildingId: $buildingId}) { butler { id name } building { id name } } }";

const UNASSIGN_BUTLER: &str = "mutation($butlerId: ID!, $buildingId: ID!) { unassignButler(input: {butlerId: $butlerId, buildingId: $buildingId}) { butler { id name } building { id name } } }";

const CREATE_BUTLER: &str = "mutation($phone: String!, $name: String!, $password: String!) { createButlerAccount(input: {phone: $phone, name: $name, password: $password}) { user { id name phone role position } } }";

const CREATE_STAFF: &str = "mutation($phone: String!, $name: String!, $position: StaffPosition!, $password: String!) { createStaffAccount(input: {phone: $phone, name: $name, position: $position, password: $password}) { user { id name phone role position } } }";

const ALL_UNITS: [&str; 12] =
    ["1-101", "1-102", "1-201", "1-202", "1-301", "1-302", "2-101", "2-102", "2-201", "2-202", "2-301", "2-302"];

const STAFF_KEYS: [&str; 4] = ["technician", "front_desk", "supervisor", "manager"];

const RESIDENT_KEYS: [&str; 4] = ["owner", "family", "tenant", "owner2"];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn unit_id(community: &SeededCommunity, number: &str) -> String {
    id_of("unit", community.unit(number).id)
}

fn building_id(community: &SeededCommunity, index: usize) -> String {
    id_of("bld", community.buildings[index].id)
}

fn user_id(community: &SeededCommunity, key: &str) -> String {
    id_of("usr", community.account(key).user_id)
}

/// `edges[].node.<field>` of a connection, as strings.
fn node_strings(connection: &Value, field: &str) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("not a connection: {connection}"))
        .iter()
        .map(|edge| edge["node"][field].as_str().unwrap_or_else(|| panic!("no {field} in {edge}")).to_owned())
        .collect()
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

/// Asserts `body` failed with `code` (and nothing in `data` for the root field).
#[track_caller]
fn assert_error(body: &Value, code: &str, what: &str) {
    assert_eq!(error_code(body), Some(code), "{what}: expected {code}, got {body}");
}

/// Asserts `body` failed with BAD_USER_INPUT naming `field`.
#[track_caller]
fn assert_bad_input(body: &Value, field: &str, what: &str) {
    assert_eq!(error_code(body), Some("BAD_USER_INPUT"), "{what}: expected BAD_USER_INPUT, got {body}");
    assert_eq!(error_field(body), Some(field), "{what}: expected field {field}, got {body}");
}

/// Panics listing every failed case, so one run shows the whole matrix.
#[track_caller]
fn assert_no_failures(failures: &[String]) {
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

async fn login(app: &TestApp, phone: &str, password: &str) -> Value {
    app.graphql(None, LOGIN, json!({ "phone": phone, "password": password })).await
}

async fn unit_outcome(app: &TestApp, token: &str, id: &str) -> Result<Value, String> {
    let body = app.graphql(Some(token), UNIT, json!({ "id": id })).await;
    match error_code(&body) {
        None => Ok(body["data"]["unit"].clone()),
        Some(code) => Err(code.to_owned()),
    }
}

async fn building_outcome(app: &TestApp, token: &str, id: &str) -> Result<Value, String> {
    let body = app.graphql(Some(token), BUILDING, json!({ "id": id })).await;
    match error_code(&body) {
        None => Ok(body["data"]["building"].clone()),
        Some(code) => Err(code.to_owned()),
    }
}

/// Checks `unit(id)` for each door number: readable when `visible`, NOT_FOUND otherwise.
async fn check_units(
    app: &TestApp,
    who: &str,
    token: &str,
    community: &SeededCommunity,
    numbers: &[&str],
    visible: bool,
    failures: &mut Vec<String>,
) {
    for number in numbers {
        let id = unit_id(community, number);
        let outcome = unit_outcome(app, token, &id).await;
        let place = format!("{} {number}", community.community.name);
        match (visible, outcome) {
            (true, Ok(unit)) if unit["id"] == id.as_str() && unit["number"] == *number => {}
            (true, other) => failures.push(format!("{who}: unit({place}) should be readable, got {other:?}")),
            (false, Err(code)) if code == "NOT_FOUND" => {}
            (false, other) => failures.push(format!("{who}: unit({place}) should be NOT_FOUND, got {other:?}")),
        }
    }
}

async fn buildings_of(app: &TestApp, token: &str) -> Value {
    app.data(Some(token), BUILDINGS, json!({ "first": 50 })).await["buildings"].clone()
}

async fn units_of(app: &TestApp, token: &str, building: Option<&str>) -> Value {
    app.data(Some(token), UNITS, json!({ "buildingId": building, "first": 50 })).await["units"].clone()
}

async fn residents_of(app: &TestApp, token: &str, filter: Value) -> Value {
    app.data(Some(token), RESIDENTS, json!({ "filter": filter, "first": 50 })).await["residents"].clone()
}

async fn my_unit_numbers(app: &TestApp, token: &str) -> BTreeSet<String> {
    let me = app.data(Some(token), ME, json!({})).await;
    me["me"]["units"]
        .as_array()
        .expect("me.units")
        .iter()
        .map(|m| m["unit"]["number"].as_str().expect("unit number").to_owned())
        .collect()
}

/// The current membership id of `key` in unit `number`, as staff see it.
async fn membership_id(app: &TestApp, community: &SeededCommunity, number: &str, key: &str) -> String {
    let staff = app.token_in(community, "front_desk").await;
    let unit = app.data(Some(&staff), UNIT_RESIDENTS, json!({ "id": unit_id(community, number) })).await;
    let wanted = user_id(community, key);
    unit["unit"]["residents"]
        .as_array()
        .expect("residents")
        .iter()
        .find(|m| m["resident"]["id"] == wanted.as_str())
        .unwrap_or_else(|| panic!("{key} does not live in {number}: {unit}"))["id"]
        .as_str()
        .expect("membership id")
        .to_owned()
}

fn contact(name: &str, phone: &str, relation: &str) -> Value {
    json!({ "name": name, "phone": phone, "relation": relation })
}

fn move_in_input(unit: &str, phone: &str, name: &str, relation: &str) -> Value {
    json!({ "unitId": unit, "phone": phone, "name": name, "relation": relation })
}

// ---------------------------------------------------------------------------
// Reads: buildings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn buildings_list_is_scoped_to_each_viewer() {
    let app = spawn_app().await;
    let (b1, b2) = (building_id(&app.home, 0), building_id(&app.home, 1));
    let cases: Vec<(&str, Vec<&String>)> = vec![
        ("owner", vec![&b1, &b2]),
        ("family", vec![&b1]),
        ("tenant", vec![&b1]),
        ("owner2", vec![&b2]),
        ("butler", vec![&b1]),
        ("technician", vec![&b1, &b2]),
        ("front_desk", vec![&b1, &b2]),
        ("supervisor", vec![&b1, &b2]),
        ("manager", vec![&b1, &b2]),
    ];
    let mut failures = Vec::new();
    for (key, expected) in cases {
        let token = app.token(key).await;
        let buildings = buildings_of(&app, &token).await;
        let ids = node_strings(&buildings, "id");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        if ids != expected {
            failures.push(format!("{key}: buildings {ids:?}, expected {expected:?}"));
        }
        if buildings["totalCount"] != json!(expected.len()) {
            failures.push(format!("{key}: totalCount {}, expected {}", buildings["totalCount"], expected.len()));
        }
        for edge in buildings["edges"].as_array().unwrap() {
            if edge["node"]["community"]["name"] != app.home.community.name.as_str() {
                failures.push(format!("{key}: sees a building of another community: {edge}"));
            }
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test]
async fn other_community_accounts_see_only_their_own_buildings() {
    let app = spawn_app().await;
    let expected = vec![building_id(&app.other, 0), building_id(&app.other, 1)];
    for key in ["supervisor", "technician"] {
        let token = app.token_in(&app.other, key).await;
        let buildings = buildings_of(&app, &token).await;
        assert_eq!(node_strings(&buildings, "id"), expected, "other community {key}");
        assert_eq!(buildings["totalCount"], 2, "other community {key}");
    }
    let owner = app.token_in(&app.other, "owner").await;
    assert_eq!(node_strings(&buildings_of(&app, &owner).await, "id"), expected, "other community owner");
}

#[tokio::test]
async fn building_by_id_is_scoped_to_each_viewer() {
    let app = spawn_app().await;
    let (b1, b2) = (building_id(&app.home, 0), building_id(&app.home, 1));
    let (o1, o2) = (building_id(&app.other, 0), building_id(&app.other, 1));
    let cases: Vec<(&str, Vec<&String>, Vec<&String>)> = vec![
        ("owner", vec![&b1, &b2], vec![&o1, &o2]),
        ("family", vec![&b1], vec![&b2, &o1]),
        ("tenant", vec![&b1], vec![&b2, &o1, &o2]),
        ("owner2", vec![&b2], vec![&b1, &o2]),
        ("butler", vec![&b1], vec![&b2, &o1, &o2]),
        ("technician", vec![&b1, &b2], vec![&o1, &o2]),
        ("front_desk", vec![&b1, &b2], vec![&o1, &o2]),
        ("supervisor", vec![&b1, &b2], vec![&o1, &o2]),
        ("manager", vec![&b1, &b2], vec![&o1, &o2]),
    ];
    let mut failures = Vec::new();
    for (key, visible, hidden) in cases {
        let token = app.token(key).await;
        for id in visible {
            match building_outcome(&app, &token, id).await {
                Ok(building) if building["id"] == id.as_str() => {}
                other => failures.push(format!("{key}: building({id}) should be readable, got {other:?}")),
            }
        }
        for id in hidden {
            match building_outcome(&app, &token, id).await {
                Err(code) if code == "NOT_FOUND" => {}
                other => failures.push(format!("{key}: building({id}) should be NOT_FOUND, got {other:?}")),
            }
        }
    }
    assert_no_failures(&failures);
}

// ---------------------------------------------------------------------------
// Reads: units
// ---------------------------------------------------------------------------

#[tokio::test]
async fn residents_read_their_own_units_only() {
    let app = spawn_app().await;
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("owner", &["1-101", "2-201"], &["1-102", "1-201", "2-202", "2-101"]),
        ("family", &["1-101"], &["2-201", "1-102", "2-202"]),
        ("tenant", &["1-102"], &["1-101", "2-201", "2-202", "1-302"]),
        ("owner2", &["2-202"], &["2-201", "1-101", "1-102"]),
    ];
    let mut failures = Vec::new();
    for (key, own, neighbours) in cases {
        let token = app.token(key).await;
        check_units(&app, key, &token, &app.home, own, true, &mut failures).await;
        check_units(&app, key, &token, &app.home, neighbours, false, &mut failures).await;
        // The same door numbers in the other community are someone else's home.
        check_units(&app, key, &token, &app.other, own, false, &mut failures).await;
    }
    assert_no_failures(&failures);
}

#[tokio::test]
async fn butler_reads_units_of_assigned_buildings_only() {
    let app = spawn_app().await;
    let token = app.token("butler").await;
    let (first, second): (Vec<&str>, Vec<&str>) = ALL_UNITS.iter().partition(|n| n.starts_with("1-"));
    let mut failures = Vec::new();
    check_units(&app, "butler", &token, &app.home, &first, true, &mut failures).await;
    check_units(&app, "butler", &token, &app.home, &second, false, &mut failures).await;
    check_units(&app, "butler", &token, &app.other, &first, false, &mut failures).await;
    assert_no_failures(&failures);
}

#[tokio::test]
async fn staff_read_every_home_unit_and_none_of_the_other_community() {
    let app = spawn_app().await;
    let mut failures = Vec::new();
    for key in STAFF_KEYS {
        let token = app.token(key).await;
        check_units(&app, key, &token, &app.home, &ALL_UNITS, true, &mut failures).await;
        check_units(&app, key, &token, &app.other, &["1-101", "2-302"], false, &mut failures).await;
    }
    assert_no_failures(&failures);
}

#[tokio::test]
async fn units_list_is_scoped_to_each_viewer() {
    let app = spawn_app().await;
    let b1 = building_id(&app.home, 0);
    let b2 = building_id(&app.home, 1);
    let home_ids = |numbers: &[&str]| numbers.iter().map(|n| unit_id(&app.home, n)).collect::<Vec<_>>();
    let first_building: Vec<&str> = ALL_UNITS.iter().copied().filter(|n| n.starts_with("1-")).collect();
    let second_building: Vec<&str> = ALL_UNITS.iter().copied().filter(|n| n.starts_with("2-")).collect();

    let cases: Vec<(&str, Option<&String>, Vec<String>)> = vec![
        ("owner", None, home_ids(&["1-101", "2-201"])),
        ("owner", Some(&b1), home_ids(&["1-101"])),
        ("owner", Some(&b2), home_ids(&["2-201"])),
        ("family", None, home_ids(&["1-101"])),
        ("family", Some(&b2), vec![]),
        ("tenant", None, home_ids(&["1-102"])),
        ("owner2", None, home_ids(&["2-202"])),
        ("butler", None, home_ids(&first_building)),
        ("butler", Some(&b1), home_ids(&first_building)),
        ("butler", Some(&b2), vec![]),
        ("technician", None, home_ids(&ALL_UNITS)),
        ("front_desk", Some(&b2), home_ids(&second_building)),
        ("supervisor", None, home_ids(&ALL_UNITS)),
        ("manager", Some(&b1), home_ids(&first_building)),
    ];
    let mut failures = Vec::new();
    for (key, building, expected) in cases {
        let token = app.token(key).await;
        let units = units_of(&app, &token, building.map(String::as_str)).await;
        let ids = node_strings(&units, "id");
        if ids != expected {
            failures.push(format!("{key} units(buildingId: {building:?}): {ids:?}, expected {expected:?}"));
        }
        if units["totalCount"] != json!(expected.len()) {
            failures.push(format!("{key} units(buildingId: {building:?}): totalCount {}", units["totalCount"]));
        }
    }
    let manager = app.token("manager").await;
    let other_building = building_id(&app.other, 0);
    let units = units_of(&app, &manager, Some(&other_building)).await;
    if units["totalCount"] != 0 || !node_strings(&units, "id").is_empty() {
        failures.push(format!("manager units(buildingId: other community's): {units}"));
    }
    assert_no_failures(&failures);
}

#[tokio::test]
async fn nested_building_units_are_scoped_too() {
    let app = spawn_app().await;
    let b1 = building_id(&app.home, 0);
    let cases = [
        ("owner", vec!["1-101"]),
        ("tenant", vec!["1-102"]),
        ("butler", vec!["1-101", "1-102", "1-201", "1-202", "1-301", "1-302"]),
        ("technician", vec!["1-101", "1-102", "1-201", "1-202", "1-301", "1-302"]),
    ];
    for (key, expected) in cases {
        let token = app.token(key).await;
        let data = app.data(Some(&token), BUILDING_UNITS, json!({ "id": b1 })).await;
        let units = &data["building"]["units"];
        assert_eq!(node_strings(units, "number"), expected, "{key}: 1号楼 units");
        assert_eq!(units["totalCount"], json!(expected.len()), "{key}: 1号楼 totalCount");
    }
}

async fn units_page(app: &TestApp, token: &str, after: Option<String>) -> Value {
    app.data(Some(token), UNITS, json!({ "first": 5, "after": after })).await["units"].clone()
}

#[tokio::test]
async fn staff_page_through_all_units() {
    let app = spawn_app().await;
    let token = app.token("front_desk").await;
    let page = |after: Option<String>| units_page(&app, &token, after);

    let first = page(None).await;
    assert_eq!(first["totalCount"], 12, "first page: {first}");
    assert_eq!(first["edges"].as_array().unwrap().len(), 5, "first page: {first}");
    assert_eq!(first["pageInfo"]["hasNextPage"], true, "first page: {first}");
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false, "first page: {first}");
    let last_cursor = first["edges"][4]["cursor"].clone();
    assert_eq!(first["pageInfo"]["endCursor"], last_cursor, "endCursor is the last edge's cursor");

    let second = page(first["pageInfo"]["endCursor"].as_str().map(str::to_owned)).await;
    assert_eq!(second["totalCount"], 12, "second page: {second}");
    assert_eq!(second["edges"].as_array().unwrap().len(), 5, "second page: {second}");
    assert_eq!(second["pageInfo"]["hasNextPage"], true, "second page: {second}");

    let third = page(second["pageInfo"]["endCursor"].as_str().map(str::to_owned)).await;
    assert_eq!(third["totalCount"], 12, "third page: {third}");
    assert_eq!(third["edges"].as_array().unwrap().len(), 2, "third page: {third}");
    assert_eq!(third["pageInfo"]["hasNextPage"], false, "third page: {third}");

    let mut seen = node_strings(&first, "id");
    seen.extend(node_strings(&second, "id"));
    seen.extend(node_strings(&third, "id"));
    let expected: Vec<String> = ALL_UNITS.iter().map(|n| unit_id(&app.home, n)).collect();
    assert_eq!(seen, expected, "the three pages hold every home unit once, in order");

    // Buildings page the same way.
    let buildings = app.data(Some(&token), BUILDINGS, json!({ "first": 1 })).await["buildings"].clone();
    assert_eq!(buildings["totalCount"], 2);
    assert_eq!(buildings["pageInfo"]["hasNextPage"], true);
    let rest = app
        .data(Some(&token), BUILDINGS, json!({ "first": 1, "after": buildings["pageInfo"]["endCursor"] }))
        .await["buildings"]
        .clone();
    assert_eq!(node_strings(&rest, "id"), vec![building_id(&app.home, 1)]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn page_size_and_cursor_are_validated() {
    let app = spawn_app().await;
    let token = app.token("supervisor").await;
    for first in [0, 101, -1] {
        let body = app.graphql(Some(&token), UNITS, json!({ "first": first })).await;
        assert_bad_input(&body, "first", &format!("units(first: {first})"));
        let body = app.graphql(Some(&token), BUILDINGS, json!({ "first": first })).await;
        assert_bad_input(&body, "first", &format!("buildings(first: {first})"));
        let body = app.graphql(Some(&token), RESIDENTS, json!({ "first": first })).await;
        assert_bad_input(&body, "first", &format!("residents(first: {first})"));
    }
    let body = app.graphql(Some(&token), UNITS, json!({ "first": 100 })).await;
    assert!(body.get("errors").is_none(), "first: 100 is allowed: {body}");

    for after in ["garbage!!", "not a cursor", "", "a19", "eDE"] {
        let body = app.graphql(Some(&token), UNITS, json!({ "first": 5, "after": after })).await;
        assert_bad_input(&body, "after", &format!("units(after: {after:?})"));
        let body = app.graphql(Some(&token), BUILDINGS, json!({ "first": 5, "after": after })).await;
        assert_bad_input(&body, "after", &format!("buildings(after: {after:?})"));
    }
}

#[tokio::test]
async fn malformed_ids_are_bad_user_input() {
    let app = spawn_app().await;
    let token = app.token("manager").await;
    let unit_as_building = unit_id(&app.home, "1-101");
    let building_as_unit = building_id(&app.home, 0);
    for id in ["bld_x", "bld_", "bld_-1", "bld_0", "12", "", unit_as_building.as_str()] {
        let body = app.graphql(Some(&token), BUILDING, json!({ "id": id })).await;
        assert_bad_input(&body, "id", &format!("building(id: {id:?})"));
    }
    for id in ["unit_x", "unit", building_as_unit.as_str()] {
        let body = app.graphql(Some(&token), UNIT, json!({ "id": id })).await;
        assert_bad_input(&body, "id", &format!("unit(id: {id:?})"));
    }
    let body = app.graphql(Some(&token), UNITS, json!({ "buildingId": "bld_x", "first": 5 })).await;
    assert_bad_input(&body, "buildingId", "units(buildingId: bld_x)");
    let body = app.graphql(Some(&token), RESIDENTS, json!({ "filter": { "unitId": "bld_1" }, "first": 5 })).await;
    assert_bad_input(&body, "filter.unitId", "residents(filter: {unitId: bld_1})");
    let body = app.graphql(Some(&token), RESIDENTS, json!({ "filter": { "buildingId": "x" }, "first": 5 })).await;
    assert_bad_input(&body, "filter.buildingId", "residents(filter: {buildingId: x})");
    // A well-formed id of nothing at all reads like one out of scope.
    let body = app.graphql(Some(&token), UNIT, json!({ "id": "unit_999999" })).await;
    assert_error(&body, "NOT_FOUND", "unit(unit_999999)");
}

#[tokio::test]
async fn property_reads_need_a_signed_in_viewer() {
    let app = spawn_app().await;
    let cases = [
        (BUILDINGS, json!({ "first": 5 })),
        (BUILDING, json!({ "id": building_id(&app.home, 0) })),
        (UNITS, json!({ "first": 5 })),
        (UNIT, json!({ "id": unit_id(&app.home, "1-101") })),
        (RESIDENTS, json!({ "first": 5 })),
        (STAFF_MEMBERS, json!({ "first": 5 })),
    ];
    for (query, variables) in cases {
        let body = app.graphql(None, query, variables).await;
        assert_error(&body, "UNAUTHENTICATED", query);
    }
}

// ---------------------------------------------------------------------------
// The resident directory
// ---------------------------------------------------------------------------

#[tokio::test]
async fn resident_directory_is_forbidden_to_residents_and_technicians() {
    let app = spawn_app().await;
    let mut failures = Vec::new();
    for key in RESIDENT_KEYS.into_iter().chain(["technician"]) {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), RESIDENTS, json!({ "first": 10 })).await;
        if error_code(&body) != Some("FORBIDDEN") || !body["data"].is_null() {
            failures.push(format!("{key}: residents should be FORBIDDEN, got {body}"));
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test]
async fn butler_directory_lists_only_people_of_assigned_buildings() {
    let app = spawn_app().await;
    let token = app.token("butler").await;
    let residents = residents_of(&app, &token, json!(null)).await;
    let people: BTreeSet<(String, String)> = residents["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["node"]["name"].as_str().unwrap().to_owned(), e["node"]["phone"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = ["owner", "family", "tenant"]
        .iter()
        .map(|key| {
            let account = app.home.account(key);
            let name = match *key {
                "owner" => "王建国",
                "family" => "王小明",
                _ => "李娜",
            };
            (name.to_owned(), account.phone.clone())
        })
        .collect();
    assert_eq!(people, expected, "butler sees 1号楼 residents with full phones: {residents}");
    assert_eq!(residents["totalCount"], 3, "{residents}");

    // Each resident's units, as the butler sees them, are only those of 1号楼.
    let owner =
        residents["edges"].as_array().unwrap().iter().find(|e| e["node"]["name"] == "王建国").expect("owner listed");
    assert_eq!(owner["node"]["units"], json!([{ "unit": { "number": "1-101" } }]), "owner's units for the butler");
}

#[tokio::test]
async fn staff_directory_lists_every_home_resident_and_nobody_else() {
    let app = spawn_app().await;
    let expected: BTreeSet<String> = RESIDENT_KEYS.iter().map(|k| app.home.account(k).phone.clone()).collect();
    for key in ["front_desk", "supervisor", "manager"] {
        let token = app.token(key).await;
        let residents = residents_of(&app, &token, json!(null)).await;
        let phones: BTreeSet<String> = node_strings(&residents, "phone").into_iter().collect();
        assert_eq!(phones, expected, "{key}: the four home residents, phones in full: {residents}");
        assert_eq!(residents["totalCount"], 4, "{key}: {residents}");
        assert_eq!(set(node_strings(&residents, "name")), set(["王建国", "王小明", "李娜", "张伟"]), "{key}: names");
        for role in node_strings(&residents, "role") {
            assert_eq!(role, "RESIDENT", "{key}: only residents in the directory");
        }
    }
}

#[tokio::test]
async fn directory_search_by_name_phone_and_unit_number() {
    let app = spawn_app().await;
    let token = app.token("front_desk").await;
    let cases: [(&str, &[&str]); 10] = [
        ("建国", &["王建国"]),
        ("王", &["王建国", "王小明"]),
        ("李", &["李娜"]),
        ("0001004", &["张伟"]),
        ("1380000100", &["王建国", "王小明", "李娜", "张伟"]),
        ("2-202", &["张伟"]),
        ("1-101", &["王建国", "王小明"]),
        // The other community's people never match, whatever the search.
        ("139", &[]),
        // LIKE wildcards are taken literally.
        ("%", &[]),
        ("_", &[]),
    ];
    let mut failures = Vec::new();
    for (search, expected) in cases {
        let residents = residents_of(&app, &token, json!({ "search": search })).await;
        let names = set(node_strings(&residents, "name"));
        if names != set(expected.iter().copied()) || residents["totalCount"] != json!(expected.len()) {
            failures.push(format!(
                "search {search:?}: got {names:?} (totalCount {}), expected {expected:?}",
                residents["totalCount"]
            ));
        }
    }
    let by_unit = residents_of(&app, &token, json!({ "unitId": unit_id(&app.home, "1-102") })).await;
    if set(node_strings(&by_unit, "name")) != set(["李娜"]) {
        failures.push(format!("filter unitId 1-102: {by_unit}"));
    }
    let by_building = residents_of(&app, &token, json!({ "buildingId": building_id(&app.home, 1) })).await;
    if set(node_strings(&by_building, "name")) != set(["王建国", "张伟"]) {
        failures.push(format!("filter buildingId 2号楼: {by_building}"));
    }
    let too_long =
        app.graphql(Some(&token), RESIDENTS, json!({ "filter": { "search": "x".repeat(51) }, "first": 5 })).await;
    if error_code(&too_long) != Some("BAD_USER_INPUT") || error_field(&too_long) != Some("filter.search") {
        failures.push(format!("a 51-character search should be BAD_USER_INPUT filter.search: {too_long}"));
    }
    assert_no_failures(&failures);
}

/// The butler's directory covers the people of 1号楼. Searching or filtering
/// by a unit or building outside it must not tell them who lives there.
#[tokio::test]
async fn butler_directory_search_stays_within_assigned_buildings() {
    let app = spawn_app().await;
    let token = app.token("butler").await;
    let cases = [
        ("search 张伟", json!({ "search": "张伟" })),
        ("search 2-202", json!({ "search": "2-202" })),
        ("search 2-201", json!({ "search": "2-201" })),
        ("filter buildingId 2号楼", json!({ "buildingId": building_id(&app.home, 1) })),
        ("filter unitId 2-201", json!({ "unitId": unit_id(&app.home, "2-201") })),
    ];
    let mut failures = Vec::new();
    for (what, filter) in cases {
        let residents = residents_of(&app, &token, filter).await;
        if residents["totalCount"] != 0 || !node_strings(&residents, "name").is_empty() {
            failures.push(format!("butler, {what}: expected nobody, got {residents}"));
        }
    }
    let own = residents_of(&app, &token, json!({ "search": "1-102" })).await;
    if set(node_strings(&own, "name")) != set(["李娜"]) {
        failures.push(format!("butler, search 1-102: expected 李娜, got {own}"));
    }
    assert_no_failures(&failures);
}

// ---------------------------------------------------------------------------
// Phone masking
// ---------------------------------------------------------------------------

fn phones_by_name(unit: &Value) -> Vec<(String, String)> {
    let mut people: Vec<(String, String)> = unit["residents"]
        .as_array()
        .unwrap_or_else(|| panic!("no residents in {unit}"))
        .iter()
        .map(|m| {
            (m["resident"]["name"].as_str().unwrap().to_owned(), m["resident"]["phone"].as_str().unwrap().to_owned())
        })
        .collect();
    people.sort();
    people
}

#[tokio::test]
async fn tenant_cannot_read_the_residents_of_another_unit() {
    let app = spawn_app().await;
    let token = app.token("tenant").await;
    let body = app.graphql(Some(&token), UNIT_RESIDENTS, json!({ "id": unit_id(&app.home, "1-101") })).await;
    assert_error(&body, "NOT_FOUND", "tenant reading 1-101");
    assert!(body["data"].is_null() || body["data"]["unit"].is_null(), "no unit data leaks: {body}");
    let own = app.data(Some(&token), UNIT_RESIDENTS, json!({ "id": unit_id(&app.home, "1-102") })).await;
    assert_eq!(phones_by_name(&own["unit"]), vec![("李娜".to_owned(), "13800001003".to_owned())]);
}

#[tokio::test]
async fn residents_see_housemates_phones_masked_and_their_own_in_full() {
    let app = spawn_app().await;
    let unit = unit_id(&app.home, "1-101");
    let cases = [
        ("family", [("王小明", "13800001002"), ("王建国", "138****1001")]),
        ("owner", [("王小明", "138****1002"), ("王建国", "13800001001")]),
        ("butler", [("王小明", "13800001002"), ("王建国", "13800001001")]),
        ("front_desk", [("王小明", "13800001002"), ("王建国", "13800001001")]),
        ("technician", [("王小明", "13800001002"), ("王建国", "13800001001")]),
    ];
    for (key, expected) in cases {
        let token = app.token(key).await;
        let data = app.data(Some(&token), UNIT_RESIDENTS, json!({ "id": unit })).await;
        let expected: Vec<(String, String)> = expected.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect();
        assert_eq!(phones_by_name(&data["unit"]), expected, "{key} reading 1-101 residents");
    }
}

#[tokio::test]
async fn a_housemate_sees_only_the_units_they_share() {
    let app = spawn_app().await;
    let token = app.token("family").await;
    let data = app.data(Some(&token), UNIT_RESIDENTS, json!({ "id": unit_id(&app.home, "1-101") })).await;
    let owner = data["unit"]["residents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["resident"]["name"] == "王建国")
        .expect("owner lives in 1-101");
    assert_eq!(
        owner["resident"]["units"],
        json!([{ "unit": { "number": "1-101" } }]),
        "the family member must not learn the owner's other unit (2-201)"
    );
}

// ---------------------------------------------------------------------------
// createBuilding / createUnit
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_building_is_for_supervisors_and_managers() {
    let app = spawn_app().await;
    let mut failures = Vec::new();
    for (key, name) in [("supervisor", "3号楼"), ("manager", "4号楼")] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": name })).await;
        let building = &body["data"]["createBuilding"]["building"];
        if body.get("errors").is_some()
            || building["name"] != name
            || building["community"]["name"] != app.home.community.name.as_str()
        {
            failures.push(format!("{key}: createBuilding({name}) should succeed, got {body}"));
        }
    }
    for key in ["front_desk", "technician", "butler", "owner", "tenant"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": format!("{key}楼") })).await;
        if error_code(&body) != Some("FORBIDDEN") {
            failures.push(format!("{key}: createBuilding should be FORBIDDEN, got {body}"));
        }
    }
    assert_no_failures(&failures);

    // The two new buildings, and only they, joined the home community.
    let staff = app.token("technician").await;
    let buildings = buildings_of(&app, &staff).await;
    assert_eq!(set(node_strings(&buildings, "name")), set(["1号楼", "2号楼", "3号楼", "4号楼"]), "{buildings}");
    let other_staff = app.token_in(&app.other, "technician").await;
    assert_eq!(buildings_of(&app, &other_staff).await["totalCount"], 2, "the other community is unchanged");
}

#[tokio::test]
async fn create_building_validates_its_name_and_refuses_duplicates() {
    let app = spawn_app().await;
    let token = app.token("supervisor").await;
    for name in ["", "   ", &"楼".repeat(101)] {
        let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": name })).await;
        assert_bad_input(&body, "name", &format!("createBuilding(name: {name:?})"));
    }
    let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": "1号楼" })).await;
    assert_error(&body, "CONFLICT", "createBuilding(1号楼) again");
    let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": "  2号楼 " })).await;
    assert_error(&body, "CONFLICT", "createBuilding(2号楼) with spaces");

    let created = app.data(Some(&token), CREATE_BUILDING, json!({ "name": "5号楼" })).await;
    assert_eq!(created["createBuilding"]["building"]["name"], "5号楼");
    let body = app.graphql(Some(&token), CREATE_BUILDING, json!({ "name": "5号楼" })).await;
    assert_error(&body, "CONFLICT", "createBuilding(5号楼) twice");

    // Names are unique per community, not across communities.
    let other = app.token_in(&app.other, "supervisor").await;
    let created = app.data(Some(&other), CREATE_BUILDING, json!({ "name": "5号楼" })).await;
    assert_eq!(created["createBuilding"]["building"]["community"]["name"], app.other.community.name.as_str());
    assert_eq!(buildings_of(&app, &token).await["totalCount"], 3, "home: 1号楼, 2号楼, 5号楼");
}

#[tokio::test]
async fn concurrent_create_building_with_one_name_makes_one_building() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor").await;
    let manager = app.token("manager").await;
    let attempts = (0..16).map(|i| {
        let token = if i % 2 == 0 { &supervisor } else { &manager };
        app.graphql(Some(token), CREATE_BUILDING, json!({ "name": "9号楼" }))
    });
    let bodies = futures_util::future::join_all(attempts).await;
    let codes: Vec<Option<&str>> = bodies.iter().map(error_code).collect();
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1, "exactly one createBuilding wins: {codes:?}");
    assert!(codes.iter().all(|c| c.is_none() || *c == Some("CONFLICT")), "the others are CONFLICT: {codes:?}");
    assert_eq!(buildings_of(&app, &supervisor).await["totalCount"], 3);
}

#[tokio::test]
async fn create_unit_is_scoped_and_refuses_duplicates() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor").await;
    let b1 = building_id(&app.home, 0);
    let created =
        app.data(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": b1, "number": "1-401", "floor": 4 })).await;
    let unit = &created["createUnit"]["unit"];
    assert_eq!(unit["number"], "1-401");
    assert_eq!(unit["floor"], 4);
    assert_eq!(unit["building"]["id"], b1.as_str());
    let new_id = unit["id"].as_str().unwrap().to_owned();

    // Staff and the butler of 1号楼 see it at once; residents do not.
    for key in ["front_desk", "butler"] {
        let token = app.token(key).await;
        assert!(unit_outcome(&app, &token, &new_id).await.is_ok(), "{key} reads the new unit");
    }
    let owner = app.token("owner").await;
    assert_eq!(unit_outcome(&app, &owner, &new_id).await, Err("NOT_FOUND".into()), "owner does not");

    let body =
        app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": b1, "number": "1-101", "floor": 1 })).await;
    assert_error(&body, "CONFLICT", "createUnit(1-101) again");
    let body = app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": b1, "number": "1-401" })).await;
    assert_error(&body, "CONFLICT", "createUnit(1-401) twice");

    let other_building = building_id(&app.other, 0);
    let body =
        app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": other_building, "number": "1-999" })).await;
    assert_error(&body, "NOT_FOUND", "createUnit in the other community");

    let body = app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": b1, "number": " " })).await;
    assert_bad_input(&body, "number", "createUnit with an empty number");
    let body =
        app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": b1, "number": "1-X", "floor": 999 })).await;
    assert_bad_input(&body, "floor", "createUnit on floor 999");
    let body = app.graphql(Some(&supervisor), CREATE_UNIT, json!({ "buildingId": "bld_x", "number": "1-X" })).await;
    assert_bad_input(&body, "buildingId", "createUnit with a malformed building id");

    for key in ["front_desk", "technician", "butler", "owner"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), CREATE_UNIT, json!({ "buildingId": b1, "number": "1-501" })).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: createUnit"));
    }
    let manager = app.token("manager").await;
    let created = app
        .data(Some(&manager), CREATE_UNIT, json!({ "buildingId": building_id(&app.home, 1), "number": "1-101" }))
        .await;
    assert_eq!(created["createUnit"]["unit"]["number"], "1-101", "door numbers are unique per building only");
    assert_eq!(units_of(&app, &manager, None).await["totalCount"], 14);
}

// ---------------------------------------------------------------------------
// moveIn
// ---------------------------------------------------------------------------

#[tokio::test]
async fn move_in_creates_a_resident_who_can_log_in() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let unit = unit_id(&app.home, "1-201");
    let mut input = move_in_input(&unit, "137 0000 2001", "赵新", "TENANT");
    input["initialPassword"] = json!("new-resident-pass");
    let data = app.data(Some(&desk), MOVE_IN, json!({ "input": input })).await;
    let membership = &data["moveIn"]["membership"];
    assert_eq!(membership["relation"], "TENANT", "{membership}");
    assert_eq!(membership["movedOutOn"], Value::Null, "{membership}");
    assert_eq!(membership["unit"]["id"], unit.as_str(), "{membership}");
    assert_eq!(membership["resident"]["name"], "赵新", "{membership}");
    assert_eq!(membership["resident"]["phone"], "13700002001", "the phone is stored normalised");
    assert_eq!(membership["resident"]["role"], "RESIDENT");

    let body = login(&app, "13700002001", "new-resident-pass").await;
    assert!(body.get("errors").is_none(), "the new resident logs in: {body}");
    let token = body["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    let me = app.data(Some(&token), ME, json!({})).await;
    assert_eq!(me["me"]["role"], "RESIDENT");
    assert_eq!(me["me"]["units"][0]["unit"]["id"], unit.as_str(), "{me}");
    assert_eq!(me["me"]["units"][0]["relation"], "TENANT", "{me}");
    assert_eq!(me["me"]["units"].as_array().unwrap().len(), 1, "{me}");
    assert_eq!(me["me"]["community"]["name"], app.home.community.name.as_str());
    assert!(unit_outcome(&app, &token, &unit).await.is_ok(), "the new resident reads their unit");
    assert_eq!(unit_outcome(&app, &token, &unit_id(&app.home, "1-202")).await, Err("NOT_FOUND".into()));
    assert_eq!(node_strings(&buildings_of(&app, &token).await, "id"), vec![building_id(&app.home, 0)]);

    // The directory has them now, and the butler of 1号楼 sees them too.
    let butler = app.token("butler").await;
    let found = residents_of(&app, &butler, json!({ "search": "赵新" })).await;
    assert_eq!(node_strings(&found, "phone"), vec!["13700002001"], "{found}");
}

#[tokio::test]
async fn move_in_adds_an_existing_resident_to_another_unit() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;
    let tenant = app.token("tenant").await;
    let unit = unit_id(&app.home, "2-301");
    assert_eq!(unit_outcome(&app, &tenant, &unit).await, Err("NOT_FOUND".into()), "not yet");
    let input = move_in_input(&unit, &app.home.account("tenant").phone, "ignored", "OWNER");
    let data = app.data(Some(&manager), MOVE_IN, json!({ "input": input })).await;
    assert_eq!(data["moveIn"]["membership"]["resident"]["name"], "李娜", "the existing account is reused");
    // The tenant's existing token sees the new unit at once.
    assert!(unit_outcome(&app, &tenant, &unit).await.is_ok(), "tenant now reads 2-301");
    assert_eq!(my_unit_numbers(&app, &tenant).await, set(["1-102", "2-301"]));
    assert_eq!(buildings_of(&app, &tenant).await["totalCount"], 2);
}

#[tokio::test]
async fn move_in_is_for_front_desk_supervisors_and_managers() {
    let app = spawn_app().await;
    let unit = unit_id(&app.home, "1-202");
    let mut failures = Vec::new();
    for (index, key) in ["technician", "butler", "owner", "tenant"].into_iter().enumerate() {
        let token = app.token(key).await;
        let input = move_in_input(&unit, &format!("1370000300{index}"), "某人", "TENANT");
        let body = app.graphql(Some(&token), MOVE_IN, json!({ "input": input })).await;
        if error_code(&body) != Some("FORBIDDEN") {
            failures.push(format!("{key}: moveIn should be FORBIDDEN, got {body}"));
        }
    }
    for (index, key) in ["front_desk", "supervisor", "manager"].into_iter().enumerate() {
        let token = app.token(key).await;
        let input = move_in_input(&unit, &format!("1370000400{index}"), "某人", "FAMILY");
        let body = app.graphql(Some(&token), MOVE_IN, json!({ "input": input })).await;
        if body.get("errors").is_some() {
            failures.push(format!("{key}: moveIn should succeed, got {body}"));
        }
    }
    assert_no_failures(&failures);
    let desk = app.token("front_desk").await;
    let residents = residents_of(&app, &desk, json!({ "unitId": unit })).await;
    assert_eq!(residents["totalCount"], 3, "only the three allowed move-ins happened: {residents}");
}

#[tokio::test]
async fn move_in_refusals() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let home_unit = unit_id(&app.home, "1-202");
    let other_unit = unit_id(&app.other, "1-202");

    let body = app
        .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&other_unit, "13700005001", "某人", "OWNER") }))
        .await;
    assert_error(&body, "NOT_FOUND", "moveIn to a unit of the other community");

    for phone in ["12345", "12800138000", "1380013800a", ""] {
        let body = app
            .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&home_unit, phone, "某人", "OWNER") }))
            .await;
        assert_bad_input(&body, "phone", &format!("moveIn with phone {phone:?}"));
    }
    let body = app
        .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&home_unit, "13700005002", " ", "OWNER") }))
        .await;
    assert_bad_input(&body, "name", "moveIn with an empty name");
    let mut short = move_in_input(&home_unit, "13700005003", "某人", "OWNER");
    short["initialPassword"] = json!("12345");
    let body = app.graphql(Some(&desk), MOVE_IN, json!({ "input": short })).await;
    assert_bad_input(&body, "initialPassword", "moveIn with a 5-character password");
    let body = app
        .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input("unit_x", "13700005004", "某人", "OWNER") }))
        .await;
    assert_bad_input(&body, "unitId", "moveIn with a malformed unit id");

    // The same resident twice into the same unit.
    let owner2 = app.home.account("owner2").phone.clone();
    let body = app
        .graphql(
            Some(&desk),
            MOVE_IN,
            json!({ "input": move_in_input(&unit_id(&app.home, "2-202"), &owner2, "张伟", "OWNER") }),
        )
        .await;
    assert_error(&body, "CONFLICT", "moveIn of owner2 into 2-202 again");
    let first = app
        .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&home_unit, "13700005005", "新人", "TENANT") }))
        .await;
    assert!(first.get("errors").is_none(), "first moveIn: {first}");
    let second = app
        .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&home_unit, "13700005005", "新人", "TENANT") }))
        .await;
    assert_error(&second, "CONFLICT", "moveIn of the same new resident twice");

    // Phones of staff and butler accounts, of either community, cannot become residents.
    for (community, key) in
        [(&app.home, "technician"), (&app.home, "butler"), (&app.home, "manager"), (&app.other, "front_desk")]
    {
        let phone = community.account(key).phone.clone();
        let body = app
            .graphql(Some(&desk), MOVE_IN, json!({ "input": move_in_input(&home_unit, &phone, "某人", "OWNER") }))
            .await;
        assert_error(&body, "CONFLICT", &format!("moveIn with the phone of {} {key}", community.community.name));
    }

    // Only the one successful move-in happened.
    let residents = residents_of(&app, &desk, json!({ "unitId": home_unit })).await;
    assert_eq!(node_strings(&residents, "phone"), vec!["13700005005"], "{residents}");
}

// ---------------------------------------------------------------------------
// moveOut
// ---------------------------------------------------------------------------

#[tokio::test]
async fn move_out_ends_access_to_that_unit_at_once() {
    let app = spawn_app().await;
    // Signed in before moving out: the token stays valid, the access does not.
    let owner = app.token("owner").await;
    let unit_2201 = unit_id(&app.home, "2-201");
    let unit_1101 = unit_id(&app.home, "1-101");
    assert!(unit_outcome(&app, &owner, &unit_2201).await.is_ok(), "before: owner reads 2-201");
    let membership = membership_id(&app, &app.home, "2-201", "owner").await;

    let desk = app.token("front_desk").await;
    let data = app.data(Some(&desk), MOVE_OUT, json!({ "id": membership })).await;
    let moved = &data["moveOut"]["membership"];
    assert_eq!(moved["id"], membership.as_str());
    assert!(moved["movedOutOn"].is_string(), "movedOutOn defaults to today: {moved}");
    assert_eq!(moved["unit"]["number"], "2-201");
    assert_eq!(moved["resident"]["name"], "王建国");

    assert_eq!(unit_outcome(&app, &owner, &unit_2201).await, Err("NOT_FOUND".into()), "after: 2-201 is gone");
    assert_eq!(my_unit_numbers(&app, &owner).await, set(["1-101"]), "me.units without 2-201");
    assert!(unit_outcome(&app, &owner, &unit_1101).await.is_ok(), "the other unit still works");
    assert_eq!(node_strings(&buildings_of(&app, &owner).await, "id"), vec![building_id(&app.home, 0)]);
    assert_eq!(node_strings(&units_of(&app, &owner, None).await, "id"), vec![unit_1101.clone()]);
    let body = app
        .graphql(
            Some(&owner),
            SET_CONTACTS,
            json!({ "unitId": unit_2201, "contacts": [contact("某人", "13700000000", "friend")] }),
        )
        .await;
    assert_error(&body, "NOT_FOUND", "the moved-out owner setting 2-201's contacts");

    // Staff see the unit empty now, and the owner still in the directory for 1-101.
    let unit = app.data(Some(&desk), UNIT_RESIDENTS, json!({ "id": unit_2201 })).await;
    assert_eq!(unit["unit"]["residents"], json!([]), "{unit}");
    let found = residents_of(&app, &desk, json!({ "search": "2-201" })).await;
    assert_eq!(found["totalCount"], 0, "nobody lives in 2-201 any more: {found}");

    let again = app.graphql(Some(&desk), MOVE_OUT, json!({ "id": membership })).await;
    assert_error(&again, "CONFLICT", "moving out twice");

    // Moving back in later is a new membership, and access comes back.
    let input = move_in_input(&unit_2201, &app.home.account("owner").phone, "王建国", "OWNER");
    let data = app.data(Some(&desk), MOVE_IN, json!({ "input": input })).await;
    assert_ne!(data["moveIn"]["membership"]["id"], membership.as_str(), "a new membership");
    assert!(unit_outcome(&app, &owner, &unit_2201).await.is_ok(), "back in 2-201");
    assert_eq!(my_unit_numbers(&app, &owner).await, set(["1-101", "2-201"]));
}

#[tokio::test]
async fn concurrent_move_outs_end_a_membership_once() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let supervisor = app.token("supervisor").await;
    let membership = membership_id(&app, &app.home, "2-202", "owner2").await;
    let attempts = (0..16).map(|i| {
        let token = if i % 2 == 0 { &desk } else { &supervisor };
        app.graphql(Some(token), MOVE_OUT, json!({ "id": membership }))
    });
    let bodies = futures_util::future::join_all(attempts).await;
    let succeeded = bodies.iter().filter(|b| b.get("errors").is_none()).count();
    let codes: Vec<Option<&str>> = bodies.iter().map(error_code).collect();
    assert_eq!(succeeded, 1, "exactly one moveOut wins: {codes:?}");
    assert!(
        codes.iter().all(|c| c.is_none() || *c == Some("CONFLICT")),
        "the others are CONFLICT: {codes:?} {bodies:?}"
    );
}

#[tokio::test]
async fn concurrent_move_ins_of_the_same_resident_record_one_membership() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let supervisor = app.token("supervisor").await;
    let unit = unit_id(&app.home, "2-302");
    let input = move_in_input(&unit, &app.home.account("tenant").phone, "李娜", "TENANT");
    let attempts = (0..16).map(|i| {
        let token = if i % 2 == 0 { &desk } else { &supervisor };
        app.graphql(Some(token), MOVE_IN, json!({ "input": input }))
    });
    let bodies = futures_util::future::join_all(attempts).await;
    let succeeded = bodies.iter().filter(|b| b.get("errors").is_none()).count();
    let codes: Vec<Option<&str>> = bodies.iter().map(error_code).collect();
    let residents = app.data(Some(&desk), UNIT_RESIDENTS, json!({ "id": unit })).await;
    assert_eq!(
        residents["unit"]["residents"].as_array().unwrap().len(),
        1,
        "the tenant lives in 2-302 once, not {succeeded} times: {residents}"
    );
    assert_eq!(succeeded, 1, "exactly one moveIn wins: {codes:?}");
    assert!(
        codes.iter().all(|c| c.is_none() || *c == Some("CONFLICT")),
        "the others are CONFLICT: {codes:?} {bodies:?}"
    );
}

#[tokio::test]
async fn move_out_refusals() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let membership = membership_id(&app, &app.home, "1-102", "tenant").await;

    for key in ["technician", "butler", "tenant", "owner"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), MOVE_OUT, json!({ "id": membership })).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: moveOut"));
    }

    let other_membership = membership_id(&app, &app.other, "1-102", "tenant").await;
    let body = app.graphql(Some(&desk), MOVE_OUT, json!({ "id": other_membership })).await;
    assert_error(&body, "NOT_FOUND", "moveOut of a membership of the other community");
    let body = app.graphql(Some(&desk), MOVE_OUT, json!({ "id": "mbr_x" })).await;
    assert_bad_input(&body, "membershipId", "moveOut with a malformed id");

    let future = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string();
    let body = app.graphql(Some(&desk), MOVE_OUT, json!({ "id": membership, "on": future })).await;
    assert_bad_input(&body, "movedOutOn", "moveOut in the future");
    let body = app.graphql(Some(&desk), MOVE_OUT, json!({ "id": membership, "on": "2020-01-01" })).await;
    assert_bad_input(&body, "movedOutOn", "moveOut before the move-in date");

    // None of that moved the tenant out.
    let tenant = app.token("tenant").await;
    assert!(unit_outcome(&app, &tenant, &unit_id(&app.home, "1-102")).await.is_ok(), "tenant still lives in 1-102");
    let other_tenant = app.token_in(&app.other, "tenant").await;
    assert!(unit_outcome(&app, &other_tenant, &unit_id(&app.other, "1-102")).await.is_ok(), "nor the other tenant");

    // A past date after the move-in works.
    let data = app.data(Some(&desk), MOVE_OUT, json!({ "id": membership, "on": "2025-06-30" })).await;
    assert_eq!(data["moveOut"]["membership"]["movedOutOn"], "2025-06-30");
    assert_eq!(data["moveOut"]["membership"]["movedInOn"], "2024-03-01");
    assert_eq!(unit_outcome(&app, &tenant, &unit_id(&app.home, "1-102")).await, Err("NOT_FOUND".into()));
    assert_eq!(my_unit_numbers(&app, &tenant).await, BTreeSet::new());
    assert_eq!(buildings_of(&app, &tenant).await["totalCount"], 0);
}

// ---------------------------------------------------------------------------
// setEmergencyContacts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn front_desk_and_residents_keep_emergency_contacts() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let unit_1102 = unit_id(&app.home, "1-102");
    let contacts = [contact("李父", "010-6512 3456", "father"), contact("李母", "+86 139 0000 0000", "mother")];
    let data = app.data(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1102, "contacts": contacts })).await;
    let expected = json!([
        { "name": "李父", "phone": "01065123456", "relation": "father" },
        { "name": "李母", "phone": "+8613900000000", "relation": "mother" },
    ]);
    assert_eq!(data["setEmergencyContacts"]["unit"]["emergencyContacts"], expected);
    let tenant = app.token("tenant").await;
    let read = app.data(Some(&tenant), UNIT_CONTACTS, json!({ "id": unit_1102 })).await;
    assert_eq!(read["unit"]["emergencyContacts"], expected, "the tenant reads them");

    // The owner keeps their own unit's; the family member reads them.
    let owner = app.token("owner").await;
    let unit_1101 = unit_id(&app.home, "1-101");
    let data = app
        .data(
            Some(&owner),
            SET_CONTACTS,
            json!({ "unitId": unit_1101, "contacts": [contact("王女士", "13700006001", "daughter")] }),
        )
        .await;
    assert_eq!(data["setEmergencyContacts"]["unit"]["id"], unit_1101.as_str());
    let family = app.token("family").await;
    let read = app.data(Some(&family), UNIT_CONTACTS, json!({ "id": unit_1101 })).await;
    assert_eq!(
        read["unit"]["emergencyContacts"],
        json!([{ "name": "王女士", "phone": "13700006001", "relation": "daughter" }])
    );

    // Setting replaces; an empty list clears.
    let replaced =
        [contact("甲", "12345", "friend"), contact("乙", "54321", "friend"), contact("丙", "99999", "friend")];
    app.data(Some(&owner), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": replaced })).await;
    let read = app.data(Some(&family), UNIT_CONTACTS, json!({ "id": unit_1101 })).await;
    let names: Vec<&str> =
        read["unit"]["emergencyContacts"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["甲", "乙", "丙"]);
    app.data(Some(&family), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": [] })).await;
    let read = app.data(Some(&owner), UNIT_CONTACTS, json!({ "id": unit_1101 })).await;
    assert_eq!(read["unit"]["emergencyContacts"], json!([]));
    // 1-102 is untouched by all that.
    let read = app.data(Some(&desk), UNIT_CONTACTS, json!({ "id": unit_1102 })).await;
    assert_eq!(read["unit"]["emergencyContacts"], expected);
}

#[tokio::test]
async fn emergency_contact_refusals() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let unit_1101 = unit_id(&app.home, "1-101");
    let original = [contact("王女士", "13700006001", "daughter")];
    app.data(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": original })).await;
    let one = [contact("某人", "13700006002", "friend")];

    let tenant = app.token("tenant").await;
    let body = app.graphql(Some(&tenant), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": one })).await;
    assert_error(&body, "NOT_FOUND", "tenant setting a neighbour's contacts");
    let owner2 = app.token("owner2").await;
    let body = app.graphql(Some(&owner2), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": one })).await;
    assert_error(&body, "NOT_FOUND", "owner2 setting a neighbour's contacts");
    let body = app
        .graphql(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_id(&app.other, "1-101"), "contacts": one }))
        .await;
    assert_error(&body, "NOT_FOUND", "front desk setting another community's contacts");

    for key in ["technician", "butler"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": one })).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: setEmergencyContacts"));
    }

    let six: Vec<Value> = (0..6).map(|i| contact(&format!("联系人{i}"), &format!("1370000700{i}"), "friend")).collect();
    let body = app.graphql(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": six })).await;
    assert_bad_input(&body, "contacts", "six contacts");
    let owner = app.token("owner").await;
    let body = app.graphql(Some(&owner), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": six })).await;
    assert_bad_input(&body, "contacts", "six contacts by the owner");
    let five: Vec<Value> = six[..5].to_vec();

    for (phone, field_index) in [("abc", 0), ("1234", 0), ("123456789012345678901", 0)] {
        let body = app
            .graphql(
                Some(&desk),
                SET_CONTACTS,
                json!({ "unitId": unit_1101, "contacts": [contact("某人", phone, "friend")] }),
            )
            .await;
        assert_bad_input(&body, &format!("contacts.{field_index}.phone"), &format!("contact phone {phone:?}"));
    }
    let second_bad = [contact("甲", "12345", "friend"), contact("乙", "not a phone", "friend")];
    let body = app.graphql(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": second_bad })).await;
    assert_bad_input(&body, "contacts.1.phone", "the second contact's phone");
    let no_name = [contact(" ", "12345", "friend")];
    let body = app.graphql(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": no_name })).await;
    assert_bad_input(&body, "contacts.0.name", "a contact without a name");
    let no_relation = [contact("甲", "12345", "")];
    let body = app.graphql(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": no_relation })).await;
    assert_bad_input(&body, "contacts.0.relation", "a contact without a relation");

    // Nothing was replaced by the refused attempts.
    let read = app.data(Some(&owner), UNIT_CONTACTS, json!({ "id": unit_1101 })).await;
    assert_eq!(
        read["unit"]["emergencyContacts"],
        json!([{ "name": "王女士", "phone": "13700006001", "relation": "daughter" }])
    );
    // Five is allowed.
    let data = app.data(Some(&desk), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": five })).await;
    assert_eq!(data["setEmergencyContacts"]["unit"]["emergencyContacts"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_stale_emergency_contact_edit_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let owner = app.token("owner").await;
    let unit_1101 = unit_id(&app.home, "1-101");
    let read = app.data(Some(&owner), UNIT_CONTACTS_VERSION, json!({ "id": unit_1101 })).await;
    assert_eq!(read["unit"]["emergencyContactsVersion"], 0, "a new unit's contacts are at version 0");

    // The owner and the front desk both open the list at version 0; the owner saves first.
    let by_owner = [contact("王女士", "13700006001", "daughter")];
    let data = app
        .data(Some(&owner), SET_CONTACTS_AT, json!({ "unitId": unit_1101, "contacts": by_owner, "version": 0 }))
        .await;
    assert_eq!(data["setEmergencyContacts"]["unit"]["emergencyContactsVersion"], 1);
    let by_desk = [contact("王先生", "13700006002", "son")];
    let body = app
        .graphql(Some(&desk), SET_CONTACTS_AT, json!({ "unitId": unit_1101, "contacts": by_desk, "version": 0 }))
        .await;
    assert_error(&body, "CONFLICT", "the desk saving over the owner's edit");
    let read = app.data(Some(&desk), UNIT_CONTACTS_VERSION, json!({ "id": unit_1101 })).await;
    assert_eq!(read["unit"], json!({ "emergencyContactsVersion": 1, "emergencyContacts": [{ "name": "王女士" }] }));
    // A version from the future is as stale as one from the past.
    let body = app
        .graphql(Some(&desk), SET_CONTACTS_AT, json!({ "unitId": unit_1101, "contacts": by_desk, "version": 7 }))
        .await;
    assert_error(&body, "CONFLICT", "a version the list never had");

    // Reloaded at version 1, the desk's edit goes through.
    let data =
        app.data(Some(&desk), SET_CONTACTS_AT, json!({ "unitId": unit_1101, "contacts": by_desk, "version": 1 })).await;
    assert_eq!(
        data["setEmergencyContacts"]["unit"],
        json!({ "emergencyContactsVersion": 2, "emergencyContacts": [{ "name": "王先生" }] })
    );
    // Without a version the edit still raises it, so others' stale copies are refused.
    let data = app.data(Some(&owner), SET_CONTACTS, json!({ "unitId": unit_1101, "contacts": by_owner })).await;
    assert_eq!(data["setEmergencyContacts"]["unit"]["id"], unit_1101.as_str());
    let read = app.data(Some(&owner), UNIT_CONTACTS_VERSION, json!({ "id": unit_1101 })).await;
    assert_eq!(read["unit"]["emergencyContactsVersion"], 3);
    // A refused edit (bad input) does not raise it.
    let body = app
        .graphql(
            Some(&owner),
            SET_CONTACTS_AT,
            json!({ "unitId": unit_1101, "contacts": [contact("甲", "abc", "friend")], "version": 3 }),
        )
        .await;
    assert_bad_input(&body, "contacts.0.phone", "a bad phone with the right version");
    let read = app.data(Some(&owner), UNIT_CONTACTS_VERSION, json!({ "id": unit_1101 })).await;
    assert_eq!(read["unit"]["emergencyContactsVersion"], 3);
}

#[tokio::test]
async fn concurrent_emergency_contact_edits_at_one_version_let_exactly_one_win() {
    let app = spawn_app().await;
    let desk = app.token("front_desk").await;
    let supervisor = app.token("supervisor").await;
    let unit_1102 = unit_id(&app.home, "1-102");
    let attempts = (0..12).map(|i| {
        let token = if i % 2 == 0 { &desk } else { &supervisor };
        let contacts = [contact(&format!("联系人{i}"), &format!("1370000800{}", i % 10), "friend")];
        app.graphql(Some(token), SET_CONTACTS_AT, json!({ "unitId": unit_1102, "contacts": contacts, "version": 0 }))
    });
    let bodies = futures_util::future::join_all(attempts).await;
    let winners: Vec<usize> = (0..bodies.len()).filter(|i| bodies[*i].get("errors").is_none()).collect();
    let codes: Vec<Option<&str>> = bodies.iter().map(error_code).collect();
    assert_eq!(winners.len(), 1, "exactly one edit wins: {codes:?}");
    assert!(codes.iter().all(|c| c.is_none() || *c == Some("CONFLICT")), "the others are CONFLICT: {bodies:?}");
    let read = app.data(Some(&desk), UNIT_CONTACTS_VERSION, json!({ "id": unit_1102 })).await;
    assert_eq!(
        read["unit"],
        json!({ "emergencyContactsVersion": 1, "emergencyContacts": [{ "name": format!("联系人{}", winners[0]) }] }),
        "the list is the winner's, whole"
    );
}

// ---------------------------------------------------------------------------
// assignButler / unassignButler
// ---------------------------------------------------------------------------

#[tokio::test]
async fn assigning_a_butler_widens_their_scope_and_unassigning_narrows_it() {
    let app = spawn_app().await;
    let butler = app.token("butler").await;
    let supervisor = app.token("supervisor").await;
    let butler_id = user_id(&app.home, "butler");
    let b2 = building_id(&app.home, 1);
    let unit_2201 = unit_id(&app.home, "2-201");
    assert_eq!(unit_outcome(&app, &butler, &unit_2201).await, Err("NOT_FOUND".into()), "before");

    let data = app.data(Some(&supervisor), ASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": b2 })).await;
    assert_eq!(data["assignButler"]["butler"]["id"], butler_id.as_str());
    assert_eq!(data["assignButler"]["building"]["id"], b2.as_str());
    assert_eq!(data["assignButler"]["building"]["name"], "2号楼");

    assert!(unit_outcome(&app, &butler, &unit_2201).await.is_ok(), "assigned: the butler reads 2-201");
    assert_eq!(units_of(&app, &butler, None).await["totalCount"], 12);
    assert_eq!(buildings_of(&app, &butler).await["totalCount"], 2);
    let me = app.data(Some(&butler), ME, json!({})).await;
    assert_eq!(me["me"]["buildings"].as_array().unwrap().len(), 2, "{me}");
    assert_eq!(residents_of(&app, &butler, json!(null)).await["totalCount"], 4, "all four residents now");

    let again = app.graphql(Some(&supervisor), ASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": b2 })).await;
    assert_error(&again, "CONFLICT", "assigning twice");

    let data = app.data(Some(&supervisor), UNASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": b2 })).await;
    assert_eq!(data["unassignButler"]["building"]["id"], b2.as_str());
    assert_eq!(unit_outcome(&app, &butler, &unit_2201).await, Err("NOT_FOUND".into()), "unassigned: 2-201 is gone");
    assert_eq!(building_outcome(&app, &butler, &b2).await, Err("NOT_FOUND".into()), "and 2号楼 itself");
    assert!(unit_outcome(&app, &butler, &unit_id(&app.home, "1-101")).await.is_ok(), "1号楼 stays");
    assert_eq!(node_strings(&buildings_of(&app, &butler).await, "id"), vec![building_id(&app.home, 0)]);

    // Taking 1号楼 away too leaves the butler with nothing.
    let manager = app.token("manager").await;
    let b1 = building_id(&app.home, 0);
    app.data(Some(&manager), UNASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": b1 })).await;
    assert_eq!(buildings_of(&app, &butler).await["totalCount"], 0);
    assert_eq!(units_of(&app, &butler, None).await["totalCount"], 0);
    assert_eq!(residents_of(&app, &butler, json!(null)).await["totalCount"], 0);
}

#[tokio::test]
async fn butler_assignment_refusals() {
    let app = spawn_app().await;
    let butler_id = user_id(&app.home, "butler");
    let b2 = building_id(&app.home, 1);
    for key in ["front_desk", "technician", "butler", "owner"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), ASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": b2 })).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: assignButler"));
        let body = app
            .graphql(
                Some(&token),
                UNASSIGN_BUTLER,
                json!({ "butlerId": butler_id, "buildingId": building_id(&app.home, 0) }),
            )
            .await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: unassignButler"));
    }
    let supervisor = app.token("supervisor").await;
    let body = app
        .graphql(
            Some(&supervisor),
            ASSIGN_BUTLER,
            json!({ "butlerId": butler_id, "buildingId": building_id(&app.other, 1) }),
        )
        .await;
    assert_error(&body, "NOT_FOUND", "assigning to a building of the other community");
    let body = app
        .graphql(
            Some(&supervisor),
            ASSIGN_BUTLER,
            json!({ "butlerId": user_id(&app.other, "butler"), "buildingId": b2 }),
        )
        .await;
    assert_error(&body, "NOT_FOUND", "assigning the other community's butler");
    for key in ["technician", "owner"] {
        let body = app
            .graphql(Some(&supervisor), ASSIGN_BUTLER, json!({ "butlerId": user_id(&app.home, key), "buildingId": b2 }))
            .await;
        assert_error(&body, "NOT_FOUND", &format!("assigning the {key}, who is no butler"));
    }
    let body = app.graphql(Some(&supervisor), ASSIGN_BUTLER, json!({ "butlerId": "usr_x", "buildingId": b2 })).await;
    assert_bad_input(&body, "butlerId", "a malformed butler id");
    let body =
        app.graphql(Some(&supervisor), ASSIGN_BUTLER, json!({ "butlerId": butler_id, "buildingId": "unit_1" })).await;
    assert_bad_input(&body, "buildingId", "a unit id as building id");

    // Nothing was assigned.
    let butler = app.token("butler").await;
    assert_eq!(node_strings(&buildings_of(&app, &butler).await, "id"), vec![building_id(&app.home, 0)]);
    let other_butler = app.token_in(&app.other, "butler").await;
    assert_eq!(node_strings(&buildings_of(&app, &other_butler).await, "id"), vec![building_id(&app.other, 0)]);
}

// ---------------------------------------------------------------------------
// createButlerAccount / createStaffAccount
// ---------------------------------------------------------------------------

#[tokio::test]
async fn manager_creates_butler_and_staff_accounts_that_can_log_in() {
    let app = spawn_app().await;
    let manager = app.token("manager").await;

    let data = app
        .data(
            Some(&manager),
            CREATE_BUTLER,
            json!({ "phone": "13700008001", "name": "新管家", "password": "butler-pass-2026" }),
        )
        .await;
    let user = &data["createButlerAccount"]["user"];
    assert_eq!(user["role"], "BUTLER", "{user}");
    assert_eq!(user["phone"], "13700008001");
    assert_eq!(user["position"], Value::Null);

    let body = login(&app, "13700008001", "butler-pass-2026").await;
    assert!(body.get("errors").is_none(), "the new butler logs in: {body}");
    let butler = body["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    let me = app.data(Some(&butler), ME, json!({})).await;
    assert_eq!(me["me"]["role"], "BUTLER");
    assert_eq!(me["me"]["community"]["name"], app.home.community.name.as_str());
    assert_eq!(buildings_of(&app, &butler).await["totalCount"], 0, "no buildings until assigned");
    let body = login(&app, "13700008001", DEMO_PASSWORD).await;
    assert_error(&body, "UNAUTHENTICATED", "the butler with a wrong password");

    let data = app
        .data(
            Some(&manager),
            CREATE_STAFF,
            json!({ "phone": "13700008002", "name": "新师傅", "position": "TECHNICIAN", "password": "staff-pass-2026" }),
        )
        .await;
    let user = &data["createStaffAccount"]["user"];
    assert_eq!(user["role"], "STAFF", "{user}");
    assert_eq!(user["position"], "TECHNICIAN", "{user}");

    let body = login(&app, "13700008002", "staff-pass-2026").await;
    assert!(body.get("errors").is_none(), "the new staff member logs in: {body}");
    assert_eq!(body["data"]["login"]["viewer"]["position"], "TECHNICIAN");
    let staff = body["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        node_strings(&buildings_of(&app, &staff).await, "id"),
        vec![building_id(&app.home, 0), building_id(&app.home, 1)]
    );
    let body = app.graphql(Some(&staff), RESIDENTS, json!({ "first": 5 })).await;
    assert_error(&body, "FORBIDDEN", "a technician, new or old, has no directory");

    // The new butler can be assigned, and then works.
    let supervisor = app.token("supervisor").await;
    let new_butler_id = data_user_id(&app, &manager, "13700008001").await;
    app.data(
        Some(&supervisor),
        ASSIGN_BUTLER,
        json!({ "butlerId": new_butler_id, "buildingId": building_id(&app.home, 1) }),
    )
    .await;
    assert!(unit_outcome(&app, &butler, &unit_id(&app.home, "2-202")).await.is_ok());
}

/// The id of the employee with `phone`, from the manager's staff list.
async fn data_user_id(app: &TestApp, manager: &str, phone: &str) -> String {
    let staff = app.data(Some(manager), STAFF_MEMBERS, json!({ "first": 50 })).await;
    staff["staffMembers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["phone"] == phone)
        .unwrap_or_else(|| panic!("{phone} not among staff: {staff}"))["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn account_creation_refusals() {
    let app = spawn_app().await;
    let butler_vars = |phone: &str, password: &str| json!({ "phone": phone, "name": "某人", "password": password });
    let staff_vars = |phone: &str, password: &str| json!({ "phone": phone, "name": "某人", "position": "FRONT_DESK", "password": password });

    for key in ["supervisor", "front_desk", "technician", "butler", "owner"] {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), CREATE_BUTLER, butler_vars("13700009001", "long-enough-1")).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: createButlerAccount"));
        let body = app.graphql(Some(&token), CREATE_STAFF, staff_vars("13700009002", "long-enough-1")).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: createStaffAccount"));
    }
    let body = login(&app, "13700009001", "long-enough-1").await;
    assert_error(&body, "UNAUTHENTICATED", "no account was created by the refused attempts");

    let manager = app.token("manager").await;
    for (community, key) in [(&app.home, "owner"), (&app.home, "technician"), (&app.other, "butler")] {
        let phone = community.account(key).phone.clone();
        let body = app.graphql(Some(&manager), CREATE_BUTLER, butler_vars(&phone, "long-enough-1")).await;
        assert_error(&body, "CONFLICT", &format!("createButlerAccount with the phone of {key}"));
        let body = app.graphql(Some(&manager), CREATE_STAFF, staff_vars(&phone, "long-enough-1")).await;
        assert_error(&body, "CONFLICT", &format!("createStaffAccount with the phone of {key}"));
    }
    app.data(Some(&manager), CREATE_BUTLER, butler_vars("13700009003", "long-enough-1")).await;
    let body = app.graphql(Some(&manager), CREATE_STAFF, staff_vars("+86 137 0000 9003", "long-enough-1")).await;
    assert_error(&body, "CONFLICT", "the same phone, written differently");

    let body = app.graphql(Some(&manager), CREATE_BUTLER, butler_vars("13700009004", "12345")).await;
    assert_bad_input(&body, "password", "createButlerAccount with a 5-character password");
    let body = app.graphql(Some(&manager), CREATE_STAFF, staff_vars("13700009005", "abcde")).await;
    assert_bad_input(&body, "password", "createStaffAccount with a 5-character password");
    let body = app.graphql(Some(&manager), CREATE_STAFF, staff_vars("12345", "long-enough-1")).await;
    assert_bad_input(&body, "phone", "createStaffAccount with a bad phone");
    let body = app
        .graphql(
            Some(&manager),
            CREATE_BUTLER,
            json!({ "phone": "13700009006", "name": "", "password": "long-enough-1" }),
        )
        .await;
    assert_bad_input(&body, "name", "createButlerAccount without a name");
}

// ---------------------------------------------------------------------------
// staffMembers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn staff_members_are_listed_for_staff_of_the_same_community_only() {
    let app = spawn_app().await;
    for key in RESIDENT_KEYS {
        let token = app.token(key).await;
        let body = app.graphql(Some(&token), STAFF_MEMBERS, json!({ "first": 10 })).await;
        assert_error(&body, "FORBIDDEN", &format!("{key}: staffMembers"));
    }
    let expected: BTreeSet<String> =
        ["butler", "front_desk", "technician", "supervisor", "manager"].iter().map(|k| user_id(&app.home, k)).collect();
    for key in ["supervisor", "manager", "front_desk"] {
        let token = app.token(key).await;
        let staff = app.data(Some(&token), STAFF_MEMBERS, json!({ "first": 50 })).await["staffMembers"].clone();
        assert_eq!(set(node_strings(&staff, "id")), expected, "{key}: the home butler and staff");
        assert_eq!(staff["totalCount"], 5, "{key}: {staff}");
        for phone in node_strings(&staff, "phone") {
            assert!(phone.starts_with("138"), "{key}: nobody from the other community: {phone}");
        }
        assert!(!node_strings(&staff, "role").iter().any(|r| r == "RESIDENT"), "{key}: no residents: {staff}");
    }
    let other = app.token_in(&app.other, "supervisor").await;
    let staff = app.data(Some(&other), STAFF_MEMBERS, json!({ "first": 50 })).await["staffMembers"].clone();
    let expected_other: BTreeSet<String> = ["butler", "front_desk", "technician", "supervisor", "manager"]
        .iter()
        .map(|k| user_id(&app.other, k))
        .collect();
    assert_eq!(set(node_strings(&staff, "id")), expected_other, "the other community's supervisor sees their own");
}

// ---------------------------------------------------------------------------
// The database's own guard of places
// ---------------------------------------------------------------------------

/// An order's or a parcel's unit, building and community are one unit's, and
/// a unit's community is its building's: the database refuses anything else
/// (PostgreSQL by composite keys, SQLite by triggers), whatever writes it.
#[tokio::test]
async fn the_database_keeps_each_place_one_units() {
    use entity::{parcel, repair_order, unit};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = spawn_app().await;
    let home = &app.home;
    let unit = home.unit("1-101");
    let other_building = home.buildings.iter().find(|b| b.id != unit.building_id).expect("a second building");
    let owner = app.token("owner").await;
    let desk = app.token("front_desk").await;
    let submit =
        "mutation($input: SubmitRepairOrderInput!) { submitRepairOrder(input: $input) { repairOrder { id } } }";
    let in_unit = json!({ "unitId": unit_id(home, "1-101"), "category": "PLUMBING", "description": "水龙头漏水" });
    let order = app.data(Some(&owner), submit, json!({ "input": in_unit })).await;
    let order_id = number_of("ro", order["submitRepairOrder"]["repairOrder"]["id"].as_str().expect("id"));
    let supervisor = app.token("supervisor").await;
    let patrol = json!({ "buildingId": building_id(home, 1), "channel": "PATROL", "category": "PLUMBING",
        "description": "楼道漏水" });
    let common_area = app.data(Some(&supervisor), submit, json!({ "input": patrol })).await;
    let common_area_id = number_of("ro", common_area["submitRepairOrder"]["repairOrder"]["id"].as_str().expect("id"));
    let register = "mutation($input: ParcelInput!) { registerParcel(input: $input) { parcel { id } } }";
    let parcel = |unit: Option<String>, tracking: &str| {
        json!({ "input": { "kind": "PARCEL", "carrier": "顺丰", "trackingNumber": tracking, "itemCount": 1,
            "recipientName": "李娜", "unitId": unit, "location": "A-3" } })
    };
    let addressed = app.data(Some(&desk), register, parcel(Some(unit_id(home, "1-101")), "SF0001")).await;
    let addressed_id = number_of("pcl", addressed["registerParcel"]["parcel"]["id"].as_str().expect("id"));
    let unmatched = app.data(Some(&desk), register, parcel(None, "SF0002")).await;
    let unmatched_id = number_of("pcl", unmatched["registerParcel"]["parcel"]["id"].as_str().expect("id"));

    let move_order = |id: i64, column: repair_order::Column, value: i64| {
        repair_order::Entity::update_many()
            .col_expr(column, Expr::val(value))
            .filter(repair_order::Column::Id.eq(id))
            .exec(&app.db)
    };
    use repair_order::Column::{BuildingId, CommunityId};
    assert!(move_order(order_id, BuildingId, other_building.id).await.is_err(), "not the unit's building");
    assert!(move_order(order_id, CommunityId, app.other.community.id).await.is_err(), "nor its community");
    assert!(move_order(common_area_id, BuildingId, i64::MAX).await.is_err(), "without a unit, still a building");
    let move_parcel = |id: i64, community_id: i64| {
        parcel::Entity::update_many()
            .col_expr(parcel::Column::CommunityId, Expr::val(community_id))
            .filter(parcel::Column::Id.eq(id))
            .exec(&app.db)
    };
    assert!(move_parcel(addressed_id, app.other.community.id).await.is_err(), "not the unit's community");
    assert!(move_parcel(unmatched_id, i64::MAX).await.is_err(), "a parcel without a unit still has a community");
    let move_unit = unit::Entity::update_many()
        .col_expr(unit::Column::CommunityId, Expr::val(app.other.community.id))
        .filter(unit::Column::Id.eq(unit.id));
    assert!(move_unit.exec(&app.db).await.is_err(), "a unit's community is its building's");
    let stray_unit = unit::ActiveModel {
        building_id: Set(unit.building_id),
        community_id: Set(app.other.community.id),
        number: Set("9-999".into()),
        floor: Set(None),
        contacts_version: Set(0),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    };
    assert!(stray_unit.insert(&app.db).await.is_err(), "a new unit too");

    let kept = repair_order::Entity::find_by_id(order_id).one(&app.db).await.expect("read").expect("the order");
    assert_eq!(
        (kept.unit_id, kept.building_id, kept.community_id),
        (Some(unit.id), unit.building_id, home.community.id)
    );
}
