//! Repair orders (报修工单): submission by residents or on their behalf,
//! dispatch, work, confirmation or automatic closing, cancellation,
//! follow-up visits, SLA deadlines, and the events that notify phones.

pub mod jobs;
pub mod loader;
pub mod mutation;
pub mod photos;
pub mod query;
pub mod service;
pub mod state;
pub mod subscription;
pub mod types;

pub use mutation::RepairMutation;
pub use query::RepairQuery;
pub use subscription::RepairSubscription;
