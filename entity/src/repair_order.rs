use sea_orm::entity::prelude::*;

use crate::enums::{RepairCategory, RepairChannel, RepairPriority, RepairState};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "repair_order")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub community_id: i64,
    pub building_id: i64,
    /// Empty for a public area of the building.
    pub unit_id: Option<i64>,
    /// The resident the order is for; empty for patrol findings.
    pub resident_id: Option<i64>,
    /// Who entered the order: the resident, or staff on their behalf.
    pub created_by: i64,
    pub channel: RepairChannel,
    pub category: RepairCategory,
    pub description: String,
    pub priority: RepairPriority,
    pub state: RepairState,
    pub preferred_visit_at: Option<DateTimeUtc>,
    pub contact_phone: Option<String>,
    pub assignee_id: Option<i64>,
    pub completion_note: Option<String>,
    pub materials: Option<String>,
    /// Charge for paid work, in fen.
    pub charge_cents: Option<i64>,
    pub rating: Option<i32>,
    pub rating_comment: Option<String>,
    pub cancel_reason: Option<String>,
    pub response_due_at: DateTimeUtc,
    pub completion_due_at: DateTimeUtc,
    pub response_overdue: bool,
    pub completion_overdue: bool,
    pub assigned_at: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    pub closed_at: Option<DateTimeUtc>,
    /// Bumped by every change; a write naming an older version is refused.
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
