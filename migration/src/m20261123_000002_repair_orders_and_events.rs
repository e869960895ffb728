//! Repair orders with their timeline, photos and follow-ups, and the event
//! outbox every notification is delivered from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventStream::Table)
                    .col(big_integer(EventStream::Id).primary_key())
                    .col(big_integer(EventStream::LastSeq))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventStream::Table)
                    .columns([EventStream::Id, EventStream::LastSeq])
                    .values([1.into(), 0.into()])
                    .map_err(|err| DbErr::Migration(err.to_string()))?
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Event::Table)
                    .col(big_integer(Event::Seq).primary_key())
                    .col(big_integer(Event::CommunityId))
                    .col(string_len(Event::Kind, 40))
                    .col(string_len(Event::EntityType, 24))
                    .col(big_integer(Event::EntityId))
                    .col(timestamp_with_time_zone(Event::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventRecipient::Table)
                    .col(big_integer(EventRecipient::EventSeq))
                    .col(big_integer(EventRecipient::UserId))
                    .primary_key(Index::create().col(EventRecipient::EventSeq).col(EventRecipient::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_event_recipient_user")
                    .table(EventRecipient::Table)
                    .col(EventRecipient::UserId)
                    .col(EventRecipient::EventSeq)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepairOrder::Table)
                    .col(big_pk_auto(RepairOrder::Id))
                    .col(big_integer(RepairOrder::CommunityId))
                    .col(big_integer(RepairOrder::BuildingId))
                    .col(big_integer_null(RepairOrder::UnitId))
                    .col(big_integer_null(RepairOrder::ResidentId))
                    .col(big_integer(RepairOrder::CreatedBy))
                    .col(string_len(RepairOrder::Channel, 16))
                    .col(string_len(RepairOrder::Category, 24))
                    .col(string_len(RepairOrder::Description, 2000))
                    .col(string_len(RepairOrder::Priority, 16))
                    .col(string_len(RepairOrder::State, 16))
                    .col(timestamp_with_time_zone_null(RepairOrder::PreferredVisitAt))
                    .col(string_len_null(RepairOrder::ContactPhone, 20))
                    .col(big_integer_null(RepairOrder::AssigneeId))
                    .col(string_len_null(RepairOrder::CompletionNote, 2000))
                    .col(string_len_null(RepairOrder::Materials, 1000))
                    .col(big_integer_null(RepairOrder::ChargeCents))
                    .col(integer_null(RepairOrder::Rating))
                    .col(string_len_null(RepairOrder::RatingComment, 1000))
                    .col(string_len_null(RepairOrder::CancelReason, 500))
                    .col(timestamp_with_time_zone(RepairOrder::ResponseDueAt))
                    .col(timestamp_with_time_zone(RepairOrder::CompletionDueAt))
                    .col(boolean(RepairOrder::ResponseOverdue).default(false))
                    .col(boolean(RepairOrder::CompletionOverdue).default(false))
                    .col(timestamp_with_time_zone_null(RepairOrder::AssignedAt))
                    .col(timestamp_with_time_zone_null(RepairOrder::StartedAt))
                    .col(timestamp_with_time_zone_null(RepairOrder::CompletedAt))
                    .col(timestamp_with_time_zone_null(RepairOrder::ClosedAt))
                    .col(integer(RepairOrder::Version))
                    .col(timestamp_with_time_zone(RepairOrder::CreatedAt))
                    .col(timestamp_with_time_zone(RepairOrder::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairOrder::Table, RepairOrder::CommunityId)
                            .to(Community::Table, Community::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairOrder::Table, RepairOrder::BuildingId)
                            .to(Building::Table, Building::Id),
                    )
                    .foreign_key(
                        ForeignKey::create().from(RepairOrder::Table, RepairOrder::UnitId).to(Unit::Table, Unit::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairOrder::Table, RepairOrder::ResidentId)
                            .to(User::Table, User::Id),
                    )
                    .foreign_key(
                        ForeignKey::create().from(RepairOrder::Table, RepairOrder::CreatedBy).to(User::Table, User::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairOrder::Table, RepairOrder::AssigneeId)
                            .to(User::Table, User::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ix_repair_order_community", RepairOrder::CommunityId),
            ("ix_repair_order_building", RepairOrder::BuildingId),
            ("ix_repair_order_unit", RepairOrder::UnitId),
            ("ix_repair_order_assignee", RepairOrder::AssigneeId),
            ("ix_repair_order_state", RepairOrder::State),
        ] {
            manager.create_index(Index::create().name(name).table(RepairOrder::Table).col(column).to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RepairOrderChange::Table)
                    .col(big_pk_auto(RepairOrderChange::Id))
                    .col(big_integer(RepairOrderChange::OrderId))
                    .col(big_integer_null(RepairOrderChange::ActorId))
                    .col(string_len(RepairOrderChange::Action, 24))
                    .col(string_len_null(RepairOrderChange::FromState, 16))
                    .col(string_len_null(RepairOrderChange::ToState, 16))
                    .col(string_len_null(RepairOrderChange::Note, 2000))
                    .col(timestamp_with_time_zone(RepairOrderChange::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairOrderChange::Table, RepairOrderChange::OrderId)
                            .to(RepairOrder::Table, RepairOrder::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_repair_order_change_order")
                    .table(RepairOrderChange::Table)
                    .col(RepairOrderChange::OrderId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepairPhoto::Table)
                    .col(big_pk_auto(RepairPhoto::Id))
                    .col(big_integer(RepairPhoto::OrderId))
                    .col(string_len(RepairPhoto::ContentType, 32))
                    .col(big_integer(RepairPhoto::ByteSize))
                    .col(string_len(RepairPhoto::StorageName, 80))
                    .col(timestamp_with_time_zone(RepairPhoto::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairPhoto::Table, RepairPhoto::OrderId)
                            .to(RepairOrder::Table, RepairOrder::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_repair_photo_order")
                    .table(RepairPhoto::Table)
                    .col(RepairPhoto::OrderId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepairFollowUp::Table)
                    .col(big_pk_auto(RepairFollowUp::Id))
                    .col(big_integer(RepairFollowUp::OrderId))
                    .col(big_integer(RepairFollowUp::AuthorId))
                    .col(string_len(RepairFollowUp::Outcome, 1000))
                    .col(boolean(RepairFollowUp::Satisfied))
                    .col(string_len_null(RepairFollowUp::Note, 2000))
                    .col(timestamp_with_time_zone(RepairFollowUp::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairFollowUp::Table, RepairFollowUp::OrderId)
                            .to(RepairOrder::Table, RepairOrder::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RepairFollowUp::Table, RepairFollowUp::AuthorId)
                            .to(User::Table, User::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_repair_follow_up_order")
                    .table(RepairFollowUp::Table)
                    .col(RepairFollowUp::OrderId)
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
enum Building {
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
enum EventStream {
    Table,
    Id,
    LastSeq,
}

#[derive(DeriveIden)]
enum Event {
    Table,
    Seq,
    CommunityId,
    Kind,
    EntityType,
    EntityId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EventRecipient {
    Table,
    EventSeq,
    UserId,
}

#[derive(DeriveIden)]
enum RepairOrder {
    Table,
    Id,
    CommunityId,
    BuildingId,
    UnitId,
    ResidentId,
    CreatedBy,
    Channel,
    Category,
    Description,
    Priority,
    State,
    PreferredVisitAt,
    ContactPhone,
    AssigneeId,
    CompletionNote,
    Materials,
    ChargeCents,
    Rating,
    RatingComment,
    CancelReason,
    ResponseDueAt,
    CompletionDueAt,
    ResponseOverdue,
    CompletionOverdue,
    AssignedAt,
    StartedAt,
    CompletedAt,
    ClosedAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RepairOrderChange {
    Table,
    Id,
    OrderId,
    ActorId,
    Action,
    FromState,
    ToState,
    Note,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RepairPhoto {
    Table,
    Id,
    OrderId,
    ContentType,
    ByteSize,
    StorageName,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RepairFollowUp {
    Table,
    Id,
    OrderId,
    AuthorId,
    Outcome,
    Satisfied,
    Note,
    CreatedAt,
}
