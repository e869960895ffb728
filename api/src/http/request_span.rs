//! One span per request with a request id, method and path, and one log line
//! when it ends. The query string is left out on purpose: GET queries can
//! carry phone numbers in search filters.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

pub struct RequestSpan;

/// When the request started, kept in the request's extensions.
#[derive(Clone, Copy)]
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        let request_id = request.extensions().get::<RequestId>().map(ToString::to_string).unwrap_or_default();
        tracing::info_span!("request", request_id = %request_id, method = %request.method(), path = %request.path())
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        match outcome {
            Ok(response) => {
                let elapsed_ms =
                    response.request().extensions().get::<Started>().map(|s| s.0.elapsed().as_secs_f64() * 1000.0);
                tracing::info!(status = response.status().as_u16(), elapsed_ms, "request finished");
            }
            Err(err) => tracing::warn!(error = %err, "request failed"),
        }
    }
}
