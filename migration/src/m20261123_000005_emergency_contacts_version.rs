//! A version on each unit's emergency-contact list, so that two clerks
//! editing it at once cannot silently overwrite each other.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Unit::Table).add_column(integer(Unit::ContactsVersion).default(0)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Unit::Table).drop_column(Unit::ContactsVersion).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Unit {
    Table,
    ContactsVersion,
}
