//! The month-close job: every [`CLOSE_INTERVAL`](crate::CLOSE_INTERVAL) it closes, for every
//! tenant, the months that have ended in the tenant's own zone and have no invoice yet. Closing
//! is idempotent (one invoice per tenant and month), so overlapping runs or replicas are safe.
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::BillingApp;

/// Starts the job; it stops when `shutdown` is cancelled. The first run is one period after
/// start, so a restart loop does not hammer the database.
pub fn spawn(
    app: BillingApp,
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
                    match app.close_due_months().await {
                        Ok(s) if s.created > 0 || s.failed > 0 => tracing::info!(tenants = s.tenants, created = s.created, failed = s.failed, "month close run done"),
                        Ok(_) => tracing::debug!("month close run: nothing due"),
                        Err(e) => tracing::warn!(error = %e, "month close run failed; retrying next period"),
                    }
                }
            }
        }
    })
}
