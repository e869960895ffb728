//! The rules of the property records. Every select is narrowed by the caller's
//! scope, so an id outside it reads as NOT_FOUND.

use chrono::{NaiveDate, Utc};
use entity::{building, emergency_contact, enums::Role, unit, unit_membership, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};

use super::{scope, types};
use crate::{
    AppContext,
    auth::{Action, Principal, permissions},
    error::{ApiError, ApiResult, unique_conflict},
    graphql::pagination::{self, Page, PageRequest},
    identity::service::{self as identity, NewAccount},
    validate,
};

pub const MAX_EMERGENCY_CONTACTS: usize = 5;

#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn list_buildings(
    db: &DatabaseConnection,
    principal: &Principal,
    request: PageRequest,
) -> ApiResult<Page<types::Building>> {
    let select = building::Entity::find().filter(scope::buildings(principal));
    pagination::fetch(db, select, building::Column::Id, |b| b.id, request, types::Building::from).await
}

pub async fn find_building(db: &impl ConnectionTrait, principal: &Principal, id: i64) -> ApiResult<building::Model> {
    building::Entity::find_by_id(id)
        .filter(scope::buildings(principal))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("building"))
}

#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn list_units(
    db: &DatabaseConnection,
    principal: &Principal,
    building_id: Option<i64>,
    request: PageRequest,
) -> ApiResult<Page<types::Unit>> {
    let mut select = unit::Entity::find().filter(scope::units(principal));
    if let Some(building_id) = building_id {
        select = select.filter(unit::Column::BuildingId.eq(building_id));
    }
    pagination::fetch(db, select, unit::Column::Id, |u| u.id, request, types::Unit::from).await
}

pub async fn find_unit(db: &impl ConnectionTrait, principal: &Principal, id: i64) -> ApiResult<unit::Model> {
    unit::Entity::find_by_id(id).filter(scope::units(principal)).one(db).await?.ok_or(ApiError::NotFound("unit"))
}

pub async fn emergency_contacts(db: &impl ConnectionTrait, unit_id: i64) -> ApiResult<Vec<emergency_contact::Model>> {
    Ok(emergency_contact::Entity::find()
        .filter(emergency_contact::Column::UnitId.eq(unit_id))
        .order_by_asc(emergency_contact::Column::Id)
        .all(db)
        .await?)
}

#[tracing::instrument(skip(db, principal, name), fields(user_id = principal.user_id))]
pub async fn create_building(
    db: &impl ConnectionTrait,
    principal: &Principal,
    name: &str,
) -> ApiResult<building::Model> {
    permissions::require(principal, Action::ManageProperty)?;
    let community_id = principal.community_id.ok_or(ApiError::Forbidden)?;
    let name = validate::text(name, "name", 100)?;
    let exists = building::Entity::find()
        .filter(building::Column::CommunityId.eq(community_id))
        .filter(building::Column::Name.eq(name.as_str()))
        .one(db)
        .await?
        .is_some();
    if exists {
        return Err(ApiError::conflict("a building with this name already exists"));
    }
    building::ActiveModel {
        community_id: Set(community_id),
        name: Set(name),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|err| unique_conflict(err, "a building with this name already exists"))
}

#[tracing::instrument(skip(db, principal, number), fields(user_id = principal.user_id))]
pub async fn create_unit(
    db: &impl ConnectionTrait,
    principal: &Principal,
    building_id: i64,
    number: &str,
    floor: Option<i32>,
) -> ApiResult<unit::Model> {
    permissions::require(principal, Action::ManageProperty)?;
    let building = find_building(db, principal, building_id).await?;
    let number = validate::text(number, "number", 32)?;
    if let Some(floor) = floor
        && !(-10..=200).contains(&floor)
    {
        return Err(ApiError::bad_input("floor", "must be between -10 and 200"));
    }
    let exists = unit::Entity::find()
        .filter(unit::Column::BuildingId.eq(building.id))
        .filter(unit::Column::Number.eq(number.as_str()))
        .one(db)
        .await?
        .is_some();
    if exists {
        return Err(ApiError::conflict("the building already has a unit with this number"));
    }
    unit::ActiveModel {
        building_id: Set(building.id),
        community_id: Set(building.community_id),
        number: Set(number),
        floor: Set(floor),
        contacts_version: Set(0),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|err| unique_conflict(err, "the building already has a unit with this number"))
}

pub struct MoveIn {
    pub unit_id: i64,
    pub phone: String,
    pub name: String,
    pub relation: entity::enums::UnitRelation,
    pub moved_in_on: Option<NaiveDate>,
    pub initial_password: Option<String>,
}

#[tracing::instrument(skip_all, fields(user_id = principal.user_id, unit_id = input.unit_id))]
pub async fn move_in(app: &AppContext, principal: &Principal, input: MoveIn) -> ApiResult<unit_membership::Model> {
    let db = &app.db;
    permissions::require(principal, Action::ManageResidency)?;
    let unit = find_unit(db, principal, input.unit_id).await?;
    let phone = validate::mobile_phone(&input.phone, "phone")?;
    let name = validate::text(&input.name, "name", 50)?;
    let today = Utc::now().date_naive();
    let moved_in_on = validate::date(input.moved_in_on.unwrap_or(today), "movedInOn")?;
    if moved_in_on > today + chrono::Days::new(366) {
        return Err(ApiError::bad_input("movedInOn", "must be within a year from today"));
    }
    if let Some(password) = &input.initial_password {
        crate::auth::password::validate(password, "initialPassword")?;
    }
    let password_hash = match &input.initial_password {
        Some(password) => Some(crate::auth::password::hash(password).await?),
        None => None,
    };

    let (resident, membership) = app
        .writers
        .write(async |txn| {
            let resident = match user::Entity::find().filter(user::Column::Phone.eq(phone.as_str())).one(txn).await? {
                Some(existing) if existing.role != Role::Resident => {
                    return Err(ApiError::conflict("this phone number belongs to a staff account"));
                }
                Some(existing) => existing,
                None => {
                    identity::create_account(
                        txn,
                        NewAccount {
                            phone,
                            name,
                            password_hash,
                            role: Role::Resident,
                            position: None,
                            community_id: None,
                        },
                    )
                    .await?
                }
            };
            let already_member = unit_membership::Entity::find()
                .filter(unit_membership::Column::UnitId.eq(unit.id))
                .filter(unit_membership::Column::UserId.eq(resident.id))
                .filter(unit_membership::Column::MovedOutOn.is_null())
                .one(txn)
                .await?
                .is_some();
            if already_member {
                return Err(ApiError::conflict("the resident already lives in this unit"));
            }
            let membership = unit_membership::ActiveModel {
                user_id: Set(resident.id),
                unit_id: Set(unit.id),
                relation: Set(input.relation),
                moved_in_on: Set(moved_in_on),
                moved_out_on: Set(None),
                created_at: Set(Utc::now()),
                ..Default::default()
            }
            .insert(txn)
            .await
            .map_err(|err| unique_conflict(err, "the resident already lives in this unit"))?;
            Ok((resident, membership))
        })
        .await?;
    tracing::info!(membership_id = membership.id, resident_id = resident.id, "resident moved in");
    Ok(membership)
}

#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn move_out(
    db: &impl ConnectionTrait,
    principal: &Principal,
    membership_id: i64,
    moved_out_on: Option<NaiveDate>,
) -> ApiResult<unit_membership::Model> {
    permissions::require(principal, Action::ManageResidency)?;
    let membership = unit_membership::Entity::find_by_id(membership_id)
        .filter(scope::memberships(principal))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("membership"))?;
    if membership.moved_out_on.is_some() {
        return Err(ApiError::conflict("the resident has already moved out"));
    }
    let today = Utc::now().date_naive();
    let moved_out_on = validate::date(moved_out_on.unwrap_or(today), "movedOutOn")?;
    if moved_out_on > today {
        return Err(ApiError::bad_input("movedOutOn", "cannot be in the future"));
    }
    if moved_out_on < membership.moved_in_on {
        return Err(ApiError::bad_input("movedOutOn", "cannot be before the move-in date"));
    }
    // Conditional on still being current, so two desks ending the same membership
    // at once cannot both succeed.
    let result = unit_membership::Entity::update_many()
        .col_expr(unit_membership::Column::MovedOutOn, Expr::value(moved_out_on))
        .filter(unit_membership::Column::Id.eq(membership.id))
        .filter(unit_membership::Column::MovedOutOn.is_null())
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::conflict("the resident has already moved out"));
    }
    tracing::info!(membership_id = membership.id, "resident moved out");
    Ok(unit_membership::Model { moved_out_on: Some(moved_out_on), ..membership })
}

pub struct NewEmergencyContact {
    pub name: String,
    pub phone: String,
    pub relation: String,
}

/// Replaces the unit's emergency contacts. Front desk and supervisors keep them;
/// residents may keep their own unit's.
#[tracing::instrument(skip_all, fields(user_id = principal.user_id, unit_id))]
pub async fn set_emergency_contacts(
    app: &AppContext,
    principal: &Principal,
    unit_id: i64,
    contacts: Vec<NewEmergencyContact>,
    expected_version: Option<i32>,
) -> ApiResult<unit::Model> {
    let db = &app.db;
    if !principal.is_resident() {
        permissions::require(principal, Action::ManageResidency)?;
    }
    let unit = find_unit(db, principal, unit_id).await?;
    crate::db::require_version("the emergency contacts", unit.contacts_version, expected_version)?;
    if contacts.len() > MAX_EMERGENCY_CONTACTS {
        return Err(ApiError::bad_input("contacts", format!("at most {MAX_EMERGENCY_CONTACTS} contacts")));
    }
    let now = Utc::now();
    let mut rows = Vec::with_capacity(contacts.len());
    for (index, contact) in contacts.iter().enumerate() {
        rows.push(emergency_contact::ActiveModel {
            unit_id: Set(unit.id),
            name: Set(validate::text(&contact.name, &format!("contacts.{index}.name"), 50)?),
            phone: Set(validate::contact_phone(&contact.phone, &format!("contacts.{index}.phone"))?),
            relation: Set(validate::text(&contact.relation, &format!("contacts.{index}.relation"), 30)?),
            created_at: Set(now),
            ..Default::default()
        });
    }
    app.writers
        .write(async |txn| {
            // Raising the version only from the one that was read makes the later of
            // two simultaneous replacements fail instead of overwriting the first.
            let raised = unit::Entity::update_many()
                .col_expr(unit::Column::ContactsVersion, Expr::value(unit.contacts_version + 1))
                .filter(unit::Column::Id.eq(unit.id))
                .filter(unit::Column::ContactsVersion.eq(unit.contacts_version))
                .exec(txn)
                .await?;
            if raised.rows_affected == 0 {
                return Err(ApiError::conflict(
                    "the emergency contacts were changed by someone else at the same time; reload them",
                ));
            }
            emergency_contact::Entity::delete_many()
                .filter(emergency_contact::Column::UnitId.eq(unit.id))
                .exec(txn)
                .await?;
            if !rows.is_empty() {
                emergency_contact::Entity::insert_many(rows).exec(txn).await?;
            }
            Ok(())
        })
        .await?;
    Ok(unit::Model { contacts_version: unit.contacts_version + 1, ..unit })
}

/// A unit the principal may see, with its building, in one statement.
pub async fn find_unit_with_building(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: i64,
) -> ApiResult<(unit::Model, building::Model)> {
    match unit::Entity::find_by_id(id)
        .filter(scope::units(principal))
        .find_also_related(building::Entity)
        .one(db)
        .await?
    {
        Some((unit, Some(building))) => Ok((unit, building)),
        _ => Err(ApiError::NotFound("unit")),
    }
}
