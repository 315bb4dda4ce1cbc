//! Background work of the coupon module: the bulk-issue worker (woken when a job starts,
//! polling otherwise, so jobs resume after a restart) and the schedule that expires coupons
//! and vouchers, sends expiry notices and issues birthday coupons.
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::{CouponApp, now};

/// How often the worker looks for RUNNING jobs when nobody woke it.
const BULK_POLL: Duration = Duration::from_secs(2);
const BULK_BACKOFF: Duration = Duration::from_secs(5);
/// How often expiry, notices and birthdays run. Birthday issues are once a year per member
/// by constraint, so a short period only makes them arrive early in the day.
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(600);
/// The first schedule pass waits this long after start, so a restart loop is not a storm.
const SCHEDULE_FIRST: Duration = Duration::from_secs(30);

pub fn spawn_bulk_worker(
    app: CouponApp,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let wake = app.bulk_wake();
    tokio::spawn(async move {
        loop {
            let wait = match app.run_bulk_round().await {
                Ok(0) => BULK_POLL,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "bulk issue round failed; retrying");
                    BULK_BACKOFF
                }
            };
            if wait.is_zero() {
                if shutdown.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

pub fn spawn_schedule(
    app: CouponApp,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(Instant::now() + SCHEDULE_FIRST.min(every), every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    match app.run_schedule(now()).await {
                        Ok(r) => tracing::info!(
                            tenants = r.tenants, expired = r.expired, noticed = r.noticed,
                            birthday_issued = r.birthday.issued, birthday_failed = r.birthday.failed,
                            "coupon schedule done"
                        ),
                        Err(e) => tracing::warn!(error = %e, "coupon schedule failed; retrying next period"),
                    }
                }
            }
        }
    })
}
