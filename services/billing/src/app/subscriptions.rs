//! Subscription use cases: subscribe, change plan (at once with day-based proration, or from
//! the next cycle), suspend, resume, cancel, read. Each locks the tenant's subscription row, so
//! concurrent changes of one tenant apply one after the other.
use chrono::NaiveDate;
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{BillingApp, TenantStatus, emit};
use crate::{
    domain::{
        catalogue::{ModuleFee, Plan, PlanChoice},
        month::YearMonth,
        subscription::{
            self, ChangeTiming, Lifecycle, MAX_SUSPEND_REASON_CHARS, Subscription,
            SubscriptionStatus,
        },
        timeline::{self, PlanPeriod, TimelineError},
    },
    events,
    store::{periods, subscriptions},
};

/// A subscription with the plan in force and any scheduled change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub subscription: Subscription,
    /// In force today, or the last one of a cancelled subscription.
    pub plan: Plan,
    pub module_fees: Vec<ModuleFee>,
    /// A change from the next cycle, if one is scheduled.
    pub scheduled: Option<PlanPeriod>,
}

pub(crate) async fn view_of(
    tx: &Tx,
    tenant: TenantId,
    subscription: Subscription,
    today: NaiveDate,
) -> Result<SubscriptionView, ServiceError> {
    let live = periods::live(tx, tenant, today).await?;
    let shown = match timeline::current(&live, today) {
        Some(p) => Some(p.clone()),
        None => periods::latest(tx, tenant).await?,
    }
    .ok_or_else(|| {
        ServiceError::internal(format!(
            "tenant {tenant}: a subscription without plan periods"
        ))
    })?;
    Ok(SubscriptionView {
        subscription,
        plan: shown.plan,
        module_fees: shown.module_fees,
        scheduled: timeline::scheduled(&live, today).cloned(),
    })
}

fn not_subscribed() -> ServiceError {
    ServiceError::precondition(
        "NOT_SUBSCRIBED",
        "구독이 없습니다. 먼저 구독하세요 (the tenant has no subscription; subscribe first)",
    )
}

fn timeline_error(e: TimelineError) -> ServiceError {
    match e {
        TimelineError::Unchanged => ServiceError::precondition(
            "PLAN_UNCHANGED",
            "현재와 같은 요금제입니다 (the plan and fees are the ones in force)",
        ),
        TimelineError::NoCurrentPeriod => not_subscribed(),
    }
}

impl BillingApp {
    /// Starts a subscription today (tenant zone). A tenant with a live subscription is
    /// `ALREADY_EXISTS` (`ALREADY_SUBSCRIBED`); after a cancellation it may subscribe again.
    pub async fn subscribe(
        &self,
        tenant: TenantId,
        choice: PlanChoice,
    ) -> Result<SubscriptionView, ServiceError> {
        let (tx, t) = self.begin_known(tenant).await?;
        let now = self.now();
        let today = self.today(t.time_zone);
        let sub = Subscription {
            id: Uuid::now_v7(),
            status: SubscriptionStatus::Active,
            start_date: today,
            end_date: None,
            suspend_reason: None,
            created_time: now,
            updated_time: now,
        };
        let already = || {
            ServiceError::already_exists(
                "ALREADY_SUBSCRIBED",
                "이미 구독 중입니다. 요금제 변경을 이용하세요 (already subscribed; use ChangePlan)",
            )
        };
        match subscriptions::get_for_update(&tx, tenant).await? {
            Some(s) if s.status != SubscriptionStatus::Cancelled => return Err(already()),
            Some(_) => {
                // Cancelled: the old plan's last day may be today; the new one takes it.
                let live = periods::live(&tx, tenant, today).await?;
                let kept = timeline::make_room(live.clone(), today);
                periods::replace(&tx, tenant, &live, &kept, now).await?;
                subscriptions::update(&tx, tenant, &sub).await?;
            }
            None => {
                if !subscriptions::insert(&tx, tenant, &sub).await? {
                    return Err(already());
                }
            }
        }
        let period = PlanPeriod::new(
            Uuid::now_v7(),
            &choice,
            self.catalogue.basic_monthly_fee_krw,
            today,
        );
        periods::replace(&tx, tenant, &[], std::slice::from_ref(&period), now).await?;
        emit(
            &tx,
            events::subscription_changed(tenant, &sub, "SUBSCRIBED", choice.plan, today, now),
        )
        .await?;
        self.check_plan_limit(&tx, tenant, t.time_zone).await?;
        let view = view_of(&tx, tenant, sub, today).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, plan = choice.plan.as_str(), "subscribed");
        Ok(view)
    }

    /// Changes the plan at once (today is on the new plan; this month is prorated by days) or
    /// from the first day of next month. A scheduled change is replaced.
    pub async fn change_plan(
        &self,
        tenant: TenantId,
        choice: PlanChoice,
        timing: ChangeTiming,
    ) -> Result<SubscriptionView, ServiceError> {
        let (tx, t) = self.begin_known(tenant).await?;
        let now = self.now();
        let today = self.today(t.time_zone);
        let mut sub = subscriptions::get_for_update(&tx, tenant)
            .await?
            .ok_or_else(not_subscribed)?;
        subscription::allow(sub.status, Lifecycle::ChangePlan)?;
        let live = periods::live(&tx, tenant, today).await?;
        let new = PlanPeriod::new(
            Uuid::now_v7(),
            &choice,
            self.catalogue.basic_monthly_fee_krw,
            today,
        );
        let (changed, change, effective) = match timing {
            ChangeTiming::Immediate => (
                timeline::change_now(live.clone(), new, today),
                "PLAN_CHANGED",
                today,
            ),
            ChangeTiming::NextCycle => {
                let next = YearMonth::of(today).end_exclusive();
                (
                    timeline::change_next_cycle(live.clone(), new, today, next),
                    "PLAN_CHANGE_SCHEDULED",
                    next,
                )
            }
        };
        let changed = changed.map_err(timeline_error)?;
        periods::replace(&tx, tenant, &live, &changed, now).await?;
        sub.updated_time = now;
        subscriptions::update(&tx, tenant, &sub).await?;
        emit(
            &tx,
            events::subscription_changed(tenant, &sub, change, choice.plan, effective, now),
        )
        .await?;
        self.check_plan_limit(&tx, tenant, t.time_zone).await?;
        let view = view_of(&tx, tenant, sub, today).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, plan = choice.plan.as_str(), change, %effective, "plan changed");
        Ok(view)
    }

    /// Pauses the service; billing continues (the contract does).
    pub async fn suspend(
        &self,
        tenant: TenantId,
        reason: &str,
    ) -> Result<SubscriptionView, ServiceError> {
        let reason = reason.trim();
        if reason.chars().count() > MAX_SUSPEND_REASON_CHARS {
            return Err(ServiceError::invalid(
                "reason",
                format!(
                    "{MAX_SUSPEND_REASON_CHARS}자 이하로 입력하세요 (at most {MAX_SUSPEND_REASON_CHARS} characters)"
                ),
            ));
        }
        let reason = (!reason.is_empty()).then(|| reason.to_string());
        self.lifecycle(tenant, Lifecycle::Suspend, reason).await
    }

    pub async fn resume(&self, tenant: TenantId) -> Result<SubscriptionView, ServiceError> {
        self.lifecycle(tenant, Lifecycle::Resume, None).await
    }

    /// Ends the subscription today: today is billed, scheduled changes are dropped.
    pub async fn cancel(&self, tenant: TenantId) -> Result<SubscriptionView, ServiceError> {
        self.lifecycle(tenant, Lifecycle::Cancel, None).await
    }

    async fn lifecycle(
        &self,
        tenant: TenantId,
        action: Lifecycle,
        reason: Option<String>,
    ) -> Result<SubscriptionView, ServiceError> {
        let (tx, t) = self.begin_known(tenant).await?;
        let now = self.now();
        let today = self.today(t.time_zone);
        let mut sub = subscriptions::get_for_update(&tx, tenant)
            .await?
            .ok_or_else(not_subscribed)?;
        subscription::allow(sub.status, action)?;
        let change = match action {
            Lifecycle::Suspend => {
                sub.status = SubscriptionStatus::Suspended;
                sub.suspend_reason = reason;
                "SUSPENDED"
            }
            Lifecycle::Resume => {
                sub.status = SubscriptionStatus::Active;
                sub.suspend_reason = None;
                "RESUMED"
            }
            Lifecycle::Cancel => {
                let live = periods::live(&tx, tenant, today).await?;
                let ended = timeline::cancel(live.clone(), today).map_err(timeline_error)?;
                periods::replace(&tx, tenant, &live, &ended, now).await?;
                sub.status = SubscriptionStatus::Cancelled;
                sub.end_date = Some(today);
                sub.suspend_reason = None;
                "CANCELLED"
            }
            Lifecycle::ChangePlan => {
                return Err(ServiceError::internal(
                    "plan changes go through change_plan",
                ));
            }
        };
        sub.updated_time = now;
        subscriptions::update(&tx, tenant, &sub).await?;
        let view = view_of(&tx, tenant, sub.clone(), today).await?;
        emit(
            &tx,
            events::subscription_changed(tenant, &sub, change, view.plan, today, now),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, change, "subscription lifecycle changed");
        Ok(view)
    }

    /// The tenant's own subscription (if any) and status. Works for a tenant billing has
    /// not registered: it then has no subscription and the default zone.
    pub async fn get_subscription(
        &self,
        tenant: TenantId,
    ) -> Result<(Option<SubscriptionView>, TenantStatus), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let zone = self.zone_in(&tx, tenant).await?;
        let today = self.today(zone);
        let view = match subscriptions::get(&tx, tenant).await? {
            Some(s) => Some(view_of(&tx, tenant, s, today).await?),
            None => None,
        };
        let status = self.status_in(&tx, tenant, zone).await?;
        tx.commit().await?;
        Ok((view, status))
    }
}
