//! Third-party integrators (parcel lockers, couriers, gates, payment
//! providers): API clients created by a manager, client-credentials tokens
//! limited to the client's scopes and community, disabled at once when needed.

pub mod mutation;
pub mod oauth;
pub mod query;
pub mod service;
pub mod types;

pub use mutation::IntegrationMutation;
pub use query::IntegrationQuery;
