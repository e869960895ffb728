//! The GraphQL plumbing shared by every area: schema assembly, request context,
//! opaque ids, pagination and batch loading.

pub mod context;
pub mod documents;
pub mod error_codes;
pub mod hygiene;
pub mod ids;
pub mod limits;
pub mod loader;
pub mod pagination;
pub mod schema;

pub use context::{Auth, ClientIp, ContextExt, admit_auth_attempt};
pub use schema::{AppSchema, build_schema};
