//! The grade schedule: every `member.grade_evaluation_interval_seconds`, every registered
//! tenant's members are re-evaluated, because purchases age out of the trailing 12 months
//! without any event announcing it.
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::MemberApp;

/// Starts the schedule; it stops when `shutdown` is cancelled. The first pass runs one period
/// after start, so a restart loop does not turn into an evaluation storm.
pub fn spawn(
    app: MemberApp,
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
                    match app.evaluate_all_tenants().await {
                        Ok(e) => tracing::info!(evaluated = e.evaluated, changed = e.changed, "scheduled grade evaluation done"),
                        Err(e) => tracing::warn!(error = %e, "scheduled grade evaluation failed; retrying next period"),
                    }
                }
            }
        }
    })
}
