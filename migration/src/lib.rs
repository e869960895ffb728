//! Schema migrations, applied at start-up. One file per change; a landed file is
//! never edited, later changes add new files.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_property_and_identity;
mod m20261123_000002_repair_orders_and_events;
mod m20261123_000003_parcels_and_api_clients;
mod m20261123_000004_idempotency_keys;
mod m20261123_000005_emergency_contacts_version;
mod m20261130_000006_parcel_tracking_number_index;
mod m20261205_000007_event_drafts;
mod m20261205_000008_number_drafts_after_commit;
mod m20261205_000009_current_residents_index;
mod m20261205_000010_numbered_drafts_returned;
mod m20261206_000011_places_keyed_by_unit;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_property_and_identity::Migration),
            Box::new(m20261123_000002_repair_orders_and_events::Migration),
            Box::new(m20261123_000003_parcels_and_api_clients::Migration),
            Box::new(m20261123_000004_idempotency_keys::Migration),
            Box::new(m20261123_000005_emergency_contacts_version::Migration),
            Box::new(m20261130_000006_parcel_tracking_number_index::Migration),
            Box::new(m20261205_000007_event_drafts::Migration),
            Box::new(m20261205_000008_number_drafts_after_commit::Migration),
            Box::new(m20261205_000009_current_residents_index::Migration),
            Box::new(m20261205_000010_numbered_drafts_returned::Migration),
            Box::new(m20261206_000011_places_keyed_by_unit::Migration),
        ]
    }
}
