//! PostgreSQL's writers leave their events as drafts (see `outbox`). Each
//! instance numbers the committed drafts into the outbox after its own
//! writers commit, and on a timer in case a writer's instance stopped before
//! it could, then rings the doorbell for the relays.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio::sync::Notify;

use super::Doorbell;

/// Drafts numbered in one transaction; a backlog takes several short ones.
const BATCH: i64 = 2_000;

/// Numbers every draft committed so far (`number_event_drafts`, migration
/// `m20261205_000008_number_drafts_after_commit`). Returns how many it
/// numbered and the highest committed sequence number after them.
pub(super) async fn number_drafts(db: &impl ConnectionTrait) -> Result<(i64, i64), DbErr> {
    let mut total = 0;
    loop {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT numbered, last_seq FROM number_event_drafts($1)",
            [BATCH.into()],
        );
        let row = db.query_one_raw(statement).await?.ok_or_else(|| DbErr::Custom("no numbering result".into()))?;
        let numbered: i64 = row.try_get("", "numbered")?;
        total += numbered;
        if numbered < BATCH {
            return Ok((total, row.try_get("", "last_seq")?));
        }
    }
}

/// Starts this instance's numberer; notify the returned handle after a
/// commit that inserted drafts.
pub(super) fn start(db: DatabaseConnection, doorbell: Doorbell, poll_interval: Duration) -> Arc<Notify> {
    let drafts = Arc::new(Notify::new());
    tokio::spawn(run(db, drafts.clone(), doorbell, poll_interval));
    drafts
}

async fn run(db: DatabaseConnection, drafts: Arc<Notify>, doorbell: Doorbell, poll_interval: Duration) {
    loop {
        tokio::select! {
            _ = drafts.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
        match number_drafts(&db).await {
            Ok((0, _)) => {}
            Ok(_) => doorbell.ring(),
            Err(err) => tracing::warn!(error = %err, "could not number committed events; will retry"),
        }
    }
}
