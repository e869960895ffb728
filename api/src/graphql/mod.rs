//! The GraphQL plumbing shared by every area: schema assembly, request context,
//! opaque ids, pagination and batch loading.

pub mod context;
pub mod documents;
pub mod error_codes;
pub mod hygiene;
pub mod ids;
pub mod in_turn;
pub mod limits;
pub mod loader;
pub mod pagination;
pub mod schema;

use std::pin::Pin;

pub use context::{Auth, ClientIp, ContextExt, admit_auth_attempt};
pub use schema::{AppSchema, build_schema};

/// `wait` (a query, or a batch loader's answer) in a box of its own, to await.
///
/// The engine resolves each selected field of an object in a boxed future as
/// large as the object's largest field. A query's future kept inline made
/// every field of a building 4.9 KiB and of a unit 2.3 KiB, allocated and
/// copied for each `name` and `number` on a page. Fields that wait for a
/// query box that wait, so the others stay small.
pub fn boxed_wait<F: Future>(wait: F) -> Pin<Box<F>> {
    Box::pin(wait)
}
