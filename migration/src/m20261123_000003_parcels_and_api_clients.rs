//! Parcels and mail held for residents, their reminders, and the API clients
//! of third-party integrators.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiClient::Table)
                    .col(big_pk_auto(ApiClient::Id))
                    .col(big_integer(ApiClient::CommunityId))
                    .col(string_len(ApiClient::Name, 100))
                    .col(string_len(ApiClient::SecretHash, 64))
                    .col(string_len(ApiClient::Scopes, 500))
                    .col(big_integer(ApiClient::CreatedBy))
                    .col(timestamp_with_time_zone_null(ApiClient::DisabledAt))
                    .col(timestamp_with_time_zone(ApiClient::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiClient::Table, ApiClient::CommunityId)
                            .to(Community::Table, Community::Id),
                    )
                    .foreign_key(
                        ForeignKey::create().from(ApiClient::Table, ApiClient::CreatedBy).to(User::Table, User::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Parcel::Table)
                    .col(big_pk_auto(Parcel::Id))
                    .col(big_integer(Parcel::CommunityId))
                    .col(big_integer_null(Parcel::UnitId))
                    .col(string_len(Parcel::Kind, 16))
                    .col(string_len(Parcel::Carrier, 50))
                    .col(string_len(Parcel::TrackingNumber, 64))
                    .col(integer(Parcel::ItemCount))
                    .col(string_len(Parcel::RecipientName, 50))
                    .col(string_len_null(Parcel::Location, 50))
                    .col(string_len(Parcel::Status, 16))
                    .col(string_len_null(Parcel::PickupCode, 6))
                    .col(big_integer_null(Parcel::ReceivedBy))
                    .col(big_integer_null(Parcel::RegisteredByClient))
                    .col(timestamp_with_time_zone(Parcel::ReceivedAt))
                    .col(integer(Parcel::ReminderCount))
                    .col(timestamp_with_time_zone_null(Parcel::NextReminderAt))
                    .col(integer(Parcel::FailedCodeAttempts))
                    .col(timestamp_with_time_zone_null(Parcel::LockedAt))
                    .col(string_len_null(Parcel::AuthorizedCollector, 50))
                    .col(timestamp_with_time_zone_null(Parcel::PickedUpAt))
                    .col(string_len_null(Parcel::PickedUpByName, 50))
                    .col(string_len_null(Parcel::PickedUpVia, 16))
                    .col(big_integer_null(Parcel::HandedOverBy))
                    .col(timestamp_with_time_zone_null(Parcel::ReturnedAt))
                    .col(string_len_null(Parcel::ReturnReason, 500))
                    .col(integer(Parcel::Version))
                    .col(timestamp_with_time_zone(Parcel::CreatedAt))
                    .col(timestamp_with_time_zone(Parcel::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Parcel::Table, Parcel::CommunityId)
                            .to(Community::Table, Community::Id),
                    )
                    .foreign_key(ForeignKey::create().from(Parcel::Table, Parcel::UnitId).to(Unit::Table, Unit::Id))
                    .foreign_key(ForeignKey::create().from(Parcel::Table, Parcel::ReceivedBy).to(User::Table, User::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Parcel::Table, Parcel::RegisteredByClient)
                            .to(ApiClient::Table, ApiClient::Id),
                    )
                    .foreign_key(
                        ForeignKey::create().from(Parcel::Table, Parcel::HandedOverBy).to(User::Table, User::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("ix_parcel_community_status", vec![Parcel::CommunityId, Parcel::Status]),
            ("ix_parcel_unit", vec![Parcel::UnitId]),
            ("ix_parcel_next_reminder", vec![Parcel::Status, Parcel::NextReminderAt]),
        ] {
            let mut index = Index::create().name(name).table(Parcel::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        let connection = manager.get_connection();
        // A tracking number is registered once while its parcel is still held,
        // and a pickup code is unique among the community's waiting parcels.
        connection
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_parcel_tracking_held ON parcel (community_id, tracking_number) \
                 WHERE status IN ('WAITING', 'UNIDENTIFIED')",
            )
            .await?;
        connection
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_parcel_pickup_code ON parcel (community_id, pickup_code) \
                 WHERE status = 'WAITING'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ParcelReminder::Table)
                    .col(big_pk_auto(ParcelReminder::Id))
                    .col(big_integer(ParcelReminder::ParcelId))
                    .col(integer(ParcelReminder::Number))
                    .col(timestamp_with_time_zone(ParcelReminder::SentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ParcelReminder::Table, ParcelReminder::ParcelId)
                            .to(Parcel::Table, Parcel::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_parcel_reminder_number")
                    .table(ParcelReminder::Table)
                    .col(ParcelReminder::ParcelId)
                    .col(ParcelReminder::Number)
                    .unique()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Community {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Unit {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum User {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ApiClient {
    Table,
    Id,
    CommunityId,
    Name,
    SecretHash,
    Scopes,
    CreatedBy,
    DisabledAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Parcel {
    Table,
    Id,
    CommunityId,
    UnitId,
    Kind,
    Carrier,
    TrackingNumber,
    ItemCount,
    RecipientName,
    Location,
    Status,
    PickupCode,
    ReceivedBy,
    RegisteredByClient,
    ReceivedAt,
    ReminderCount,
    NextReminderAt,
    FailedCodeAttempts,
    LockedAt,
    AuthorizedCollector,
    PickedUpAt,
    PickedUpByName,
    PickedUpVia,
    HandedOverBy,
    ReturnedAt,
    ReturnReason,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ParcelReminder {
    Table,
    Id,
    ParcelId,
    Number,
    SentAt,
}
