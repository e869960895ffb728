//! Idempotency keys of mutations that create things, with what they created.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKey::Table)
                    .col(big_pk_auto(IdempotencyKey::Id))
                    .col(string_len(IdempotencyKey::Caller, 40))
                    .col(string_len(IdempotencyKey::Operation, 40))
                    .col(string_len(IdempotencyKey::Key, 255))
                    .col(string_len(IdempotencyKey::RequestHash, 64))
                    .col(string_len(IdempotencyKey::CreatedIds, 2000))
                    .col(timestamp_with_time_zone(IdempotencyKey::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Two requests racing with one key: the second insert fails and that
        // request answers with the first one's result.
        manager
            .create_index(
                Index::create()
                    .name("idempotency_key_caller_operation_key")
                    .table(IdempotencyKey::Table)
                    .col(IdempotencyKey::Caller)
                    .col(IdempotencyKey::Operation)
                    .col(IdempotencyKey::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idempotency_key_created_at")
                    .table(IdempotencyKey::Table)
                    .col(IdempotencyKey::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(IdempotencyKey::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKey {
    Table,
    Id,
    Caller,
    Operation,
    Key,
    RequestHash,
    CreatedIds,
    CreatedAt,
}
