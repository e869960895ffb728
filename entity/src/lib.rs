//! SeaORM entities: one module per table, no business rules.

pub mod building;
pub mod butler_assignment;
pub mod community;
pub mod emergency_contact;
pub mod enums;
pub mod login_attempt;
pub mod refresh_token;
pub mod unit;
pub mod unit_membership;
pub mod user;
