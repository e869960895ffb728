//! Background jobs: marking orders past their SLA deadlines overdue (once),
//! and closing completed orders the resident did not confirm in time. Every
//! change is a conditional update, so instances running the job at the same
//! time cannot both act on one order.

use chrono::{DateTime, Utc};
use entity::{enums::RepairState, repair_order};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{service, state};
use crate::{
    AppContext,
    error::{ApiError, ApiResult},
};

const BATCH: u64 = 200;

/// What one run changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub response_overdue: usize,
    pub completion_overdue: usize,
    pub auto_closed: usize,
}

/// Runs every job once as of `now`.
pub async fn run_once(app: &AppContext, now: DateTime<Utc>) -> ApiResult<Report> {
    use repair_order::Column;
    let mut report = Report::default();

    let late_response = repair_order::Entity::find()
        .filter(Column::State.is_in(state::AWAITING_RESPONSE))
        .filter(Column::ResponseOverdue.eq(false))
        .filter(Column::ResponseDueAt.lt(now))
        .order_by_asc(Column::Id)
        .limit(BATCH)
        .all(&app.db)
        .await?;
    for order in &late_response {
        report.response_overdue += usize::from(service::mark_overdue(app, order, true).await?);
    }

    let late_completion = repair_order::Entity::find()
        .filter(Column::State.is_in(state::AWAITING_COMPLETION))
        .filter(Column::CompletionOverdue.eq(false))
        .filter(Column::CompletionDueAt.lt(now))
        .order_by_asc(Column::Id)
        .limit(BATCH)
        .all(&app.db)
        .await?;
    for order in &late_completion {
        // Re-read: marking the response deadline above bumped the version.
        if let Some(current) = repair_order::Entity::find_by_id(order.id).one(&app.db).await? {
            report.completion_overdue += usize::from(service::mark_overdue(app, &current, false).await?);
        }
    }

    let auto_close_after = chrono::Duration::from_std(app.settings.repair_auto_close_after)
        .map_err(|_| ApiError::Internal("auto-close delay out of range".into()))?;
    let unconfirmed = repair_order::Entity::find()
        .filter(Column::State.eq(RepairState::Completed))
        .filter(Column::CompletedAt.lt(now - auto_close_after))
        .order_by_asc(Column::Id)
        .limit(BATCH)
        .all(&app.db)
        .await?;
    for order in &unconfirmed {
        report.auto_closed += usize::from(service::auto_close(app, order).await?);
    }
    if report != Report::default() {
        tracing::info!(?report, "repair jobs ran");
    }
    Ok(report)
}
