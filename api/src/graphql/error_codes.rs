//! Gives every error a machine-readable `extensions.code`, including those the
//! GraphQL engine raises itself before any resolver runs (syntax errors,
//! unknown fields, wrongly typed arguments, depth and complexity limits).

use std::sync::Arc;

use async_graphql::{
    Response, ServerError,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe},
};
use futures_util::stream::{BoxStream, StreamExt};

/// Request-level failures: the document was refused before execution.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors.iter_mut().for_each(assign_code);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                response.errors.iter_mut().for_each(assign_code);
                response
            })
            .boxed()
    }
}

fn assign_code(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_some() {
        return;
    }
    // An error on a field path without a code of ours comes from the engine
    // coercing that field's arguments: the caller's input was wrong.
    let code = if error.path.is_empty() { VALIDATION_FAILED } else { "BAD_USER_INPUT" };
    extensions.set("code", code);
}
