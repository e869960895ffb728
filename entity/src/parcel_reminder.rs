use sea_orm::entity::prelude::*;

/// One reminder sent for a parcel not yet picked up.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "parcel_reminder")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub parcel_id: i64,
    /// 1 for the first reminder, 2 for the second, …
    pub number: i32,
    pub sent_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
