use sea_orm::entity::prelude::*;

/// The event counter (a single row). Writers bump it in their transaction,
/// which locks the row until commit, so events become visible in `seq` order
/// and a committed `last_seq` means every event up to it is committed too.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_stream")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub last_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
