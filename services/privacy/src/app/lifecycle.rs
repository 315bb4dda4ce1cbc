//! The clocks: the biennial re-confirmation scan (emits `consent.reconfirmation_due` once per
//! consent and cycle) and the retention erasure of withdrawn members, both run by the schedule
//! for every registered tenant; plus the tenant's retention setting.
use chrono::{DateTime, Utc};
use spharos_kit::{ServiceError, TenantId};

use super::{PrivacyApp, emit};
use crate::{
    domain::{consent::AdRole, lifecycle},
    events,
    store::{consent_types, consents, members, settings},
};

/// Consents announced per tenant per scan (the next scan continues).
const RECONFIRMATION_BATCH: u64 = 1000;
/// Members erased per tenant per run (each one visits every service).
const ERASURE_BATCH: u64 = 100;

/// What a scheduled run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    pub tenants: u64,
    /// Notices emitted, or members erased.
    pub done: u64,
    /// Members whose erasure failed (retried next run).
    pub failed: u64,
}

impl PrivacyApp {
    async fn tenants(&self) -> Result<Vec<TenantId>, ServiceError> {
        let tx = self.db.begin_system().await?;
        let all = settings::all_tenants(&tx).await?;
        tx.commit().await?;
        Ok(all)
    }

    /// Finds the advertising consents whose notice is owed within the lead time as of `now`
    /// and emits `consent.reconfirmation_due` for each, once per consent and cycle (the
    /// notice row's unique key decides, so overlapping scans emit nothing twice).
    pub async fn run_reconfirmation_scan(
        &self,
        now: DateTime<Utc>,
    ) -> Result<JobReport, ServiceError> {
        let mut report = JobReport::default();
        let cutoff = lifecycle::reconfirmation_cutoff(now);
        for tenant in self.tenants().await? {
            report.tenants += 1;
            let tx = self.db.begin(tenant).await?;
            let due =
                consents::due_for_reconfirmation(&tx, tenant, cutoff, RECONFIRMATION_BATCH).await?;
            if due.is_empty() {
                tx.commit().await?;
                continue;
            }
            let roles = consent_types::roles(&tx, tenant).await?;
            for state in &due {
                let due_date =
                    lifecycle::reconfirmation_due_date(state.cycle_start_time, self.zone);
                let notice = consents::new_notice(state, due_date, super::now());
                if consents::insert_notice(&tx, &notice).await? {
                    let role = roles
                        .iter()
                        .find(|(c, _)| *c == state.consent_type_code)
                        .map(|(_, r)| *r)
                        .unwrap_or(AdRole::None);
                    emit(&tx, events::reconfirmation_due(tenant, &notice, role)).await?;
                    report.done += 1;
                }
            }
            tx.commit().await?;
        }
        if report.done > 0 {
            tracing::info!(notices = report.done, "re-confirmation notices due");
        }
        Ok(report)
    }

    /// Erases withdrawn members whose withdrawal is older than their tenant's retention
    /// period as of `now`. A failure leaves the member for the next run.
    pub async fn run_retention_erasure(
        &self,
        now: DateTime<Utc>,
    ) -> Result<JobReport, ServiceError> {
        let mut report = JobReport::default();
        for tenant in self.tenants().await? {
            report.tenants += 1;
            let tx = self.db.begin(tenant).await?;
            let days = settings::retention_days(&tx, tenant).await?;
            let cutoff = now - chrono::Duration::days(i64::from(days));
            let due = members::due_for_erasure(&tx, tenant, cutoff, ERASURE_BATCH).await?;
            tx.commit().await?;
            for member_id in due {
                match self.erase_after_retention(tenant, member_id).await {
                    Ok(()) => report.done += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(tenant_id = %tenant, member_id = %member_id, error = %e, "retention erasure failed; retried next run");
                    }
                }
            }
        }
        Ok(report)
    }

    /// The tenant's retention period in days.
    pub async fn retention_days(&self, tenant: TenantId) -> Result<i32, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let days = settings::retention_days(&tx, tenant).await?;
        tx.commit().await?;
        Ok(days)
    }

    pub async fn set_retention_days(
        &self,
        tenant: TenantId,
        days: i32,
    ) -> Result<i32, ServiceError> {
        let days = lifecycle::check_retention_days(days)?;
        let tx = self.db.begin(tenant).await?;
        let t = super::now();
        settings::set_retention_days(&tx, tenant, days, t).await?;
        settings::register_tenant(&tx, tenant, t).await?;
        tx.commit().await?;
        Ok(days)
    }
}
