use async_graphql::{Context, Object, Result};

use super::{photos, service, types::*};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt,
        ids::{self, Kind},
    },
    idempotency::{self, Claim, Outcome},
};

#[derive(Default)]
pub struct RepairMutation;

fn order_id(id: &async_graphql::ID) -> Result<i64> {
    Ok(ids::decode(Kind::RepairOrder, id, "repairOrderId")?)
}

fn payload(order: entity::repair_order::Model) -> RepairOrderPayload {
    RepairOrderPayload { repair_order: RepairOrder(order) }
}

#[Object]
impl RepairMutation {
    /// Report a repair: a resident for one of their units, or staff and
    /// butlers on a resident's behalf or from a patrol. Photos go as multipart
    /// uploads.
    async fn submit_repair_order(
        &self,
        ctx: &Context<'_>,
        input: SubmitRepairOrderInput,
    ) -> Result<RepairOrderPayload> {
        let (app, caller, principal) = (ctx.app(), ctx.caller()?, ctx.principal()?);
        let claim = Claim::of(ctx, caller, input.client_mutation_id.as_deref())?;
        let outcome = idempotency::once(app, claim.as_ref(), async || {
            let decode =
                |id: Option<async_graphql::ID>, kind, field| id.map(|id| ids::decode(kind, &id, field)).transpose();
            let submission = service::Submission {
                unit_id: decode(input.unit_id, Kind::Unit, "unitId")?,
                building_id: decode(input.building_id, Kind::Building, "buildingId")?,
                resident_id: decode(input.resident_id, Kind::User, "residentId")?,
                channel: input.channel.map(Into::into),
                category: input.category.into(),
                description: input.description,
                priority: input.priority.into(),
                preferred_visit_at: input.preferred_visit_at,
                contact_phone: input.contact_phone,
                photos: photos::accept(
                    ctx,
                    input.photos.unwrap_or_default(),
                    app.settings.repair_max_photos,
                    app.settings.repair_max_photo_bytes,
                )
                .await?,
            };
            service::submit(app, principal, submission, claim.as_ref()).await
        })
        .await?;
        let order = match outcome {
            Outcome::Created(order) => order,
            Outcome::Replayed(ids) => {
                let id = ids.first().copied().ok_or_else(|| ApiError::Internal("empty idempotent result".into()))?;
                service::find(&app.db, principal, id).await?
            }
        };
        Ok(payload(order))
    }

    /// Dispatch an order to a technician, or re-dispatch it (supervisor,
    /// manager, or the butler of the building).
    async fn assign_repair_order(
        &self,
        ctx: &Context<'_>,
        input: AssignRepairOrderInput,
    ) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let technician_id = ids::decode(Kind::User, &input.technician_id, "technicianId")?;
        let order = service::assign(
            ctx.app(),
            principal,
            order_id(&input.repair_order_id)?,
            technician_id,
            input.expected_version,
        )
        .await?;
        Ok(payload(order))
    }

    /// The assigned technician is on site.
    async fn start_repair_order(&self, ctx: &Context<'_>, input: StartRepairOrderInput) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let order =
            service::start(ctx.app(), principal, order_id(&input.repair_order_id)?, input.expected_version).await?;
        Ok(payload(order))
    }

    /// The assigned technician finished the work.
    async fn complete_repair_order(
        &self,
        ctx: &Context<'_>,
        input: CompleteRepairOrderInput,
    ) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let completion =
            service::Completion { note: input.note, materials: input.materials, charge_cents: input.charge_cents };
        let order = service::complete(
            ctx.app(),
            principal,
            order_id(&input.repair_order_id)?,
            completion,
            input.expected_version,
        )
        .await?;
        Ok(payload(order))
    }

    /// A resident of the unit confirms the work and rates it, closing the order.
    async fn confirm_repair_order(
        &self,
        ctx: &Context<'_>,
        input: ConfirmRepairOrderInput,
    ) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let order = service::confirm(
            ctx.app(),
            principal,
            order_id(&input.repair_order_id)?,
            input.rating,
            input.comment,
            input.expected_version,
        )
        .await?;
        Ok(payload(order))
    }

    /// Cancel an order: its submitter while it is SUBMITTED or ASSIGNED; the
    /// front desk, supervisors, managers and the building's butler until it is COMPLETED.
    async fn cancel_repair_order(
        &self,
        ctx: &Context<'_>,
        input: CancelRepairOrderInput,
    ) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let order = service::cancel(
            ctx.app(),
            principal,
            order_id(&input.repair_order_id)?,
            &input.reason,
            input.expected_version,
        )
        .await?;
        Ok(payload(order))
    }

    /// Record a follow-up visit or call (回访) on a closed order (front desk,
    /// supervisor, manager, or the building's butler).
    async fn add_repair_follow_up(
        &self,
        ctx: &Context<'_>,
        input: AddRepairFollowUpInput,
    ) -> Result<RepairOrderPayload> {
        let principal = ctx.principal()?;
        let follow_up = service::FollowUp { outcome: input.outcome, satisfied: input.satisfied, note: input.note };
        let order = service::add_follow_up(ctx.app(), principal, order_id(&input.repair_order_id)?, follow_up).await?;
        Ok(payload(order))
    }
}
