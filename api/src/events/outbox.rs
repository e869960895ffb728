//! Appending to the outbox inside the caller's transaction.

use chrono::Utc;
use entity::{event, event_recipient, event_stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
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
pub async fn append(txn: &impl ConnectionTrait, events: Vec<NewEvent>) -> Result<Vec<i64>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = events.len() as i64;
    let bumped = event_stream::Entity::update_many()
        .col_expr(event_stream::Column::LastSeq, Expr::col(event_stream::Column::LastSeq).add(count))
        .filter(event_stream::Column::Id.eq(STREAM_ID))
        .exec_with_returning(txn)
        .await?;
    let last =
        bumped.first().map(|row| row.last_seq).ok_or_else(|| DbErr::Custom("event stream row missing".into()))?;
    let first = last - count + 1;
    let now = Utc::now();
    let mut rows = Vec::with_capacity(events.len());
    let mut recipients = Vec::new();
    for (offset, new) in events.into_iter().enumerate() {
        let seq = first + offset as i64;
        rows.push(event::ActiveModel {
            seq: Set(seq),
            community_id: Set(new.community_id),
            kind: Set(new.kind.to_owned()),
            entity_type: Set(new.entity_type.to_owned()),
            entity_id: Set(new.entity_id),
            created_at: Set(now),
        });
        let mut users = new.recipients;
        users.sort_unstable();
        users.dedup();
        recipients.extend(
            users
                .into_iter()
                .map(|user_id| event_recipient::ActiveModel { event_seq: Set(seq), user_id: Set(user_id) }),
        );
    }
    event::Entity::insert_many(rows).exec(txn).await?;
    for chunk in recipients.chunks(500) {
        event_recipient::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    Ok((first..=last).collect())
}
