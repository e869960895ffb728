use async_graphql::{Context, Result, Subscription};
use futures_util::Stream;

use super::{
    service,
    types::{RepairOrder, RepairOrderEvent, RepairOrderEventKind},
};
use crate::{
    events::{
        cursor,
        feed::{feed, resolve_each},
    },
    graphql::ContextExt,
};

#[derive(Default)]
pub struct RepairSubscription;

fn kind_of(kind: &str) -> Option<RepairOrderEventKind> {
    use RepairOrderEventKind::*;
    Some(match kind {
        "SUBMITTED" => Submitted,
        "ASSIGNED" => Assigned,
        "STARTED" => Started,
        "COMPLETED" => Completed,
        "CLOSED" => Closed,
        "CANCELLED" => Cancelled,
        "FOLLOWED_UP" => FollowedUp,
        "OVERDUE" => Overdue,
        _ => return None,
    })
}

#[Subscription]
impl RepairSubscription {
    /// Changes to the repair orders that concern the viewer: as a resident of
    /// the unit, the butler of the building, the assigned technician, or a
    /// supervisor or manager of the community. With `after` (the cursor of the
    /// last event received) it first replays what was missed, so a phone that
    /// reconnects loses nothing.
    async fn repair_order_events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<RepairOrderEvent>>> {
        let principal = ctx.principal()?.clone();
        let after = after.map(|cursor| cursor::decode(&cursor, "after")).transpose()?;
        let app = ctx.app().clone();
        let events = feed(app.clone(), principal.user_id, service::ENTITY_TYPE, after);
        Ok(resolve_each(events, move |event| {
            let (app, principal) = (app.clone(), principal.clone());
            async move {
                let Some(kind) = kind_of(&event.kind) else { return Ok(None) };
                let order = service::find(&app.db, &principal, event.entity_id).await?;
                Ok(Some(RepairOrderEvent {
                    cursor: cursor::encode(event.seq),
                    kind,
                    occurred_at: event.created_at,
                    repair_order: RepairOrder(order),
                }))
            }
        }))
    }
}
