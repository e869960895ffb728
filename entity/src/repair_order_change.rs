use sea_orm::entity::prelude::*;

use crate::enums::{RepairAction, RepairState};

/// One entry of an order's timeline: what changed, who did it, when.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "repair_order_change")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: i64,
    /// Empty when the system acted (auto-close, overdue marking).
    pub actor_id: Option<i64>,
    pub action: RepairAction,
    pub from_state: Option<RepairState>,
    pub to_state: Option<RepairState>,
    pub note: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
