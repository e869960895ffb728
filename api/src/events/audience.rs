//! Who an event is for, by the roles the areas address: a unit's current
//! residents, the butlers of a building, and employees of a community. Each
//! group is a query of user ids; `people` asks for all of them in one statement.

use entity::{
    butler_assignment,
    enums::{Role, StaffPosition},
    unit_membership, user,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityName,
    sea_query::{
        Alias, CommonTableExpression, Expr, ExprTrait, Query, SelectStatement, SimpleExpr, UnionType, WithClause,
    },
};

use crate::property::scope;

/// The people who currently live in the unit.
pub fn residents_of(unit: impl Into<Expr>) -> SelectStatement {
    let of_unit = Expr::col((unit_membership::Entity, unit_membership::Column::UnitId)).eq(unit);
    scope::current_memberships(unit_membership::Column::UserId, of_unit)
}

/// Butlers assigned to the buildings `building` selects (a condition on
/// `butler_assignment.building_id`).
pub fn butlers_of(building: SimpleExpr) -> SelectStatement {
    Query::select()
        .column(butler_assignment::Column::ButlerId)
        .from(butler_assignment::Entity.table_ref())
        .and_where(building)
        .take()
}

/// The community's employees with `role`, and for staff one of `positions`
/// (any position when empty).
pub fn employees_of(community: impl Into<Expr>, role: Role, positions: &[StaffPosition]) -> SelectStatement {
    let mut select = Query::select()
        .column(user::Column::Id)
        .from(user::Entity.table_ref())
        .and_where(Expr::col((user::Entity, user::Column::CommunityId)).eq(community))
        .and_where(user::Column::Role.eq(role))
        .take();
    if !positions.is_empty() {
        select.and_where(user::Column::Position.is_in(positions.iter().copied()));
    }
    select
}

/// Everyone in `groups`, and `also`, read in one statement: the groups are
/// asked as one UNION. (The outbox drops repeated recipients.)
pub async fn people(
    db: &impl ConnectionTrait,
    groups: impl IntoIterator<Item = SelectStatement>,
    also: impl IntoIterator<Item = i64>,
) -> Result<Vec<i64>, DbErr> {
    let mut users: Vec<i64> = also.into_iter().collect();
    if let Some(union) = union_of(groups) {
        for row in db.query_all(&union).await? {
            users.push(row.try_get_by_index(0)?);
        }
    }
    Ok(users)
}

/// Everyone in `groups` as a PostgreSQL array, read by the statement it is
/// part of.
pub fn array_of(groups: impl IntoIterator<Item = SelectStatement>) -> Expr {
    match union_of(groups) {
        Some(union) => Expr::cust_with_expr("ARRAY($1)", Expr::SubQuery(None, Box::new(union.into()))),
        None => Expr::val(Vec::<i64>::new()),
    }
}

/// The people `groups` select, as a JSON array (SQLite): read along with
/// the row of the statement the expression is in.
pub fn json_array_of(groups: impl IntoIterator<Item = SelectStatement>) -> Expr {
    let Some(union) = union_of(groups) else { return Expr::val("[]") };
    let mut people = CommonTableExpression::new();
    people.query(union).table_name(Alias::new("people")).column(Alias::new("person"));
    let mut clauses = WithClause::new();
    clauses.cte(people);
    let read = Query::select().expr(Expr::cust("json_group_array(person)")).from(Alias::new("people")).take();
    Expr::SubQuery(None, Box::new(read.with(clauses).into()))
}

fn union_of(groups: impl IntoIterator<Item = SelectStatement>) -> Option<SelectStatement> {
    let mut groups = groups.into_iter();
    let mut union = groups.next()?;
    union.unions(groups.map(|group| (UnionType::Distinct, group)));
    Some(union)
}
