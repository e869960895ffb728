//! People and credentials: login and token rotation, the viewer, the resident
//! directory, staff accounts and butlers' building assignments.

pub mod loader;
pub mod mutation;
pub mod query;
pub mod service;
pub mod types;

pub use mutation::IdentityMutation;
pub use query::IdentityQuery;
