//! The property hierarchy (community → building → unit) and the records kept on
//! it (业户档案): who lives in which unit, and each unit's emergency contacts.

pub mod mutation;
pub mod query;
pub mod scope;
pub mod service;
pub mod types;

pub use mutation::PropertyMutation;
pub use query::PropertyQuery;
