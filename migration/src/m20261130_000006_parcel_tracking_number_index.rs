//! Parcels found by tracking number whatever their status: the front desk
//! looks a parcel up by the number a courier or resident reads out, and the
//! unique index on tracking numbers covers only parcels still held.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_parcel_tracking_number";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name(INDEX).table(Parcel::Table).col(Parcel::TrackingNumber).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Parcel::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Parcel {
    Table,
    TrackingNumber,
}
