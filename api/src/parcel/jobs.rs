//! Parcel reminders: a waiting parcel is reminded after PARCEL_REMINDER_DELAY,
//! then every PARCEL_REMINDER_INTERVAL up to PARCEL_REMINDER_COUNT times.

use chrono::{DateTime, Utc};
use entity::{enums::ParcelStatus, parcel};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::service;
use crate::{AppContext, error::ApiResult};

const BATCH: u64 = 200;

/// Sends the reminders due at `now`; returns how many were sent.
pub async fn send_reminders(app: &AppContext, now: DateTime<Utc>) -> ApiResult<usize> {
    let due = parcel::Entity::find()
        .filter(parcel::Column::Status.eq(ParcelStatus::Waiting))
        .filter(parcel::Column::NextReminderAt.lte(now))
        .filter(parcel::Column::ReminderCount.lt(app.settings.parcel_reminder_count))
        .order_by_asc(parcel::Column::Id)
        .limit(BATCH)
        .all(&app.db)
        .await?;
    let mut sent = 0;
    for parcel in &due {
        sent += usize::from(service::remind(app, parcel, now).await?);
    }
    if sent > 0 {
        tracing::info!(sent, "parcel reminders sent");
    }
    Ok(sent)
}
