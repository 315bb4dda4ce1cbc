//! Usage metering: messages per day and channel from `campaign.message.sent`, member and open
//! store counts from member events (each followed by the plan-limit check), and the usage
//! report. The recorders run inside the consumer's transaction, which also records the event
//! id, so a replayed event counts once.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::BillingApp;
use crate::{
    domain::{
        catalogue::Channel,
        usage::{DailyUsage, MessageUsage},
    },
    store::{counters, usage},
};

/// Daily rows and per-channel totals of a date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub days: Vec<DailyUsage>,
    pub totals: Vec<(Channel, i64)>,
}

impl BillingApp {
    /// Adds messages on the day they were sent in the tenant's zone.
    pub async fn record_messages(
        &self,
        tx: &Tx,
        tenant: TenantId,
        u: MessageUsage,
    ) -> Result<(), ServiceError> {
        let zone = self.zone_in(tx, tenant).await?;
        usage::add(
            tx,
            tenant,
            u.usage_date(zone),
            u.channel,
            u.count,
            self.now(),
        )
        .await?;
        Ok(())
    }

    pub async fn record_member_joined(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        counters::member_joined(tx, tenant, member_id, self.now()).await?;
        let zone = self.zone_in(tx, tenant).await?;
        self.check_plan_limit(tx, tenant, zone).await
    }

    pub async fn record_member_withdrawn(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        counters::member_withdrawn(tx, tenant, member_id, self.now()).await?;
        Ok(())
    }

    /// Records whether a store is open as of `event_time` (created or updated).
    pub async fn record_store(
        &self,
        tx: &Tx,
        tenant: TenantId,
        store_id: Uuid,
        open: bool,
        event_time: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        counters::set_store(tx, tenant, store_id, open, event_time, self.now()).await?;
        let zone = self.zone_in(tx, tenant).await?;
        self.check_plan_limit(tx, tenant, zone).await
    }

    /// Daily usage of `[from, to]` (tenant zone), with totals per channel.
    pub async fn usage(
        &self,
        tenant: TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<UsageReport, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let days = usage::daily(&tx, tenant, from, to).await?;
        tx.commit().await?;
        let totals = crate::domain::usage::totals(&days);
        Ok(UsageReport { days, totals })
    }
}
