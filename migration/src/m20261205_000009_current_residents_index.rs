//! A unit's current residents, found from the unit: every parcel and repair
//! event for a unit is addressed to them. The unique index on current
//! memberships leads with the person, so without planner statistics (a
//! community imported in bulk, before PostgreSQL's autovacuum has analysed
//! it) PostgreSQL read the whole of that index for each event: 0.4 ms a
//! parcel with 19,000 residents. Led by the unit, the lookup reads only the
//! unit's entries, whatever the statistics.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_membership_unit_current";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {INDEX} ON unit_membership (unit_id, user_id) WHERE moved_out_on IS NULL"
            ))
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(UnitMembership::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum UnitMembership {
    Table,
}
