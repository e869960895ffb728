//! Appending to the outbox inside the caller's transaction.

use chrono::{DateTime, Utc};
use entity::{event, event_recipient, event_stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    sea_query::{Alias, Expr, ExprTrait},
};

use crate::db::WrittenWith;

/// The single row of `event_stream`.
const STREAM_ID: i64 = 1;

pub struct NewEvent {
    pub community_id: i64,
    pub kind: &'static str,
    pub entity_type: &'static str,
    pub entity_id: i64,
    pub recipients: Vec<i64>,
}

/// Appends events in the caller's transaction. Events commit in `seq` order,
/// so none can appear behind a later one: on SQLite they are numbered from
/// the outbox counter, whose lock is held from the bump to the commit; on
/// PostgreSQL they are numbered after the commit (see `numbering`).
pub async fn append(txn: &impl ConnectionTrait, mut events: Vec<NewEvent>) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    for new in &mut events {
        new.recipients.sort_unstable();
        new.recipients.dedup();
    }
    let now = Utc::now();
    match txn.get_database_backend() {
        DbBackend::Postgres => append_drafts(txn, events, now).await,
        _ => append_in_steps(txn, events, now).await,
    }
}

/// On PostgreSQL the events are inserted as drafts, in one statement, and
/// numbered into the outbox after the commit by `numbering`, in a short
/// transaction of its own; so writers never queue for the counter's lock and
/// their commits share WAL flushes.
async fn append_drafts(txn: &impl ConnectionTrait, events: Vec<NewEvent>, now: DateTime<Utc>) -> Result<(), DbErr> {
    const SQL: &str = "INSERT INTO event_draft (community_id, kind, entity_type, entity_id, created_at, recipients)
        SELECT new.community_id, new.kind, new.entity_type, new.entity_id, $1,
            ARRAY(SELECT recipient.user_id FROM unnest($6::bigint[], $7::bigint[]) AS recipient (ord, user_id)
                WHERE recipient.ord = new.ord)
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[])
            WITH ORDINALITY AS new (community_id, kind, entity_type, entity_id, ord)
        ORDER BY new.ord";
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
        now.into(),
        community_ids.into(),
        kinds.into(),
        entity_types.into(),
        entity_ids.into(),
        recipient_ords.into(),
        recipient_ids.into(),
    ];
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, SQL, values)).await.map(drop)
}

/// Adds the draft of an event about the row `statement` writes, numbered as
/// [`append_drafts`]' are (PostgreSQL).
pub fn draft_with(
    statement: WrittenWith,
    kind: &'static str,
    entity_type: &'static str,
    community_id: Expr,
    entity_id: Expr,
    recipients: Expr,
    now: DateTime<Utc>,
) -> WrittenWith {
    let row = [
        ("community_id", community_id),
        ("kind", Expr::val(kind)),
        ("entity_type", Expr::val(entity_type)),
        ("entity_id", entity_id),
        ("created_at", Expr::val(now)),
        ("recipients", recipients),
    ];
    statement.insert(Alias::new("event_draft"), row.map(|(column, value)| (Alias::new(column), value)))
}

/// Elsewhere (SQLite) writers take turns on one connection in the process,
/// so the statements' round trips do not hold anyone up.
async fn append_in_steps(txn: &impl ConnectionTrait, events: Vec<NewEvent>, now: DateTime<Utc>) -> Result<(), DbErr> {
    let count = events.len() as i64;
    let bumped = event_stream::Entity::update_many()
        .col_expr(event_stream::Column::LastSeq, Expr::col(event_stream::Column::LastSeq).add(count))
        .filter(event_stream::Column::Id.eq(STREAM_ID))
        .exec_with_returning(txn)
        .await?;
    let last =
        bumped.first().map(|row| row.last_seq).ok_or_else(|| DbErr::Custom("event stream row missing".into()))?;
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
    Ok(())
}
