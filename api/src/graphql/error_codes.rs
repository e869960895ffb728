//! Gives every error a machine-readable `extensions.code`, including those the
//! GraphQL engine raises itself before any resolver runs (syntax errors,
//! unknown fields, wrongly typed arguments, depth and complexity limits).

use async_graphql::ServerError;

/// Request-level failures: the document was refused before execution.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// Gives `error` a code if it has none.
pub fn assign_code(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_some() {
        return;
    }
    // An error on a field path without a code of ours comes from the engine
    // coercing that field's arguments: the caller's input was wrong.
    let code = if error.path.is_empty() { VALIDATION_FAILED } else { "BAD_USER_INPUT" };
    extensions.set("code", code);
}
