//! The background jobs every instance runs: repair SLA marking and
//! auto-closing, parcel reminders, and forgetting old idempotency keys. Each change they make is conditional on
//! the row's version, so instances running them at the same time never act twice.

use std::sync::Arc;

use chrono::Utc;

use crate::{AppContext, idempotency, parcel, repair};

/// Runs the jobs every JOB_INTERVAL for as long as the process lives.
pub fn spawn(app: Arc<AppContext>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(app.settings.job_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Utc::now();
            if let Err(err) = repair::jobs::run_once(&app, now).await {
                tracing::warn!(error = ?err, "repair jobs failed; retrying next interval");
            }
            if let Err(err) = parcel::jobs::send_reminders(&app, now).await {
                tracing::warn!(error = ?err, "parcel reminders failed; retrying next interval");
            }
            if let Err(err) = idempotency::purge(&app, now).await {
                tracing::warn!(error = ?err, "forgetting old idempotency keys failed; retrying next interval");
            }
        }
    });
}
