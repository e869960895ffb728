//! Appending to the outbox inside the caller's transaction.

use chrono::Utc;
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

/// Appends an event in the caller's transaction and returns its sequence
/// number. Bumping the counter row takes its lock until the transaction ends,
/// so events commit in `seq` order and none can appear behind a later one.
/// Every other writer that appends waits for that lock, so callers append as
/// the last thing before they commit.
pub async fn append(txn: &impl ConnectionTrait, mut new: NewEvent) -> Result<i64, DbErr> {
    new.recipients.sort_unstable();
    new.recipients.dedup();
    let seq = match txn.get_database_backend() {
        DbBackend::Postgres => append_in_one_statement(txn, new).await?,
        _ => append_in_steps(txn, new).await?,
    };
    seq.ok_or_else(|| DbErr::Custom("event stream row missing".into()))
}

/// On PostgreSQL concurrent writers queue for the counter row's lock, which
/// each holds from its bump to its commit. One statement bumps, inserts the
/// event and its recipients, so the lock is held for the commit's round trip
/// only, not also for two more statements' round trips.
async fn append_in_one_statement(txn: &impl ConnectionTrait, new: NewEvent) -> Result<Option<i64>, DbErr> {
    const SQL: &str = "WITH bumped AS (
            UPDATE event_stream SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq
        ), appended AS (
            INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
            SELECT last_seq, $2, $3, $4, $5, $6 FROM bumped
        ), addressed AS (
            INSERT INTO event_recipient (event_seq, user_id)
            SELECT last_seq, recipient.user_id FROM bumped, unnest($7::bigint[]) AS recipient (user_id)
        )
        SELECT last_seq FROM bumped";
    let values = [
        STREAM_ID.into(),
        new.community_id.into(),
        new.kind.into(),
        new.entity_type.into(),
        new.entity_id.into(),
        Utc::now().into(),
        new.recipients.into(),
    ];
    let bumped = txn.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, SQL, values)).await?;
    bumped.map(|row| row.try_get("", "last_seq")).transpose()
}

/// Elsewhere (SQLite) writers take turns on one connection in the process,
/// so the statements' round trips do not hold anyone up.
async fn append_in_steps(txn: &impl ConnectionTrait, new: NewEvent) -> Result<Option<i64>, DbErr> {
    let bumped = event_stream::Entity::update_many()
        .col_expr(event_stream::Column::LastSeq, Expr::col(event_stream::Column::LastSeq).add(1))
        .filter(event_stream::Column::Id.eq(STREAM_ID))
        .exec_with_returning(txn)
        .await?;
    let Some(seq) = bumped.first().map(|row| row.last_seq) else { return Ok(None) };
    event::Entity::insert(event::ActiveModel {
        seq: Set(seq),
        community_id: Set(new.community_id),
        kind: Set(new.kind.to_owned()),
        entity_type: Set(new.entity_type.to_owned()),
        entity_id: Set(new.entity_id),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(txn)
    .await?;
    let recipients: Vec<_> = new
        .recipients
        .into_iter()
        .map(|user_id| event_recipient::ActiveModel { event_seq: Set(seq), user_id: Set(user_id) })
        .collect();
    for chunk in recipients.chunks(500) {
        event_recipient::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    Ok(Some(seq))
}
