use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "unit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub building_id: i64,
    /// The building's community, kept beside it so that an order's or a
    /// parcel's place is one key, the unit's.
    pub community_id: i64,
    /// The door number as residents write it, e.g. "2-1503".
    pub number: String,
    pub floor: Option<i32>,
    /// Raised each time the emergency contacts are replaced.
    pub contacts_version: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::building::Entity", from = "Column::BuildingId", to = "super::building::Column::Id")]
    Building,
    #[sea_orm(has_many = "super::unit_membership::Entity")]
    UnitMembership,
}

impl Related<super::building::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Building.def()
    }
}

impl Related<super::unit_membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UnitMembership.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
