//! Parcels and mail (快递/邮件收发): registered at the desk or by an
//! integrator, announced to the recipients with a pickup code, reminded,
//! handed over against the code, identified or returned when unclear.

pub mod jobs;
pub mod mutation;
pub mod query;
pub mod service;
pub mod subscription;
pub mod types;

pub use mutation::ParcelMutation;
pub use query::ParcelQuery;
pub use subscription::ParcelSubscription;
