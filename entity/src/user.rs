use sea_orm::entity::prelude::*;

use crate::enums::{Role, StaffPosition};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub phone: String,
    pub name: String,
    /// Argon2 PHC string; `None` until the person has a password to log in with.
    pub password_hash: Option<String>,
    pub role: Role,
    pub position: Option<StaffPosition>,
    /// The community a butler or staff member works for; residents reach
    /// communities through their units.
    pub community_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::unit_membership::Entity")]
    UnitMembership,
}

impl Related<super::unit_membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UnitMembership.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
