use async_graphql::{Context, ID, Object, Result};

use super::{service, types::*};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt,
        ids::{self, Kind},
    },
    idempotency::{self, Claim, Outcome},
};

#[derive(Default)]
pub struct ParcelMutation;

fn parcel_id(id: &ID) -> Result<i64> {
    Ok(ids::decode(Kind::Parcel, id, "parcelId")?)
}

fn new_parcel(input: ParcelInput, unit_field: &str) -> Result<service::NewParcel> {
    Ok(service::NewParcel {
        kind: input.kind.into(),
        carrier: input.carrier,
        tracking_number: input.tracking_number,
        item_count: input.item_count,
        recipient_name: input.recipient_name,
        unit_id: input.unit_id.map(|id| ids::decode(Kind::Unit, &id, unit_field)).transpose()?,
        location: input.location,
    })
}

/// Registers once per idempotency key; a replay returns the parcels the first
/// request registered, as the caller sees them now.
async fn register(
    ctx: &Context<'_>,
    claim: Option<&Claim>,
    parcels: Vec<service::NewParcel>,
    bulk: bool,
) -> Result<Vec<entity::parcel::Model>> {
    let (app, caller) = (ctx.app(), ctx.caller()?);
    match idempotency::once(app, claim, async || service::register(app, caller, parcels, bulk, claim).await).await? {
        Outcome::Created(parcels) => Ok(parcels),
        Outcome::Replayed(ids) => Ok(service::find_all(&app.db, caller, &ids).await?),
    }
}

fn payload(parcel: entity::parcel::Model) -> ParcelPayload {
    ParcelPayload { parcel: Parcel(parcel) }
}

#[Object]
impl ParcelMutation {
    /// Log a parcel at the desk (front desk, or an integrator with
    /// `parcels:write`). With a unit it waits for pickup and the residents get
    /// its code at once; without one it is UNIDENTIFIED.
    async fn register_parcel(&self, ctx: &Context<'_>, mut input: ParcelInput) -> Result<ParcelPayload> {
        let claim = Claim::of(ctx, ctx.caller()?, input.client_mutation_id.take().as_deref())?;
        let parcels = register(ctx, claim.as_ref(), vec![new_parcel(input, "unitId")?], false).await?;
        let parcel = parcels.into_iter().next().ok_or_else(|| ApiError::Internal("nothing registered".into()))?;
        Ok(payload(parcel))
    }

    /// Log up to 100 parcels at once, all or nothing.
    async fn register_parcels(&self, ctx: &Context<'_>, input: RegisterParcelsInput) -> Result<RegisterParcelsPayload> {
        let claim = Claim::of(ctx, ctx.caller()?, input.client_mutation_id.as_deref())?;
        let parcels = input
            .parcels
            .into_iter()
            .enumerate()
            .map(|(index, parcel)| {
                if parcel.client_mutation_id.is_some() {
                    return Err(ApiError::bad_input(
                        format!("parcels.{index}.clientMutationId"),
                        "set clientMutationId on the registration, not on each parcel",
                    )
                    .into());
                }
                new_parcel(parcel, &format!("parcels.{index}.unitId"))
            })
            .collect::<Result<Vec<_>>>()?;
        let registered = register(ctx, claim.as_ref(), parcels, true).await?;
        Ok(RegisterParcelsPayload { parcels: registered.into_iter().map(Parcel).collect() })
    }

    /// Hand a parcel over against its pickup code: at the desk, to a resident
    /// or the person they authorised; or from an integrator's locker. Five
    /// wrong codes in a row lock the parcel until staff unlock it.
    async fn pick_up_parcel(&self, ctx: &Context<'_>, input: PickUpParcelInput) -> Result<ParcelPayload> {
        let (app, caller) = (ctx.app(), ctx.caller()?);
        // Besides the per-parcel lock: one caller guessing across many parcels.
        app.limiter.admit(&format!("code:{}", caller.key()), app.settings.code_limit(), 1).await?;
        let parcel =
            service::pick_up(app, caller, parcel_id(&input.parcel_id)?, &input.pickup_code, input.collector_name)
                .await?;
        Ok(payload(parcel))
    }

    /// Give an unidentified parcel its unit (front desk, or a butler for their buildings).
    async fn identify_parcel(&self, ctx: &Context<'_>, input: IdentifyParcelInput) -> Result<ParcelPayload> {
        let unit_id = ids::decode(Kind::Unit, &input.unit_id, "unitId")?;
        Ok(payload(
            service::identify(ctx.app(), ctx.caller()?, parcel_id(&input.parcel_id)?, input.expected_version, unit_id)
                .await?,
        ))
    }

    /// Send a parcel back to the post office or carrier (front desk).
    async fn return_parcel(&self, ctx: &Context<'_>, input: ReturnParcelInput) -> Result<ParcelPayload> {
        let parcel = service::return_to_sender(
            ctx.app(),
            ctx.caller()?,
            parcel_id(&input.parcel_id)?,
            input.expected_version,
            &input.reason,
        )
        .await?;
        Ok(payload(parcel))
    }

    /// A resident allows someone else to collect the parcel at the desk.
    async fn authorize_parcel_collector(
        &self,
        ctx: &Context<'_>,
        input: AuthorizeParcelCollectorInput,
    ) -> Result<ParcelPayload> {
        let parcel = service::authorize_collector(
            ctx.app(),
            ctx.caller()?,
            parcel_id(&input.parcel_id)?,
            input.expected_version,
            &input.name,
        )
        .await?;
        Ok(payload(parcel))
    }

    /// Release a parcel locked after wrong pickup codes (front desk, after review).
    async fn unlock_parcel(&self, ctx: &Context<'_>, input: UnlockParcelInput) -> Result<ParcelPayload> {
        Ok(payload(
            service::unlock(ctx.app(), ctx.caller()?, parcel_id(&input.parcel_id)?, input.expected_version).await?,
        ))
    }
}
