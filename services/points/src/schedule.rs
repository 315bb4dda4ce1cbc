//! The expiry schedule: every [`EXPIRY_INTERVAL`], every registered tenant's due lots are
//! expired (end of day in the tenant zone) and due expiry notices sent. Operations settle a
//! member's due lots themselves too, so balances are exact between runs; the schedule is what
//! expires the points of members who do nothing.
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::PointsApp;

/// How often the job runs. A constant, not configuration: the kit's settings have no points
/// section yet, and a minute keeps expiry events within a minute of midnight.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Starts the schedule; it stops when `shutdown` is cancelled. The first pass runs one period
/// after start (a restart loop does not turn into an expiry storm; operations settle their
/// member's due lots themselves meanwhile), then every `every`.
pub fn spawn(
    app: PointsApp,
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
                    match app.run_expiry_all_tenants(crate::app::now()).await {
                        Ok(r) if r.expired_members > 0 || r.notices > 0 => tracing::info!(
                            expired_members = r.expired_members,
                            expired_points = r.expired_points,
                            notices = r.notices,
                            "scheduled points expiry done"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "scheduled points expiry failed; retrying next period"),
                    }
                }
            }
        }
    })
}
