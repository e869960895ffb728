//! HTTP routes: `/graphql` (POST for operations, GET for GraphiQL, read-only
//! queries and the WebSocket upgrade), `/healthz` and `/readyz`.

mod request_span;
mod socket;
mod upgrade;
mod ws;

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, Responder,
    http::{Method, header},
    web,
};
use async_graphql::{
    BatchRequest, Data,
    dataloader::DataLoader,
    http::{GraphiQLSource, MultipartOptions},
    parser::types::{DocumentOperations, OperationType},
};
use async_graphql_actix_web::GraphQLResponse;
use futures_util::StreamExt;
use sea_orm::EntityTrait;
use serde_json::json;

pub use self::{request_span::RequestSpan, upgrade::answer as answer_upgrade, ws::OpenSockets};
use crate::{
    AppContext,
    auth::Caller,
    graphql::{
        AppSchema, Auth, ClientIp,
        ids::{self, Kind},
        loader::RowsRead,
    },
    idempotency::IdempotencyHeader,
    identity::loader::VisibleMembershipsByResident,
    integrations,
    repair::photos,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/graphql").route(web::post().to(graphql_post)).route(web::get().to(graphql_get)))
        .route("/oauth/token", web::post().to(integrations::oauth::token))
        .route("/media/repair-photos/{id}", web::get().to(repair_photo))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Verifies an `Authorization` value of the form `Bearer <token>`. An
/// integrator's token stops working the moment its client is disabled.
async fn authenticate(
    app: &AppContext,
    authorization: Option<&str>,
) -> Option<(Caller, chrono::DateTime<chrono::Utc>)> {
    let value = authorization?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)?;
    let (caller, expires_at) = app.tokens.verify(token).ok()?;
    if let Caller::Integrator(integrator) = &caller {
        match integrations::service::is_active(&app.db, integrator.client_id).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                tracing::warn!(error = ?err, "could not check an integrator's client");
                return None;
            }
        }
    }
    Some((caller, expires_at))
}

/// The caller of an HTTP request: anonymous without the header, rejected with
/// any other scheme or a bad token.
async fn http_auth(app: &AppContext, authorization: Option<&str>) -> Auth {
    match (authorization, authenticate(app, authorization).await) {
        (None, _) => Auth::Anonymous,
        (Some(_), Some((caller, _))) => Auth::Authenticated(caller),
        (Some(_), None) => Auth::Rejected,
    }
}

/// Per-request data: the caller, their address and the loaders that carry the
/// caller's scope.
fn request_data(app: &AppContext, auth: Auth, client_ip: &str, idempotency_key: Option<&str>) -> Data {
    let mut data = Data::default();
    data.insert(ClientIp(client_ip.to_owned()));
    data.insert(RowsRead::default());
    if let Some(key) = idempotency_key {
        data.insert(IdempotencyHeader(key.to_owned()));
    }
    if let Auth::Authenticated(Caller::User(principal)) = &auth {
        data.insert(DataLoader::new(
            VisibleMembershipsByResident::new(app.db.clone(), principal.clone()),
            tokio::spawn,
        ));
    }
    data.insert(auth);
    data
}

/// The client's IP: the peer's, or with `trust_proxy_headers` the one the
/// proxy reports in Forwarded / X-Forwarded-For.
pub(crate) fn client_ip(req: &HttpRequest, trust_proxy_headers: bool) -> String {
    let info = req.connection_info();
    let address = if trust_proxy_headers { info.realip_remote_addr() } else { info.peer_addr() };
    let Some(address) = address else {
        return "unknown".to_owned();
    };
    address
        .parse::<std::net::SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| address.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>())
        .map_or_else(|_| address.to_owned(), |ip| ip.to_string())
}

/// Takes `cost` tokens from the client IP's bucket and, for a verified
/// caller, from the caller's own, in one step; the answer when either is
/// empty (and then neither is drawn on).
async fn admit(app: &AppContext, client_ip: &str, auth: &Auth, cost: u32) -> Option<HttpResponse> {
    let settings = &app.settings;
    let ip_bucket = format!("ip:{client_ip}");
    let caller_bucket = match auth {
        Auth::Authenticated(caller) => Some(caller.rate_bucket()),
        _ => None,
    };
    let mut buckets = vec![(ip_bucket.as_str(), settings.ip_limit())];
    buckets.extend(caller_bucket.as_deref().map(|bucket| (bucket, settings.caller_limit())));
    app.limiter.check(&buckets, cost).await.err().map(rate_limited)
}

fn rate_limited(retry_after_secs: u64) -> HttpResponse {
    HttpResponse::TooManyRequests().insert_header((header::RETRY_AFTER, retry_after_secs.to_string())).json(json!({
        "errors": [{
            "message": format!("too many requests, retry in {retry_after_secs} s"),
            "extensions": { "code": "RATE_LIMITED", "retryAfter": retry_after_secs },
        }]
    }))
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|value| value.to_str().ok())
}

/// Reads the body up to `limit` bytes; `None` when it is larger.
async fn read_limited(payload: &mut web::Payload, limit: usize) -> Result<Option<web::BytesMut>, actix_web::Error> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn too_large() -> HttpResponse {
    HttpResponse::PayloadTooLarge().json(json!({ "errors": [{ "message": "request body too large" }] }))
}

/// A browser may send `text/plain`, form and multipart bodies cross-site without
/// a preflight; JSON is accepted, multipart only with a header a browser cannot
/// add without a preflight, everything else is refused.
async fn graphql_post(
    req: HttpRequest,
    mut payload: web::Payload,
    schema: web::Data<AppSchema>,
    app: web::Data<Arc<AppContext>>,
) -> actix_web::Result<HttpResponse> {
    let content_type = header_str(&req, header::CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let settings = &app.settings;
    let batch = match essence {
        "application/json" | "application/graphql-response+json" => {
            let Some(body) = read_limited(&mut payload, settings.max_body_bytes).await? else {
                return Ok(too_large());
            };
            match serde_json::from_slice::<BatchRequest>(&body) {
                Ok(batch) => batch,
                Err(err) => return Ok(bad_request(&format!("malformed GraphQL request: {err}"))),
            }
        }
        "multipart/form-data" => {
            let preflighted = req.headers().contains_key("apollo-require-preflight")
                || req.headers().contains_key("x-apollo-operation-name");
            if !preflighted {
                return Ok(bad_request("multipart requests need an Apollo-Require-Preflight header"));
            }
            // Uploads are checked against their own limits by the fields that
            // take them; the transport only bounds the worst case, with room
            // for those fields to answer an oversize photo with BAD_USER_INPUT.
            let max_files = settings.repair_max_photos * 2;
            let max_file_size = settings.repair_max_photo_bytes * 2;
            let Some(body) = read_limited(&mut payload, settings.max_body_bytes + max_files * max_file_size).await?
            else {
                return Ok(too_large());
            };
            let options = MultipartOptions::default().max_file_size(max_file_size).max_num_files(max_files);
            let stream = futures_util::io::Cursor::new(body.freeze());
            match async_graphql::http::receive_batch_body(Some(content_type.clone()), stream, options).await {
                Ok(batch) => batch,
                Err(async_graphql::ParseRequestError::PayloadTooLarge) => return Ok(too_large()),
                Err(err) => return Ok(bad_request(&format!("malformed multipart request: {err}"))),
            }
        }
        _ => {
            return Ok(HttpResponse::UnsupportedMediaType()
                .json(json!({ "errors": [{ "message": "send GraphQL requests as application/json" }] })));
        }
    };
    if let BatchRequest::Batch(operations) = &batch
        && operations.len() > settings.max_batch
    {
        return Ok(bad_request(&format!("at most {} operations in one batch", settings.max_batch)));
    }
    let auth = http_auth(&app, header_str(&req, header::AUTHORIZATION)).await;
    let ip = client_ip(&req, settings.trust_proxy_headers);
    // Each operation of a batch counts, so batching buys no extra requests.
    let cost = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(operations) => u32::try_from(operations.len()).unwrap_or(u32::MAX).max(1),
    };
    if let Some(refusal) = admit(&app, &ip, &auth, cost).await {
        return Ok(refusal);
    }
    // Read leniently, so a key that is not visible ASCII is refused by name
    // rather than ignored.
    let idempotency_key = req.headers().get("idempotency-key").map(|value| String::from_utf8_lossy(value.as_bytes()));
    let mut batch = batch;
    for request in batch.iter_mut() {
        request.data = request_data(&app, auth.clone(), &ip, idempotency_key.as_deref());
    }
    let response =
        match tokio::time::timeout(settings.execution_timeout, app.documents.execute_batch(&schema, batch)).await {
            Ok(response) => response,
            Err(_) => return Ok(timed_out()),
        };
    Ok(GraphQLResponse::from(response).respond_to(&req).map_into_boxed_body())
}

fn timed_out() -> HttpResponse {
    tracing::warn!("request cut off at the execution timeout");
    HttpResponse::Ok().json(json!({
        "errors": [{ "message": "the request took too long", "extensions": { "code": "TIMEOUT" } }]
    }))
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "errors": [{ "message": message }] }))
}

/// GET serves the WebSocket upgrade, read-only queries (mutations are 405, so
/// a link or an image tag cannot change anything), and GraphiQL otherwise.
async fn graphql_get(
    req: HttpRequest,
    schema: web::Data<AppSchema>,
    app: web::Data<Arc<AppContext>>,
) -> actix_web::Result<HttpResponse> {
    let ip = client_ip(&req, app.settings.trust_proxy_headers);
    if req.headers().contains_key(header::UPGRADE) {
        if let Some(refusal) = admit(&app, &ip, &Auth::Anonymous, 1).await {
            return Ok(refusal);
        }
        return Ok(ws::accept(&req, schema.get_ref().clone(), app.get_ref().clone(), ip));
    }
    if req.query_string().is_empty() {
        if !app.settings.graphiql_enabled() {
            return Ok(HttpResponse::NotFound().finish());
        }
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish()));
    }
    let request = match async_graphql::http::parse_query_string(req.query_string()) {
        Ok(request) => request,
        Err(err) => return Ok(bad_request(&format!("malformed GraphQL request: {err}"))),
    };
    let mut prepared = match app.documents.prepare(request) {
        Ok(prepared) => prepared,
        Err(errors) => {
            let refusal = async_graphql::Response::from_errors(errors);
            return Ok(GraphQLResponse::from(refusal).respond_to(&req).map_into_boxed_body());
        }
    };
    if is_mutation(&mut prepared.request) {
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, Method::POST.as_str()))
            .json(json!({ "errors": [{ "message": "mutations must be sent with POST" }] })));
    }
    let auth = http_auth(&app, header_str(&req, header::AUTHORIZATION)).await;
    if let Some(refusal) = admit(&app, &ip, &auth, 1).await {
        return Ok(refusal);
    }
    prepared.request.data = request_data(&app, auth, &ip, None);
    let response =
        match tokio::time::timeout(app.settings.execution_timeout, app.documents.execute_prepared(&schema, prepared))
            .await
        {
            Ok(response) => response,
            Err(_) => return Ok(timed_out()),
        };
    Ok(GraphQLResponse::from(response).respond_to(&req).map_into_boxed_body())
}

/// Whether the operation the request would run is a mutation. A document that
/// does not parse is left for the executor to report.
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let is_mutation = |ty: OperationType| ty == OperationType::Mutation;
    match (&document.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => is_mutation(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).is_some_and(|operation| is_mutation(operation.node.ty))
        }
        (DocumentOperations::Multiple(operations), None) => {
            operations.values().any(|operation| is_mutation(operation.node.ty))
        }
    }
}

#[derive(serde::Deserialize)]
struct SignedUrl {
    expires: i64,
    signature: String,
}

/// Serves a repair photo to whoever holds a valid signed URL for it; the URL
/// is handed out only to those who may see the order.
async fn repair_photo(
    path: web::Path<String>,
    query: web::Query<SignedUrl>,
    app: web::Data<Arc<AppContext>>,
) -> HttpResponse {
    let not_found = || HttpResponse::NotFound().finish();
    let Ok(photo_id) = ids::decode(Kind::RepairPhoto, &async_graphql::ID(path.into_inner()), "id") else {
        return not_found();
    };
    if !photos::verify(&app, photo_id, query.expires, &query.signature) {
        return HttpResponse::Forbidden().finish();
    }
    let photo = match entity::repair_photo::Entity::find_by_id(photo_id).one(&app.db).await {
        Ok(Some(photo)) => photo,
        Ok(None) => return not_found(),
        Err(err) => {
            tracing::error!(error = %err, "loading a photo failed");
            return HttpResponse::InternalServerError().finish();
        }
    };
    match tokio::fs::read(photos::path(&app.settings.data_dir, &photo.storage_name)).await {
        Ok(bytes) => HttpResponse::Ok()
            .content_type(photo.content_type)
            .insert_header((header::CACHE_CONTROL, "private, max-age=300"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(bytes),
        Err(err) => {
            tracing::error!(error = %err, photo_id, "photo file missing");
            not_found()
        }
    }
}

async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(app: web::Data<Arc<AppContext>>) -> impl Responder {
    match app.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed: database unreachable");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "database unreachable" }))
        }
    }
}
