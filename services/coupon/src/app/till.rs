//! At the till: validate a coupon against a basket, redeem it once (atomically, idempotent by
//! till transaction), and cancel redemptions on refund (the coupon comes back if still valid).
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId, Violations, db::is_unique_violation};
use uuid::Uuid;

use super::{
    CouponApp, CouponView, coupon_not_found, emit, now, parse_code, proven, template_not_found,
    violations_error,
};
use crate::{
    domain::{
        code::Code,
        coupon::{
            self, Basket, Coupon, CouponStatus, Redemption, RedemptionStatus, Rejection,
            TillContext,
        },
        template::Template,
    },
    events,
    store::{coupons, redemptions, templates},
};

/// What the till sends for Validate and Redeem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TillRequest {
    /// As typed or scanned.
    pub code: String,
    pub basket: Basket,
    /// When set, the coupon must be this member's.
    pub member_id: Option<Uuid>,
    /// Required to redeem; optional to validate (then stacking is checked too).
    pub pos_transaction_id: String,
}

/// The answer to Validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub coupon: CouponView,
    /// `Ok(discount)` or why it does not apply.
    pub outcome: Result<i64, Rejection>,
}

/// The answer to Redeem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub redemption: Redemption,
    pub coupon: CouponView,
    /// A retry of an earlier redemption by the same till transaction.
    pub replayed: bool,
}

/// The answer to CancelRedemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub redemptions: Vec<Redemption>,
    pub coupons: Vec<CouponView>,
}

/// The checked request.
struct Checked {
    code: Code,
    basket: Basket,
    member_id: Option<Uuid>,
    pos: Option<String>,
}

fn check(req: TillRequest, pos_required: bool) -> Result<Checked, ServiceError> {
    let mut v = Violations::new();
    let code = parse_code(&mut v, "code", &req.code);
    let mut basket = req.basket;
    basket.check("basket", &mut v);
    let pos = if pos_required || !req.pos_transaction_id.trim().is_empty() {
        Some(coupon::check_pos_transaction_id(
            &mut v,
            "pos_transaction_id",
            &req.pos_transaction_id,
        ))
    } else {
        None
    };
    if !v.is_empty() {
        return Err(violations_error(v));
    }
    Ok(Checked {
        code: proven(code)?,
        basket,
        member_id: req.member_id,
        pos,
    })
}

impl CouponApp {
    /// Whether the coupon applies to the basket and for how much; a coupon that does not
    /// apply is an answer (with the precise reason), not an error.
    pub async fn validate(
        &self,
        tenant: TenantId,
        req: TillRequest,
    ) -> Result<Validation, ServiceError> {
        let req = check(req, false)?;
        let tx = self.db.begin(tenant).await?;
        let coupon = coupons::get_by_code(&tx, tenant, req.code.as_str())
            .await?
            .ok_or_else(coupon_not_found)?;
        let template = templates::get_terms(&tx, tenant, coupon.template_id)
            .await?
            .ok_or_else(template_not_found)?;
        let in_pos = match req.pos.as_deref() {
            Some(p) => redemptions::in_transaction(&tx, tenant, p).await?,
            None => Vec::new(),
        };
        let ctx = till_context(req.member_id, coupon.id, &in_pos);
        let outcome = coupon::evaluate(&coupon, &template, &req.basket, &ctx, now(), self.zone);
        tx.commit().await?;
        Ok(Validation {
            coupon: CouponView {
                coupon,
                template_name: template.name,
            },
            outcome,
        })
    }

    /// Redeems the coupon for this till transaction: exactly once however many requests race
    /// (a conditional ISSUED → REDEEMED update decides), and a retry with the same
    /// `pos_transaction_id` answers with the first redemption.
    pub async fn redeem(
        &self,
        tenant: TenantId,
        req: TillRequest,
    ) -> Result<Redeemed, ServiceError> {
        let req = check(req, true)?;
        let pos = proven(req.pos.clone())?;
        match self.redeem_once(tenant, &req, &pos).await {
            Err(RedeemError::SameTransactionRaced) => {
                // The same till transaction redeemed this coupon concurrently and won: answer
                // with its redemption.
                let tx = self.db.begin(tenant).await?;
                let coupon = coupons::get_by_code(&tx, tenant, req.code.as_str())
                    .await?
                    .ok_or_else(coupon_not_found)?;
                let first = redemptions::find(&tx, tenant, &pos, coupon.id)
                    .await?
                    .ok_or_else(|| ServiceError::internal("a conflicting redemption vanished"))?;
                let view = self.views(&tx, tenant, vec![coupon]).await?.remove(0);
                tx.commit().await?;
                Ok(Redeemed {
                    redemption: first,
                    coupon: view,
                    replayed: true,
                })
            }
            Err(RedeemError::Service(e)) => Err(e),
            Ok(r) => Ok(r),
        }
    }

    async fn redeem_once(
        &self,
        tenant: TenantId,
        req: &Checked,
        pos: &str,
    ) -> Result<Redeemed, RedeemError> {
        let tx = self.db.begin(tenant).await?;
        let mut coupon = coupons::get_by_code(&tx, tenant, req.code.as_str())
            .await?
            .ok_or_else(coupon_not_found)?;
        let template = templates::get_terms(&tx, tenant, coupon.template_id)
            .await?
            .ok_or_else(template_not_found)?;
        let in_pos = redemptions::in_transaction(&tx, tenant, pos).await?;
        if let Some(first) = in_pos.iter().find(|r| r.coupon_id == coupon.id) {
            let first = first.clone();
            return Ok(self.replay(tx, coupon, template, first).await?);
        }
        let at = now();
        let ctx = till_context(req.member_id, coupon.id, &in_pos);
        let discount = coupon::evaluate(&coupon, &template, &req.basket, &ctx, at, self.zone)
            .map_err(Rejection::into_error)?;
        if !coupons::mark_redeemed(&tx, tenant, coupon.id, at).await? {
            // Another request won the coupon between our read and our update (on PostgreSQL
            // we waited for its lock, then found the row no longer ISSUED). Read what it did.
            let fresh = coupons::get(&tx, tenant, coupon.id)
                .await?
                .ok_or_else(coupon_not_found)?;
            let in_pos = redemptions::in_transaction(&tx, tenant, pos).await?;
            if let Some(first) = in_pos.iter().find(|r| r.coupon_id == coupon.id) {
                let first = first.clone();
                return Ok(self.replay(tx, fresh, template, first).await?);
            }
            let ctx = till_context(req.member_id, coupon.id, &in_pos);
            let err = match coupon::evaluate(&fresh, &template, &req.basket, &ctx, now(), self.zone)
            {
                Err(rejection) => rejection.into_error(),
                Ok(_) => changed_concurrently(),
            };
            return Err(err.into());
        }
        let redemption = Redemption {
            id: Uuid::now_v7(),
            coupon_id: coupon.id,
            template_id: template.id,
            member_id: coupon.member_id,
            pos_transaction_id: pos.to_string(),
            store_code: req.basket.store_code.clone(),
            amount_krw: req.basket.amount_krw,
            discount_krw: discount,
            stackable: template.stackable,
            status: RedemptionStatus::Redeemed,
            redeem_time: at,
            cancel_time: None,
        };
        if let Err(e) = redemptions::insert(&tx, tenant, &redemption).await {
            return Err(if is_unique_violation(&e) {
                RedeemError::SameTransactionRaced
            } else {
                ServiceError::from(e).into()
            });
        }
        emit(&tx, events::coupon_redeemed(tenant, &redemption)).await?;
        tx.commit().await?;
        coupon.status = CouponStatus::Redeemed;
        coupon.redeem_time = Some(at);
        tracing::debug!(
            tenant_id = %tenant,
            coupon_id = %coupon.id,
            redemption_id = %redemption.id,
            "coupon redeemed"
        );
        Ok(Redeemed {
            redemption,
            coupon: CouponView {
                coupon,
                template_name: template.name,
            },
            replayed: false,
        })
    }

    async fn replay(
        &self,
        tx: Tx,
        coupon: Coupon,
        template: Template,
        first: Redemption,
    ) -> Result<Redeemed, ServiceError> {
        tx.commit().await?;
        Ok(Redeemed {
            redemption: first,
            coupon: CouponView {
                coupon,
                template_name: template.name,
            },
            replayed: true,
        })
    }

    /// Cancels the redemptions of till transaction `pos` (of one coupon when `code` is given):
    /// each coupon goes back to ISSUED if still within its validity, else EXPIRED. Cancelling
    /// again answers with the same cancelled redemptions.
    pub async fn cancel_redemption(
        &self,
        tenant: TenantId,
        pos_transaction_id: &str,
        code: &str,
        reason: &str,
    ) -> Result<Cancelled, ServiceError> {
        let mut v = Violations::new();
        let pos =
            coupon::check_pos_transaction_id(&mut v, "pos_transaction_id", pos_transaction_id);
        let code = if code.trim().is_empty() {
            None
        } else {
            parse_code(&mut v, "code", code)
        };
        let reason = reason.trim();
        v.check(
            reason.chars().count() <= 200,
            "reason",
            "사유는 200자 이하입니다 (must be at most 200 characters)",
        );
        if !v.is_empty() {
            return Err(violations_error(v));
        }
        let tx = self.db.begin(tenant).await?;
        let coupon_id = match &code {
            Some(c) => Some(
                coupons::get_by_code(&tx, tenant, c.as_str())
                    .await?
                    .ok_or_else(coupon_not_found)?
                    .id,
            ),
            None => None,
        };
        let mut found =
            redemptions::in_transaction_for_update(&tx, tenant, &pos, coupon_id).await?;
        if found.is_empty() {
            return Err(ServiceError::not_found(
                "이 거래에서 사용된 쿠폰이 없습니다 (no coupon redemption for this POS transaction)",
            ));
        }
        let at = now();
        let mut coupon_rows = Vec::with_capacity(found.len());
        for r in found.iter_mut() {
            if r.status == RedemptionStatus::Redeemed
                && redemptions::cancel(&tx, tenant, r.id, reason, at).await?
            {
                r.status = RedemptionStatus::Cancelled;
                r.cancel_time = Some(at);
                let c = coupons::get(&tx, tenant, r.coupon_id)
                    .await?
                    .ok_or_else(coupon_not_found)?;
                let restored = at <= c.expire_time;
                let to = if restored {
                    CouponStatus::Issued
                } else {
                    CouponStatus::Expired
                };
                coupons::restore(&tx, tenant, c.id, to, at).await?;
                emit(&tx, events::redemption_cancelled(tenant, r, restored, at)).await?;
                if !restored {
                    emit(&tx, events::coupon_expired(tenant, &c)).await?;
                }
            }
            coupon_rows.push(
                coupons::get(&tx, tenant, r.coupon_id)
                    .await?
                    .ok_or_else(coupon_not_found)?,
            );
        }
        let views = self.views(&tx, tenant, coupon_rows).await?;
        tx.commit().await?;
        Ok(Cancelled {
            redemptions: found,
            coupons: views,
        })
    }
}

/// The coupon changed between two reads of one request in a way no rule explains (a
/// cancellation raced the redemption): the till retries.
fn changed_concurrently() -> ServiceError {
    ServiceError::Unavailable(
        "쿠폰 상태가 바뀌었습니다; 다시 시도하세요 (the coupon changed concurrently; retry)".into(),
    )
}

/// Who asks and what the same till transaction already redeemed (other coupons, still
/// redeemed), for the stacking rule.
fn till_context(member_id: Option<Uuid>, coupon_id: Uuid, in_pos: &[Redemption]) -> TillContext {
    TillContext {
        member_id,
        redeemed_in_transaction: in_pos
            .iter()
            .filter(|r| r.coupon_id != coupon_id && r.status == RedemptionStatus::Redeemed)
            .map(|r| r.stackable)
            .collect(),
    }
}

enum RedeemError {
    SameTransactionRaced,
    Service(ServiceError),
}

impl From<ServiceError> for RedeemError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<sea_orm::DbErr> for RedeemError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Service(e.into())
    }
}
