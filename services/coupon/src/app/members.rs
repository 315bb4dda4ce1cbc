//! The member projection: `member.joined` records the member (and issues every ACTIVE
//! welcome coupon in the same transaction), `member.withdrawn` marks them, so issuing can
//! refuse withdrawn members without reading the member service's tables; `member.erased`
//! drops the birth month-day it copied.
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{CouponApp, issue::IssueOrder, now};
use crate::{
    domain::{member::parse_month_day, template::IssueMethod},
    store::{members, templates, tenants},
};

impl CouponApp {
    /// Projects a joined member and issues the welcome coupons, inside the consumer's
    /// transaction (which also records the event as processed). A welcome template that
    /// cannot issue (sold out, paused since) is skipped for this member, not retried.
    pub(crate) async fn member_joined(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
        birth_month_day: &str,
        join_time: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let at = now();
        let birthday = parse_month_day(birth_month_day).map(|_| birth_month_day.to_string());
        tenants::register(tx, tenant, at).await?;
        if !members::joined(tx, tenant, member_id, birthday, join_time, at).await? {
            // Seen before (or already withdrawn): the welcome coupons were decided then.
            return Ok(());
        }
        for template in templates::active_with_method(tx, tenant, IssueMethod::OnJoin).await? {
            let order = IssueOrder {
                template_id: template.id,
                member_id,
                method: IssueMethod::OnJoin,
                bulk_issue_id: None,
            };
            if let Err(e) = self.issue_in_savepoint(tx, tenant, order).await? {
                tracing::info!(
                    tenant_id = %tenant, template_id = %template.id, %member_id, error = %e,
                    "welcome coupon not issued"
                );
            }
        }
        Ok(())
    }

    pub(crate) async fn member_withdrawn(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        members::withdrawn(tx, tenant, member_id, now()).await?;
        Ok(())
    }

    pub(crate) async fn member_erased(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        members::erased(tx, tenant, member_id, now()).await?;
        Ok(())
    }
}
