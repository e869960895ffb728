//! The property hierarchy (community → building → unit), people and their ties to
//! units and buildings, and the credentials tables.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Community::Table)
                    .col(big_pk_auto(Community::Id))
                    .col(string_len(Community::Name, 100))
                    .col(timestamp_with_time_zone(Community::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Building::Table)
                    .col(big_pk_auto(Building::Id))
                    .col(big_integer(Building::CommunityId))
                    .col(string_len(Building::Name, 100))
                    .col(timestamp_with_time_zone(Building::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Building::Table, Building::CommunityId)
                            .to(Community::Table, Community::Id),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(manager, Building::Table, "ux_building_name", [Building::CommunityId, Building::Name]).await?;

        manager
            .create_table(
                Table::create()
                    .table(Unit::Table)
                    .col(big_pk_auto(Unit::Id))
                    .col(big_integer(Unit::BuildingId))
                    .col(string_len(Unit::Number, 32))
                    .col(integer_null(Unit::Floor))
                    .col(timestamp_with_time_zone(Unit::CreatedAt))
                    .foreign_key(
                        ForeignKey::create().from(Unit::Table, Unit::BuildingId).to(Building::Table, Building::Id),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(manager, Unit::Table, "ux_unit_number", [Unit::BuildingId, Unit::Number]).await?;

        manager
            .create_table(
                Table::create()
                    .table(User::Table)
                    .col(big_pk_auto(User::Id))
                    .col(string_len_uniq(User::Phone, 20))
                    .col(string_len(User::Name, 50))
                    .col(string_len_null(User::PasswordHash, 200))
                    .col(string_len(User::Role, 16))
                    .col(string_len_null(User::Position, 16))
                    .col(big_integer_null(User::CommunityId))
                    .col(timestamp_with_time_zone(User::CreatedAt))
                    .foreign_key(
                        ForeignKey::create().from(User::Table, User::CommunityId).to(Community::Table, Community::Id),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, User::Table, "ix_user_community", [User::CommunityId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(UnitMembership::Table)
                    .col(big_pk_auto(UnitMembership::Id))
                    .col(big_integer(UnitMembership::UserId))
                    .col(big_integer(UnitMembership::UnitId))
                    .col(string_len(UnitMembership::Relation, 16))
                    .col(date(UnitMembership::MovedInOn))
                    .col(date_null(UnitMembership::MovedOutOn))
                    .col(timestamp_with_time_zone(UnitMembership::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UnitMembership::Table, UnitMembership::UserId)
                            .to(User::Table, User::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(UnitMembership::Table, UnitMembership::UnitId)
                            .to(Unit::Table, Unit::Id),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, UnitMembership::Table, "ix_membership_user", [UnitMembership::UserId]).await?;
        index(manager, UnitMembership::Table, "ix_membership_unit", [UnitMembership::UnitId]).await?;
        // One current membership per person and unit; past ones are history.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_membership_current ON unit_membership (user_id, unit_id) \
                 WHERE moved_out_on IS NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ButlerAssignment::Table)
                    .col(big_pk_auto(ButlerAssignment::Id))
                    .col(big_integer(ButlerAssignment::ButlerId))
                    .col(big_integer(ButlerAssignment::BuildingId))
                    .col(timestamp_with_time_zone(ButlerAssignment::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ButlerAssignment::Table, ButlerAssignment::ButlerId)
                            .to(User::Table, User::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ButlerAssignment::Table, ButlerAssignment::BuildingId)
                            .to(Building::Table, Building::Id),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            ButlerAssignment::Table,
            "ux_butler_assignment",
            [ButlerAssignment::ButlerId, ButlerAssignment::BuildingId],
        )
        .await?;
        index(manager, ButlerAssignment::Table, "ix_butler_assignment_building", [ButlerAssignment::BuildingId])
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EmergencyContact::Table)
                    .col(big_pk_auto(EmergencyContact::Id))
                    .col(big_integer(EmergencyContact::UnitId))
                    .col(string_len(EmergencyContact::Name, 50))
                    .col(string_len(EmergencyContact::Phone, 20))
                    .col(string_len(EmergencyContact::Relation, 30))
                    .col(timestamp_with_time_zone(EmergencyContact::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EmergencyContact::Table, EmergencyContact::UnitId)
                            .to(Unit::Table, Unit::Id),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, EmergencyContact::Table, "ix_emergency_contact_unit", [EmergencyContact::UnitId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshToken::Table)
                    .col(big_pk_auto(RefreshToken::Id))
                    .col(big_integer(RefreshToken::UserId))
                    .col(string_len(RefreshToken::FamilyId, 64))
                    .col(string_len_uniq(RefreshToken::TokenHash, 64))
                    .col(timestamp_with_time_zone(RefreshToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshToken::UsedAt))
                    .col(timestamp_with_time_zone_null(RefreshToken::RevokedAt))
                    .col(timestamp_with_time_zone(RefreshToken::CreatedAt))
                    .foreign_key(
                        ForeignKey::create().from(RefreshToken::Table, RefreshToken::UserId).to(User::Table, User::Id),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, RefreshToken::Table, "ix_refresh_token_family", [RefreshToken::FamilyId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(LoginAttempt::Table)
                    .col(big_pk_auto(LoginAttempt::Id))
                    .col(string_len(LoginAttempt::PhoneHash, 64))
                    .col(timestamp_with_time_zone(LoginAttempt::AttemptedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            LoginAttempt::Table,
            "ix_login_attempt_phone",
            [LoginAttempt::PhoneHash, LoginAttempt::AttemptedAt],
        )
        .await
    }
}

async fn index<T, C, const N: usize>(
    manager: &SchemaManager<'_>,
    table: T,
    name: &str,
    columns: [C; N],
) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
{
    create_index(manager, table, name, columns, false).await
}

async fn unique_index<T, C, const N: usize>(
    manager: &SchemaManager<'_>,
    table: T,
    name: &str,
    columns: [C; N],
) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
{
    create_index(manager, table, name, columns, true).await
}

async fn create_index<T, C, const N: usize>(
    manager: &SchemaManager<'_>,
    table: T,
    name: &str,
    columns: [C; N],
    unique: bool,
) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
{
    let mut statement = Index::create().name(name).table(table).to_owned();
    for column in columns {
        statement.col(column);
    }
    if unique {
        statement.unique();
    }
    manager.create_index(statement).await
}

#[derive(DeriveIden)]
enum Community {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Building {
    Table,
    Id,
    CommunityId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Unit {
    Table,
    Id,
    BuildingId,
    Number,
    Floor,
    CreatedAt,
}

#[derive(DeriveIden)]
enum User {
    Table,
    Id,
    Phone,
    Name,
    PasswordHash,
    Role,
    Position,
    CommunityId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UnitMembership {
    Table,
    Id,
    UserId,
    UnitId,
    Relation,
    MovedInOn,
    MovedOutOn,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ButlerAssignment {
    Table,
    Id,
    ButlerId,
    BuildingId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmergencyContact {
    Table,
    Id,
    UnitId,
    Name,
    Phone,
    Relation,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LoginAttempt {
    Table,
    Id,
    PhoneHash,
    AttemptedAt,
}
