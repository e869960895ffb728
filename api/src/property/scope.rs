//! What each principal may see, as SQL conditions added to every select: a
//! resident their own current units, a butler the buildings assigned to them,
//! staff their community. A row outside the scope is never loaded at all.

use entity::{building, butler_assignment, enums::Role, unit, unit_membership, user};
use sea_orm::{
    ColumnTrait, Condition, EntityName,
    sea_query::{Expr, Query, SelectStatement, SimpleExpr},
};

use crate::auth::Principal;

/// A condition no row satisfies, for principals lacking what a scope needs.
fn nothing() -> Condition {
    Condition::all().add(Expr::cust("1 = 0"))
}

/// `column` of the memberships `which` selects that have not ended (the
/// resident has not moved out): the one definition of living in a unit now.
pub fn current_memberships(column: unit_membership::Column, which: SimpleExpr) -> SelectStatement {
    Query::select()
        .column(column)
        .from(unit_membership::Entity.table_ref())
        .and_where(which)
        .and_where(unit_membership::Column::MovedOutOn.is_null())
        .take()
}

/// Units the user currently lives in.
pub fn current_units_of(user_id: i64) -> SelectStatement {
    current_memberships(unit_membership::Column::UnitId, unit_membership::Column::UserId.eq(user_id))
}

/// Buildings assigned to the butler.
pub fn buildings_assigned_to(butler_id: i64) -> SelectStatement {
    Query::select()
        .column(butler_assignment::Column::BuildingId)
        .from(butler_assignment::Entity.table_ref())
        .and_where(butler_assignment::Column::ButlerId.eq(butler_id))
        .take()
}

pub fn buildings(principal: &Principal) -> Condition {
    match (principal.role, principal.community_id) {
        (Role::Resident, _) => Condition::all().add(
            building::Column::Id.in_subquery(
                Query::select()
                    .column(unit::Column::BuildingId)
                    .from(unit::Entity.table_ref())
                    .and_where(unit::Column::Id.in_subquery(current_units_of(principal.user_id)))
                    .take(),
            ),
        ),
        (Role::Butler, _) => {
            Condition::all().add(building::Column::Id.in_subquery(buildings_assigned_to(principal.user_id)))
        }
        (Role::Staff, Some(community_id)) => Condition::all().add(building::Column::CommunityId.eq(community_id)),
        (Role::Staff, None) => nothing(),
    }
}

pub fn units(principal: &Principal) -> Condition {
    match (principal.role, principal.community_id) {
        (Role::Resident, _) => Condition::all().add(unit::Column::Id.in_subquery(current_units_of(principal.user_id))),
        (Role::Butler, _) => {
            Condition::all().add(unit::Column::BuildingId.in_subquery(buildings_assigned_to(principal.user_id)))
        }
        (Role::Staff, Some(community_id)) => Condition::all().add(unit::Column::CommunityId.eq(community_id)),
        (Role::Staff, None) => nothing(),
    }
}

/// Ids of units visible to the principal, for use inside other subqueries.
pub fn unit_ids(principal: &Principal) -> SelectStatement {
    Query::select().column(unit::Column::Id).from(unit::Entity.table_ref()).cond_where(units(principal)).take()
}

/// Memberships (current or past) of units visible to the principal.
pub fn memberships(principal: &Principal) -> Condition {
    Condition::all().add(unit_membership::Column::UnitId.in_subquery(unit_ids(principal)))
}

/// People who currently live in a unit visible to the principal.
pub fn residents(principal: &Principal) -> Condition {
    Condition::all().add(
        user::Column::Id.in_subquery(
            Query::select()
                .column(unit_membership::Column::UserId)
                .from(unit_membership::Entity.table_ref())
                .and_where(unit_membership::Column::MovedOutOn.is_null())
                .and_where(unit_membership::Column::UnitId.in_subquery(unit_ids(principal)))
                .take(),
        ),
    )
}

/// Butlers and staff of the principal's community.
pub fn employees(principal: &Principal) -> Condition {
    match (principal.role, principal.community_id) {
        (Role::Butler | Role::Staff, Some(community_id)) => Condition::all()
            .add(user::Column::CommunityId.eq(community_id))
            .add(user::Column::Role.is_in([Role::Butler, Role::Staff])),
        _ => nothing(),
    }
}
