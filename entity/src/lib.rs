//! SeaORM entities: one module per table, no business rules.

pub mod api_client;
pub mod building;
pub mod butler_assignment;
pub mod community;
pub mod emergency_contact;
pub mod enums;
pub mod event;
pub mod event_recipient;
pub mod event_stream;
pub mod idempotency_key;
pub mod login_attempt;
pub mod parcel;
pub mod parcel_reminder;
pub mod refresh_token;
pub mod repair_follow_up;
pub mod repair_order;
pub mod repair_order_change;
pub mod repair_photo;
pub mod unit;
pub mod unit_membership;
pub mod user;
