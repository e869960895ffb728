//! Enumerations stored as short strings, so both SQLite and PostgreSQL hold them
//! the same way and new variants need no database type change.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    #[sea_orm(string_value = "RESIDENT")]
    Resident,
    #[sea_orm(string_value = "BUTLER")]
    Butler,
    #[sea_orm(string_value = "STAFF")]
    Staff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StaffPosition {
    #[sea_orm(string_value = "FRONT_DESK")]
    FrontDesk,
    #[sea_orm(string_value = "TECHNICIAN")]
    Technician,
    #[sea_orm(string_value = "SUPERVISOR")]
    Supervisor,
    #[sea_orm(string_value = "MANAGER")]
    Manager,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnitRelation {
    #[sea_orm(string_value = "OWNER")]
    Owner,
    #[sea_orm(string_value = "TENANT")]
    Tenant,
    #[sea_orm(string_value = "FAMILY")]
    Family,
}

/// How a repair request reached the department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairChannel {
    #[sea_orm(string_value = "APP")]
    App,
    #[sea_orm(string_value = "PHONE")]
    Phone,
    #[sea_orm(string_value = "FRONT_DESK")]
    FrontDesk,
    #[sea_orm(string_value = "PATROL")]
    Patrol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairCategory {
    #[sea_orm(string_value = "PLUMBING")]
    Plumbing,
    #[sea_orm(string_value = "ELECTRICAL")]
    Electrical,
    #[sea_orm(string_value = "DOORS_WINDOWS")]
    DoorsWindows,
    #[sea_orm(string_value = "APPLIANCES")]
    Appliances,
    #[sea_orm(string_value = "PUBLIC_FACILITIES")]
    PublicFacilities,
    #[sea_orm(string_value = "OTHER")]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairPriority {
    #[sea_orm(string_value = "NORMAL")]
    Normal,
    #[sea_orm(string_value = "URGENT")]
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairState {
    #[sea_orm(string_value = "SUBMITTED")]
    Submitted,
    #[sea_orm(string_value = "ASSIGNED")]
    Assigned,
    #[sea_orm(string_value = "IN_PROGRESS")]
    InProgress,
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
    #[sea_orm(string_value = "CLOSED")]
    Closed,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// What a timeline entry of a repair order records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairAction {
    #[sea_orm(string_value = "SUBMITTED")]
    Submitted,
    #[sea_orm(string_value = "ASSIGNED")]
    Assigned,
    #[sea_orm(string_value = "REASSIGNED")]
    Reassigned,
    #[sea_orm(string_value = "STARTED")]
    Started,
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
    #[sea_orm(string_value = "AUTO_CLOSED")]
    AutoClosed,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "FOLLOWED_UP")]
    FollowedUp,
    #[sea_orm(string_value = "RESPONSE_OVERDUE")]
    ResponseOverdue,
    #[sea_orm(string_value = "COMPLETION_OVERDUE")]
    CompletionOverdue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParcelKind {
    #[sea_orm(string_value = "PARCEL")]
    Parcel,
    #[sea_orm(string_value = "REGISTERED_MAIL")]
    RegisteredMail,
    #[sea_orm(string_value = "LETTER")]
    Letter,
    #[sea_orm(string_value = "PACKAGE")]
    Package,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParcelStatus {
    #[sea_orm(string_value = "WAITING")]
    Waiting,
    #[sea_orm(string_value = "UNIDENTIFIED")]
    Unidentified,
    #[sea_orm(string_value = "PICKED_UP")]
    PickedUp,
    #[sea_orm(string_value = "RETURNED")]
    Returned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PickupChannel {
    #[sea_orm(string_value = "FRONT_DESK")]
    FrontDesk,
    #[sea_orm(string_value = "LOCKER")]
    Locker,
}
