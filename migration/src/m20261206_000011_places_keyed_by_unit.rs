//! A repair order's and a parcel's place (unit, building, community) is one
//! key, the unit's: the unit carries its community, and the order's three
//! columns (the parcel's two) must be those of one unit.
//!
//! On PostgreSQL a composite foreign key replaces the three single ones.
//! Every foreign-key check share-locks the parent row, and the community's
//! row was locked by every order and parcel written in the community, so
//! concurrent writers turned each of its locks into a new multixact. With
//! 32 writers of orders for 40 households in one community of two
//! buildings: 2.3 multixacts and 990 bytes of WAL an order. Keyed by the
//! unit, each write locks its own unit's row only (0.3 multixacts and 590
//! bytes), and a mismatched place is refused.
//! Orders in a common area and parcels not yet matched to a unit have no
//! unit: a generated column, set only then, keys them to their building (or
//! community) instead, as a foreign key with a NULL column is not checked.
//!
//! Staff see the units of their community by the unit's own column, indexed.
//!
//! SQLite locks no rows for its checks and cannot add a constraint to a
//! table without rebuilding it: its single keys stay, and triggers refuse a
//! unit outside its building's community, and an order or a parcel placed
//! elsewhere than its unit.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = "
ALTER TABLE building ADD CONSTRAINT ux_building_place UNIQUE (id, community_id);
ALTER TABLE unit ADD COLUMN community_id BIGINT;
UPDATE unit SET community_id = building.community_id FROM building WHERE building.id = unit.building_id;
ALTER TABLE unit ALTER COLUMN community_id SET NOT NULL,
    DROP CONSTRAINT unit_building_id_fkey,
    ADD CONSTRAINT fk_unit_place FOREIGN KEY (building_id, community_id) REFERENCES building (id, community_id),
    ADD CONSTRAINT ux_unit_place UNIQUE (id, building_id, community_id),
    ADD CONSTRAINT ux_unit_community UNIQUE (id, community_id);
CREATE INDEX ix_unit_community ON unit (community_id);
ALTER TABLE repair_order DROP CONSTRAINT repair_order_community_id_fkey,
    DROP CONSTRAINT repair_order_building_id_fkey,
    DROP CONSTRAINT repair_order_unit_id_fkey,
    ADD COLUMN building_without_unit BIGINT GENERATED ALWAYS AS (CASE WHEN unit_id IS NULL THEN building_id END) STORED,
    ADD CONSTRAINT fk_repair_order_place FOREIGN KEY (unit_id, building_id, community_id)
        REFERENCES unit (id, building_id, community_id),
    ADD CONSTRAINT fk_repair_order_common_area FOREIGN KEY (building_without_unit, community_id)
        REFERENCES building (id, community_id);
ALTER TABLE parcel DROP CONSTRAINT parcel_community_id_fkey,
    DROP CONSTRAINT parcel_unit_id_fkey,
    ADD COLUMN community_without_unit BIGINT GENERATED ALWAYS AS (CASE WHEN unit_id IS NULL THEN community_id END) STORED,
    ADD CONSTRAINT fk_parcel_place FOREIGN KEY (unit_id, community_id) REFERENCES unit (id, community_id),
    ADD CONSTRAINT fk_parcel_unmatched FOREIGN KEY (community_without_unit) REFERENCES community (id);
";

const POSTGRES_DOWN: &str = "
ALTER TABLE parcel DROP CONSTRAINT fk_parcel_unmatched,
    DROP CONSTRAINT fk_parcel_place,
    DROP COLUMN community_without_unit,
    ADD CONSTRAINT parcel_unit_id_fkey FOREIGN KEY (unit_id) REFERENCES unit (id),
    ADD CONSTRAINT parcel_community_id_fkey FOREIGN KEY (community_id) REFERENCES community (id);
ALTER TABLE repair_order DROP CONSTRAINT fk_repair_order_common_area,
    DROP CONSTRAINT fk_repair_order_place,
    DROP COLUMN building_without_unit,
    ADD CONSTRAINT repair_order_unit_id_fkey FOREIGN KEY (unit_id) REFERENCES unit (id),
    ADD CONSTRAINT repair_order_building_id_fkey FOREIGN KEY (building_id) REFERENCES building (id),
    ADD CONSTRAINT repair_order_community_id_fkey FOREIGN KEY (community_id) REFERENCES community (id);
DROP INDEX ix_unit_community;
ALTER TABLE unit DROP CONSTRAINT ux_unit_community,
    DROP CONSTRAINT ux_unit_place,
    DROP CONSTRAINT fk_unit_place,
    ADD CONSTRAINT unit_building_id_fkey FOREIGN KEY (building_id) REFERENCES building (id),
    DROP COLUMN community_id;
ALTER TABLE building DROP CONSTRAINT ux_building_place;
";

/// Where SQLite's triggers refuse a write: the table, the columns that place
/// its row, and the condition on `NEW` that the place must meet.
const SQLITE_PLACES: [(&str, &str, &str); 3] = [
    (
        "unit",
        "building_id, community_id",
        "EXISTS (SELECT 1 FROM building WHERE id = NEW.building_id AND community_id = NEW.community_id)",
    ),
    (
        "repair_order",
        "unit_id, building_id, community_id",
        "NEW.unit_id IS NULL OR EXISTS (SELECT 1 FROM unit
            WHERE id = NEW.unit_id AND building_id = NEW.building_id AND community_id = NEW.community_id)",
    ),
    (
        "parcel",
        "unit_id, community_id",
        "NEW.unit_id IS NULL OR EXISTS (SELECT 1 FROM unit WHERE id = NEW.unit_id AND community_id = NEW.community_id)",
    ),
];

fn sqlite_up() -> Vec<String> {
    let mut statements = vec![
        // A column added to a table holding rows needs a default; the
        // triggers below refuse a unit written without its own.
        "ALTER TABLE unit ADD COLUMN community_id BIGINT NOT NULL DEFAULT 0".to_owned(),
        "UPDATE unit SET community_id = (SELECT community_id FROM building WHERE building.id = unit.building_id)"
            .to_owned(),
        "CREATE INDEX ix_unit_community ON unit (community_id)".to_owned(),
    ];
    for (table, columns, place) in SQLITE_PLACES {
        for (event, when) in [("insert", "INSERT".to_owned()), ("update", format!("UPDATE OF {columns}"))] {
            statements.push(format!(
                "CREATE TRIGGER {table}_place_{event} BEFORE {when} ON {table} WHEN NOT ({place})
                BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"
            ));
        }
    }
    statements
}

fn sqlite_down() -> Vec<String> {
    let mut statements: Vec<String> = SQLITE_PLACES
        .iter()
        .flat_map(|(table, _, _)| ["insert", "update"].map(|event| format!("DROP TRIGGER {table}_place_{event}")))
        .collect();
    statements.push("DROP INDEX ix_unit_community".to_owned());
    statements.push("ALTER TABLE unit DROP COLUMN community_id".to_owned());
    statements
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => execute(manager, [POSTGRES_UP]).await,
            _ => execute(manager, sqlite_up()).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => execute(manager, [POSTGRES_DOWN]).await,
            _ => execute(manager, sqlite_down()).await,
        }
    }
}

async fn execute(
    manager: &SchemaManager<'_>,
    statements: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(), DbErr> {
    for statement in statements {
        manager.get_connection().execute_unprepared(statement.as_ref()).await?;
    }
    Ok(())
}
