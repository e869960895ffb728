use async_graphql::{Context, Result, Subscription};
use futures_util::Stream;

use super::{
    service,
    types::{Parcel, ParcelEvent, ParcelEventKind},
};
use crate::{
    auth::Caller,
    events::{
        cursor,
        feed::{feed, resolve_each},
    },
    graphql::ContextExt,
};

#[derive(Default)]
pub struct ParcelSubscription;

fn kind_of(kind: &str) -> Option<ParcelEventKind> {
    use ParcelEventKind::*;
    Some(match kind {
        "REGISTERED" => Registered,
        "REMINDED" => Reminded,
        "PICKED_UP" => PickedUp,
        "RETURNED" => Returned,
        "IDENTIFIED" => Identified,
        _ => return None,
    })
}

#[Subscription]
impl ParcelSubscription {
    /// Parcels for the viewer's units (with the pickup code), their buildings
    /// (butlers) or the community (front desk). With `after` it first replays
    /// what was missed.
    async fn parcel_events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ParcelEvent>>> {
        let principal = ctx.principal()?.clone();
        let after = after.map(|cursor| cursor::decode(&cursor, "after")).transpose()?;
        let app = ctx.app().clone();
        let events = feed(app.clone(), principal.user_id, service::ENTITY_TYPE, after);
        let caller = Caller::User(principal);
        Ok(resolve_each(events, move |event| {
            let (app, caller) = (app.clone(), caller.clone());
            async move {
                let Some(kind) = kind_of(&event.kind) else { return Ok(None) };
                let parcel = service::find(&app.db, &caller, event.entity_id).await?;
                Ok(Some(ParcelEvent {
                    cursor: cursor::encode(event.seq),
                    kind,
                    occurred_at: event.created_at,
                    parcel: Parcel(parcel),
                }))
            }
        }))
    }
}
