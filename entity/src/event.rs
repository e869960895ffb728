use sea_orm::entity::prelude::*;

/// The outbox: one row per state change, written in the same transaction as the
/// change. `seq` is the company-wide delivery order; rows carry ids, not data.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub community_id: i64,
    /// What happened, e.g. `REPAIR_ORDER_ASSIGNED`.
    pub kind: String,
    /// Which kind of object changed, e.g. `REPAIR_ORDER`.
    pub entity_type: String,
    pub entity_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::event_recipient::Entity")]
    EventRecipient,
}

impl Related<super::event_recipient::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EventRecipient.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
