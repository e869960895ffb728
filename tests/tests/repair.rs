//! Repair orders (报修工单) through the real server: who may submit, dispatch,
//! work on, confirm, cancel and follow up on an order; the state machine;
//! optimistic locking; validation; scoped and filtered lists; the SLA and
//! auto-close jobs; photo uploads and their signed URLs; and the batch loading
//! of a page's nested fields.
//!
//! Every failure is checked by `extensions.code` (and `extensions.field`), never
//! by its English message.

use std::{collections::BTreeSet, time::Duration as StdDuration};

use api::repair::jobs::{self, Report};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{TestApp, error_code, error_field, id_of, spawn_app, spawn_app_with};

// ---------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------

macro_rules! order_fields {
    () => {
        "id state channel category priority description contactPhone preferredVisitAt version \
         rating ratingComment cancelReason completionNote materials charge { amountCents currency } \
         responseDueAt completionDueAt responseOverdue completionOverdue overdue \
         assignedAt startedAt completedAt closedAt createdAt updatedAt \
         unit { id number } building { id name } resident { id name } submittedBy { id name } \
         assignee { id name } \
         timeline { action actor { id name } fromState toState note } \
         followUps { outcome satisfied note recordedBy { id name } } \
         photos { id contentType byteSize url }"
    };
}

macro_rules! mutation {
    ($field:literal, $input:literal) => {
        concat!(
            "mutation($input: ",
            $input,
            "!) { ",
            $field,
            "(input: $input) { repairOrder { ",
            order_fields!(),
            " } } }"
        )
    };
}

const SUBMIT: &str = mutation!("submitRepairOrder", "SubmitRepairOrderInput");
const ASSIGN: &str = mutation!("assignRepairOrder", "AssignRepairOrderInput");
const START: &str = mutation!("startRepairOrder", "StartRepairOrderInput");
const COMPLETE: &str = mutation!("completeRepairOrder", "CompleteRepairOrderInput");
const CONFIRM: &str = mutation!("confirmRepairOrder", "ConfirmRepairOrderInput");
const CANCEL: &str = mutation!("cancelRepairOrder", "CancelRepairOrderInput");
const FOLLOW_UP: &str = mutation!("addRepairFollowUp", "AddRepairFollowUpInput");

const ORDER: &str = concat!("query($id: ID!) { repairOrder(id: $id) { ", order_fields!(), " } }");

const ORDERS: &str = "query($filter: RepairOrderFilter, $first: Int!, $after: String) { repairOrders(filter: $filter, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id state description } } } }";

const NESTED_PAGE: &str = "{ repairOrders(first: 40) { edges { node { id unit { number building { name } } building { name } resident { name } submittedBy { name } assignee { name } timeline { action actor { name } } photos { url } followUps { outcome } } } totalCount } }";

const CREATE_STAFF: &str = "mutation($phone: String!, $name: String!, $password: String!) { createStaffAccount(input: {phone: $phone, name: $name, position: TECHNICIAN, password: $password}) { user { id position } } }";

const UNIT_RESIDENTS: &str = "query($id: ID!) { unit(id: $id) { residents { id resident { id } } } }";

const MOVE_OUT: &str = "mutation($id: ID!) { moveOut(input: {membershipId: $id}) { membership { id movedOutOn } } }";

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The smallest JPEG-looking byte sequence: SOI, a JFIF APP0 segment, EOI.
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0xFF, 0xD9,
];

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// People and calls
// ---------------------------------------------------------------------------

/// One signed-in person and the calls they make.
struct Person<'a> {
    app: &'a TestApp,
    token: String,
    /// Their user id (`usr_…`).
    id: String,
}

impl<'a> Person<'a> {
    async fn home(app: &'a TestApp, key: &str) -> Self {
        Self { app, token: app.token(key).await, id: id_of("usr", app.home.account(key).user_id) }
    }

    async fn other(app: &'a TestApp, key: &str) -> Self {
        Self { app, token: app.token_in(&app.other, key).await, id: id_of("usr", app.other.account(key).user_id) }
    }

    async fn call(&self, document: &str, input: Value) -> Value {
        self.app.graphql(Some(&self.token), document, json!({ "input": input })).await
    }

    async fn submit(&self, input: Value) -> Value {
        self.call(SUBMIT, input).await
    }

    async fn assign(&self, order: &str, technician: &str) -> Value {
        self.call(ASSIGN, json!({ "repairOrderId": order, "technicianId": technician })).await
    }

    async fn assign_at(&self, order: &str, technician: &str, version: i64) -> Value {
        self.call(ASSIGN, json!({ "repairOrderId": order, "technicianId": technician, "expectedVersion": version }))
            .await
    }

    async fn start(&self, order: &str) -> Value {
        self.call(START, json!({ "repairOrderId": order })).await
    }

    async fn complete(&self, order: &str) -> Value {
        self.call(
            COMPLETE,
            json!({ "repairOrderId": order, "note": "换了阀芯", "materials": "阀芯 ×1", "chargeCents": 3000 }),
        )
        .await
    }

    async fn confirm(&self, order: &str, rating: i64) -> Value {
        self.call(CONFIRM, json!({ "repairOrderId": order, "rating": rating })).await
    }

    async fn cancel(&self, order: &str) -> Value {
        self.call(CANCEL, json!({ "repairOrderId": order, "reason": "不需要了" })).await
    }

    async fn follow_up(&self, order: &str, outcome: &str) -> Value {
        self.call(FOLLOW_UP, json!({ "repairOrderId": order, "outcome": outcome, "satisfied": true })).await
    }

    /// The whole response to `repairOrder(id)`.
    async fn order(&self, id: &str) -> Value {
        self.app.graphql(Some(&self.token), ORDER, json!({ "id": id })).await
    }

    /// The order, which must be visible.
    async fn read(&self, id: &str) -> Value {
        let body = self.order(id).await;
        assert!(body.get("errors").is_none(), "repairOrder({id}) failed: {body}");
        body["data"]["repairOrder"].clone()
    }

    /// The whole response to `repairOrders(filter, first, after)`.
    async fn list(&self, filter: Value, first: i64, after: Option<&str>) -> Value {
        self.app.graphql(Some(&self.token), ORDERS, json!({ "filter": filter, "first": first, "after": after })).await
    }

    /// Ids of the orders matching `filter`, on one page of 100.
    async fn ids(&self, filter: Value) -> BTreeSet<String> {
        let body = self.list(filter.clone(), 100, None).await;
        assert!(body.get("errors").is_none(), "repairOrders({filter}) failed: {body}");
        let connection = &body["data"]["repairOrders"];
        let ids = node_ids(connection);
        assert_eq!(connection["totalCount"], ids.len(), "totalCount of {filter}: {connection}");
        ids.into_iter().collect()
    }

    /// Submits through the GraphQL multipart request spec, with the photos as files `0`, `1`, ….
    async fn submit_with_photos(&self, input: Value, files: &[Photo], preflight: bool) -> reqwest::Response {
        const BOUNDARY: &str = "----repair-test-boundary-5b1f0c3e9a";
        let mut input = input;
        input["photos"] = Value::Array(vec![Value::Null; files.len()]);
        let operations = json!({ "query": SUBMIT, "variables": { "input": input } });
        let map: serde_json::Map<String, Value> =
            (0..files.len()).map(|i| (i.to_string(), json!([format!("variables.input.photos.{i}")]))).collect();
        let mut body = Vec::new();
        let mut part = |disposition: String, content_type: Option<&str>, content: &[u8]| {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n").as_bytes(),
            );
            if let Some(content_type) = content_type {
                body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part("name=\"operations\"".into(), None, operations.to_string().as_bytes());
        part("name=\"map\"".into(), None, Value::Object(map).to_string().as_bytes());
        for (index, file) in files.iter().enumerate() {
            part(format!("name=\"{index}\"; filename=\"{}\"", file.name), Some(file.content_type), &file.bytes);
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let mut request = self
            .app
            .http
            .post(self.app.url("/graphql"))
            .bearer_auth(&self.token)
            .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body);
        if preflight {
            request = request.header("Apollo-Require-Preflight", "true");
        }
        request.send().await.expect("multipart request")
    }

    /// Like `submit_with_photos` with the preflight header; returns the GraphQL body.
    async fn submit_photos(&self, input: Value, files: &[Photo]) -> Value {
        let response = self.submit_with_photos(input, files, true).await;
        assert_eq!(response.status(), 200, "multipart GraphQL answers 200");
        response.json().await.expect("JSON body")
    }
}

/// Everyone of the home community, signed in.
struct Cast<'a> {
    owner: Person<'a>,
    family: Person<'a>,
    tenant: Person<'a>,
    owner2: Person<'a>,
    butler: Person<'a>,
    front_desk: Person<'a>,
    technician: Person<'a>,
    supervisor: Person<'a>,
    manager: Person<'a>,
}

impl<'a> Cast<'a> {
    async fn home(app: &'a TestApp) -> Self {
        Self {
            owner: Person::home(app, "owner").await,
            family: Person::home(app, "family").await,
            tenant: Person::home(app, "tenant").await,
            owner2: Person::home(app, "owner2").await,
            butler: Person::home(app, "butler").await,
            front_desk: Person::home(app, "front_desk").await,
            technician: Person::home(app, "technician").await,
            supervisor: Person::home(app, "supervisor").await,
            manager: Person::home(app, "manager").await,
        }
    }

    /// A second technician of the home community, created by the manager.
    async fn new_technician(&self, phone: &str, name: &str) -> Person<'a> {
        let app = self.manager.app;
        let created = app
            .data(
                Some(&self.manager.token),
                CREATE_STAFF,
                json!({ "phone": phone, "name": name, "password": api::demo::DEMO_PASSWORD }),
            )
            .await;
        assert_eq!(created["createStaffAccount"]["user"]["position"], "TECHNICIAN", "{created}");
        let id = created["createStaffAccount"]["user"]["id"].as_str().expect("user id").to_owned();
        let token = app.login_phone(phone).await["accessToken"].as_str().expect("access token").to_owned();
        Person { app, token, id }
    }

    /// A resident's order for `unit`, through the app; returns its id.
    async fn report(&self, resident: &Person<'_>, unit: &str, description: &str) -> String {
        let order =
            ok(&resident.submit(json!({ "unitId": unit, "category": "PLUMBING", "description": description })).await);
        assert_eq!(order["state"], "SUBMITTED");
        order["id"].as_str().expect("order id").to_owned()
    }

    /// Moves `order` (SUBMITTED, for a unit `resident` lives in) on to `to`
    /// through the supervisor, the demo technician and `resident`.
    async fn advance(&self, order: &str, resident: &Person<'_>, to: &str) {
        let steps: &[&str] = match to {
            "SUBMITTED" => &[],
            "ASSIGNED" => &["assign"],
            "IN_PROGRESS" => &["assign", "start"],
            "COMPLETED" => &["assign", "start", "complete"],
            "CLOSED" => &["assign", "start", "complete", "confirm"],
            "CANCELLED" => &["assign", "cancel"],
            other => panic!("no way to {other}"),
        };
        for step in steps {
            let body = match *step {
                "assign" => self.supervisor.assign(order, &self.technician.id).await,
                "start" => self.technician.start(order).await,
                "complete" => self.technician.complete(order).await,
                "confirm" => resident.confirm(order, 5).await,
                _ => self.supervisor.cancel(order).await,
            };
            ok(&body);
        }
        assert_eq!(self.supervisor.read(order).await["state"], to);
    }
}

/// A file to upload.
struct Photo {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
}

fn png() -> Photo {
    Photo { name: "leak.png", content_type: "image/png", bytes: PNG.to_vec() }
}

fn jpeg() -> Photo {
    Photo { name: "leak.jpg", content_type: "image/jpeg", bytes: JPEG.to_vec() }
}

/// A JPEG of exactly `len` bytes (the magic bytes, then padding).
fn jpeg_of(len: usize) -> Photo {
    let mut bytes = JPEG.to_vec();
    bytes.resize(len, 0);
    Photo { name: "big.jpg", content_type: "image/jpeg", bytes }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn unit(app: &TestApp, number: &str) -> String {
    id_of("unit", app.home.unit(number).id)
}

fn building(app: &TestApp, index: usize) -> String {
    id_of("bld", app.home.buildings[index].id)
}

/// The order in a successful mutation payload; panics with the body otherwise.
#[track_caller]
fn ok(body: &Value) -> Value {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    let data = body["data"].as_object().unwrap_or_else(|| panic!("no data: {body}"));
    let payload = data.values().next().unwrap_or_else(|| panic!("no root field: {body}"));
    payload["repairOrder"].clone()
}

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap_or_else(|| panic!("no id in {order}")).to_owned()
}

#[track_caller]
fn assert_code(body: &Value, code: &str, what: &str) {
    assert_eq!(error_code(body), Some(code), "{what}: expected {code}, got {body}");
    assert!(
        body["data"].is_null() || body["data"].as_object().is_some_and(|d| d.values().all(Value::is_null)),
        "{what}: no data with an error: {body}"
    );
}

#[track_caller]
fn assert_bad_input(body: &Value, field: &str, what: &str) {
    assert_code(body, "BAD_USER_INPUT", what);
    assert_eq!(error_field(body), Some(field), "{what}: expected field {field}, got {body}");
}

/// The timeline's actions, oldest first.
fn actions(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline in {order}"))
        .iter()
        .map(|change| change["action"].as_str().expect("action").to_owned())
        .collect()
}

fn count_of(order: &Value, action: &str) -> usize {
    actions(order).iter().filter(|a| *a == action).count()
}

fn node_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("not a connection: {connection}"))
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("node id").to_owned())
        .collect()
}

fn set<'s>(ids: impl IntoIterator<Item = &'s String>) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("not a time: {value}")))
        .expect("RFC 3339 time")
        .with_timezone(&Utc)
}

/// How many orders the supervisor of the home community sees.
async fn total_orders(cast: &Cast<'_>) -> u64 {
    let body = cast.supervisor.list(json!(null), 1, None).await;
    body["data"]["repairOrders"]["totalCount"].as_u64().unwrap_or_else(|| panic!("no totalCount: {body}"))
}

/// Photo files on disk.
fn stored_photo_files(app: &TestApp) -> usize {
    match std::fs::read_dir(app.settings.data_dir.join("repair-photos")) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// 1. Lifecycle by role
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_resident_submits_for_their_own_unit_through_the_app() {
    let app = spawn_app().await;
    let owner = Person::home(&app, "owner").await;
    let owner_phone = &app.home.account("owner").phone;

    let order = ok(&owner
        .submit(json!({ "unitId": unit(&app, "1-101"), "category": "PLUMBING", "description": "  厨房水龙头漏水  " }))
        .await);
    assert_eq!(order["state"], "SUBMITTED");
    assert_eq!(order["channel"], "APP", "residents report through the app by default");
    assert_eq!(order["priority"], "NORMAL");
    assert_eq!(order["category"], "PLUMBING");
    assert_eq!(order["description"], "厨房水龙头漏水", "trimmed");
    assert_eq!(order["version"], 1);
    assert_eq!(order["unit"]["number"], "1-101");
    assert_eq!(order["building"]["name"], "1号楼");
    assert_eq!(order["resident"]["id"], owner.id.as_str());
    assert_eq!(order["submittedBy"]["id"], owner.id.as_str());
    assert_eq!(order["contactPhone"], owner_phone.as_str(), "the contact number defaults to the resident's own");
    assert!(order["assignee"].is_null() && order["rating"].is_null() && order["photos"] == json!([]));
    assert_eq!(order["responseOverdue"], false);
    assert_eq!(order["overdue"], false);
    let created = time(&order["createdAt"]);
    assert_eq!(time(&order["responseDueAt"]) - created, Duration::hours(24));
    assert_eq!(time(&order["completionDueAt"]) - created, Duration::hours(72));
    assert_eq!(actions(&order), ["SUBMITTED"]);
    assert_eq!(order["timeline"][0]["actor"]["id"], owner.id.as_str());
    assert_eq!(order["timeline"][0]["toState"], "SUBMITTED");
    assert!(order["timeline"][0]["fromState"].is_null());

    // The same order read back.
    let read = owner.read(&id(&order)).await;
    assert_eq!(read["state"], "SUBMITTED");
    assert_eq!(read["version"], 1);

    // Naming the APP channel explicitly, for the second unit, as an emergency.
    let urgent = ok(&owner
        .submit(json!({
            "unitId": unit(&app, "2-201"), "channel": "APP", "priority": "URGENT", "category": "ELECTRICAL",
            "description": "配电箱冒烟", "contactPhone": "139 0000 1111",
            "preferredVisitAt": (Utc::now() + Duration::hours(2)).to_rfc3339(),
        }))
        .await);
    assert_eq!(urgent["channel"], "APP");
    assert_eq!(urgent["priority"], "URGENT");
    assert_eq!(urgent["building"]["name"], "2号楼");
    assert_eq!(urgent["contactPhone"], "13900001111", "spaces dropped");
    assert!(urgent["preferredVisitAt"].is_string());
    let created = time(&urgent["createdAt"]);
    assert_eq!(time(&urgent["responseDueAt"]) - created, Duration::minutes(30), "someone on site within 30 minutes");
    assert_eq!(time(&urgent["completionDueAt"]) - created, Duration::hours(4));
}

#[tokio::test]
async fn the_front_desk_records_a_phone_call_on_a_residents_behalf() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let tenant_phone = &app.home.account("tenant").phone;

    let order = ok(&cast
        .front_desk
        .submit(json!({
            "unitId": unit(&app, "1-102"), "residentId": cast.tenant.id, "channel": "PHONE",
            "category": "DOORS_WINDOWS", "description": "卧室窗户关不上",
        }))
        .await);
    assert_eq!(order["channel"], "PHONE");
    assert_eq!(order["state"], "SUBMITTED");
    assert_eq!(order["resident"]["id"], cast.tenant.id.as_str());
    assert_eq!(order["submittedBy"]["id"], cast.front_desk.id.as_str());
    assert_eq!(order["contactPhone"], tenant_phone.as_str(), "defaults to the resident's number");
    assert_eq!(order["unit"]["number"], "1-102");
    assert_eq!(order["timeline"][0]["actor"]["id"], cast.front_desk.id.as_str());

    // The tenant sees the order taken for them.
    assert_eq!(cast.tenant.ids(json!(null)).await, set([&id(&order)]));

    // A visit to the desk, with a landline to call back on.
    let visit = ok(&cast
        .front_desk
        .submit(json!({
            "unitId": unit(&app, "1-101"), "residentId": cast.family.id, "channel": "FRONT_DESK",
            "category": "OTHER", "description": "门铃不响", "contactPhone": "010-8888 6666",
        }))
        .await);
    assert_eq!(visit["channel"], "FRONT_DESK");
    assert_eq!(visit["resident"]["id"], cast.family.id.as_str());
    assert_eq!(visit["contactPhone"], "01088886666");

    // The butler takes calls for their building too.
    let by_butler = ok(&cast
        .butler
        .submit(json!({
            "unitId": unit(&app, "1-102"), "residentId": cast.tenant.id, "channel": "PHONE",
            "category": "APPLIANCES", "description": "热水器不加热",
        }))
        .await);
    assert_eq!(by_butler["submittedBy"]["id"], cast.butler.id.as_str());

    // Whom the order is for must live in the unit.
    let body = cast
        .front_desk
        .submit(json!({
            "unitId": unit(&app, "1-102"), "residentId": cast.owner2.id, "channel": "PHONE",
            "category": "OTHER", "description": "x",
        }))
        .await;
    assert_bad_input(&body, "residentId", "a resident of another unit");
    // Staff report through PHONE, FRONT_DESK or PATROL, never APP, and must say which.
    let body = cast
        .front_desk
        .submit(json!({ "unitId": unit(&app, "1-102"), "residentId": cast.tenant.id, "channel": "APP", "category": "OTHER", "description": "x" }))
        .await;
    assert_bad_input(&body, "channel", "staff using the APP channel");
    let body = cast
        .front_desk
        .submit(json!({ "unitId": unit(&app, "1-102"), "residentId": cast.tenant.id, "category": "OTHER", "description": "x" }))
        .await;
    assert_bad_input(&body, "channel", "staff without a channel");
    // A technician does not take calls.
    let body = cast
        .technician
        .submit(json!({ "unitId": unit(&app, "1-102"), "residentId": cast.tenant.id, "channel": "PHONE", "category": "OTHER", "description": "x" }))
        .await;
    assert_code(&body, "FORBIDDEN", "a technician taking a phone call");
    // The butler of 1号楼 cannot take calls for 2号楼.
    let body = cast
        .butler
        .submit(json!({ "unitId": unit(&app, "2-202"), "residentId": cast.owner2.id, "channel": "PHONE", "category": "OTHER", "description": "x" }))
        .await;
    assert_code(&body, "NOT_FOUND", "the butler taking a call for another building");
    // Nor the front desk for another community.
    let body = cast
        .front_desk
        .submit(json!({
            "unitId": id_of("unit", app.other.unit("1-102").id),
            "residentId": id_of("usr", app.other.account("tenant").user_id),
            "channel": "PHONE", "category": "OTHER", "description": "x",
        }))
        .await;
    assert_code(&body, "NOT_FOUND", "the front desk taking a call for another community");
    assert_eq!(total_orders(&cast).await, 3);
}

#[tokio::test]
async fn a_technician_reports_a_patrol_finding_in_a_public_area() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;

    let order = ok(&cast
        .technician
        .submit(json!({
            "buildingId": building(&app, 1), "channel": "PATROL", "category": "PUBLIC_FACILITIES",
            "description": "2号楼楼道灯不亮",
        }))
        .await);
    assert_eq!(order["channel"], "PATROL");
    assert_eq!(order["state"], "SUBMITTED");
    assert!(order["unit"].is_null(), "a public area has no unit: {order}");
    assert!(order["resident"].is_null(), "a patrol finding is for no resident: {order}");
    assert!(order["contactPhone"].is_null());
    assert_eq!(order["building"]["name"], "2号楼");
    assert_eq!(order["submittedBy"]["id"], cast.technician.id.as_str());

    // Staff see it; residents of the building do not, having no unit in it.
    assert_eq!(cast.supervisor.read(&id(&order)).await["building"]["name"], "2号楼");
    assert_code(&cast.owner2.order(&id(&order)).await, "NOT_FOUND", "a resident reading a public-area order");

    // PATROL needs a unit or a building, and a resident only with a unit.
    let body = cast.technician.submit(json!({ "channel": "PATROL", "category": "OTHER", "description": "x" })).await;
    assert_bad_input(&body, "buildingId", "a patrol finding nowhere");
    let body = cast
        .technician
        .submit(json!({ "buildingId": building(&app, 1), "residentId": cast.owner2.id, "channel": "PATROL", "category": "OTHER", "description": "x" }))
        .await;
    assert_bad_input(&body, "residentId", "a resident without a unit");
    let body = cast
        .technician
        .submit(json!({ "buildingId": id_of("bld", app.other.buildings[0].id), "channel": "PATROL", "category": "OTHER", "description": "x" }))
        .await;
    assert_code(&body, "NOT_FOUND", "a patrol in another community");
    let body = cast
        .owner
        .submit(json!({ "unitId": unit(&app, "1-101"), "channel": "PATROL", "category": "OTHER", "description": "x" }))
        .await;
    assert_bad_input(&body, "channel", "a resident reporting a patrol");
    assert_eq!(total_orders(&cast).await, 1);
}

#[tokio::test]
async fn the_butler_dispatches_orders_of_their_own_building_only() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let mine = cast.report(&cast.owner, &unit(&app, "1-101"), "马桶堵了").await;
    let theirs = cast.report(&cast.owner2, &unit(&app, "2-202"), "阳台漏水").await;

    assert_eq!(cast.butler.ids(json!(null)).await, set([&mine]));
    let assigned = ok(&cast.butler.assign(&mine, &cast.technician.id).await);
    assert_eq!(assigned["state"], "ASSIGNED");
    assert_eq!(assigned["assignee"]["id"], cast.technician.id.as_str());
    assert_eq!(assigned["version"], 2);
    assert!(assigned["assignedAt"].is_string());
    assert_eq!(actions(&assigned), ["SUBMITTED", "ASSIGNED"]);
    assert_eq!(assigned["timeline"][1]["actor"]["id"], cast.butler.id.as_str());
    assert_eq!(assigned["timeline"][1]["fromState"], "SUBMITTED");
    assert_eq!(assigned["timeline"][1]["toState"], "ASSIGNED");

    // 2号楼 is not the butler's: its order does not exist for them.
    assert_code(&cast.butler.order(&theirs).await, "NOT_FOUND", "the butler reading a 2号楼 order");
    assert_code(
        &cast.butler.assign(&theirs, &cast.technician.id).await,
        "NOT_FOUND",
        "the butler assigning a 2号楼 order",
    );
    assert_code(&cast.butler.cancel(&theirs).await, "NOT_FOUND", "the butler cancelling a 2号楼 order");
    let untouched = cast.supervisor.read(&theirs).await;
    assert_eq!(untouched["state"], "SUBMITTED");
    assert_eq!(untouched["version"], 1);
    assert!(untouched["assignee"].is_null());
}

#[tokio::test]
async fn the_supervisor_assigns_and_reassigns() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let second = cast.new_technician("13700000001", "钱师傅").await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "暖气片漏水").await;

    // Only dispatchers dispatch.
    for (who, person) in [("front desk", &cast.front_desk), ("technician", &cast.technician), ("owner", &cast.owner)] {
        assert_code(&person.assign(&order, &cast.technician.id).await, "FORBIDDEN", &format!("{who} assigning"));
    }
    // Only to a technician of the order's community.
    assert_code(&cast.supervisor.assign(&order, &cast.front_desk.id).await, "NOT_FOUND", "assigning to the front desk");
    let foreign = id_of("usr", app.other.account("technician").user_id);
    assert_code(
        &cast.supervisor.assign(&order, &foreign).await,
        "NOT_FOUND",
        "assigning to another community's technician",
    );
    assert_code(&cast.supervisor.assign(&order, "usr_999999").await, "NOT_FOUND", "assigning to nobody");
    assert_eq!(cast.supervisor.read(&order).await["version"], 1, "refusals change nothing");

    let assigned = ok(&cast.supervisor.assign(&order, &cast.technician.id).await);
    assert_eq!(assigned["assignee"]["id"], cast.technician.id.as_str());
    assert_code(
        &cast.supervisor.assign(&order, &cast.technician.id).await,
        "CONFLICT",
        "assigning to the same technician again",
    );

    let reassigned = ok(&cast.manager.assign(&order, &second.id).await);
    assert_eq!(reassigned["state"], "ASSIGNED");
    assert_eq!(reassigned["assignee"]["id"], second.id.as_str());
    assert_eq!(reassigned["version"], 3);
    assert_eq!(actions(&reassigned), ["SUBMITTED", "ASSIGNED", "REASSIGNED"]);
    assert_eq!(reassigned["timeline"][1]["actor"]["id"], cast.supervisor.id.as_str());
    assert_eq!(reassigned["timeline"][2]["actor"]["id"], cast.manager.id.as_str());

    // The first technician no longer sees it; the second does and starts.
    assert_code(&cast.technician.order(&order).await, "NOT_FOUND", "the former technician reading it");
    assert_code(&cast.technician.start(&order).await, "NOT_FOUND", "the former technician starting it");
    let started = ok(&second.start(&order).await);
    assert_eq!(started["state"], "IN_PROGRESS");

    // Reassigning work in progress sends it back to ASSIGNED.
    let back = ok(&cast.supervisor.assign(&order, &cast.technician.id).await);
    assert_eq!(back["state"], "ASSIGNED");
    assert!(back["startedAt"].is_null(), "the new technician has not started: {back}");
    assert_eq!(actions(&back), ["SUBMITTED", "ASSIGNED", "REASSIGNED", "STARTED", "REASSIGNED"]);
    assert_eq!(back["timeline"][4]["fromState"], "IN_PROGRESS");
}

#[tokio::test]
async fn only_the_assigned_technician_starts_and_completes() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let second = cast.new_technician("13700000002", "孙师傅").await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "下水道堵塞").await;
    cast.advance(&order, &cast.owner, "ASSIGNED").await;

    assert_code(&second.start(&order).await, "NOT_FOUND", "another technician starting");
    assert_code(&cast.supervisor.start(&order).await, "FORBIDDEN", "the supervisor starting");
    assert_code(&cast.butler.start(&order).await, "FORBIDDEN", "the butler starting");
    assert_code(&cast.owner.start(&order).await, "FORBIDDEN", "the resident starting");
    let started = ok(&cast.technician.start(&order).await);
    assert_eq!(started["state"], "IN_PROGRESS");
    assert!(started["startedAt"].is_string());
    assert_eq!(started["timeline"][2]["actor"]["id"], cast.technician.id.as_str());

    assert_code(&second.complete(&order).await, "NOT_FOUND", "another technician completing");
    assert_code(&cast.supervisor.complete(&order).await, "FORBIDDEN", "the supervisor completing");
    let body = cast.technician.call(COMPLETE, json!({ "repairOrderId": order, "note": "   " })).await;
    assert_bad_input(&body, "note", "an empty completion note");
    let body = cast.technician.call(COMPLETE, json!({ "repairOrderId": order, "note": "ok", "chargeCents": -1 })).await;
    assert_bad_input(&body, "chargeCents", "a negative charge");
    let body = cast
        .technician
        .call(COMPLETE, json!({ "repairOrderId": order, "note": "ok", "chargeCents": 10_000_001 }))
        .await;
    assert_bad_input(&body, "chargeCents", "a charge over the limit");

    let completed = ok(&cast.technician.complete(&order).await);
    assert_eq!(completed["state"], "COMPLETED");
    assert_eq!(completed["completionNote"], "换了阀芯");
    assert_eq!(completed["materials"], "阀芯 ×1");
    assert_eq!(completed["charge"], json!({ "amountCents": 3000, "currency": "CNY" }));
    assert!(completed["completedAt"].is_string());
    assert_eq!(actions(&completed), ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]);
    assert_eq!(completed["version"], 4);
}

#[tokio::test]
async fn any_current_resident_of_the_unit_confirms_with_a_rating() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "客厅插座没电").await;
    cast.advance(&order, &cast.owner, "COMPLETED").await;

    for (who, person) in [
        ("supervisor", &cast.supervisor),
        ("manager", &cast.manager),
        ("front desk", &cast.front_desk),
        ("butler", &cast.butler),
        ("technician", &cast.technician),
    ] {
        assert_code(&person.confirm(&order, 5).await, "FORBIDDEN", &format!("the {who} confirming"));
    }
    assert_code(&cast.tenant.confirm(&order, 5).await, "NOT_FOUND", "a neighbour confirming");
    for rating in [0, 6, -1] {
        assert_bad_input(&cast.family.confirm(&order, rating).await, "rating", &format!("rating {rating}"));
    }
    let body =
        cast.family.call(CONFIRM, json!({ "repairOrderId": order, "rating": 5, "comment": "x".repeat(1001) })).await;
    assert_bad_input(&body, "comment", "a comment over 1000 characters");
    assert_eq!(cast.supervisor.read(&order).await["state"], "COMPLETED", "refusals change nothing");

    // The family member confirms the owner's order.
    let closed =
        ok(&cast.family.call(CONFIRM, json!({ "repairOrderId": order, "rating": 4, "comment": "师傅很专业" })).await);
    assert_eq!(closed["state"], "CLOSED");
    assert_eq!(closed["rating"], 4);
    assert_eq!(closed["ratingComment"], "师傅很专业");
    assert!(closed["closedAt"].is_string());
    assert_eq!(actions(&closed), ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED", "CONFIRMED"]);
    assert_eq!(closed["timeline"][4]["actor"]["id"], cast.family.id.as_str());
    assert_eq!(closed["timeline"][4]["toState"], "CLOSED");

    assert_code(&cast.owner.confirm(&order, 5).await, "CONFLICT", "confirming twice");
    assert_eq!(cast.owner.read(&order).await["rating"], 4);

    // Ratings 1 and 5 are both fine.
    for rating in [1, 5] {
        let other = cast.report(&cast.tenant, &unit(&app, "1-102"), "门把手松了").await;
        cast.advance(&other, &cast.tenant, "COMPLETED").await;
        assert_eq!(ok(&cast.tenant.confirm(&other, rating).await)["rating"], rating);
    }
}

#[tokio::test]
async fn a_resident_who_moved_out_can_no_longer_confirm_or_cancel() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let owners = cast.report(&cast.owner, &unit(&app, "1-101"), "阳台门卡住").await;
    cast.advance(&owners, &cast.owner, "COMPLETED").await;
    let familys = cast.report(&cast.family, &unit(&app, "1-101"), "卧室灯闪").await;

    let residents = app.data(Some(&cast.front_desk.token), UNIT_RESIDENTS, json!({ "id": unit(&app, "1-101") })).await;
    let membership = residents["unit"]["residents"]
        .as_array()
        .expect("residents")
        .iter()
        .find(|m| m["resident"]["id"] == cast.family.id.as_str())
        .expect("the family member lives in 1-101")["id"]
        .clone();
    app.data(Some(&cast.front_desk.token), MOVE_OUT, json!({ "id": membership })).await;

    assert_code(&cast.family.order(&owners).await, "NOT_FOUND", "reading after moving out");
    assert_code(&cast.family.confirm(&owners, 5).await, "NOT_FOUND", "confirming after moving out");
    assert_code(&cast.family.cancel(&familys).await, "NOT_FOUND", "cancelling one's own order after moving out");
    let body =
        cast.family.submit(json!({ "unitId": unit(&app, "1-101"), "category": "OTHER", "description": "x" })).await;
    assert_code(&body, "NOT_FOUND", "reporting for the unit after moving out");
    assert!(cast.family.ids(json!(null)).await.is_empty());
    assert_eq!(ok(&cast.owner.confirm(&owners, 5).await)["state"], "CLOSED");
    assert_eq!(cast.owner.read(&familys).await["state"], "SUBMITTED");
}

#[tokio::test]
async fn cancellation_depends_on_who_asks_and_how_far_the_work_is() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let u101 = unit(&app, "1-101");

    // The submitter, while SUBMITTED.
    let submitted = cast.report(&cast.owner, &u101, "热水器漏水").await;
    let body = cast.owner.call(CANCEL, json!({ "repairOrderId": submitted, "reason": "  " })).await;
    assert_bad_input(&body, "reason", "an empty reason");
    let cancelled = ok(&cast.owner.cancel(&submitted).await);
    assert_eq!(cancelled["state"], "CANCELLED");
    assert_eq!(cancelled["cancelReason"], "不需要了");
    assert!(cancelled["closedAt"].is_string());
    assert_eq!(actions(&cancelled), ["SUBMITTED", "CANCELLED"]);
    let change = &cancelled["timeline"][1];
    assert_eq!(change["actor"]["id"], cast.owner.id.as_str());
    assert_eq!(change["note"], "不需要了");
    assert_eq!(change["fromState"], "SUBMITTED");
    assert_eq!(change["toState"], "CANCELLED");

    // The submitter, while ASSIGNED; another resident of the unit may not.
    let assigned = cast.report(&cast.owner, &u101, "浴室地漏反味").await;
    cast.advance(&assigned, &cast.owner, "ASSIGNED").await;
    assert_code(&cast.family.cancel(&assigned).await, "FORBIDDEN", "a resident cancelling someone else's order");
    assert_code(&cast.technician.cancel(&assigned).await, "FORBIDDEN", "the technician cancelling");
    assert_eq!(cast.owner.read(&assigned).await["state"], "ASSIGNED");
    assert_eq!(ok(&cast.owner.cancel(&assigned).await)["state"], "CANCELLED");

    // The submitter no longer once work started; the front desk still can.
    let started = cast.report(&cast.owner, &u101, "吊顶渗水").await;
    cast.advance(&started, &cast.owner, "IN_PROGRESS").await;
    assert_code(&cast.owner.cancel(&started).await, "CONFLICT", "the submitter cancelling work in progress");
    assert_eq!(cast.owner.read(&started).await["state"], "IN_PROGRESS");
    let stopped = ok(&cast.front_desk.cancel(&started).await);
    assert_eq!(stopped["state"], "CANCELLED");
    assert_eq!(stopped["timeline"][3]["actor"]["id"], cast.front_desk.id.as_str());
    assert_eq!(stopped["timeline"][3]["fromState"], "IN_PROGRESS");

    // Nobody once the work is done.
    let done = cast.report(&cast.owner, &u101, "门锁失灵").await;
    cast.advance(&done, &cast.owner, "COMPLETED").await;
    for (who, person) in
        [("submitter", &cast.owner), ("front desk", &cast.front_desk), ("supervisor", &cast.supervisor)]
    {
        assert_code(&person.cancel(&done).await, "CONFLICT", &format!("the {who} cancelling completed work"));
    }
    assert_eq!(cast.owner.read(&done).await["state"], "COMPLETED");

    // The butler of the building may cancel for the resident.
    let by_butler = cast.report(&cast.tenant, &unit(&app, "1-102"), "窗户玻璃裂了").await;
    assert_eq!(ok(&cast.butler.cancel(&by_butler).await)["state"], "CANCELLED");
}

#[tokio::test]
async fn follow_ups_are_recorded_on_closed_orders_only() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "空调不制冷").await;

    for state in ["SUBMITTED", "ASSIGNED", "IN_PROGRESS", "COMPLETED"] {
        cast.advance_from_previous(&order, state).await;
        assert_code(&cast.butler.follow_up(&order, "回访").await, "CONFLICT", &format!("a follow-up on {state}"));
        assert_code(&cast.front_desk.follow_up(&order, "回访").await, "CONFLICT", &format!("a follow-up on {state}"));
    }
    let closed = ok(&cast.owner.confirm(&order, 5).await);
    let version = closed["version"].as_i64().expect("version");

    assert_code(&cast.technician.follow_up(&order, "回访").await, "FORBIDDEN", "the technician following up");
    assert_code(&cast.owner.follow_up(&order, "回访").await, "FORBIDDEN", "the resident following up");
    let body = cast.butler.call(FOLLOW_UP, json!({ "repairOrderId": order, "outcome": " ", "satisfied": true })).await;
    assert_bad_input(&body, "outcome", "an empty outcome");

    let first = ok(&cast
        .butler
        .call(
            FOLLOW_UP,
            json!({ "repairOrderId": order, "outcome": "业主表示满意", "satisfied": true, "note": "电话回访" }),
        )
        .await);
    assert_eq!(first["state"], "CLOSED");
    assert_eq!(first["version"], version + 1);
    let second = ok(&cast
        .front_desk
        .call(FOLLOW_UP, json!({ "repairOrderId": order, "outcome": "仍有异响", "satisfied": false }))
        .await);
    assert_eq!(second["version"], version + 2);

    let read = cast.owner.read(&order).await;
    assert_eq!(
        read["followUps"],
        json!([
            { "outcome": "业主表示满意", "satisfied": true, "note": "电话回访", "recordedBy": { "id": cast.butler.id, "name": "陈管家" } },
            { "outcome": "仍有异响", "satisfied": false, "note": null, "recordedBy": { "id": cast.front_desk.id, "name": "刘前台" } },
        ])
    );
    assert_eq!(
        actions(&read),
        ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED", "CONFIRMED", "FOLLOWED_UP", "FOLLOWED_UP"]
    );
    assert_eq!(read["timeline"][5]["note"], "业主表示满意");
    assert_eq!(read["state"], "CLOSED");

    // Nor on a cancelled order.
    let cancelled = cast.report(&cast.owner, &unit(&app, "1-101"), "不用修了").await;
    ok(&cast.owner.cancel(&cancelled).await);
    assert_code(&cast.front_desk.follow_up(&cancelled, "回访").await, "CONFLICT", "a follow-up on CANCELLED");
    assert_eq!(cast.owner.read(&cancelled).await["followUps"], json!([]));
}

impl Cast<'_> {
    /// One step further along the happy path, to `state` (for an owner's order of 1-101).
    async fn advance_from_previous(&self, order: &str, state: &str) {
        let body = match state {
            "SUBMITTED" => return,
            "ASSIGNED" => self.supervisor.assign(order, &self.technician.id).await,
            "IN_PROGRESS" => self.technician.start(order).await,
            "COMPLETED" => self.technician.complete(order).await,
            other => panic!("no step to {other}"),
        };
        assert_eq!(ok(&body)["state"], state);
    }
}

// ---------------------------------------------------------------------------
// 2. Illegal transitions, scope and malformed ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn illegal_transitions_are_conflicts_and_change_nothing() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let u101 = unit(&app, "1-101");

    let submitted = cast.report(&cast.owner, &u101, "a").await;
    // A technician sees only orders assigned to them, so an unassigned order is not found.
    assert_code(&cast.technician.start(&submitted).await, "NOT_FOUND", "starting an unassigned order");

    let assigned = cast.report(&cast.owner, &u101, "b").await;
    cast.advance(&assigned, &cast.owner, "ASSIGNED").await;
    let in_progress = cast.report(&cast.owner, &u101, "c").await;
    cast.advance(&in_progress, &cast.owner, "IN_PROGRESS").await;
    let completed = cast.report(&cast.owner, &u101, "d").await;
    cast.advance(&completed, &cast.owner, "COMPLETED").await;
    let closed = cast.report(&cast.owner, &u101, "e").await;
    cast.advance(&closed, &cast.owner, "CLOSED").await;
    let cancelled = cast.report(&cast.owner, &u101, "f").await;
    cast.advance(&cancelled, &cast.owner, "CANCELLED").await;

    let mut cases: Vec<(String, Value)> = vec![
        ("confirm a SUBMITTED order".into(), cast.owner.confirm(&submitted, 5).await),
        ("complete an ASSIGNED order".into(), cast.technician.complete(&assigned).await),
        ("confirm an ASSIGNED order".into(), cast.owner.confirm(&assigned, 5).await),
        ("start an IN_PROGRESS order".into(), cast.technician.start(&in_progress).await),
        ("confirm an IN_PROGRESS order".into(), cast.owner.confirm(&in_progress, 5).await),
        ("start a COMPLETED order".into(), cast.technician.start(&completed).await),
        ("complete a COMPLETED order".into(), cast.technician.complete(&completed).await),
        ("assign a COMPLETED order".into(), cast.supervisor.assign(&completed, &cast.technician.id).await),
    ];
    for (state, order) in [("CLOSED", &closed), ("CANCELLED", &cancelled)] {
        let attempts = [
            ("assign", cast.supervisor.assign(order, &cast.technician.id).await),
            ("start", cast.technician.start(order).await),
            ("complete", cast.technician.complete(order).await),
            ("confirm", cast.owner.confirm(order, 5).await),
            ("cancel (submitter)", cast.owner.cancel(order).await),
            ("cancel (staff)", cast.front_desk.cancel(order).await),
        ];
        for (what, body) in attempts {
            cases.push((format!("{what} a {state} order"), body));
        }
    }
    assert_eq!(cases.len(), 20);

    let mut failures = Vec::new();
    for (what, body) in &cases {
        if error_code(body) != Some("CONFLICT") {
            failures.push(format!("{what}: expected CONFLICT, got {body}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    for (order, state, version) in [
        (&assigned, "ASSIGNED", 2),
        (&in_progress, "IN_PROGRESS", 3),
        (&completed, "COMPLETED", 4),
        (&closed, "CLOSED", 5),
        (&cancelled, "CANCELLED", 3),
        (&submitted, "SUBMITTED", 1),
    ] {
        let read = cast.supervisor.read(order).await;
        assert_eq!((read["state"].as_str(), read["version"].as_i64()), (Some(state), Some(version)), "{read}");
    }
}

/// An order of the other community's owner for their 1-101.
async fn foreign_order(owner: &Person<'_>, unit: &str, description: &str) -> String {
    id(&ok(&owner.submit(json!({ "unitId": unit, "category": "OTHER", "description": description })).await))
}

#[tokio::test]
async fn mutations_on_orders_out_of_scope_are_not_found() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;

    // Orders of the other community, each in a state where its own people could act.
    let other_owner = Person::other(&app, "owner").await;
    let other_supervisor = Person::other(&app, "supervisor").await;
    let other_technician = Person::other(&app, "technician").await;
    let other_unit = id_of("unit", app.other.unit("1-101").id);
    let foreign_assigned = foreign_order(&other_owner, &other_unit, "assigned").await;
    ok(&other_supervisor.assign(&foreign_assigned, &other_technician.id).await);
    let foreign_started = foreign_order(&other_owner, &other_unit, "started").await;
    ok(&other_supervisor.assign(&foreign_started, &other_technician.id).await);
    ok(&other_technician.start(&foreign_started).await);
    let foreign_completed = foreign_order(&other_owner, &other_unit, "completed").await;
    ok(&other_supervisor.assign(&foreign_completed, &other_technician.id).await);
    ok(&other_technician.start(&foreign_completed).await);
    ok(&other_technician.complete(&foreign_completed).await);
    let foreign_closed = foreign_order(&other_owner, &other_unit, "closed").await;
    ok(&other_supervisor.assign(&foreign_closed, &other_technician.id).await);
    ok(&other_technician.start(&foreign_closed).await);
    ok(&other_technician.complete(&foreign_closed).await);
    ok(&other_owner.confirm(&foreign_closed, 5).await);

    // An order of a neighbour's unit (2-202) in the home community, completed.
    let neighbours = cast.report(&cast.owner2, &unit(&app, "2-202"), "neighbour").await;
    cast.advance(&neighbours, &cast.owner2, "COMPLETED").await;
    // And one assigned to the demo technician, closed, in 2号楼.
    let closed_2 = cast.report(&cast.owner2, &unit(&app, "2-202"), "closed").await;
    cast.advance(&closed_2, &cast.owner2, "CLOSED").await;

    let missing = "ro_999999".to_owned();
    let mut cases: Vec<(String, Value)> = Vec::new();
    for order in [&foreign_assigned, &foreign_started, &foreign_completed, &foreign_closed, &missing] {
        let attempts = [
            ("supervisor assigns", cast.supervisor.assign(order, &cast.technician.id).await),
            ("butler assigns", cast.butler.assign(order, &cast.technician.id).await),
            ("technician starts", cast.technician.start(order).await),
            ("technician completes", cast.technician.complete(order).await),
            ("owner confirms", cast.owner.confirm(order, 5).await),
            ("supervisor confirms", cast.supervisor.confirm(order, 5).await),
            ("owner cancels", cast.owner.cancel(order).await),
            ("front desk cancels", cast.front_desk.cancel(order).await),
            ("front desk follows up", cast.front_desk.follow_up(order, "回访").await),
            ("butler follows up", cast.butler.follow_up(order, "回访").await),
            ("manager reads", cast.manager.order(order).await),
        ];
        for (what, body) in attempts {
            cases.push((format!("{what} {order}"), body));
        }
    }
    let neighbour_attempts = [
        ("owner confirms the neighbour's order", cast.owner.confirm(&neighbours, 5).await),
        ("tenant confirms the neighbour's order", cast.tenant.confirm(&neighbours, 5).await),
        ("owner cancels the neighbour's order", cast.owner.cancel(&neighbours).await),
        ("owner reads the neighbour's order", cast.owner.order(&neighbours).await),
        ("butler of 1号楼 cancels a 2号楼 order", cast.butler.cancel(&neighbours).await),
        ("butler of 1号楼 follows up a 2号楼 order", cast.butler.follow_up(&closed_2, "回访").await),
        ("butler of 1号楼 reassigns a 2号楼 order", cast.butler.assign(&neighbours, &cast.technician.id).await),
    ];
    for (what, body) in neighbour_attempts {
        cases.push((what.to_owned(), body));
    }
    let mut failures = Vec::new();
    for (what, body) in &cases {
        if error_code(body) != Some("NOT_FOUND") {
            failures.push(format!("{what}: expected NOT_FOUND, got {body}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    // Nothing changed over there.
    for (order, state, version) in [
        (&foreign_assigned, "ASSIGNED", 2),
        (&foreign_started, "IN_PROGRESS", 3),
        (&foreign_completed, "COMPLETED", 4),
        (&foreign_closed, "CLOSED", 5),
    ] {
        let read = other_supervisor.read(order).await;
        assert_eq!((read["state"].as_str(), read["version"].as_i64()), (Some(state), Some(version)), "{read}");
        assert!(read["followUps"].as_array().is_some_and(Vec::is_empty));
    }
    let read = cast.supervisor.read(&neighbours).await;
    assert_eq!((read["state"].as_str(), read["version"].as_i64()), (Some("COMPLETED"), Some(4)));
}

#[tokio::test]
async fn malformed_ids_are_bad_user_input() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "a").await;
    let unit_101 = unit(&app, "1-101");

    let mut failures = Vec::new();
    let mut expect = |what: String, body: Value, field: &str| {
        if error_code(&body) != Some("BAD_USER_INPUT") || error_field(&body) != Some(field) {
            failures.push(format!("{what}: expected BAD_USER_INPUT on {field}, got {body}"));
        }
    };
    for bad in ["ro_abc", "ro_", "ro_0", "ro_-1", "unit_1", "", "ro1", "ro_99999999999999999999"] {
        expect(format!("assign {bad:?}"), cast.supervisor.assign(bad, &cast.technician.id).await, "repairOrderId");
        expect(format!("start {bad:?}"), cast.technician.start(bad).await, "repairOrderId");
        expect(format!("complete {bad:?}"), cast.technician.complete(bad).await, "repairOrderId");
        expect(format!("confirm {bad:?}"), cast.owner.confirm(bad, 5).await, "repairOrderId");
        expect(format!("cancel {bad:?}"), cast.owner.cancel(bad).await, "repairOrderId");
        expect(format!("follow up {bad:?}"), cast.front_desk.follow_up(bad, "x").await, "repairOrderId");
        expect(format!("read {bad:?}"), cast.owner.order(bad).await, "id");
    }
    for bad in ["usr_x", "unit_3", "ro_1"] {
        expect(format!("technicianId {bad:?}"), cast.supervisor.assign(&order, bad).await, "technicianId");
    }
    expect(
        "unitId of another kind".into(),
        cast.front_desk.submit(json!({ "unitId": "bld_1", "residentId": cast.owner.id, "channel": "PHONE", "category": "OTHER", "description": "x" })).await,
        "unitId",
    );
    expect(
        "residentId of another kind".into(),
        cast.front_desk.submit(json!({ "unitId": unit_101, "residentId": "unit_1", "channel": "PHONE", "category": "OTHER", "description": "x" })).await,
        "residentId",
    );
    expect(
        "buildingId of another kind".into(),
        cast.front_desk
            .submit(json!({ "buildingId": "unit_1", "channel": "PATROL", "category": "OTHER", "description": "x" }))
            .await,
        "buildingId",
    );
    for (field, bad) in [("buildingId", "unit_1"), ("unitId", "bld_1"), ("assigneeId", "x")] {
        let body = cast.supervisor.list(json!({ field: bad }), 10, None).await;
        expect(format!("filter.{field} {bad:?}"), body, &format!("filter.{field}"));
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(total_orders(&cast).await, 1);
}

// ---------------------------------------------------------------------------
// 3. Optimistic locking
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_assignments_at_the_same_version_let_exactly_one_win() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let second = cast.new_technician("13700000003", "吴师傅").await;

    for round in 0..3 {
        let order = cast.report(&cast.owner, &unit(&app, "1-101"), &format!("并发派单 {round}")).await;
        let version = cast.supervisor.read(&order).await["version"].as_i64().expect("version");
        let (by_supervisor, by_manager) = tokio::join!(
            cast.supervisor.assign_at(&order, &cast.technician.id, version),
            cast.manager.assign_at(&order, &second.id, version),
        );
        let outcomes = [error_code(&by_supervisor), error_code(&by_manager)];
        let winner = match outcomes {
            [None, Some("CONFLICT")] => &cast.technician.id,
            [Some("CONFLICT"), None] => &second.id,
            _ => panic!("round {round}: exactly one should win:\n{by_supervisor}\n{by_manager}"),
        };
        let read = cast.supervisor.read(&order).await;
        assert_eq!(read["assignee"]["id"], winner.as_str(), "round {round}: {read}");
        assert_eq!(read["version"], version + 1, "round {round}: one change only");
        assert_eq!(actions(&read), ["SUBMITTED", "ASSIGNED"], "round {round}");
    }
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let second = cast.new_technician("13700000004", "郑师傅").await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "乐观锁").await;

    let assigned = ok(&cast.supervisor.assign_at(&order, &cast.technician.id, 1).await);
    assert_eq!(assigned["version"], 2);

    let stale = cast.manager.assign_at(&order, &second.id, 1).await;
    assert_code(&stale, "CONFLICT", "assigning at a stale version");
    let future = cast.manager.assign_at(&order, &second.id, 7).await;
    assert_code(&future, "CONFLICT", "assigning at a version not reached yet");
    let start = cast.technician.call(START, json!({ "repairOrderId": order, "expectedVersion": 1 })).await;
    assert_code(&start, "CONFLICT", "starting at a stale version");
    let cancel = cast.owner.call(CANCEL, json!({ "repairOrderId": order, "reason": "x", "expectedVersion": 1 })).await;
    assert_code(&cancel, "CONFLICT", "cancelling at a stale version");

    let read = cast.supervisor.read(&order).await;
    assert_eq!(read["version"], 2);
    assert_eq!(read["state"], "ASSIGNED");
    assert_eq!(read["assignee"]["id"], cast.technician.id.as_str());
    assert_eq!(read["updatedAt"], assigned["updatedAt"]);
    assert_eq!(actions(&read), ["SUBMITTED", "ASSIGNED"]);

    // With the current version it goes through.
    let started = ok(&cast.technician.call(START, json!({ "repairOrderId": order, "expectedVersion": 2 })).await);
    assert_eq!(started["state"], "IN_PROGRESS");
    assert_eq!(started["version"], 3);
    let completed = ok(&cast
        .technician
        .call(COMPLETE, json!({ "repairOrderId": order, "note": "ok", "expectedVersion": 3 }))
        .await);
    let confirm = cast.owner.call(CONFIRM, json!({ "repairOrderId": order, "rating": 5, "expectedVersion": 3 })).await;
    assert_code(&confirm, "CONFLICT", "confirming at a stale version");
    assert_eq!(cast.owner.read(&order).await["state"], "COMPLETED");
    let confirmed = ok(&cast
        .owner
        .call(CONFIRM, json!({ "repairOrderId": order, "rating": 5, "expectedVersion": completed["version"] }))
        .await);
    assert_eq!(confirmed["state"], "CLOSED");
}

// ---------------------------------------------------------------------------
// 4. Validation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_submissions_are_refused_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let u101 = unit(&app, "1-101");
    let base = |extra: Value| {
        let mut input = json!({ "unitId": u101, "category": "PLUMBING", "description": "水管漏水" });
        for (key, value) in extra.as_object().expect("object") {
            input[key] = value.clone();
        }
        input
    };

    let cases = [
        ("an empty description", base(json!({ "description": "" })), "description"),
        ("a blank description", base(json!({ "description": " \n\t " })), "description"),
        ("a description over 2000 characters", base(json!({ "description": "漏".repeat(2001) })), "description"),
        ("control characters", base(json!({ "description": "漏水\u{0007}" })), "description"),
        ("a bad contact phone", base(json!({ "contactPhone": "call me" })), "contactPhone"),
        ("a contact phone too short", base(json!({ "contactPhone": "1234" })), "contactPhone"),
        (
            "a visit a year ahead",
            base(json!({ "preferredVisitAt": (Utc::now() + Duration::days(365)).to_rfc3339() })),
            "preferredVisitAt",
        ),
        (
            "a visit in the past",
            base(json!({ "preferredVisitAt": (Utc::now() - Duration::days(2)).to_rfc3339() })),
            "preferredVisitAt",
        ),
        ("a resident reporting by PHONE", base(json!({ "channel": "PHONE" })), "channel"),
        ("a resident reporting at the FRONT_DESK", base(json!({ "channel": "FRONT_DESK" })), "channel"),
        ("a resident reporting for someone else", base(json!({ "residentId": cast.family.id })), "residentId"),
        ("a resident without a unit", json!({ "category": "PLUMBING", "description": "x" }), "unitId"),
    ];
    for (what, input, field) in cases {
        assert_bad_input(&cast.owner.submit(input).await, field, what);
    }
    let body = cast.owner.submit(base(json!({ "unitId": unit(&app, "1-102") }))).await;
    assert_code(&body, "NOT_FOUND", "a resident reporting for a neighbour's unit");
    let body = cast.owner.submit(base(json!({ "unitId": id_of("unit", app.other.unit("1-101").id) }))).await;
    assert_code(&body, "NOT_FOUND", "a resident reporting for a unit of another community");
    let body = cast
        .front_desk
        .submit(json!({ "unitId": u101, "channel": "PHONE", "category": "PLUMBING", "description": "x" }))
        .await;
    assert_bad_input(&body, "residentId", "staff taking a call without saying for whom");
    let body = cast
        .front_desk
        .submit(json!({ "residentId": cast.owner.id, "channel": "PHONE", "category": "PLUMBING", "description": "x" }))
        .await;
    assert_bad_input(&body, "unitId", "staff taking a call without a unit");
    let body = cast
        .front_desk
        .submit(json!({ "unitId": u101, "residentId": cast.owner.id, "channel": "PHONE", "category": "PLUMBING", "description": "" }))
        .await;
    assert_bad_input(&body, "description", "staff with an empty description");

    assert_eq!(total_orders(&cast).await, 0, "a refused submission leaves no order behind");
    assert!(cast.owner.ids(json!(null)).await.is_empty());

    // The limits themselves are fine.
    let longest = ok(&cast.owner.submit(base(json!({ "description": "漏".repeat(2000) }))).await);
    assert_eq!(longest["description"].as_str().map(|d| d.chars().count()), Some(2000));
    let soon = ok(&cast
        .owner
        .submit(base(json!({ "preferredVisitAt": (Utc::now() + Duration::days(89)).to_rfc3339() })))
        .await);
    assert!(soon["preferredVisitAt"].is_string());
    assert_eq!(total_orders(&cast).await, 2);
}

// ---------------------------------------------------------------------------
// 5. Reads: scope, filters, pagination
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_role_lists_only_the_orders_in_its_scope() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let a = cast.report(&cast.owner, &unit(&app, "1-101"), "A").await;
    let b = cast.report(&cast.family, &unit(&app, "1-101"), "B").await;
    let c = cast.report(&cast.tenant, &unit(&app, "1-102"), "C").await;
    let d = cast.report(&cast.owner, &unit(&app, "2-201"), "D").await;
    let e = cast.report(&cast.owner2, &unit(&app, "2-202"), "E").await;
    let f = id(&ok(&cast
        .technician
        .submit(
            json!({ "buildingId": building(&app, 1), "channel": "PATROL", "category": "OTHER", "description": "F" }),
        )
        .await));
    let other_owner = Person::other(&app, "owner").await;
    let g = id(&ok(&other_owner
        .submit(json!({ "unitId": id_of("unit", app.other.unit("1-101").id), "category": "OTHER", "description": "G" }))
        .await));
    ok(&cast.supervisor.assign(&a, &cast.technician.id).await);
    ok(&cast.supervisor.assign(&e, &cast.technician.id).await);

    let whole = set([&a, &b, &c, &d, &e, &f]);
    let expectations = [
        ("owner", &cast.owner, set([&a, &b, &d])),
        ("family", &cast.family, set([&a, &b])),
        ("tenant", &cast.tenant, set([&c])),
        ("owner2", &cast.owner2, set([&e])),
        ("butler", &cast.butler, set([&a, &b, &c])),
        ("technician", &cast.technician, set([&a, &e])),
        ("front desk", &cast.front_desk, whole.clone()),
        ("supervisor", &cast.supervisor, whole.clone()),
        ("manager", &cast.manager, whole.clone()),
    ];
    let mut failures = Vec::new();
    for (who, person, expected) in &expectations {
        let seen = person.ids(json!(null)).await;
        if seen != *expected {
            failures.push(format!("{who}: expected {expected:?}, listed {seen:?}"));
        }
        for order in [&a, &b, &c, &d, &e, &f, &g] {
            let body = person.order(order).await;
            let visible = error_code(&body).is_none();
            match (expected.contains(order), error_code(&body)) {
                (true, None) if body["data"]["repairOrder"]["id"] == order.as_str() => {}
                (false, Some("NOT_FOUND")) => {}
                _ => failures.push(format!("{who}: repairOrder({order}) visible={visible}: {body}")),
            }
        }
    }
    assert_eq!(Person::other(&app, "supervisor").await.ids(json!(null)).await, set([&g]));
    assert_eq!(Person::other(&app, "front_desk").await.ids(json!(null)).await, set([&g]));
    assert!(Person::other(&app, "technician").await.ids(json!(null)).await.is_empty());
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn repair_orders_filter_by_state_priority_place_assignee_time_and_text() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let second = cast.new_technician("13700000005", "冯师傅").await;
    let a = ok(&cast
        .owner
        .submit(json!({ "unitId": unit(&app, "1-101"), "category": "PLUMBING", "description": "厨房水龙头漏水" }))
        .await);
    let b = ok(&cast
        .tenant
        .submit(json!({ "unitId": unit(&app, "1-102"), "category": "PLUMBING", "priority": "URGENT", "description": "卫生间跑水了" }))
        .await);
    let c = ok(&cast
        .owner2
        .submit(json!({ "unitId": unit(&app, "2-202"), "category": "DOORS_WINDOWS", "description": "门锁100%坏了" }))
        .await);
    let d = ok(&cast
        .owner
        .submit(json!({ "unitId": unit(&app, "2-201"), "category": "ELECTRICAL", "description": "灯不亮 under_score" }))
        .await);
    let e = ok(&cast
        .technician
        .submit(json!({ "buildingId": building(&app, 1), "channel": "PATROL", "category": "PUBLIC_FACILITIES", "description": "楼道灯坏了" }))
        .await);
    let (b_at, c_at, d_at) = (b["createdAt"].clone(), c["createdAt"].clone(), d["createdAt"].clone());
    let [a, b, c, d, e] = [&a, &b, &c, &d, &e].map(id);
    ok(&cast.supervisor.assign(&a, &cast.technician.id).await);
    ok(&cast.supervisor.assign(&b, &second.id).await);
    // The urgent order misses both its deadlines five hours on; the others none.
    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(5)).await.expect("jobs");
    assert_eq!(report, Report { response_overdue: 1, completion_overdue: 1, auto_closed: 0 });

    let everything = set([&a, &b, &c, &d, &e]);
    let cases = [
        (json!(null), everything.clone()),
        (json!({}), everything.clone()),
        (json!({ "states": [] }), everything.clone()),
        (json!({ "states": ["ASSIGNED"] }), set([&a, &b])),
        (json!({ "states": ["SUBMITTED"] }), set([&c, &d, &e])),
        (json!({ "states": ["SUBMITTED", "ASSIGNED"] }), everything.clone()),
        (json!({ "states": ["CLOSED", "CANCELLED"] }), set([])),
        (json!({ "priority": "URGENT" }), set([&b])),
        (json!({ "priority": "NORMAL" }), set([&a, &c, &d, &e])),
        (json!({ "overdue": true }), set([&b])),
        (json!({ "overdue": false }), set([&a, &c, &d, &e])),
        (json!({ "buildingId": building(&app, 0) }), set([&a, &b])),
        (json!({ "buildingId": building(&app, 1) }), set([&c, &d, &e])),
        (json!({ "unitId": unit(&app, "2-202") }), set([&c])),
        (json!({ "unitId": unit(&app, "1-201") }), set([])),
        (json!({ "assigneeId": cast.technician.id }), set([&a])),
        (json!({ "assigneeId": second.id }), set([&b])),
        (json!({ "createdFrom": c_at }), set([&c, &d, &e])),
        (json!({ "createdTo": c_at }), set([&a, &b])),
        (json!({ "createdFrom": b_at, "createdTo": d_at }), set([&b, &c])),
        (json!({ "createdFrom": (Utc::now() + Duration::hours(1)).to_rfc3339() }), set([])),
        (json!({ "text": "跑水" }), set([&b])),
        (json!({ "text": "  灯  " }), set([&d, &e])),
        (json!({ "text": "100%" }), set([&c])),
        (json!({ "text": "%" }), set([&c])),
        (json!({ "text": "_" }), set([&d])),
        (json!({ "text": "r_s" }), set([&d])),
        (json!({ "text": "0%坏" }), set([&c])),
        (json!({ "text": "r%s" }), set([])),
        (json!({ "text": "   " }), everything.clone()),
        (json!({ "text": "不存在的描述" }), set([])),
        (json!({ "buildingId": building(&app, 1), "states": ["SUBMITTED"], "text": "灯" }), set([&d, &e])),
        (
            json!({ "priority": "URGENT", "overdue": true, "assigneeId": second.id, "buildingId": building(&app, 0) }),
            set([&b]),
        ),
        (json!({ "priority": "URGENT", "assigneeId": cast.technician.id }), set([])),
    ];
    let mut failures = Vec::new();
    for (filter, expected) in &cases {
        let seen = cast.supervisor.ids(filter.clone()).await;
        if seen != *expected {
            failures.push(format!("{filter}: expected {expected:?}, listed {seen:?}"));
        }
    }
    // Filters narrow the scope, never widen it.
    let scoped = [
        ("butler, 2号楼", &cast.butler, json!({ "buildingId": building(&app, 1) }), set([])),
        ("butler, 1号楼 urgent", &cast.butler, json!({ "priority": "URGENT" }), set([&b])),
        ("owner, 1-102", &cast.owner, json!({ "unitId": unit(&app, "1-102") }), set([])),
        ("owner, text", &cast.owner, json!({ "text": "跑水" }), set([])),
        ("technician, other assignee", &cast.technician, json!({ "assigneeId": second.id }), set([])),
        ("second technician, overdue", &second, json!({ "overdue": true }), set([&b])),
    ];
    for (what, person, filter, expected) in &scoped {
        let seen = person.ids(filter.clone()).await;
        if seen != *expected {
            failures.push(format!("{what} {filter}: expected {expected:?}, listed {seen:?}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    assert_bad_input(
        &cast.supervisor.list(json!({ "text": "长".repeat(101) }), 10, None).await,
        "filter.text",
        "a search text over 100 characters",
    );
}

#[tokio::test]
async fn repair_orders_paginate_with_a_total_count() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(cast.report(&cast.owner, &unit(&app, "1-101"), &format!("第{n}单")).await);
    }
    cast.report(&cast.tenant, &unit(&app, "1-102"), "not the owner's").await;

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let body = cast.owner.list(json!(null), 3, after.as_deref()).await;
        assert!(body.get("errors").is_none(), "{body}");
        let connection = body["data"]["repairOrders"].clone();
        assert_eq!(connection["totalCount"], 7, "the total across all pages: {connection}");
        let ids = node_ids(&connection);
        pages.push(ids.len());
        let edges = connection["edges"].as_array().expect("edges");
        assert_eq!(connection["pageInfo"]["endCursor"], edges.last().map_or(Value::Null, |e| e["cursor"].clone()));
        seen.extend(ids);
        if connection["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = connection["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(seen, created, "oldest first, each once");

    // With a filter, the total counts the filtered orders.
    ok(&cast.owner.cancel(&created[0]).await);
    let body = cast.owner.list(json!({ "states": ["SUBMITTED"] }), 2, None).await;
    assert_eq!(body["data"]["repairOrders"]["totalCount"], 6, "{body}");
    assert_eq!(node_ids(&body["data"]["repairOrders"]), created[1..3]);

    for (first, what) in [(0, "first 0"), (101, "first 101"), (-1, "first -1")] {
        assert_bad_input(&cast.owner.list(json!(null), first, None).await, "first", what);
    }
    assert_bad_input(&cast.owner.list(json!(null), 3, Some("not-a-cursor")).await, "after", "a bad cursor");
}

// ---------------------------------------------------------------------------
// 6. SLA and auto-close jobs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_sla_job_marks_each_missed_deadline_once() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let urgent = id(&ok(&cast
        .owner
        .submit(json!({ "unitId": unit(&app, "1-101"), "priority": "URGENT", "category": "PLUMBING", "description": "跑水了" }))
        .await));
    let normal = cast.report(&cast.tenant, &unit(&app, "1-102"), "水龙头滴水").await;

    assert_eq!(jobs::run_once(&app.context, Utc::now()).await.expect("jobs"), Report::default(), "nothing is late yet");
    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(5)).await.expect("jobs");
    assert_eq!(report, Report { response_overdue: 1, completion_overdue: 1, auto_closed: 0 });

    let order = cast.owner.read(&urgent).await;
    assert_eq!(order["responseOverdue"], true);
    assert_eq!(order["completionOverdue"], true);
    assert_eq!(order["overdue"], true);
    assert_eq!(order["state"], "SUBMITTED", "marking a deadline changes no state");
    assert_eq!(count_of(&order, "RESPONSE_OVERDUE"), 1, "{order}");
    assert_eq!(count_of(&order, "COMPLETION_OVERDUE"), 1, "{order}");
    for change in order["timeline"].as_array().expect("timeline").iter().skip(1) {
        assert!(change["actor"].is_null(), "the system marks deadlines: {change}");
        assert!(change["toState"].is_null(), "{change}");
    }
    let untouched = cast.tenant.read(&normal).await;
    assert_eq!((untouched["overdue"].as_bool(), untouched["version"].as_i64()), (Some(false), Some(1)));

    // Again: nothing more to mark, even later.
    assert_eq!(jobs::run_once(&app.context, Utc::now() + Duration::hours(5)).await.expect("jobs"), Report::default());
    let order_again = cast.owner.read(&urgent).await;
    assert_eq!(actions(&order_again), actions(&order));
    assert_eq!(order_again["version"], order["version"]);

    // A day on, the normal order misses its response deadline only; the urgent one nothing more.
    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(25)).await.expect("jobs");
    assert_eq!(report, Report { response_overdue: 1, completion_overdue: 0, auto_closed: 0 });
    let late = cast.tenant.read(&normal).await;
    assert_eq!((late["responseOverdue"].as_bool(), late["completionOverdue"].as_bool()), (Some(true), Some(false)));
    assert_eq!(count_of(&cast.owner.read(&urgent).await, "COMPLETION_OVERDUE"), 1);

    // Work started in time is not late for its response; still open work is late for completion.
    let started = id(&ok(&cast
        .owner
        .submit(json!({ "unitId": unit(&app, "1-101"), "priority": "URGENT", "category": "PLUMBING", "description": "又跑水" }))
        .await));
    cast.advance(&started, &cast.owner, "IN_PROGRESS").await;
    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(5)).await.expect("jobs");
    assert_eq!(report, Report { response_overdue: 0, completion_overdue: 1, auto_closed: 0 });
    let order = cast.owner.read(&started).await;
    assert_eq!((order["responseOverdue"].as_bool(), order["completionOverdue"].as_bool()), (Some(false), Some(true)));
    assert_eq!(order["state"], "IN_PROGRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sla_runs_mark_each_deadline_once() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    const PER_ROUND: usize = 5;
    for round in 0..6 {
        let mut orders = Vec::new();
        for n in 0..PER_ROUND {
            let body = cast
                .owner
                .submit(json!({ "unitId": unit(&app, "1-101"), "priority": "URGENT", "category": "PLUMBING", "description": format!("跑水 {round}-{n}") }))
                .await;
            orders.push(id(&ok(&body)));
        }
        let at = Utc::now() + Duration::hours(5);
        let run = || {
            let context = app.context.clone();
            tokio::spawn(async move { jobs::run_once(&context, at).await.expect("jobs") })
        };
        let (first, second) = tokio::join!(run(), run());
        let (first, second) = (first.expect("task"), second.expect("task"));
        let mut timelines = Vec::new();
        for order in &orders {
            timelines.push((order.clone(), actions(&cast.owner.read(order).await)));
        }
        let total = Report {
            response_overdue: first.response_overdue + second.response_overdue,
            completion_overdue: first.completion_overdue + second.completion_overdue,
            auto_closed: first.auto_closed + second.auto_closed,
        };
        assert_eq!(
            total,
            Report { response_overdue: PER_ROUND, completion_overdue: PER_ROUND, auto_closed: 0 },
            "round {round}: {first:?} + {second:?}; timelines: {timelines:?}"
        );
        for (order, actions) in &timelines {
            let count = |action: &str| actions.iter().filter(|a| *a == action).count();
            assert_eq!(
                (count("RESPONSE_OVERDUE"), count("COMPLETION_OVERDUE")),
                (1, 1),
                "round {round}, {order}: {actions:?}"
            );
            assert_eq!(actions.len(), 3, "round {round}, {order}: {actions:?}");
        }
    }
}

#[tokio::test]
async fn completed_orders_close_automatically_after_72_hours() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let completed = cast.report(&cast.owner, &unit(&app, "1-101"), "完工未确认").await;
    cast.advance(&completed, &cast.owner, "COMPLETED").await;
    let closed = cast.report(&cast.owner, &unit(&app, "1-101"), "已确认").await;
    cast.advance(&closed, &cast.owner, "CLOSED").await;
    let assigned = cast.report(&cast.owner, &unit(&app, "1-101"), "已派单").await;
    cast.advance(&assigned, &cast.owner, "ASSIGNED").await;
    let closed_before = cast.owner.read(&closed).await;

    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(71)).await.expect("jobs");
    assert_eq!(report.auto_closed, 0, "not yet");
    assert_eq!(cast.owner.read(&completed).await["state"], "COMPLETED");

    let report = jobs::run_once(&app.context, Utc::now() + Duration::hours(73)).await.expect("jobs");
    assert_eq!(report.auto_closed, 1, "{report:?}");
    let order = cast.owner.read(&completed).await;
    assert_eq!(order["state"], "CLOSED");
    assert!(order["closedAt"].is_string());
    assert!(order["rating"].is_null(), "nobody rated it");
    assert_eq!(actions(&order), ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED", "AUTO_CLOSED"]);
    let change = &order["timeline"][4];
    assert!(change["actor"].is_null(), "the system closed it: {change}");
    assert_eq!((change["fromState"].as_str(), change["toState"].as_str()), (Some("COMPLETED"), Some("CLOSED")));

    let still_closed = cast.owner.read(&closed).await;
    assert_eq!(still_closed["state"], "CLOSED");
    assert_eq!(still_closed["version"], closed_before["version"]);
    assert_eq!(actions(&still_closed), actions(&closed_before));
    let still_assigned = cast.owner.read(&assigned).await;
    assert_eq!(still_assigned["state"], "ASSIGNED");
    assert_eq!(count_of(&still_assigned, "AUTO_CLOSED"), 0);

    assert_eq!(jobs::run_once(&app.context, Utc::now() + Duration::hours(80)).await.expect("jobs"), Report::default());
    assert_eq!(count_of(&cast.owner.read(&completed).await, "AUTO_CLOSED"), 1);
    // The resident can no longer confirm it, but it can be followed up.
    assert_code(&cast.owner.confirm(&completed, 5).await, "CONFLICT", "confirming an auto-closed order");
    assert_eq!(ok(&cast.butler.follow_up(&completed, "未回复，电话确认已修好").await)["state"], "CLOSED");
}

#[tokio::test]
async fn the_auto_close_delay_is_configurable() {
    let app = spawn_app_with(|settings| settings.repair_auto_close_after = StdDuration::from_secs(3600)).await;
    let cast = Cast::home(&app).await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "一小时后自动关闭").await;
    cast.advance(&order, &cast.owner, "COMPLETED").await;

    let report = jobs::run_once(&app.context, Utc::now() + Duration::minutes(50)).await.expect("jobs");
    assert_eq!(report.auto_closed, 0);
    let report = jobs::run_once(&app.context, Utc::now() + Duration::minutes(70)).await.expect("jobs");
    assert_eq!(report.auto_closed, 1);
    let read = cast.owner.read(&order).await;
    assert_eq!(read["state"], "CLOSED");
    assert_eq!(count_of(&read, "AUTO_CLOSED"), 1);
}

// ---------------------------------------------------------------------------
// 7. Photos
// ---------------------------------------------------------------------------

#[tokio::test]
async fn photos_are_stored_and_served_through_signed_urls() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let input = json!({ "unitId": unit(&app, "1-101"), "category": "PLUMBING", "description": "漏水照片" });
    // The type is judged by the bytes, not the file name.
    let misnamed = Photo { name: "photo.jpg", content_type: "image/jpeg", bytes: PNG.to_vec() };
    let body = cast.owner.submit_photos(input, &[png(), jpeg(), misnamed]).await;
    let order = ok(&body);
    let photos = order["photos"].as_array().expect("photos").clone();
    assert_eq!(photos.len(), 3, "{order}");
    let listed: Vec<_> = photos.iter().map(|p| (p["contentType"].clone(), p["byteSize"].clone())).collect();
    assert_eq!(
        listed,
        [
            (json!("image/png"), json!(PNG.len())),
            (json!("image/jpeg"), json!(JPEG.len())),
            (json!("image/png"), json!(PNG.len()))
        ]
    );
    assert_eq!(stored_photo_files(&app), 3);

    for (photo, bytes, content_type) in [(&photos[0], PNG, "image/png"), (&photos[1], JPEG, "image/jpeg")] {
        let url = photo["url"].as_str().expect("url");
        assert!(url.starts_with("/media/repair-photos/"), "a relative URL: {url}");
        let response = app.http.get(app.url(url)).send().await.expect("GET photo");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.bytes().await.expect("bytes").as_ref(), bytes, "the exact bytes");
    }

    // The order as others see it lists the same photos, with working URLs.
    let read = cast.supervisor.read(&id(&order)).await;
    assert_eq!(read["photos"].as_array().map(Vec::len), Some(3));
    let fresh = read["photos"][1]["url"].as_str().expect("url");
    let response = app.http.get(app.url(fresh)).send().await.expect("GET photo");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), JPEG);

    // Tampering with any part of the URL is refused.
    let url = photos[0]["url"].as_str().expect("url");
    let (path, query) = url.split_once('?').expect("query string");
    let signature = query.split('&').find_map(|kv| kv.strip_prefix("signature=")).expect("signature");
    let expires: i64 =
        query.split('&').find_map(|kv| kv.strip_prefix("expires=")).expect("expires").parse().expect("number");
    let mut flipped = signature.to_owned();
    let last = if flipped.ends_with('0') { '1' } else { '0' };
    flipped.pop();
    flipped.push(last);
    let other_photo = photos[1]["url"].as_str().expect("url").split_once('?').expect("query").0;
    let tampered = [
        format!("{path}?expires={expires}&signature={flipped}"),
        format!("{path}?expires={}&signature={signature}", expires + 3600),
        format!("{other_photo}?expires={expires}&signature={signature}"),
        format!("{path}?expires={expires}&signature=zz"),
        format!("{path}?expires={}&signature={signature}", Utc::now().timestamp() - 10),
    ];
    for url in &tampered {
        let response = app.http.get(app.url(url)).send().await.expect("GET photo");
        assert_eq!(response.status(), 403, "{url}");
    }
}

#[tokio::test]
async fn photos_are_checked_by_content_count_and_size() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let input = json!({ "unitId": unit(&app, "1-101"), "category": "PLUMBING", "description": "照片校验" });

    let text = Photo { name: "photo.jpg", content_type: "image/jpeg", bytes: b"not an image at all".to_vec() };
    let body = cast.owner.submit_photos(input.clone(), &[text]).await;
    assert_bad_input(&body, "photos.0", "a text file named photo.jpg");
    let gif = Photo { name: "anim.gif", content_type: "image/gif", bytes: b"GIF89a\x01\x00\x01\x00".to_vec() };
    let body = cast.owner.submit_photos(input.clone(), &[png(), gif]).await;
    assert_bad_input(&body, "photos.1", "a GIF as the second photo");
    let seven: Vec<Photo> = (0..7).map(|_| png()).collect();
    let body = cast.owner.submit_photos(input.clone(), &seven).await;
    assert_bad_input(&body, "photos", "seven photos");
    let body = cast.owner.submit_photos(input.clone(), &[jpeg_of(5 * MIB + 1)]).await;
    assert_bad_input(&body, "photos.0", "a photo of 5 MiB and one byte");
    // A refused order leaves neither an order nor files behind, even when the photos were fine.
    let body = cast
        .owner
        .submit_photos(json!({ "unitId": unit(&app, "1-102"), "category": "OTHER", "description": "x" }), &[png()])
        .await;
    assert_code(&body, "NOT_FOUND", "photos for a neighbour's unit");
    let body = cast
        .owner
        .submit_photos(json!({ "unitId": unit(&app, "1-101"), "category": "OTHER", "description": "" }), &[png()])
        .await;
    assert_bad_input(&body, "description", "photos with an empty description");
    assert_eq!(total_orders(&cast).await, 0);
    assert_eq!(stored_photo_files(&app), 0, "no photo files left behind");

    // The limits themselves are fine: six photos, and one of exactly 5 MiB.
    let six: Vec<Photo> = (0..6).map(|n| if n % 2 == 0 { png() } else { jpeg() }).collect();
    let order = ok(&cast.owner.submit_photos(input.clone(), &six).await);
    assert_eq!(order["photos"].as_array().map(Vec::len), Some(6));
    let order = ok(&cast.owner.submit_photos(input, &[jpeg_of(5 * MIB)]).await);
    assert_eq!(order["photos"][0]["byteSize"], 5 * MIB);
    assert_eq!(total_orders(&cast).await, 2);
    assert_eq!(stored_photo_files(&app), 7);
}

#[tokio::test]
async fn multipart_requests_need_the_preflight_header() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let input = json!({ "unitId": unit(&app, "1-101"), "category": "PLUMBING", "description": "无预检" });
    let response = cast.owner.submit_with_photos(input.clone(), &[png()], false).await;
    assert_eq!(response.status(), 400, "a browser could send this cross-site");
    assert_eq!(total_orders(&cast).await, 0);
    assert_eq!(stored_photo_files(&app), 0);

    let response = cast.owner.submit_with_photos(input, &[png()], true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(total_orders(&cast).await, 1);
}

// ---------------------------------------------------------------------------
// 8. Batch loading
// ---------------------------------------------------------------------------

/// A server for counting a request's statements: the relay polls on a timer
/// too, so its timer is kept out of the count.
async fn app_counting_statements() -> TestApp {
    spawn_app_with(|settings| settings.event_poll_interval = StdDuration::from_secs(3600)).await
}

const PAGE_OF_IDS: &str = "query($first: Int!) { repairOrders(first: $first) { edges { node { id } } } }";

/// Adds `count` orders (see [`add_orders`]) and lets the event relay, woken
/// by their commits, settle before statements are counted.
async fn add_settled_orders(app: &TestApp, cast: &Cast<'_>, count: usize) {
    add_orders(app, cast, count).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
}

/// Adds `count` orders of five kinds: a resident's, one taken by phone, a
/// patrol finding, an assigned one, and a closed one with a follow-up; the
/// first of them with a photo.
async fn add_orders(app: &TestApp, cast: &Cast<'_>, count: usize) {
    for n in 0..count {
        let description = format!("批量工单 {n}");
        match n % 5 {
            0 => {
                let input = json!({ "unitId": unit(app, "1-101"), "category": "PLUMBING", "description": description });
                let files = if n == 0 { vec![png()] } else { Vec::new() };
                ok(&cast.owner.submit_photos(input, &files).await);
            }
            1 => {
                ok(&cast
                    .front_desk
                    .submit(json!({ "unitId": unit(app, "1-102"), "residentId": cast.tenant.id, "channel": "PHONE", "category": "OTHER", "description": description }))
                    .await);
            }
            2 => {
                ok(&cast
                    .technician
                    .submit(json!({ "buildingId": building(app, 1), "channel": "PATROL", "category": "PUBLIC_FACILITIES", "description": description }))
                    .await);
            }
            3 => {
                let order = cast.report(&cast.owner2, &unit(app, "2-202"), &description).await;
                ok(&cast.supervisor.assign(&order, &cast.technician.id).await);
            }
            _ => {
                let order = cast.report(&cast.owner, &unit(app, "2-201"), &description).await;
                cast.advance(&order, &cast.owner, "CLOSED").await;
                ok(&cast.front_desk.follow_up(&order, "满意").await);
            }
        }
    }
}

/// SQL statements the server runs for one page of orders with all nested
/// fields, measured `RUNS` times, sorted.
async fn statements_for_a_page(app: &TestApp, cast: &Cast<'_>, expected: usize) -> Vec<u64> {
    const RUNS: usize = 9;
    // Let the event relay, woken by the last commits, settle first.
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let mut counts = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (body, statements) =
            app.count_queries(app.graphql(Some(&cast.supervisor.token), NESTED_PAGE, json!({}))).await;
        assert!(body.get("errors").is_none(), "{body}");
        let page = &body["data"]["repairOrders"];
        assert_eq!(page["totalCount"], expected);
        let nodes: Vec<&Value> = page["edges"].as_array().expect("edges").iter().map(|e| &e["node"]).collect();
        assert_eq!(nodes.len(), expected);
        // The nested fields are really there.
        assert!(nodes.iter().all(|n| n["building"]["name"].is_string() && n["submittedBy"]["name"].is_string()));
        assert!(nodes.iter().all(|n| n["timeline"][0]["actor"]["name"].is_string()));
        assert!(nodes.iter().any(|n| n["unit"]["building"]["name"] == "2号楼"));
        assert!(nodes.iter().any(|n| n["unit"].is_null() && n["resident"].is_null()));
        assert!(nodes.iter().any(|n| n["assignee"]["name"] == "赵师傅"));
        assert!(nodes.iter().any(|n| n["followUps"][0]["outcome"] == "满意"));
        assert!(nodes.iter().any(|n| n["photos"][0]["url"].is_string()));
        counts.push(statements);
    }
    counts.sort_unstable();
    counts
}

#[tokio::test]
async fn a_page_of_orders_costs_the_same_statements_for_5_and_40_orders() {
    let app = app_counting_statements().await;
    let cast = Cast::home(&app).await;

    add_orders(&app, &cast, 5).await;
    let for_5 = statements_for_a_page(&app, &cast, 5).await;
    add_orders(&app, &cast, 35).await;
    let for_40 = statements_for_a_page(&app, &cast, 40).await;

    // The batch loaders gather keys over a short time window, so a nested
    // level now and then gets a batch of its own or shares one with another
    // level: a single run may read a statement or two more or less than the
    // next. A page of 40 must be servable with as many statements as a page of
    // 5, so the counts measured for both must have a value in common.
    assert!(for_5.iter().chain(&for_40).all(|n| *n <= 15), "5 orders: {for_5:?}, 40 orders: {for_40:?}");
    assert!(
        for_40.iter().any(|n| for_5.contains(n)),
        "a page of 40 orders costs {for_40:?} statements, a page of 5 costs {for_5:?}"
    );
}

#[tokio::test]
async fn a_list_reads_the_unit_building_and_assignee_with_its_page() {
    let app = app_counting_statements().await;
    let cast = Cast::home(&app).await;
    add_settled_orders(&app, &cast, 40).await;
    let token = Some(cast.supervisor.token.as_str());
    let shown = "query($first: Int!) { repairOrders(first: $first) { edges { node { id unit { number building { name } } building { name } assignee { name } } } } }";
    let shown_as_nodes = "query($first: Int!) { repairOrders(first: $first) { nodes { id unit { number building { name } } building { name } assignee { name } } } }";
    for first in [5, 40] {
        let (_, for_ids) = app.count_queries(app.graphql(token, PAGE_OF_IDS, json!({ "first": first }))).await;
        let (body, for_related) = app.count_queries(app.graphql(token, shown, json!({ "first": first }))).await;
        let nodes = body["data"]["repairOrders"]["edges"].as_array().expect("edges");
        assert_eq!(nodes.len(), first, "{body}");
        assert!(nodes.iter().all(|e| e["node"]["building"]["name"].is_string()), "{body}");
        assert!(nodes.iter().any(|e| e["node"]["unit"]["building"]["name"] == "2号楼"), "{body}");
        assert!(nodes.iter().any(|e| e["node"]["unit"].is_null()), "patrol findings have no unit: {body}");
        assert!(nodes.iter().any(|e| e["node"]["assignee"]["name"] == "赵师傅"), "{body}");
        assert!(nodes.iter().any(|e| e["node"]["assignee"].is_null()), "{body}");
        assert_eq!(for_related, for_ids, "first: {first}: the related rows come with the page, in its statement");
        let (body, for_nodes) = app.count_queries(app.graphql(token, shown_as_nodes, json!({ "first": first }))).await;
        let nodes = body["data"]["repairOrders"]["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), first, "{body}");
        assert!(nodes.iter().any(|node| node["assignee"]["name"] == "赵师傅"), "{body}");
        assert_eq!(for_nodes, for_ids, "first: {first}: under `nodes` too");
    }
}

/// An order's fields resolve one after another only when at most one of them
/// waits for a query; with two that wait, every order's keys still reach
/// their loader together. Patrol findings, with no resident, skip the first.
#[tokio::test]
async fn the_relations_a_page_waits_for_are_read_in_one_batch() {
    let app = app_counting_statements().await;
    let cast = Cast::home(&app).await;
    add_settled_orders(&app, &cast, 40).await;
    let token = Some(cast.supervisor.token.as_str());
    let one_waits = "query($first: Int!) { repairOrders(first: $first) { edges { node { id unit { number } resident { name } } } } }";
    let two_wait = "query($first: Int!) { repairOrders(first: $first) { edges { node { id resident { name } submittedBy { name } unit { number } } } } }";
    let two_wait_in_fragments = "query($first: Int!) { repairOrders(first: $first) { edges { node { id ...Resident ... on RepairOrder { submittedBy { name } } unit { number } } } } } fragment Resident on RepairOrder { resident { name } }";
    let documents = [
        (one_waits, "unit and resident"),
        (two_wait, "resident and submitter"),
        (two_wait_in_fragments, "resident and submitter in fragments"),
    ];
    // The fewest of five tries: a background statement landing in the count
    // only ever adds one to a try, where a page that reads its relations
    // apart adds one every time.
    let fewest_statements = async |document: &str, first: usize| {
        let mut tries = Vec::with_capacity(5);
        for _ in 0..5 {
            tries.push(app.count_queries(app.graphql(token, document, json!({ "first": first }))).await);
        }
        tries.into_iter().min_by_key(|(_, statements)| *statements).expect("five tries")
    };
    for first in [5, 40] {
        let (_, for_ids) = fewest_statements(PAGE_OF_IDS, first).await;
        for (document, fields) in documents {
            let (body, statements) = fewest_statements(document, first).await;
            let nodes: Vec<&Value> =
                body["data"]["repairOrders"]["edges"].as_array().expect("edges").iter().map(|e| &e["node"]).collect();
            assert_eq!(nodes.len(), first, "{body}");
            assert!(nodes.iter().any(|node| node["resident"]["name"].is_string()), "{body}");
            assert!(nodes.iter().any(|node| node["resident"].is_null()), "patrol findings have no resident: {body}");
            assert!(nodes.iter().any(|node| node["unit"]["number"].is_string()), "{body}");
            if document != one_waits {
                assert!(nodes.iter().all(|node| node["submittedBy"]["name"].is_string()), "{body}");
            }
            assert_eq!(statements, for_ids + 1, "first: {first}, {fields}: the users they show in one statement");
        }
    }
}

#[tokio::test]
async fn an_order_read_alone_reads_its_unit_building_and_assignee_in_its_statement_and_its_people_after_it() {
    let app = app_counting_statements().await;
    let cast = Cast::home(&app).await;
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), "单独读取的工单").await;
    cast.advance(&order, &cast.owner, "ASSIGNED").await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let token = Some(cast.supervisor.token.as_str());
    let bare = "query($id: ID!) { repairOrder(id: $id) { id state } }";
    let shown = "query($id: ID!) { repairOrder(id: $id) { id unit { number building { name } } building { name } assignee { name } } }";
    let (_, for_order) = app.count_queries(app.graphql(token, bare, json!({ "id": order }))).await;
    let (body, for_related) = app.count_queries(app.graphql(token, shown, json!({ "id": order }))).await;
    let shown = &body["data"]["repairOrder"];
    assert_eq!(shown["unit"]["number"], "1-101", "{body}");
    assert_eq!(shown["unit"]["building"]["name"], shown["building"]["name"], "{body}");
    assert!(shown["building"]["name"].is_string(), "{body}");
    assert_eq!(shown["assignee"]["name"], "赵师傅", "{body}");
    assert_eq!(for_related, for_order, "the related rows come with the order, in its statement");
    let people = "query($id: ID!) { repairOrder(id: $id) { id resident { id name } submittedBy { id } } }";
    let (body, for_people) = app.count_queries(app.graphql(token, people, json!({ "id": order }))).await;
    let shown = &body["data"]["repairOrder"];
    assert_eq!(shown["resident"]["id"], cast.owner.id, "{body}");
    assert!(shown["resident"]["name"].is_string(), "{body}");
    assert_eq!(shown["submittedBy"]["id"], cast.owner.id, "{body}");
    assert_eq!(for_people, for_order + 1, "its resident and submitter in one statement after it");
}

#[tokio::test]
async fn the_total_count_is_only_counted_when_asked_for() {
    let app = app_counting_statements().await;
    let cast = Cast::home(&app).await;
    add_settled_orders(&app, &cast, 3).await;
    let token = Some(cast.supervisor.token.as_str());
    let (_, without) =
        app.count_queries(app.graphql(token, "{ repairOrders(first: 5) { edges { node { id } } } }", json!({}))).await;
    let (body, with) = app
        .count_queries(app.graphql(token, "{ repairOrders(first: 5) { totalCount edges { node { id } } } }", json!({})))
        .await;
    assert_eq!(body["data"]["repairOrders"]["totalCount"], 3, "{body}");
    assert_eq!(with, without + 1, "one COUNT statement, and only when totalCount is selected");
}

/// A selection of the field introspection describes: its name, and for an
/// object (or a list of them) its `__typename`.
fn selecting(field: &Value) -> String {
    let name = field["name"].as_str().expect("field name");
    let mut kind = &field["type"];
    while matches!(kind["kind"].as_str(), Some("NON_NULL" | "LIST")) {
        kind = &kind["ofType"];
    }
    if kind["kind"] == "OBJECT" { format!("{name} {{ __typename }}") } else { name.to_owned() }
}

/// The orders matching `$filter`, five at most, shown as `list`.
fn filtered_page(list: &str) -> String {
    format!("query($filter: RepairOrderFilter) {{ repairOrders(first: 5, filter: $filter) {{ {list} }} }}")
}

/// Each way a list shows `selection` on its orders, with where the first
/// order is in the answer: under `edges { node }`, under `nodes`, and through
/// a fragment.
fn listed_forms(selection: &str) -> [(String, &'static str); 3] {
    [
        (filtered_page(&format!("edges {{ node {{ {selection} }} }}")), "/edges/0/node"),
        (filtered_page(&format!("nodes {{ {selection} }}")), "/nodes/0"),
        (
            filtered_page("edges { node { ...shown } }") + &format!(" fragment shown on RepairOrder {{ {selection} }}"),
            "/edges/0/node",
        ),
    ]
}

/// A page's orders, units, buildings and people are resolved field after
/// field by the server where their selections are plain fields, and by the
/// engine where fragments or a repeated response key ask for its merging: the
/// answer must be the same, byte for byte, field order included.
#[tokio::test]
async fn a_page_answers_the_same_whether_its_objects_are_resolved_by_the_server_or_the_engine() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    for description in ["先报的工单", "后报的工单"] {
        let order = cast.report(&cast.owner, &unit(&app, "1-101"), description).await;
        cast.advance(&order, &cast.owner, "ASSIGNED").await;
    }
    cast.report(&cast.owner, &unit(&app, "1-101"), "还没派工的工单").await;
    let plain = "{ repairOrders(first: 5) { edges { node { __typename id state again: state \
                 unit { __typename number building { name } } building { id name } assignee { name phone } } } } }";
    let fragments = "{ repairOrders(first: 5) { edges { node { ...order } } } } \
                     fragment order on RepairOrder { __typename id state again: state unit { ...unit } \
                     building { ... on Building { id name } } assignee { name phone } } \
                     fragment unit on Unit { __typename number building { name } }";
    let merged = "{ repairOrders(first: 5) { edges { node { __typename id state again: state \
                  unit { __typename number } unit { building { name } } building { id } building { name } \
                  assignee { name phone } } } } }";
    let (app, owner) = (&app, &cast.owner);
    let answer = |document: &'static str| async move {
        let response = app
            .http
            .post(app.url("/graphql"))
            .bearer_auth(&owner.token)
            .json(&json!({ "query": document }))
            .send()
            .await
            .expect("response");
        response.text().await.expect("body")
    };
    let by_server = answer(plain).await;
    let listed: Value = serde_json::from_str(&by_server).expect("JSON");
    let edges = listed["data"]["repairOrders"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 3, "{by_server}");
    assert!(edges.iter().any(|edge| edge["node"]["assignee"].is_null()), "{by_server}");
    assert_eq!(edges[0]["node"]["unit"]["number"], "1-101", "{by_server}");
    assert_eq!(edges[0]["node"]["again"], edges[0]["node"]["state"], "{by_server}");
    assert_eq!(answer(fragments).await, by_server, "through fragments");
    assert_eq!(answer(merged).await, by_server, "with repeated fields merged");
}

/// A list reads only the columns its selection shows; each field must still
/// show what it shows when the whole order is read.
#[tokio::test]
async fn every_field_of_a_listed_order_shows_what_the_order_itself_shows() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    // Every column set, and each to a value an unread column does not hold:
    // entered by the front desk for a resident, dispatched, done, rated, and
    // with what no flow sets beside a rating written to the table.
    let description = "每列都有值的工单";
    let order = ok(&cast
        .front_desk
        .submit(json!({
            "unitId": unit(&app, "1-101"), "residentId": cast.owner.id, "channel": "PHONE",
            "category": "ELECTRICAL", "priority": "URGENT", "description": description,
            "contactPhone": "13900001111", "preferredVisitAt": (Utc::now() + Duration::hours(2)).to_rfc3339(),
        }))
        .await);
    let order = id(&order);
    cast.advance(&order, &cast.owner, "CLOSED").await;
    ok(&cast.front_desk.follow_up(&order, "满意").await);
    let row_id = order.trim_start_matches(|c: char| !c.is_ascii_digit());
    app.db
        .execute_unprepared(&format!(
            "UPDATE repair_order SET cancel_reason = '未取消', rating_comment = '很好', response_overdue = true \
             WHERE id = {row_id}"
        ))
        .await
        .expect("set the remaining columns");

    let types = app
        .data(
            None,
            "{ __type(name: \"RepairOrder\") { fields { name type { kind ofType { kind ofType { kind ofType { kind } } } } } } }",
            json!({}),
        )
        .await;
    let fields = types["__type"]["fields"].as_array().expect("fields");
    assert!(fields.len() >= 30, "{types}");
    let token = Some(cast.supervisor.token.as_str());
    for field in fields {
        let name = field["name"].as_str().expect("field name");
        let selection = selecting(field);
        let whole = app
            .data(
                token,
                &format!("query($id: ID!) {{ repairOrder(id: $id) {{ {selection} }} }}"),
                json!({ "id": order }),
            )
            .await;
        let expected = &whole["repairOrder"][name];
        assert!(!expected.is_null(), "{name} is set on the order: {whole}");
        let filter = json!({ "filter": { "text": description } });
        for (document, node) in listed_forms(&selection) {
            let listed = app.data(token, &document, filter.clone()).await;
            let shown = listed["repairOrders"].pointer(node).unwrap_or_else(|| panic!("{document}: {listed}"));
            assert_eq!(&shown[name], expected, "{name} in {document}");
        }
    }
}

/// An order read alone or in a list reads only the columns of its unit,
/// building and assignee that it shows, in its own statement; each of their
/// fields must still show what it shows when that unit, building or person is
/// read on its own, and a row read for some fields must not serve others.
#[tokio::test]
async fn every_field_of_an_orders_unit_building_and_assignee_shows_what_it_shows_read_on_its_own() {
    let app = spawn_app().await;
    let cast = Cast::home(&app).await;
    let description = "列表里的单元楼栋和师傅";
    let order = cast.report(&cast.owner, &unit(&app, "1-101"), description).await;
    cast.advance(&order, &cast.owner, "ASSIGNED").await;
    let token = Some(cast.supervisor.token.as_str());
    let filter = json!({ "filter": { "text": description } });
    let related_ids = app
        .data(
            token,
            "query($id: ID!) { repairOrder(id: $id) { unit { id } building { id } assignee { id } } }",
            json!({ "id": order }),
        )
        .await;
    // Each read on its own: the unit and building by id, the technician from
    // the list of staff.
    let on_its_own = async |related: &str, selection: &str| -> Value {
        let id = &related_ids["repairOrder"][related]["id"];
        if related == "assignee" {
            let staff = app
                .data(token, &format!("{{ staffMembers(first: 100) {{ nodes {{ id {selection} }} }} }}"), json!({}))
                .await;
            let nodes = staff["staffMembers"]["nodes"].as_array().expect("staff");
            return nodes.iter().find(|node| node["id"] == *id).cloned().expect("the technician among the staff");
        }
        let read = app
            .data(token, &format!("query($id: ID!) {{ {related}(id: $id) {{ {selection} }} }}"), json!({ "id": id }))
            .await;
        read[related].clone()
    };
    for (related, type_name) in [("unit", "Unit"), ("building", "Building"), ("assignee", "User")] {
        let described = app
            .data(
                None,
                &format!(
                    "{{ __type(name: \"{type_name}\") {{ fields {{ name args {{ type {{ kind }} }} \
                     type {{ kind ofType {{ kind ofType {{ kind ofType {{ kind }} }} }} }} }} }} }}"
                ),
                json!({}),
            )
            .await;
        let fields = described["__type"]["fields"].as_array().expect("fields");
        assert!(fields.len() >= 4, "{described}");
        for field in fields {
            let name = field["name"].as_str().expect("field name");
            let args = field["args"].as_array().expect("args");
            if args.iter().any(|arg| arg["type"]["kind"] == "NON_NULL") {
                // A paged field (`units(first:)`) reads its own rows, by id.
                continue;
            }
            let selection = selecting(field);
            let expected = &on_its_own(related, &selection).await[name];
            assert!(!expected.is_null(), "{related}.{name} is set: {expected}");
            let shown = format!("{related} {{ {selection} }}");
            let alone = app
                .data(
                    token,
                    &format!("query($id: ID!) {{ repairOrder(id: $id) {{ {shown} }} }}"),
                    json!({ "id": order }),
                )
                .await;
            assert_eq!(&alone["repairOrder"][related][name], expected, "{related}.{name} of the order read alone");
            for (document, node) in listed_forms(&shown) {
                let listed = app.data(token, &document, filter.clone()).await;
                let node = listed["repairOrders"].pointer(node).unwrap_or_else(|| panic!("{document}: {listed}"));
                assert_eq!(&node[related][name], expected, "{related}.{name} in {document}");
            }
        }
    }

    // The unit read with the page holds its number only; the same unit reached
    // through the resident's units shows its floor all the same.
    let whole = app
        .data(token, "query($id: ID!) { repairOrder(id: $id) { unit { number floor } } }", json!({ "id": order }))
        .await;
    let listed = app
        .data(
            token,
            &filtered_page(
                "edges { node { unit { number } resident { units { unit { number floor } } } assignee { name } } }",
            ),
            filter,
        )
        .await;
    let node = &listed["repairOrders"]["edges"][0]["node"];
    assert_eq!(node["unit"]["number"], "1-101", "{listed}");
    let units = node["resident"]["units"].as_array().expect("the resident's units");
    let same_unit = units.iter().find(|membership| membership["unit"]["number"] == "1-101").expect("unit 1-101");
    assert_eq!(same_unit["unit"]["floor"], whole["repairOrder"]["unit"]["floor"], "{listed}");
    assert!(same_unit["unit"]["floor"].is_number(), "{whole}");
}
