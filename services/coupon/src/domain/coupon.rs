//! Issued coupons and the till's question "does this coupon apply to this basket, and for how
//! much?": status, owner, validity window, store, categories, minimum purchase and stacking,
//! checked in that order so the answer names the most decisive reason.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use spharos_kit::{
    ServiceError, Violations,
    time::{format_korean, format_krw},
};
use uuid::Uuid;

use super::{
    reasons,
    template::{IssueMethod, Template},
};

pub const MAX_POS_TRANSACTION_ID_CHARS: usize = 100;
pub const MAX_BASKET_ITEMS: usize = 1_000;
/// The largest basket the till may send (10 billion won): keeps sums far from overflow.
pub const MAX_BASKET_KRW: i64 = 10_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponStatus {
    Issued,
    Redeemed,
    Expired,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "ISSUED",
            Self::Redeemed => "REDEEMED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ISSUED" => Some(Self::Issued),
            "REDEEMED" => Some(Self::Redeemed),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// One coupon held by one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub id: Uuid,
    pub template_id: Uuid,
    pub member_id: Uuid,
    /// Canonical code (see `domain::code`).
    pub code: String,
    pub status: CouponStatus,
    pub issue_method: IssueMethod,
    pub issue_time: DateTime<Utc>,
    pub valid_from_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub redeem_time: Option<DateTime<Utc>>,
    pub bulk_issue_id: Option<Uuid>,
}

impl Coupon {
    /// The status a reader should see: an ISSUED coupon past its expiry is EXPIRED even
    /// before the expiry job has marked it.
    pub fn effective_status(&self, now: DateTime<Utc>) -> CouponStatus {
        if self.status == CouponStatus::Issued && now > self.expire_time {
            CouponStatus::Expired
        } else {
            self.status
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionStatus {
    Redeemed,
    Cancelled,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redeemed => "REDEEMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "REDEEMED" => Some(Self::Redeemed),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// One use of a coupon in one till transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub id: Uuid,
    pub coupon_id: Uuid,
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub pos_transaction_id: String,
    pub store_code: String,
    pub amount_krw: i64,
    pub discount_krw: i64,
    /// The template's stackability when redeemed.
    pub stackable: bool,
    pub status: RedemptionStatus,
    pub redeem_time: DateTime<Utc>,
    pub cancel_time: Option<DateTime<Utc>>,
}

/// Which part of a member's wallet to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletView {
    All,
    Usable,
    Used,
    Expired,
}

/// One line of a till basket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasketItem {
    pub sku: String,
    pub category: String,
    pub amount_krw: i64,
}

/// What the till is selling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basket {
    pub amount_krw: i64,
    pub store_code: String,
    pub items: Vec<BasketItem>,
}

impl Basket {
    /// Checks the basket's numbers; `field` is its path (`basket`).
    pub fn check(&mut self, field: &str, v: &mut Violations) {
        self.store_code = self.store_code.trim().to_string();
        v.check(
            (1..=MAX_BASKET_KRW).contains(&self.amount_krw),
            &format!("{field}.amount_krw"),
            "구매 금액은 1원 이상이어야 합니다 (must be 1..=10,000,000,000 KRW)",
        );
        v.check(
            !self.store_code.is_empty() && self.store_code.chars().count() <= 20,
            &format!("{field}.store_code"),
            "매장 코드는 1~20자입니다 (is required, at most 20 characters)",
        );
        if self.items.len() > MAX_BASKET_ITEMS {
            v.add(
                &format!("{field}.items"),
                "최대 1000개 품목입니다 (at most 1000 items)",
            );
            return;
        }
        let mut sum: i64 = 0;
        let mut items_ok = true;
        for (i, item) in self.items.iter_mut().enumerate() {
            item.category = item.category.trim().to_string();
            if !(0..=MAX_BASKET_KRW).contains(&item.amount_krw) {
                v.add(
                    &format!("{field}.items[{i}].amount_krw"),
                    "품목 금액은 0원 이상입니다 (must be 0..=10,000,000,000 KRW)",
                );
                items_ok = false;
            } else {
                sum = sum.saturating_add(item.amount_krw);
            }
        }
        if items_ok && sum > self.amount_krw && self.amount_krw > 0 {
            v.add(
                &format!("{field}.items"),
                format!(
                    "품목 합계가 구매 금액보다 큽니다 (items sum to {}, more than amount_krw {})",
                    format_krw(sum),
                    format_krw(self.amount_krw)
                ),
            );
        }
    }
}

/// Why a coupon does not apply (a stable reason and a Korean-first message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }

    /// As the error `RedeemCoupon` answers with.
    pub fn into_error(self) -> ServiceError {
        ServiceError::precondition(self.reason, self.message)
    }
}

/// Who asks and what else is in the till transaction.
#[derive(Debug, Clone, Default)]
pub struct TillContext {
    /// When the till named the member, the coupon must be theirs.
    pub member_id: Option<Uuid>,
    /// `stackable` of every coupon already redeemed in this till transaction.
    pub redeemed_in_transaction: Vec<bool>,
}

/// The discount `coupon` (of `template`) gives on `basket` at `now`, or why it does not apply.
pub fn evaluate(
    coupon: &Coupon,
    template: &Template,
    basket: &Basket,
    ctx: &TillContext,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<i64, Rejection> {
    match coupon.status {
        CouponStatus::Redeemed => {
            let when = coupon
                .redeem_time
                .map(|t| format!(" at {}", format_korean(t, zone)))
                .unwrap_or_default();
            return Err(Rejection::new(
                reasons::COUPON_ALREADY_REDEEMED,
                format!("이미 사용된 쿠폰입니다 (coupon already redeemed{when})"),
            ));
        }
        CouponStatus::Expired => return Err(expired(coupon, zone)),
        CouponStatus::Issued => {}
    }
    if let Some(m) = ctx.member_id
        && m != coupon.member_id
    {
        return Err(Rejection::new(
            reasons::COUPON_NOT_OWNED,
            "다른 회원의 쿠폰입니다 (the coupon belongs to another member)".into(),
        ));
    }
    if now > coupon.expire_time {
        return Err(expired(coupon, zone));
    }
    if now < coupon.valid_from_time {
        return Err(Rejection::new(
            reasons::COUPON_NOT_YET_VALID,
            format!(
                "아직 사용 기간이 아닙니다 (coupon usable from {})",
                format_korean(coupon.valid_from_time, zone)
            ),
        ));
    }
    if !template.store_codes.is_empty()
        && !template.store_codes.iter().any(|s| s == &basket.store_code)
    {
        return Err(Rejection::new(
            reasons::STORE_NOT_APPLICABLE,
            format!(
                "이 매장에서는 사용할 수 없는 쿠폰입니다 (not valid at store {}; valid at {})",
                basket.store_code,
                template.store_codes.join(", ")
            ),
        ));
    }
    let eligible = if template.categories.is_empty() {
        basket.amount_krw
    } else {
        let sum: i64 = basket
            .items
            .iter()
            .filter(|i| template.categories.iter().any(|c| c == &i.category))
            .map(|i| i.amount_krw)
            .sum();
        if sum == 0 {
            return Err(Rejection::new(
                reasons::CATEGORY_NOT_APPLICABLE,
                format!(
                    "적용 대상 상품이 없습니다 (no basket item in the coupon's categories: {})",
                    template.categories.join(", ")
                ),
            ));
        }
        sum
    };
    if eligible < template.min_purchase_krw {
        let scope = if template.categories.is_empty() {
            "basket"
        } else {
            "eligible items"
        };
        return Err(Rejection::new(
            reasons::MIN_PURCHASE_NOT_MET,
            format!(
                "{} 이상 구매 시 사용할 수 있습니다 (minimum purchase {} not met: {scope} {})",
                format_krw(template.min_purchase_krw),
                format_krw(template.min_purchase_krw),
                format_krw(eligible)
            ),
        ));
    }
    let others = &ctx.redeemed_in_transaction;
    if !others.is_empty() && (!template.stackable || others.iter().any(|s| !s)) {
        return Err(Rejection::new(
            reasons::COUPON_NOT_STACKABLE,
            "다른 쿠폰과 함께 사용할 수 없습니다 (not combinable with the coupon(s) already used in this transaction)"
                .into(),
        ));
    }
    Ok(template.discount.apply(eligible))
}

fn expired(coupon: &Coupon, zone: Tz) -> Rejection {
    Rejection::new(
        reasons::COUPON_EXPIRED,
        format!(
            "사용 기간이 지난 쿠폰입니다 (coupon expired at {})",
            format_korean(coupon.expire_time, zone)
        ),
    )
}

/// A till transaction id: required, trimmed, at most 100 characters.
pub fn check_pos_transaction_id(v: &mut Violations, field: &str, id: &str) -> String {
    let id = id.trim();
    v.check(
        !id.is_empty() && id.chars().count() <= MAX_POS_TRANSACTION_ID_CHARS,
        field,
        "POS 거래 번호는 1~100자입니다 (is required, at most 100 characters)",
    );
    id.to_string()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use spharos_kit::time::DEFAULT_TIME_ZONE as SEOUL;

    use super::*;
    use crate::domain::{discount::Discount, template::TemplateStatus, validity::Validity};

    fn template() -> Template {
        Template {
            id: Uuid::now_v7(),
            name: "10% 할인".into(),
            description: String::new(),
            discount: Discount::Percent {
                rate_bp: 1_000,
                max_discount_krw: Some(5_000),
            },
            min_purchase_krw: 20_000,
            store_codes: vec!["GN001".into()],
            categories: vec![],
            validity: Validity::DaysFromIssue(30),
            total_quantity: None,
            issued_count: 0,
            per_member_limit: Some(1),
            issue_methods: vec![IssueMethod::Claim],
            stackable: false,
            status: TemplateStatus::Active,
            created_time: Utc::now(),
            updated_time: Utc::now(),
        }
    }

    fn coupon(now: DateTime<Utc>) -> Coupon {
        Coupon {
            id: Uuid::now_v7(),
            template_id: Uuid::now_v7(),
            member_id: Uuid::now_v7(),
            code: "00000000000000".into(),
            status: CouponStatus::Issued,
            issue_method: IssueMethod::Claim,
            issue_time: now,
            valid_from_time: now - Duration::hours(1),
            expire_time: now + Duration::days(1),
            redeem_time: None,
            bulk_issue_id: None,
        }
    }

    fn basket(amount: i64) -> Basket {
        Basket {
            amount_krw: amount,
            store_code: "GN001".into(),
            items: vec![],
        }
    }

    fn reason(r: Result<i64, Rejection>) -> &'static str {
        r.expect_err("rejected").reason
    }

    #[test]
    fn a_good_basket_gets_the_discount() {
        let now = Utc::now();
        let ctx = TillContext::default();
        assert_eq!(
            evaluate(&coupon(now), &template(), &basket(34_560), &ctx, now, SEOUL),
            Ok(3_456)
        );
        assert_eq!(
            evaluate(&coupon(now), &template(), &basket(90_000), &ctx, now, SEOUL),
            Ok(5_000)
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        let now = Utc::now();
        let t = template();
        let ctx = TillContext::default();
        let mut c = coupon(now);
        c.status = CouponStatus::Redeemed;
        assert_eq!(
            reason(evaluate(&c, &t, &basket(30_000), &ctx, now, SEOUL)),
            reasons::COUPON_ALREADY_REDEEMED
        );
        c.status = CouponStatus::Expired;
        assert_eq!(
            reason(evaluate(&c, &t, &basket(30_000), &ctx, now, SEOUL)),
            reasons::COUPON_EXPIRED
        );
        let c = coupon(now);
        let later = now + Duration::days(2);
        assert_eq!(
            reason(evaluate(&c, &t, &basket(30_000), &ctx, later, SEOUL)),
            reasons::COUPON_EXPIRED
        );
        let earlier = now - Duration::days(1);
        assert_eq!(
            reason(evaluate(&c, &t, &basket(30_000), &ctx, earlier, SEOUL)),
            reasons::COUPON_NOT_YET_VALID
        );
        let mut elsewhere = basket(30_000);
        elsewhere.store_code = "HD002".into();
        let r = evaluate(&c, &t, &elsewhere, &ctx, now, SEOUL).expect_err("store");
        assert_eq!(r.reason, reasons::STORE_NOT_APPLICABLE);
        assert!(r.message.contains("HD002"), "{}", r.message);
        let r = evaluate(&c, &t, &basket(19_999), &ctx, now, SEOUL).expect_err("minimum");
        assert_eq!(r.reason, reasons::MIN_PURCHASE_NOT_MET);
        assert!(
            r.message.contains("20,000원") && r.message.contains("19,999원"),
            "{}",
            r.message
        );
        let someone_else = TillContext {
            member_id: Some(Uuid::now_v7()),
            ..Default::default()
        };
        assert_eq!(
            reason(evaluate(&c, &t, &basket(30_000), &someone_else, now, SEOUL)),
            reasons::COUPON_NOT_OWNED
        );
        let owner = TillContext {
            member_id: Some(c.member_id),
            ..Default::default()
        };
        assert!(evaluate(&c, &t, &basket(30_000), &owner, now, SEOUL).is_ok());
    }

    #[test]
    fn categories_limit_the_eligible_amount() {
        let now = Utc::now();
        let mut t = template();
        t.categories = vec!["BAKERY".into()];
        t.min_purchase_krw = 10_000;
        let c = coupon(now);
        let ctx = TillContext::default();
        let mut b = basket(50_000);
        b.items = vec![
            BasketItem {
                sku: "A".into(),
                category: "BAKERY".into(),
                amount_krw: 12_000,
            },
            BasketItem {
                sku: "B".into(),
                category: "DRINK".into(),
                amount_krw: 38_000,
            },
        ];
        assert_eq!(
            evaluate(&c, &t, &b, &ctx, now, SEOUL),
            Ok(1_200),
            "10% of the bakery items only"
        );
        b.items[0].amount_krw = 9_000;
        assert_eq!(
            reason(evaluate(&c, &t, &b, &ctx, now, SEOUL)),
            reasons::MIN_PURCHASE_NOT_MET
        );
        b.items.remove(0);
        assert_eq!(
            reason(evaluate(&c, &t, &b, &ctx, now, SEOUL)),
            reasons::CATEGORY_NOT_APPLICABLE
        );
    }

    #[test]
    fn stacking_needs_every_coupon_stackable() {
        let now = Utc::now();
        let c = coupon(now);
        let mut t = template();
        let with_other = |stackable: bool| TillContext {
            member_id: None,
            redeemed_in_transaction: vec![stackable],
        };
        assert_eq!(
            reason(evaluate(
                &c,
                &t,
                &basket(30_000),
                &with_other(true),
                now,
                SEOUL
            )),
            reasons::COUPON_NOT_STACKABLE
        );
        t.stackable = true;
        assert!(evaluate(&c, &t, &basket(30_000), &with_other(true), now, SEOUL).is_ok());
        assert_eq!(
            reason(evaluate(
                &c,
                &t,
                &basket(30_000),
                &with_other(false),
                now,
                SEOUL
            )),
            reasons::COUPON_NOT_STACKABLE
        );
    }

    #[test]
    fn baskets_are_checked() {
        let mut b = Basket {
            amount_krw: 0,
            store_code: " ".into(),
            items: vec![BasketItem {
                sku: "A".into(),
                category: "X".into(),
                amount_krw: -1,
            }],
        };
        let mut v = Violations::new();
        b.check("basket", &mut v);
        let Err(ServiceError::InvalidArgument(f)) = v.finish() else {
            panic!("violations expected")
        };
        let fields: Vec<_> = f.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "basket.amount_krw",
                "basket.store_code",
                "basket.items[0].amount_krw"
            ]
        );
        let mut over = basket(1_000);
        over.items = vec![BasketItem {
            sku: "A".into(),
            category: "X".into(),
            amount_krw: 1_001,
        }];
        let mut v = Violations::new();
        over.check("basket", &mut v);
        assert!(!v.is_empty());
    }

    #[test]
    fn an_unmarked_expired_coupon_reads_as_expired() {
        let now = Utc::now();
        let c = coupon(now);
        assert_eq!(c.effective_status(now), CouponStatus::Issued);
        assert_eq!(
            c.effective_status(now + Duration::days(2)),
            CouponStatus::Expired
        );
    }
}
