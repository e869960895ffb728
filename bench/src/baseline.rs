//! The raw baselines the API is measured against, served by a plain
//! actix-web app on the same database: B0 a small JSON document, B1 a
//! resident's page of 20 repair orders with unit, building and assignee in
//! one SQL statement, B2 the INSERTs that create a repair order with its
//! event. SQL goes straight to the sqlx pool as text (SeaORM's `Statement`
//! passes it through), with no GraphQL, no auth and no ORM mapping.
//!
//! Beside them, B1 through the engine: B1's statement behind a minimal
//! async-graphql schema answering S2's document, to measure what the engine
//! alone costs on top of B1, with the API's shortcuts (each document parsed
//! once, validated by the limits only; an order and what it shows resolved
//! field after field, as the API resolves them when nothing of theirs waits
//! for a query) and none of the API's own work.

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait, Value};
use serde_json::json;

/// `$1`-style SQL for the connection's backend (SQLite numbers them `?1`).
fn statement(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

async fn b0() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": { "__typename": "Query" } }))
}

#[derive(serde::Deserialize)]
struct Resident {
    user: i64,
}

const RESIDENT_ORDERS: &str = r#"
SELECT ro.id, ro.state, ro.description, u.number AS unit_number, b.name AS building_name, a.name AS assignee_name
FROM repair_order ro
JOIN unit_membership m ON m.unit_id = ro.unit_id AND m.user_id = $1 AND m.moved_out_on IS NULL
JOIN unit u ON u.id = ro.unit_id
JOIN building b ON b.id = ro.building_id
LEFT JOIN "user" a ON a.id = ro.assignee_id
ORDER BY ro.id DESC
LIMIT 20"#;

async fn b1(db: web::Data<DatabaseConnection>, query: web::Query<Resident>) -> HttpResponse {
    let rows = match db.query_all_raw(statement(db.get_ref(), RESIDENT_ORDERS, vec![query.user.into()])).await {
        Ok(rows) => rows,
        Err(err) => return HttpResponse::InternalServerError().body(err.to_string()),
    };
    let orders: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.try_get::<i64>("", "id").ok(),
                "state": row.try_get::<String>("", "state").ok(),
                "description": row.try_get::<String>("", "description").ok(),
                "unit": { "number": row.try_get::<String>("", "unit_number").ok(),
                          "building": { "name": row.try_get::<String>("", "building_name").ok() } },
                "building": { "name": row.try_get::<String>("", "building_name").ok() },
                "assignee": row.try_get::<Option<String>>("", "assignee_name").ok().flatten().map(|name| json!({ "name": name })),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "data": { "repairOrders": orders } }))
}

#[derive(serde::Deserialize)]
struct Submission {
    user: i64,
    unit: i64,
    building: i64,
    community: i64,
}

async fn b2(db: web::Data<DatabaseConnection>, query: web::Query<Submission>) -> HttpResponse {
    match insert_order(db.get_ref(), &query).await {
        Ok(id) => HttpResponse::Ok().json(json!({ "data": { "id": id } })),
        Err(err) => HttpResponse::InternalServerError().body(err.to_string()),
    }
}

async fn insert_order(db: &DatabaseConnection, s: &Submission) -> Result<i64, sea_orm::DbErr> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let order = txn
        .query_one_raw(statement(
            &txn,
            "INSERT INTO repair_order (community_id, building_id, unit_id, resident_id, created_by, channel, category, \
             description, priority, state, response_due_at, completion_due_at, response_overdue, completion_overdue, \
             version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4, 'APP', 'PLUMBING', '厨房水龙头漏水', 'NORMAL', 'SUBMITTED', $5, $6, false, false, 1, $7, $7) \
             RETURNING id",
            vec![
                s.community.into(),
                s.building.into(),
                s.unit.into(),
                s.user.into(),
                (now + Duration::hours(24)).into(),
                (now + Duration::hours(72)).into(),
                now.into(),
            ],
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no id".into()))?;
    let order_id: i64 = order.try_get("", "id")?;
    let seq = txn
        .query_one_raw(statement(
            &txn,
            "UPDATE event_stream SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
            vec![],
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no event stream".into()))?;
    let seq: i64 = seq.try_get("", "last_seq")?;
    txn.execute_raw(statement(
        &txn,
        "INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at) VALUES ($1, $2, 'SUBMITTED', 'repair_order', $3, $4)",
        vec![seq.into(), s.community.into(), order_id.into(), now.into()],
    ))
    .await?;
    txn.execute_raw(statement(
        &txn,
        "INSERT INTO event_recipient (event_seq, user_id) VALUES ($1, $2)",
        vec![seq.into(), s.user.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(order_id)
}

mod engine {
    use std::sync::OnceLock;

    use actix_web::{HttpResponse, web};
    use async_graphql::{
        Context, EmptyMutation, EmptySubscription, ID, Object, Request, Schema, SimpleObject, ValidationMode,
        parser::{parse_query, types::ExecutableDocument},
    };
    use sea_orm::{ConnectionTrait, DatabaseConnection};

    use super::{RESIDENT_ORDERS, Resident, statement};

    pub type Engine = Schema<Query, EmptyMutation, EmptySubscription>;

    pub fn schema(db: DatabaseConnection) -> Engine {
        Schema::build(Query, EmptyMutation, EmptySubscription).data(db).validation_mode(ValidationMode::Fast).finish()
    }

    #[derive(SimpleObject)]
    #[graphql(serial)]
    pub struct Building {
        name: String,
    }

    #[derive(SimpleObject)]
    #[graphql(serial)]
    pub struct Unit {
        number: String,
        building: Building,
    }

    #[derive(SimpleObject)]
    #[graphql(serial)]
    pub struct User {
        name: String,
    }

    #[derive(SimpleObject)]
    #[graphql(serial)]
    pub struct RepairOrder {
        id: ID,
        state: String,
        description: String,
        unit: Unit,
        building: Building,
        assignee: Option<User>,
    }

    #[derive(SimpleObject)]
    pub struct Edge {
        node: RepairOrder,
    }

    #[derive(SimpleObject)]
    pub struct Page {
        edges: Vec<Edge>,
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// B1's page: the statement takes no `first`, it always reads 20.
        async fn repair_orders(
            &self,
            ctx: &Context<'_>,
            #[graphql(name = "first")] _first: i32,
        ) -> async_graphql::Result<Page> {
            let db = ctx.data::<DatabaseConnection>()?;
            let Resident { user } = ctx.data::<Resident>()?;
            let rows =
                db.query_all_raw(statement(db, RESIDENT_ORDERS, vec![(*user).into()])).await.map_err(engine_error)?;
            let edges = rows
                .iter()
                .map(|row| {
                    let building_name: String = row.try_get("", "building_name")?;
                    let node = RepairOrder {
                        id: ID(row.try_get::<i64>("", "id")?.to_string()),
                        state: row.try_get("", "state")?,
                        description: row.try_get("", "description")?,
                        unit: Unit {
                            number: row.try_get("", "unit_number")?,
                            building: Building { name: building_name.clone() },
                        },
                        building: Building { name: building_name },
                        assignee: row.try_get::<Option<String>>("", "assignee_name")?.map(|name| User { name }),
                    };
                    Ok(Edge { node })
                })
                .collect::<Result<_, sea_orm::DbErr>>()
                .map_err(engine_error)?;
            Ok(Page { edges })
        }
    }

    fn engine_error(err: sea_orm::DbErr) -> async_graphql::Error {
        async_graphql::Error::new(err.to_string())
    }

    /// The first document posted, parsed once, as the API keeps its documents.
    static PARSED: OnceLock<(String, ExecutableDocument)> = OnceLock::new();

    pub async fn b1_engine(engine: web::Data<Engine>, query: web::Query<Resident>, body: web::Bytes) -> HttpResponse {
        let mut request: Request = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => return HttpResponse::BadRequest().body(err.to_string()),
        };
        let parsed = PARSED.get_or_init(|| {
            let document = parse_query(&request.query).expect("the benchmark's document parses");
            (request.query.clone(), document)
        });
        if parsed.0 == request.query {
            request.set_parsed_query(parsed.1.clone());
        }
        let response = engine.execute(request.data(query.into_inner())).await;
        HttpResponse::Ok().json(response)
    }
}

/// Serves the baselines on `bind` with one worker, until killed.
pub async fn serve(db: DatabaseConnection, bind: &str) -> std::io::Result<()> {
    let engine = web::Data::new(engine::schema(db.clone()));
    let db = web::Data::new(db);
    HttpServer::new(move || {
        App::new()
            .app_data(db.clone())
            .app_data(engine.clone())
            .route("/b1-engine", web::post().to(engine::b1_engine))
            .route("/b0", web::get().to(b0))
            .route("/b1", web::get().to(b1))
            .route("/b2", web::post().to(b2))
    })
    .workers(1)
    .bind(bind)?
    .run()
    .await
}
