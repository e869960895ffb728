//! PostgreSQL's writers leave their events as drafts (see `outbox`). Each
//! instance numbers the committed drafts into the outbox after its own
//! writers commit, and on a timer in case a writer's instance stopped before
//! it could. It hands the events it numbered to its own subscribers and,
//! through Redis, to the other instances.

use std::{sync::Arc, time::Duration};

use entity::event;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, QueryResult, Statement};
use tokio::sync::Notify;

use super::{Doorbell, OutboxEvent, Router};

/// Drafts numbered in one transaction; a backlog takes several short ones.
const BATCH: i64 = 2_000;

/// Numbers every draft committed so far (`number_event_drafts`: since
/// migration `m20261205_000010_numbered_drafts_returned`, `take_event_drafts`
/// counted instead of returned). Returns how many it numbered and the
/// highest committed sequence number after them.
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

/// Numbers up to `BATCH` committed drafts (`take_event_drafts`, migration
/// `m20261205_000010_numbered_drafts_returned`) and returns them as events,
/// in order.
async fn take_drafts(db: &impl ConnectionTrait) -> Result<Vec<OutboxEvent>, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT seq, community_id, kind, entity_type, entity_id, created_at, recipients FROM take_event_drafts($1)",
        [BATCH.into()],
    );
    db.query_all_raw(statement).await?.iter().map(event_of).collect()
}

fn event_of(row: &QueryResult) -> Result<OutboxEvent, DbErr> {
    Ok(OutboxEvent::from_row(event::Model::from_query_result(row, "")?, row.try_get("", "recipients")?))
}

/// Starts this instance's numberer; notify the returned handle after a
/// commit that inserted drafts.
pub(super) fn start(
    db: DatabaseConnection,
    router: Router,
    doorbell: Doorbell,
    poll_interval: Duration,
) -> Arc<Notify> {
    let drafts = Arc::new(Notify::new());
    tokio::spawn(run(db, drafts.clone(), router, doorbell, poll_interval));
    drafts
}

async fn run(db: DatabaseConnection, drafts: Arc<Notify>, router: Router, doorbell: Doorbell, poll_interval: Duration) {
    loop {
        tokio::select! {
            _ = drafts.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
        if let Err(err) = number_and_hand_over(&db, &router, &doorbell).await {
            tracing::warn!(error = %err, "could not number committed events; will retry");
        }
    }
}

/// Numbers every committed draft, batch by batch. Each batch goes to the
/// other instances through Redis, and straight to this instance's
/// subscribers when it continues what they were handed; otherwise (another
/// instance numbered events in between) it is held until that instance's
/// message arrives, or the relay reads the gap from the outbox.
async fn number_and_hand_over(db: &DatabaseConnection, router: &Router, doorbell: &Doorbell) -> Result<(), DbErr> {
    loop {
        let events = take_drafts(db).await?;
        let taken = events.len() as i64;
        if taken == 0 {
            return Ok(());
        }
        doorbell.pass_on(&events);
        if let Some(first_held) = router.deliver_next(events) {
            router.read_gap_unless_filled(first_held, &doorbell.relay);
        }
        if taken < BATCH {
            return Ok(());
        }
    }
}
