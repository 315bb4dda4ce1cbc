//! The privacy schedule: every period, the re-confirmation scan and the retention erasure run
//! for every registered tenant (neither has an event that would trigger it: time passing is
//! the trigger).
use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::PrivacyApp;

/// Starts the schedule; it stops when `shutdown` is cancelled. The first pass runs one period
/// after start, so a restart loop does not turn into a storm of scans.
pub fn spawn(
    app: PrivacyApp,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // A zero period would make tokio's interval panic; a second is the floor.
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    match app.run_reconfirmation_scan(Utc::now()).await {
                        Ok(r) => tracing::debug!(tenants = r.tenants, notices = r.done, "re-confirmation scan done"),
                        Err(e) => tracing::warn!(error = %e, "re-confirmation scan failed; retrying next period"),
                    }
                    match app.run_retention_erasure(Utc::now()).await {
                        Ok(r) => tracing::debug!(tenants = r.tenants, erased = r.done, failed = r.failed, "retention erasure done"),
                        Err(e) => tracing::warn!(error = %e, "retention erasure failed; retrying next period"),
                    }
                }
            }
        }
    })
}
