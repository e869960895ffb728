//! Who an event is for, by the roles the areas address: a unit's current
//! residents, the butlers of a building, and employees of a community.

use entity::{
    butler_assignment,
    enums::{Role, StaffPosition},
    unit_membership, user,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::SimpleExpr};

/// The people who currently live in the unit.
pub async fn residents_of(db: &impl ConnectionTrait, unit_id: i64) -> Result<Vec<i64>, DbErr> {
    unit_membership::Entity::find()
        .select_only()
        .column(unit_membership::Column::UserId)
        .filter(unit_membership::Column::UnitId.eq(unit_id))
        .filter(unit_membership::Column::MovedOutOn.is_null())
        .into_tuple()
        .all(db)
        .await
}

/// Butlers assigned to the buildings `building` selects (a condition on
/// `butler_assignment.building_id`).
pub async fn butlers_of(db: &impl ConnectionTrait, building: SimpleExpr) -> Result<Vec<i64>, DbErr> {
    butler_assignment::Entity::find()
        .select_only()
        .column(butler_assignment::Column::ButlerId)
        .filter(building)
        .into_tuple()
        .all(db)
        .await
}

/// The community's employees with `role`, and for staff one of `positions`
/// (any position when empty).
pub async fn employees_of(
    db: &impl ConnectionTrait,
    community_id: i64,
    role: Role,
    positions: &[StaffPosition],
) -> Result<Vec<i64>, DbErr> {
    let mut select = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::CommunityId.eq(community_id))
        .filter(user::Column::Role.eq(role));
    if !positions.is_empty() {
        select = select.filter(user::Column::Position.is_in(positions.iter().copied()));
    }
    select.into_tuple().all(db).await
}
