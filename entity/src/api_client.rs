use sea_orm::entity::prelude::*;

/// A third-party system (parcel locker, courier, gate, payment provider) that
/// calls the API with client credentials.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_client")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub community_id: i64,
    pub name: String,
    /// SHA-256 of the secret, keyed with the server secret.
    pub secret_hash: String,
    /// Space-separated scopes, e.g. `parcels:read parcels:write`.
    pub scopes: String,
    pub created_by: i64,
    pub disabled_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
