use sea_orm::entity::prelude::*;

/// A caller's idempotency key for one mutation: a fingerprint of the input it
/// came with and the ids of what the mutation created (a JSON array).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_key")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub caller: String,
    pub operation: String,
    pub key: String,
    pub request_hash: String,
    pub created_ids: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
