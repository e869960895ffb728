//! One subscriber's event feed: first the events after its cursor from the
//! outbox, then live events from the relay, with no gap and no duplicate
//! between the two. Live events are filtered by recipient before anything else.

use std::sync::Arc;

use async_stream::stream;
use entity::{event, event_recipient};
use futures_util::{FutureExt, Stream, StreamExt};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Query,
};
use tokio::sync::broadcast::error::RecvError;

use super::OutboxEvent;
use crate::{AppContext, error::ApiError};

const REPLAY_PAGE: u64 = 200;

/// Events of `entity_type` addressed to `user_id`, after `after`, or without
/// it from this call on: every event this instance has not handed out yet. A
/// phone that subscribes and at once submits an order thus receives its
/// event, whichever of the two the server handles first; reading "now" from
/// the database instead could count the order as already past.
pub fn feed(
    app: Arc<AppContext>,
    user_id: i64,
    entity_type: &'static str,
    after: Option<i64>,
) -> impl Stream<Item = Result<Arc<OutboxEvent>, ApiError>> {
    // Listen before reading the outbox: whatever this instance hands out
    // from here on arrives live, and the rest is in the outbox.
    let listening = app.events.subscribe(user_id);
    let (mut live, handed_out) = (listening.events, listening.after);
    // Queries are boxed: the stream's idle state, kept by every open
    // subscription, then holds no room for a query's state.
    stream! {
        let mut position = after.unwrap_or(handed_out);
        // Only what this instance handed out before the feed listened needs
        // the outbox: a phone that resumes up to date, or starts without a
        // cursor, reads no event from the database.
        if position < handed_out {
            match Box::pin(replay(&app.db, user_id, entity_type, position)).await {
                Ok(events) => for event in events { position = event.seq; yield Ok(Arc::new(event)); },
                Err(err) => { yield Err(err.into()); return; }
            }
        }
        loop {
            match live.recv().await {
                Ok(event) => {
                    if event.seq <= position {
                        continue;
                    }
                    position = event.seq;
                    // The channel is this person's: only the kind needs checking.
                    if event.entity_type == entity_type {
                        yield Ok(event);
                    }
                }
                // This subscriber fell behind its channel's buffer: read what
                // it missed from the outbox instead of dropping it.
                Err(RecvError::Lagged(_)) => match Box::pin(replay(&app.db, user_id, entity_type, position)).await {
                    Ok(events) => for event in events { position = event.seq; yield Ok(Arc::new(event)); },
                    Err(err) => { yield Err(err.into()); return; }
                },
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// A feed's events as a subscription sends them, each made by `resolve`,
/// which reads the entity through the viewer's scope. Skipped: `Ok(None)` (a
/// kind the subscription does not send) and NOT_FOUND (an entity the viewer
/// can no longer see, such as a resident's after moving out).
pub fn resolve_each<T, Fut>(
    events: impl Stream<Item = Result<Arc<OutboxEvent>, ApiError>>,
    resolve: impl Fn(Arc<OutboxEvent>) -> Fut,
) -> impl Stream<Item = async_graphql::Result<T>>
where
    Fut: Future<Output = Result<Option<T>, ApiError>> + Send + 'static,
{
    events.filter_map(move |delivered| {
        let lookup = delivered.map(&resolve);
        // Boxed: an idle subscription keeps no room for a lookup's state.
        async move {
            match lookup {
                Ok(lookup) => match lookup.await {
                    Ok(sent) => sent.map(Ok),
                    Err(ApiError::NotFound(_)) => None,
                    Err(err) => Some(Err(err.into())),
                },
                Err(err) => Some(Err(err.into())),
            }
        }
        .boxed()
    })
}

/// Every committed event after `position` addressed to the user, oldest first.
async fn replay(
    db: &DatabaseConnection,
    user_id: i64,
    entity_type: &str,
    mut position: i64,
) -> Result<Vec<OutboxEvent>, DbErr> {
    let mut replayed = Vec::new();
    loop {
        let addressed = Query::select()
            .column(event_recipient::Column::EventSeq)
            .from(event_recipient::Entity)
            .and_where(event_recipient::Column::UserId.eq(user_id))
            .and_where(event_recipient::Column::EventSeq.gt(position))
            .take();
        let page = event::Entity::find()
            .filter(event::Column::Seq.gt(position))
            .filter(event::Column::EntityType.eq(entity_type))
            .filter(event::Column::Seq.in_subquery(addressed))
            .order_by_asc(event::Column::Seq)
            .limit(REPLAY_PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last().map(|row| row.seq) else {
            return Ok(replayed);
        };
        position = last;
        replayed.extend(page.into_iter().map(|row| OutboxEvent::from_row(row, vec![user_id])));
    }
}
