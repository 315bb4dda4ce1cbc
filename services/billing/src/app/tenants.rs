//! Tenant use cases: register, read (with plan compliance, what the operator shows as the
//! PlanCompliant condition), list for the platform, and the plan-limit check that emits
//! `billing.plan_limit_exceeded` once per Basic plan period.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};

use super::{BillingApp, SubscriptionView, emit, subscriptions::view_of};
use crate::{
    domain::{
        catalogue::Plan,
        limits::{self, Compliance},
        subscription::SubscriptionStatus,
        tenant::{NewTenant, Tenant},
        timeline,
    },
    events,
    store::{counters, periods, subscriptions, tenants},
};

/// A tenant's size and plan compliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    /// The plan in force today (`None`: never subscribed, or cancelled before today).
    pub plan: Option<Plan>,
    pub subscription_status: Option<SubscriptionStatus>,
    pub member_count: i64,
    /// Open stores.
    pub store_count: i64,
    pub compliance: Compliance,
    /// When the limit signal went out for the current plan period.
    pub plan_limit_exceeded_time: Option<DateTime<Utc>>,
}

/// A tenant with its status and subscription, for the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantOverview {
    pub tenant: Tenant,
    pub status: TenantStatus,
    pub subscription: Option<SubscriptionView>,
}

impl BillingApp {
    /// Registers a tenant. A caller-chosen id that exists is `ALREADY_EXISTS`
    /// (`TENANT_EXISTS`), which makes the operator's retries safe.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, ServiceError> {
        let now = self.now();
        let tenant = Tenant {
            id: new.id.unwrap_or_else(TenantId::generate),
            name: new.name,
            business_number: new.business_number,
            contact_name: new.contact_name,
            contact_email: new.contact_email,
            contact_phone: new.contact_phone,
            time_zone: new.time_zone,
            created_time: now,
            updated_time: now,
        };
        // The tenant's own transaction: the registry's policy lets it write its own row.
        let tx = self.db.begin(tenant.id).await?;
        if !tenants::insert(&tx, &tenant).await? {
            return Err(ServiceError::already_exists(
                "TENANT_EXISTS",
                format!(
                    "이미 등록된 테넌트입니다 (tenant {} already exists)",
                    tenant.id
                ),
            ));
        }
        emit(&tx, events::tenant_created(&tenant)).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// The tenant, its status and subscription; `NOT_FOUND` for an unknown tenant.
    pub async fn get_tenant(&self, tenant: TenantId) -> Result<TenantOverview, ServiceError> {
        let (tx, t) = self.begin_known(tenant).await?;
        let subscription = match subscriptions::get(&tx, tenant).await? {
            Some(s) => Some(view_of(&tx, tenant, s, self.today(t.time_zone)).await?),
            None => None,
        };
        let status = self.status_in(&tx, tenant, t.time_zone).await?;
        tx.commit().await?;
        Ok(TenantOverview {
            tenant: t,
            status,
            subscription,
        })
    }

    /// Plan, limits and compliance (what the operator needs for PlanCompliant).
    pub async fn tenant_status(&self, tenant: TenantId) -> Result<TenantStatus, ServiceError> {
        Ok(self.get_tenant(tenant).await?.status)
    }

    /// One page of tenants in id order, across tenants.
    pub async fn list_tenants(
        &self,
        page: PageRequest,
    ) -> Result<(Vec<Tenant>, String), ServiceError> {
        let tx = self.db.begin_system().await?;
        let rows = tenants::page(&tx, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |t| t.id.as_uuid()))
    }

    /// The status inside the caller's tenant transaction.
    pub(crate) async fn status_in(
        &self,
        tx: &Tx,
        tenant: TenantId,
        zone: Tz,
    ) -> Result<TenantStatus, ServiceError> {
        let today = self.today(zone);
        let live = periods::live(tx, tenant, today).await?;
        let current = timeline::current(&live, today);
        let plan = current.map(|p| p.plan);
        let member_count = counters::member_count(tx, tenant).await?;
        let store_count = counters::open_store_count(tx, tenant).await?;
        let subscription_status = subscriptions::get(tx, tenant).await?.map(|s| s.status);
        Ok(TenantStatus {
            plan,
            subscription_status,
            member_count,
            store_count,
            compliance: limits::check(plan, member_count, store_count, &self.catalogue),
            plan_limit_exceeded_time: current.and_then(|p| p.limit_exceeded_time),
        })
    }

    /// Emits `billing.plan_limit_exceeded` when the tenant is on Basic today, over a limit,
    /// and the current period has not signalled yet (a conditional update makes it once).
    pub(crate) async fn check_plan_limit(
        &self,
        tx: &Tx,
        tenant: TenantId,
        zone: Tz,
    ) -> Result<(), ServiceError> {
        let today = self.today(zone);
        let live = periods::live(tx, tenant, today).await?;
        let Some(current) = timeline::current(&live, today) else {
            return Ok(());
        };
        if current.plan != Plan::Basic || current.limit_exceeded_time.is_some() {
            return Ok(());
        }
        let members = counters::member_count(tx, tenant).await?;
        let stores = counters::open_store_count(tx, tenant).await?;
        let compliance = limits::check(Some(current.plan), members, stores, &self.catalogue);
        let Some(reason) = compliance.violation else {
            return Ok(());
        };
        let now = self.now();
        if periods::mark_limit_exceeded(tx, tenant, current.id, now).await? {
            emit(
                tx,
                events::plan_limit_exceeded(tenant, reason, members, stores, &compliance, now),
            )
            .await?;
            tracing::info!(tenant_id = %tenant, reason = reason.as_str(), "plan limit exceeded");
        }
        Ok(())
    }

    /// The zone of a tenant inside its transaction (the default for one billing does not
    /// know, e.g. usage arriving before registration).
    pub(crate) async fn zone_in(&self, tx: &Tx, tenant: TenantId) -> Result<Tz, ServiceError> {
        Ok(tenants::zone(tx, tenant)
            .await?
            .unwrap_or(self.default_zone))
    }
}
