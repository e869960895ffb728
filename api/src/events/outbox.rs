//! Appending to the outbox inside the caller's transaction.

use chrono::{DateTime, Utc};
use entity::{event, event_recipient, event_stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait},
};

/// The single row of `event_stream`.
const STREAM_ID: i64 = 1;

pub struct NewEvent {
    pub community_id: i64,
    pub kind: &'static str,
    pub entity_type: &'static str,
    pub entity_id: i64,
    pub recipients: Vec<i64>,
}

/// Appends events in the caller's transaction and returns their sequence
/// numbers. Bumping the counter row takes its lock until the transaction ends,
/// so events commit in `seq` order and none can appear behind a later one.
/// Every other writer that appends waits for that lock, so callers append
/// once, as the last thing before they commit.
pub async fn append(txn: &impl ConnectionTrait, mut events: Vec<NewEvent>) -> Result<Vec<i64>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    for new in &mut events {
        new.recipients.sort_unstable();
        new.recipients.dedup();
    }
    let count = events.len() as i64;
    let now = Utc::now();
    let first = match txn.get_database_backend() {
        DbBackend::Postgres => append_in_one_statement(txn, events, now).await?,
        _ => append_in_steps(txn, events, now).await?,
    };
    let first = first.ok_or_else(|| DbErr::Custom("event stream row missing".into()))?;
    Ok((first..first + count).collect())
}

/// On PostgreSQL concurrent writers queue for the counter row's lock, which
/// each holds from its bump to its commit. One statement bumps, inserts the
/// events and their recipients, so the lock is held for the commit's round
/// trip only, not also for more statements' round trips. Returns the first
/// event's sequence number.
async fn append_in_one_statement(
    txn: &impl ConnectionTrait,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, DbErr> {
    const SQL: &str = "WITH bumped AS (
            UPDATE event_stream SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq - $2 AS before
        ), appended AS (
            INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
            SELECT before + new.ord, new.community_id, new.kind, new.entity_type, new.entity_id, $3
            FROM bumped, unnest($4::bigint[], $5::text[], $6::text[], $7::bigint[])
                WITH ORDINALITY AS new (community_id, kind, entity_type, entity_id, ord)
        ), addressed AS (
            INSERT INTO event_recipient (event_seq, user_id)
            SELECT before + recipient.ord, recipient.user_id
            FROM bumped, unnest($8::bigint[], $9::bigint[]) AS recipient (ord, user_id)
        )
        SELECT before + 1 AS first FROM bumped";
    let count = events.len() as i64;
    let (mut community_ids, mut kinds, mut entity_types, mut entity_ids) = (vec![], vec![], vec![], vec![]);
    let (mut recipient_ords, mut recipient_ids) = (vec![], vec![]);
    for (ord, new) in (1_i64..).zip(events) {
        community_ids.push(new.community_id);
        kinds.push(new.kind.to_owned());
        entity_types.push(new.entity_type.to_owned());
        entity_ids.push(new.entity_id);
        recipient_ords.extend(std::iter::repeat_n(ord, new.recipients.len()));
        recipient_ids.extend(new.recipients);
    }
    let values = [
        STREAM_ID.into(),
        count.into(),
        now.into(),
        community_ids.into(),
        kinds.into(),
        entity_types.into(),
        entity_ids.into(),
        recipient_ords.into(),
        recipient_ids.into(),
    ];
    let bumped = txn.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, SQL, values)).await?;
    bumped.map(|row| row.try_get("", "first")).transpose()
}

/// Elsewhere (SQLite) writers take turns on one connection in the process,
/// so the statements' round trips do not hold anyone up.
async fn append_in_steps(
    txn: &impl ConnectionTrait,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, DbErr> {
    let count = events.len() as i64;
    let bumped = event_stream::Entity::update_many()
        .col_expr(event_stream::Column::LastSeq, Expr::col(event_stream::Column::LastSeq).add(count))
        .filter(event_stream::Column::Id.eq(STREAM_ID))
        .exec_with_returning(txn)
        .await?;
    let Some(last) = bumped.first().map(|row| row.last_seq) else { return Ok(None) };
    let first = last - count + 1;
    let mut rows = Vec::with_capacity(events.len());
    let mut recipients = Vec::new();
    for (seq, new) in (first..).zip(events) {
        rows.push(event::ActiveModel {
            seq: Set(seq),
            community_id: Set(new.community_id),
            kind: Set(new.kind.to_owned()),
            entity_type: Set(new.entity_type.to_owned()),
            entity_id: Set(new.entity_id),
            created_at: Set(now),
        });
        recipients.extend(
            new.recipients
                .into_iter()
                .map(|user_id| event_recipient::ActiveModel { event_seq: Set(seq), user_id: Set(user_id) }),
        );
    }
    event::Entity::insert_many(rows).exec_without_returning(txn).await?;
    for chunk in recipients.chunks(500) {
        event_recipient::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    Ok(Some(first))
}
