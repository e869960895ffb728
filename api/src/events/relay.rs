//! The relay: reads committed events past its watermark, in order, and routes
//! each to its recipients' subscriptions on this instance. Woken at once by
//! local commits and by Redis, and by a timer in any case, so a lost wake-up
//! only delays delivery.

use std::{sync::Arc, time::Duration};

use entity::{event, event_recipient, event_stream};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, JoinType, QueryFilter,
    QuerySelect, RelationTrait, SelectTwoMany,
    sea_query::{Expr, ExprTrait},
};
use tokio::sync::Notify;

use super::{OutboxEvent, Router};

const BATCH: i64 = 500;

/// The highest committed sequence number.
pub async fn high_water_mark(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(event_stream::Entity::find_by_id(1).one(db).await?.map(|row| row.last_seq).unwrap_or(0))
}

/// The next committed events after `after`, oldest first, with recipients,
/// in one statement. Committed events always form an unbroken run of `seq`
/// (see `outbox::append`), so the next `BATCH` of them are those numbered up
/// to `after + BATCH`: a range, which the join with recipients keeps whole,
/// where a limit on the joined rows would cut an event's recipients short.
/// The recipients are bounded by the same range: PostgreSQL does not carry a
/// range across a join, and without the bound it hashed every recipient ever
/// recorded.
pub async fn load_after(db: &impl ConnectionTrait, after: i64) -> Result<Vec<OutboxEvent>, DbErr> {
    let rows = batch_after(after).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(row, recipients)| OutboxEvent::from_row(row, recipients.into_iter().map(|r| r.user_id).collect()))
        .collect())
}

fn batch_after(after: i64) -> SelectTwoMany<event::Entity, event_recipient::Entity> {
    let last = after + BATCH;
    let recipients_in_range = event::Relation::EventRecipient.def().on_condition(move |_, recipients| {
        let event_seq = Expr::col((recipients, event_recipient::Column::EventSeq));
        Condition::all().add(event_seq.clone().gt(after)).add(event_seq.lte(last))
    });
    event::Entity::find()
        .filter(event::Column::Seq.gt(after))
        .filter(event::Column::Seq.lte(last))
        .join(JoinType::LeftJoin, recipients_in_range)
        .select_with(event_recipient::Entity)
}

/// Starts the relay on the current runtime, from the current high-water mark.
pub(super) async fn start(
    db: DatabaseConnection,
    router: Router,
    wake: Arc<Notify>,
    poll_interval: Duration,
) -> Result<(), DbErr> {
    router.start_after(high_water_mark(&db).await?);
    tokio::spawn(run(db, router, wake, poll_interval));
    Ok(())
}

async fn run(db: DatabaseConnection, router: Router, wake: Arc<Notify>, poll_interval: Duration) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
        if let Err(err) = catch_up(&db, &router).await {
            tracing::warn!(error = %err, "event relay could not read the outbox; will retry");
        }
    }
}

/// Reads on from what the router has handed out, which on PostgreSQL
/// includes what this instance's numberer handed it directly.
async fn catch_up(db: &DatabaseConnection, router: &Router) -> Result<(), DbErr> {
    loop {
        let events = load_after(db, router.delivered_up_to()).await?;
        let more = events.len() as i64 == BATCH;
        router.deliver(events);
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    use super::*;

    #[test]
    fn a_batch_reads_only_the_recipients_of_its_range() {
        let sql = batch_after(10).build(DbBackend::Postgres).to_string();
        let join = sql.split("LEFT JOIN").nth(1).and_then(|rest| rest.split("WHERE").next()).unwrap_or_default();
        assert!(join.contains(r#""event_recipient"."event_seq" > 10"#), "{sql}");
        assert!(join.contains(r#""event_recipient"."event_seq" <= 510"#), "{sql}");
    }
}
