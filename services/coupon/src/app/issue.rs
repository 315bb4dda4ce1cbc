//! Issuing: one path (`issue_in`) for every way a coupon comes to exist (staff, campaign,
//! first-come claim, welcome, birthday, bulk), holding the template's quantity and the
//! per-member limit exactly under any concurrency; plus coupon lookups and the wallet.
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId, Violations,
    db::is_unique_violation,
    idempotency::{self, Claim, fingerprint},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{
    CouponApp,
    claims::{ClaimForm, Reply},
    coupon_not_found, emit, from_json, json, member_withdrawn, now, parse_code, proven,
    template_not_found, violations_error,
};
use crate::{
    domain::{
        code::Code,
        coupon::{Coupon, CouponStatus, WalletView},
        member::MemberState,
        template::{self, IssueMethod},
    },
    events,
    store::{coupons, templates},
};

const ISSUE_SCOPE: &str = "coupon.issue";
pub(super) const CLAIM_SCOPE: &str = "coupon.claim";
/// With 2^65 codes per tenant a second collision in a row is absurd; the bound only keeps a
/// bug from looping forever.
const MAX_CODE_ATTEMPTS: usize = 5;

/// A coupon with its template's name, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponView {
    pub coupon: Coupon,
    pub template_name: String,
}

/// The canonical request of an idempotent issue or claim, for its fingerprint.
#[derive(Serialize)]
pub(super) struct IssueRequest {
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub method: IssueMethod,
}

/// Where an issued coupon comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IssueOrder {
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub method: IssueMethod,
    pub bulk_issue_id: Option<Uuid>,
}

impl CouponApp {
    /// First come, first served: issues one coupon of a CLAIM template to `member_id` unless
    /// the template is sold out (`ResourceExhausted` COUPON_SOLD_OUT) or the member reached
    /// the per-member limit (`AlreadyExists` COUPON_LIMIT_REACHED). Exact under any number of
    /// concurrent claims; see `issue_in`. Concurrent claims of a tenant are written together
    /// (see `claims`); what a batch leaves is done here one by one.
    pub async fn claim(
        &self,
        tenant: TenantId,
        template_id: Uuid,
        member_id: Uuid,
        idempotency_key: &str,
    ) -> Result<CouponView, ServiceError> {
        let form = ClaimForm {
            template_id,
            member_id,
            idempotency_key: idempotency_key.to_string(),
        };
        match self.claims.submit(tenant, form).await? {
            Reply::Claimed(view) => return Ok(*view),
            Reply::Refused(e) => return Err(e),
            Reply::Single => {}
        }
        self.issue_idempotent(
            tenant,
            CLAIM_SCOPE,
            template_id,
            member_id,
            IssueMethod::Claim,
            idempotency_key,
        )
        .await
    }

    /// Staff (ADMIN) or a campaign (CAMPAIGN) issues one coupon to one member, under the same
    /// quantity and per-member limit as claims.
    pub async fn issue(
        &self,
        tenant: TenantId,
        template_id: Uuid,
        member_id: Uuid,
        method: IssueMethod,
        idempotency_key: &str,
    ) -> Result<CouponView, ServiceError> {
        if !method.is_manual() {
            return Err(ServiceError::invalid(
                "issue_method",
                "ADMIN 또는 CAMPAIGN만 지정할 수 있습니다 (must be ADMIN or CAMPAIGN)",
            ));
        }
        self.issue_idempotent(
            tenant,
            ISSUE_SCOPE,
            template_id,
            member_id,
            method,
            idempotency_key,
        )
        .await
    }

    async fn issue_idempotent(
        &self,
        tenant: TenantId,
        scope: &str,
        template_id: Uuid,
        member_id: Uuid,
        method: IssueMethod,
        idempotency_key: &str,
    ) -> Result<CouponView, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if !idempotency_key.is_empty() {
            let fp = fingerprint(&json(&IssueRequest {
                template_id,
                member_id,
                method,
            })?);
            if let Claim::Replay(stored) =
                idempotency::claim(&tx, tenant, scope, idempotency_key, &fp).await?
            {
                tx.commit().await?;
                return from_json(&stored);
            }
        }
        let order = IssueOrder {
            template_id,
            member_id,
            method,
            bulk_issue_id: None,
        };
        let view = self.issue_in(&tx, tenant, order, now()).await?;
        idempotency::complete(&tx, tenant, scope, idempotency_key, &json(&view)?).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Issues one coupon inside the caller's transaction. On error the caller must roll the
    /// transaction (or savepoint) back: rows may have been written before the failing check.
    ///
    /// Concurrency, on both backends:
    /// - the quantity is held by `templates::take_one`, a conditional increment of one of the
    ///   template's counter shards in this same transaction (no shard with room → sold out);
    ///   each shard stays within its quota and the quotas sum to `total_quantity`;
    /// - the per-member limit is held by the unique (template, member, claim slot) index: the
    ///   slot is the member's holding + 1, so a concurrent duplicate computes the same slot and
    ///   its insert fails (→ COUPON_LIMIT_REACHED, rolled back, quantity not consumed);
    /// - the coupon row is inserted *before* the counter update: a shard row is then locked
    ///   only from the update to the commit, and a duplicate that waits on another's
    ///   uncommitted slot never holds a shard lock (no deadlock between the two).
    ///
    /// On SQLite the single connection serialises all of it.
    pub(crate) async fn issue_in(
        &self,
        tx: &Tx,
        tenant: TenantId,
        order: IssueOrder,
        at: DateTime<Utc>,
    ) -> Result<CouponView, ServiceError> {
        let ctx = templates::load_for_issue(tx, tenant, order.template_id, order.member_id)
            .await?
            .ok_or_else(template_not_found)?;
        // The coupon service owns no member data: it trusts its projection of the member
        // service's events. A member the projection does not know yet is accepted (the
        // projection may lag a fresh join by milliseconds, and a coupon for an unknown id is
        // harmless); one it knows as withdrawn is refused.
        if ctx.member == Some(MemberState::Withdrawn) {
            return Err(member_withdrawn());
        }
        let t = &ctx.template;
        t.check_issuable(order.method, at, self.zone)?;
        if t.sold_out() {
            // A cheap early answer from the read; the conditional update below is the guard.
            return Err(template::sold_out(t.total_quantity));
        }
        let slot = t.next_claim_slot(ctx.held)?;
        let (valid_from_time, expire_time) = t.validity.window(at, self.zone);
        let mut coupon = Coupon {
            id: Uuid::now_v7(),
            template_id: t.id,
            member_id: order.member_id,
            code: String::new(),
            status: CouponStatus::Issued,
            issue_method: order.method,
            issue_time: at,
            valid_from_time,
            expire_time,
            redeem_time: None,
            bulk_issue_id: order.bulk_issue_id,
        };
        let mut inserted = false;
        for attempt in 1..=MAX_CODE_ATTEMPTS {
            coupon.code = Code::generate(&mut OsRng).into_string();
            match coupons::insert(tx, tenant, &coupon, slot).await {
                Ok(true) => {
                    inserted = true;
                    break;
                }
                Ok(false) => {
                    tracing::warn!(tenant_id = %tenant, attempt, "coupon code collision; drawing another");
                }
                Err(e) if is_unique_violation(&e) => {
                    return Err(template::limit_reached(t.per_member_limit.unwrap_or(1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !inserted {
            return Err(ServiceError::internal(format!(
                "no free coupon code after {MAX_CODE_ATTEMPTS} attempts"
            )));
        }
        emit(tx, events::coupon_issued(tenant, &coupon)).await?;
        if !templates::take_one(tx, tenant, t.id, ctx.shards).await? {
            // Sold out or stopped since the read: say which.
            let fresh = templates::get(tx, tenant, t.id)
                .await?
                .ok_or_else(template_not_found)?;
            fresh.check_issuable(order.method, at, self.zone)?;
            return Err(template::sold_out(fresh.total_quantity));
        }
        Ok(CouponView {
            coupon,
            template_name: t.name.clone(),
        })
    }

    /// A coupon by id.
    pub async fn get_coupon(&self, tenant: TenantId, id: Uuid) -> Result<CouponView, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let c = coupons::get(&tx, tenant, id)
            .await?
            .ok_or_else(coupon_not_found)?;
        let view = self.views(&tx, tenant, vec![c]).await?.remove(0);
        tx.commit().await?;
        Ok(view)
    }

    /// A coupon by its typed or scanned code (case, hyphens and Crockford aliases forgiven;
    /// a wrong check character is `InvalidArgument` before any lookup).
    pub async fn find_coupon_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<CouponView, ServiceError> {
        let mut v = Violations::new();
        let code = parse_code(&mut v, "code", code);
        if !v.is_empty() {
            return Err(violations_error(v));
        }
        let code = proven(code)?;
        let tx = self.db.begin(tenant).await?;
        let c = coupons::get_by_code(&tx, tenant, code.as_str())
            .await?
            .ok_or_else(coupon_not_found)?;
        let view = self.views(&tx, tenant, vec![c]).await?.remove(0);
        tx.commit().await?;
        Ok(view)
    }

    /// One page of a member's wallet: usable, used, expired, or all.
    pub async fn list_member_coupons(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        view: WalletView,
        page: PageRequest,
    ) -> Result<(Vec<CouponView>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = coupons::list_for_member(&tx, tenant, member_id, view, now(), &page).await?;
        let (rows, token) = page.finish(rows, |c| c.id);
        let views = self.views(&tx, tenant, rows).await?;
        tx.commit().await?;
        Ok((views, token))
    }

    /// Names the coupons' templates (one query for the page).
    pub(crate) async fn views(
        &self,
        tx: &Tx,
        tenant: TenantId,
        coupons: Vec<Coupon>,
    ) -> Result<Vec<CouponView>, ServiceError> {
        let mut ids: Vec<Uuid> = coupons.iter().map(|c| c.template_id).collect();
        ids.sort();
        ids.dedup();
        let templates = templates::by_ids(tx, tenant, &ids).await?;
        Ok(coupons
            .into_iter()
            .map(|c| CouponView {
                template_name: templates
                    .iter()
                    .find(|t| t.id == c.template_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                coupon: c,
            })
            .collect())
    }
}
