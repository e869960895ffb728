//! Accounts, sessions and assignments. Sessions are an access JWT plus a
//! rotating opaque refresh token stored as a hash: each refresh retires the
//! presented token, and presenting a retired one ends the whole family.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{
    building, butler_assignment, community,
    enums::{Role, StaffPosition},
    login_attempt, refresh_token, unit, unit_membership, user,
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    TransactionTrait,
    sea_query::{Expr, ExprTrait, LikeExpr, Query},
};
use sha2::{Digest, Sha256};

use super::types::User;
use crate::{
    AppContext,
    auth::{Action, Principal, jwt::AccessToken, password, permissions},
    error::{ApiError, ApiResult, unique_conflict},
    graphql::pagination::{self, Page, PageRequest},
    property::{scope, service as property},
    validate,
};

pub struct NewAccount {
    pub phone: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub role: Role,
    pub position: Option<StaffPosition>,
    pub community_id: Option<i64>,
}

/// Inserts an account; a phone number already taken is CONFLICT.
pub async fn create_account(db: &impl ConnectionTrait, account: NewAccount) -> ApiResult<user::Model> {
    let taken = user::Entity::find().filter(user::Column::Phone.eq(account.phone.as_str())).one(db).await?.is_some();
    if taken {
        return Err(ApiError::conflict("an account with this phone number already exists"));
    }
    user::ActiveModel {
        phone: Set(account.phone),
        name: Set(account.name),
        password_hash: Set(account.password_hash),
        role: Set(account.role),
        position: Set(account.position),
        community_id: Set(account.community_id),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|err| unique_conflict(err, "an account with this phone number already exists"))
}

pub fn principal_of(user: &user::Model) -> Principal {
    Principal { user_id: user.id, role: user.role, position: user.position, community_id: user.community_id }
}

/// A fresh access token and refresh token for `user`.
pub struct Session {
    pub access: AccessToken,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub user: user::Model,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

async fn start_session(
    app: &AppContext,
    db: &impl ConnectionTrait,
    user: user::Model,
    family_id: Option<String>,
) -> ApiResult<Session> {
    let access = app.tokens.issue(&principal_of(&user))?;
    let refresh_token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let now = Utc::now();
    let refresh_expires_at = now
        + chrono::Duration::from_std(app.settings.refresh_token_ttl)
            .map_err(|_| ApiError::Internal("refresh token TTL out of range".into()))?;
    refresh_token::ActiveModel {
        user_id: Set(user.id),
        family_id: Set(family_id.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()))),
        token_hash: Set(sha256_hex(&[refresh_token.as_bytes()])),
        expires_at: Set(refresh_expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(Session { access, refresh_token, refresh_expires_at, user })
}

/// Logs in with phone and password. A wrong phone and a wrong password answer
/// alike; after too many attempts for one phone within the window, further
/// attempts are RATE_LIMITED until enough of them have left the window. A
/// successful login clears the phone's attempts.
#[tracing::instrument(skip_all)]
pub async fn login(app: &AppContext, phone: &str, password_text: &str) -> ApiResult<Session> {
    let db = &app.db;
    let phone = validate::mobile_phone(phone, "phone").unwrap_or_else(|_| phone.trim().to_owned());
    // Keyed with the server secret so the table cannot be reversed into phone numbers.
    let phone_key = sha256_hex(&[&app.hashing_key, phone.as_bytes()]);
    let now = Utc::now();
    let window = chrono::Duration::from_std(app.settings.login_failure_window)
        .map_err(|_| ApiError::Internal("login window out of range".into()))?;
    login_attempt::Entity::delete_many()
        .filter(login_attempt::Column::PhoneHash.eq(phone_key.as_str()))
        .filter(login_attempt::Column::AttemptedAt.lte(now - window))
        .exec(db)
        .await?;
    // Record the attempt before judging it, so concurrent guesses see each
    // other: at most `login_max_failures` attempts per window get as far as the
    // password check, however many arrive at once. Refused attempts count too.
    login_attempt::ActiveModel { phone_hash: Set(phone_key.clone()), attempted_at: Set(now), ..Default::default() }
        .insert(db)
        .await?;
    let in_window = login_attempt::Entity::find()
        .filter(login_attempt::Column::PhoneHash.eq(phone_key.as_str()))
        .filter(login_attempt::Column::AttemptedAt.gt(now - window))
        .order_by_asc(login_attempt::Column::AttemptedAt)
        .all(db)
        .await?;
    let allowed = app.settings.login_max_failures as usize;
    if in_window.len() > allowed {
        // The next attempt is let through once all but `allowed - 1` of these
        // have left the window.
        let unlocks_at = in_window[in_window.len() - allowed].attempted_at + window;
        let retry_after_secs = std::cmp::max((unlocks_at - now).num_seconds(), 1) as u64;
        tracing::warn!("login rate limited");
        return Err(ApiError::RateLimited { retry_after_secs });
    }

    let account = user::Entity::find().filter(user::Column::Phone.eq(phone.as_str())).one(db).await?;
    let stored_hash = account.as_ref().and_then(|user| user.password_hash.clone());
    let verified = password::verify(stored_hash, password_text).await?;
    match account {
        Some(user) if verified => {
            login_attempt::Entity::delete_many()
                .filter(login_attempt::Column::PhoneHash.eq(phone_key.as_str()))
                .exec(db)
                .await?;
            tracing::info!(user_id = user.id, "logged in");
            start_session(app, db, user, None).await
        }
        _ => {
            tracing::info!("login failed");
            Err(ApiError::Unauthenticated("wrong phone number or password"))
        }
    }
}

/// Trades a refresh token for a new session in the same family. A token that
/// was already traded means it leaked: the whole family is revoked.
#[tracing::instrument(skip_all)]
pub async fn refresh(app: &AppContext, presented: &str) -> ApiResult<Session> {
    let db = &app.db;
    let rejected = || ApiError::Unauthenticated("invalid or expired refresh token");
    let now = Utc::now();
    let token = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(sha256_hex(&[presented.as_bytes()])))
        .one(db)
        .await?
        .ok_or_else(rejected)?;
    if token.revoked_at.is_some() || token.expires_at <= now {
        return Err(rejected());
    }
    // Claim the token atomically, so two concurrent refreshes cannot both win.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        revoke_family(db, &token.family_id).await?;
        tracing::warn!(user_id = token.user_id, "refresh token reused: session family revoked");
        return Err(rejected());
    }
    let user = user::Entity::find_by_id(token.user_id).one(db).await?.ok_or_else(rejected)?;
    start_session(app, db, user, Some(token.family_id)).await
}

async fn revoke_family(db: &impl ConnectionTrait, family_id: &str) -> ApiResult<u64> {
    Ok(refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected)
}

/// Ends the session the refresh token belongs to.
#[tracing::instrument(skip_all)]
pub async fn logout(app: &AppContext, presented: &str) -> ApiResult<bool> {
    let token = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(sha256_hex(&[presented.as_bytes()])))
        .one(&app.db)
        .await?;
    match token {
        Some(token) => Ok(revoke_family(&app.db, &token.family_id).await? > 0),
        None => Ok(false),
    }
}

pub async fn find_user(db: &impl ConnectionTrait, id: i64) -> ApiResult<user::Model> {
    user::Entity::find_by_id(id).one(db).await?.ok_or(ApiError::Unauthenticated("the account no longer exists"))
}

pub async fn current_memberships(db: &impl ConnectionTrait, user_id: i64) -> ApiResult<Vec<unit_membership::Model>> {
    Ok(unit_membership::Entity::find()
        .filter(unit_membership::Column::UserId.eq(user_id))
        .filter(unit_membership::Column::MovedOutOn.is_null())
        .order_by_asc(unit_membership::Column::Id)
        .all(db)
        .await?)
}

pub async fn assigned_buildings(db: &impl ConnectionTrait, butler_id: i64) -> ApiResult<Vec<building::Model>> {
    Ok(building::Entity::find()
        .filter(building::Column::Id.in_subquery(scope::buildings_assigned_to(butler_id)))
        .order_by_asc(building::Column::Id)
        .all(db)
        .await?)
}

/// The community of a butler or staff member, or the one a resident's first
/// current unit is in.
pub async fn viewer_community(db: &impl ConnectionTrait, viewer: &user::Model) -> ApiResult<Option<community::Model>> {
    let community_id = match viewer.community_id {
        Some(id) => Some(id),
        None => building::Entity::find()
            .filter(
                building::Column::Id.in_subquery(
                    Query::select()
                        .column(unit::Column::BuildingId)
                        .from(unit::Entity)
                        .and_where(unit::Column::Id.in_subquery(scope::current_units_of(viewer.id)))
                        .take(),
                ),
            )
            .order_by_asc(building::Column::Id)
            .one(db)
            .await?
            .map(|building| building.community_id),
    };
    match community_id {
        Some(id) => Ok(community::Entity::find_by_id(id).one(db).await?),
        None => Ok(None),
    }
}

pub struct ResidentSearch {
    pub search: Option<String>,
    pub building_id: Option<i64>,
    pub unit_id: Option<i64>,
}

fn like_contains(text: &str) -> LikeExpr {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// The resident directory: people currently living in units the viewer may see.
#[tracing::instrument(skip_all, fields(user_id = principal.user_id))]
pub async fn search_residents(
    db: &DatabaseConnection,
    principal: &Principal,
    filter: ResidentSearch,
    request: PageRequest,
) -> ApiResult<Page<User>> {
    permissions::require(principal, Action::ReadResidents)?;
    let mut select = user::Entity::find().filter(scope::residents(principal));
    // Unit and building filters only look at the units the viewer may see, so
    // they cannot reveal where someone lives outside the viewer's buildings.
    let mut units = Query::select()
        .column(unit_membership::Column::UserId)
        .from(unit_membership::Entity)
        .and_where(unit_membership::Column::MovedOutOn.is_null())
        .and_where(unit_membership::Column::UnitId.in_subquery(scope::unit_ids(principal)))
        .take();
    let mut narrowed_by_unit = false;
    if let Some(unit_id) = filter.unit_id {
        units.and_where(unit_membership::Column::UnitId.eq(unit_id));
        narrowed_by_unit = true;
    }
    if let Some(building_id) = filter.building_id {
        units.and_where(
            unit_membership::Column::UnitId.in_subquery(
                Query::select()
                    .column(unit::Column::Id)
                    .from(unit::Entity)
                    .and_where(unit::Column::BuildingId.eq(building_id))
                    .take(),
            ),
        );
        narrowed_by_unit = true;
    }
    if narrowed_by_unit {
        select = select.filter(user::Column::Id.in_subquery(units));
    }
    if let Some(search) = filter.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if search.chars().count() > 50 {
            return Err(ApiError::bad_input("filter.search", "must be at most 50 characters"));
        }
        let by_unit_number = Query::select()
            .column(unit_membership::Column::UserId)
            .from(unit_membership::Entity)
            .and_where(unit_membership::Column::MovedOutOn.is_null())
            .and_where(
                unit_membership::Column::UnitId.in_subquery(
                    Query::select()
                        .column(unit::Column::Id)
                        .from(unit::Entity)
                        .and_where(Expr::col(unit::Column::Number).like(like_contains(search)))
                        .and_where(unit::Column::Id.in_subquery(scope::unit_ids(principal)))
                        .take(),
                ),
            )
            .take();
        select = select.filter(
            Condition::any()
                .add(Expr::col(user::Column::Name).like(like_contains(search)))
                .add(Expr::col(user::Column::Phone).like(like_contains(search)))
                .add(user::Column::Id.in_subquery(by_unit_number)),
        );
    }
    pagination::fetch(db, select, user::Column::Id, |u| u.id, request, User::from).await
}

/// Butlers and staff of the viewer's community.
pub async fn list_staff(
    db: &DatabaseConnection,
    principal: &Principal,
    role: Option<Role>,
    position: Option<StaffPosition>,
    request: PageRequest,
) -> ApiResult<Page<User>> {
    if principal.is_resident() {
        return Err(ApiError::Forbidden);
    }
    let mut select = user::Entity::find().filter(scope::employees(principal));
    if let Some(role) = role {
        select = select.filter(user::Column::Role.eq(role));
    }
    if let Some(position) = position {
        select = select.filter(user::Column::Position.eq(position));
    }
    pagination::fetch(db, select, user::Column::Id, |u| u.id, request, User::from).await
}

pub struct NewEmployee {
    pub phone: String,
    pub name: String,
    pub password: String,
    pub role: Role,
    pub position: Option<StaffPosition>,
}

/// Creates a butler or staff account in the manager's own community.
#[tracing::instrument(skip_all, fields(user_id = principal.user_id))]
pub async fn create_employee(
    db: &impl ConnectionTrait,
    principal: &Principal,
    new: NewEmployee,
) -> ApiResult<user::Model> {
    permissions::require(principal, Action::ManageAccounts)?;
    let community_id = principal.community_id.ok_or(ApiError::Forbidden)?;
    let phone = validate::mobile_phone(&new.phone, "phone")?;
    let name = validate::text(&new.name, "name", 50)?;
    password::validate(&new.password, "password")?;
    let password_hash = password::hash(&new.password).await?;
    let account = create_account(
        db,
        NewAccount {
            phone,
            name,
            password_hash: Some(password_hash),
            role: new.role,
            position: new.position,
            community_id: Some(community_id),
        },
    )
    .await?;
    tracing::info!(new_user_id = account.id, "employee account created");
    Ok(account)
}

async fn butler_in_scope(db: &impl ConnectionTrait, principal: &Principal, butler_id: i64) -> ApiResult<user::Model> {
    user::Entity::find_by_id(butler_id)
        .filter(scope::employees(principal))
        .filter(user::Column::Role.eq(Role::Butler))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("butler"))
}

#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn assign_butler<C>(
    db: &C,
    principal: &Principal,
    butler_id: i64,
    building_id: i64,
) -> ApiResult<(user::Model, building::Model)>
where
    C: ConnectionTrait + TransactionTrait,
{
    permissions::require(principal, Action::AssignButlers)?;
    let butler = butler_in_scope(db, principal, butler_id).await?;
    let building = property::find_building(db, principal, building_id).await?;
    let exists = butler_assignment::Entity::find()
        .filter(butler_assignment::Column::ButlerId.eq(butler.id))
        .filter(butler_assignment::Column::BuildingId.eq(building.id))
        .count(db)
        .await?
        > 0;
    if exists {
        return Err(ApiError::conflict("the butler is already assigned to this building"));
    }
    butler_assignment::ActiveModel {
        butler_id: Set(butler.id),
        building_id: Set(building.id),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|err| unique_conflict(err, "the butler is already assigned to this building"))?;
    Ok((butler, building))
}

#[tracing::instrument(skip(db, principal), fields(user_id = principal.user_id))]
pub async fn unassign_butler(
    db: &impl ConnectionTrait,
    principal: &Principal,
    butler_id: i64,
    building_id: i64,
) -> ApiResult<(user::Model, building::Model)> {
    permissions::require(principal, Action::AssignButlers)?;
    let butler = butler_in_scope(db, principal, butler_id).await?;
    let building = property::find_building(db, principal, building_id).await?;
    let removed = butler_assignment::Entity::delete_many()
        .filter(butler_assignment::Column::ButlerId.eq(butler.id))
        .filter(butler_assignment::Column::BuildingId.eq(building.id))
        .exec(db)
        .await?
        .rows_affected;
    if removed == 0 {
        return Err(ApiError::conflict("the butler is not assigned to this building"));
    }
    Ok((butler, building))
}
