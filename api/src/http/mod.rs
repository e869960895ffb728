//! HTTP routes: `/graphql` (POST for operations, GET for GraphiQL, read-only
//! queries and the WebSocket upgrade), `/healthz` and `/readyz`.

mod request_span;

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
use async_graphql_actix_web::{GraphQLResponse, GraphQLSubscription};
use serde_json::json;

pub use self::request_span::RequestSpan;
use crate::{
    AppContext,
    graphql::{AppSchema, Auth},
    identity::loader::VisibleMembershipsByResident,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/graphql").route(web::post().to(graphql_post)).route(web::get().to(graphql_get)))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Reads `Authorization: Bearer …`; any other scheme or a bad token is Rejected.
fn authenticate(app: &AppContext, authorization: Option<&str>) -> Auth {
    let Some(value) = authorization else {
        return Auth::Anonymous;
    };
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim);
    match token.map(|token| app.tokens.verify(token)) {
        Some(Ok((principal, _expires_at))) => Auth::Authenticated(principal),
        _ => Auth::Rejected,
    }
}

/// Per-request data: the caller and the loaders that carry the caller's scope.
fn request_data(app: &AppContext, auth: Auth) -> Data {
    let mut data = Data::default();
    if let Auth::Authenticated(principal) = &auth {
        data.insert(DataLoader::new(
            VisibleMembershipsByResident::new(app.db.clone(), principal.clone()),
            tokio::spawn,
        ));
    }
    data.insert(auth);
    data
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|value| value.to_str().ok())
}

/// A browser may send `text/plain`, form and multipart bodies cross-site without
/// a preflight; JSON is accepted, multipart only with a header a browser cannot
/// add without a preflight, everything else is refused.
async fn graphql_post(
    req: HttpRequest,
    body: web::Bytes,
    schema: web::Data<AppSchema>,
    app: web::Data<Arc<AppContext>>,
) -> HttpResponse {
    let content_type = header_str(&req, header::CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let batch = match essence {
        "application/json" | "application/graphql-response+json" => {
            match serde_json::from_slice::<BatchRequest>(&body) {
                Ok(batch) => batch,
                Err(err) => return bad_request(&format!("malformed GraphQL request: {err}")),
            }
        }
        "multipart/form-data" => {
            let preflighted = req.headers().contains_key("apollo-require-preflight")
                || req.headers().contains_key("x-apollo-operation-name");
            if !preflighted {
                return bad_request("multipart requests need an Apollo-Require-Preflight header");
            }
            let stream = futures_util::io::Cursor::new(body.to_vec());
            match async_graphql::http::receive_batch_body(
                Some(content_type.clone()),
                stream,
                MultipartOptions::default(),
            )
            .await
            {
                Ok(batch) => batch,
                Err(err) => return bad_request(&format!("malformed multipart request: {err}")),
            }
        }
        _ => {
            return HttpResponse::UnsupportedMediaType()
                .json(json!({ "errors": [{ "message": "send GraphQL requests as application/json" }] }));
        }
    };
    let auth = authenticate(&app, header_str(&req, header::AUTHORIZATION));
    let mut batch = batch;
    for request in batch.iter_mut() {
        request.data = request_data(&app, auth.clone());
    }
    let response = schema.execute_batch(batch).await;
    GraphQLResponse::from(response).respond_to(&req).map_into_boxed_body()
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "errors": [{ "message": message }] }))
}

/// GET serves the WebSocket upgrade, read-only queries (mutations are 405, so
/// a link or an image tag cannot change anything), and GraphiQL otherwise.
async fn graphql_get(
    req: HttpRequest,
    payload: web::Payload,
    schema: web::Data<AppSchema>,
    app: web::Data<Arc<AppContext>>,
) -> actix_web::Result<HttpResponse> {
    if req.headers().contains_key(header::UPGRADE) {
        let app = app.get_ref().clone();
        return GraphQLSubscription::new(schema.get_ref().clone())
            .on_connection_init(move |payload| {
                let app = app.clone();
                async move {
                    let authorization = payload.get("authorization").or_else(|| payload.get("Authorization"));
                    match authenticate(&app, authorization.and_then(|value| value.as_str())) {
                        auth @ Auth::Authenticated(_) => Ok(request_data(&app, auth)),
                        _ => Err(async_graphql::Error::new("invalid or missing credentials")),
                    }
                }
            })
            .start(&req, payload);
    }
    if req.query_string().is_empty() {
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish()));
    }
    let request = match async_graphql::http::parse_query_string(req.query_string()) {
        Ok(request) => request,
        Err(err) => return Ok(bad_request(&format!("malformed GraphQL request: {err}"))),
    };
    if is_mutation(&request) {
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, Method::POST.as_str()))
            .json(json!({ "errors": [{ "message": "mutations must be sent with POST" }] })));
    }
    let auth = authenticate(&app, header_str(&req, header::AUTHORIZATION));
    let mut request = request;
    request.data = request_data(&app, auth);
    Ok(GraphQLResponse::from(schema.execute(request).await).respond_to(&req).map_into_boxed_body())
}

/// Whether the operation the request would run is a mutation. A document that
/// does not parse is left for the executor to report.
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let is_mutation = |ty: OperationType| ty == OperationType::Mutation;
    match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => is_mutation(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).is_some_and(|operation| is_mutation(operation.node.ty))
        }
        (DocumentOperations::Multiple(operations), None) => {
            operations.values().any(|operation| is_mutation(operation.node.ty))
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
