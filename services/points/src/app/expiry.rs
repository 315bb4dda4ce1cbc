//! The expiry job: for each tenant, settle every member with lots due (expired at the end of
//! their last day in the tenant zone, or pending lots whose time came), then send the expiry
//! notices that are due (2 months, 1 month, 3 days before), each once per lot and horizon.
use chrono::{DateTime, Utc};
use spharos_kit::{ServiceError, TenantId, time::local_date};

use super::{PointsApp, Session, emit, now};
use crate::{
    domain::expiry::{Horizon, due_notice, next_notice_date, start_of_day},
    events,
    store::{
        lots,
        notices::{self, NoticeRow},
        tenants,
    },
};

/// Members settled per round; each is its own short transaction.
const MEMBERS_PER_ROUND: u64 = 200;
const NOTICES_PER_ROUND: u64 = 500;
/// A bound on rounds per run, so a bug that keeps a row "due" cannot spin the job forever.
const MAX_ROUNDS: usize = 10_000;

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryRun {
    pub expired_members: i64,
    pub expired_points: i64,
    pub notices: i64,
}

impl std::ops::AddAssign for ExpiryRun {
    fn add_assign(&mut self, o: Self) {
        self.expired_members += o.expired_members;
        self.expired_points += o.expired_points;
        self.notices += o.notices;
    }
}

impl PointsApp {
    /// Runs the job for one tenant as of `at` (the scheduler and `RunExpiry` pass now).
    pub async fn run_expiry(
        &self,
        tenant: TenantId,
        at: DateTime<Utc>,
    ) -> Result<ExpiryRun, ServiceError> {
        let mut run = ExpiryRun::default();
        for _ in 0..MAX_ROUNDS {
            let tx = self.db.begin(tenant).await?;
            let members = lots::members_due(&tx, tenant, at, MEMBERS_PER_ROUND).await?;
            // Committed before the per-member work: one transaction at a time (SQLite has one
            // connection).
            tx.commit().await?;
            if members.is_empty() {
                break;
            }
            for member in &members {
                let tx = self.db.begin(tenant).await?;
                let Some(mut s) =
                    Session::open_existing(&tx, tenant, self.zone, *member, at).await?
                else {
                    tx.commit().await?;
                    continue;
                };
                let expired = s.settle().await?;
                s.finish().await?;
                tx.commit().await?;
                if expired > 0 {
                    run.expired_members += 1;
                    run.expired_points += expired;
                }
            }
            if (members.len() as u64) < MEMBERS_PER_ROUND {
                break;
            }
        }
        run.notices = self.send_notices(tenant, at).await?;
        Ok(run)
    }

    /// Sends the notices due at `at`. The notice row's primary key (lot, horizon) makes each
    /// notice once-only even when two replicas run the job together.
    async fn send_notices(&self, tenant: TenantId, at: DateTime<Utc>) -> Result<i64, ServiceError> {
        let today = local_date(at, self.zone);
        let mut sent = 0;
        for _ in 0..MAX_ROUNDS {
            let tx = self.db.begin(tenant).await?;
            let due = lots::due_for_notice(&tx, tenant, at, NOTICES_PER_ROUND).await?;
            for lot in &due {
                let expire_date = local_date(lot.expire_time, self.zone);
                let last = lot.notice_stage.as_deref().and_then(Horizon::parse);
                let horizon = due_notice(expire_date, today, last);
                if let Some(h) = horizon {
                    let t = now();
                    let row = NoticeRow {
                        tenant_id: tenant.as_uuid(),
                        lot_id: lot.id,
                        horizon: h.as_str().to_string(),
                        member_id: lot.member_id,
                        points: lot.remaining,
                        expire_time: lot.expire_time,
                        created_time: t,
                        updated_time: t,
                    };
                    if notices::insert(&tx, &row).await? {
                        emit(&tx, events::expiry_notice(tenant, lot, h, expire_date)).await?;
                        sent += 1;
                    }
                }
                let stage = horizon.or(last);
                let next = next_notice_date(expire_date, stage)
                    .map(|d| start_of_day(d, self.zone))
                    // Not due yet by the date rule (a clock edge): look again tomorrow.
                    .map(|next| {
                        if next <= at && horizon.is_none() {
                            at + chrono::TimeDelta::days(1)
                        } else {
                            next
                        }
                    });
                lots::set_notice(
                    &tx,
                    tenant,
                    lot.id,
                    stage.map(Horizon::as_str).unwrap_or(""),
                    next,
                    now(),
                )
                .await?;
            }
            tx.commit().await?;
            if (due.len() as u64) < NOTICES_PER_ROUND {
                break;
            }
        }
        Ok(sent)
    }

    /// The scheduler's pass: every registered tenant, each in its own transactions. One
    /// tenant's failure is logged and does not stop the others.
    pub async fn run_expiry_all_tenants(
        &self,
        at: DateTime<Utc>,
    ) -> Result<ExpiryRun, ServiceError> {
        let tx = self.db.begin_system().await?;
        let all = tenants::all(&tx).await?;
        tx.commit().await?;
        let mut total = ExpiryRun::default();
        for tenant in all {
            match self.run_expiry(tenant, at).await {
                Ok(r) => total += r,
                Err(e) => tracing::warn!(tenant_id = %tenant, error = %e, "points expiry failed"),
            }
        }
        Ok(total)
    }
}
