//! Coupon templates: what a coupon gives (discount, minimum purchase, stores, categories,
//! validity), how many may exist and per member, how they may be issued, and the status life
//! cycle (DRAFT → ACTIVE ⇄ PAUSED → ENDED). The rules that decide whether a template may issue.
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use spharos_kit::{ServiceError, Violations, time::local_date};
use uuid::Uuid;

use super::{
    count,
    discount::Discount,
    reasons,
    validity::{Validity, ValidityForm},
};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
pub const MAX_LIST_ENTRIES: usize = 1_000;
pub const MAX_STORE_CODE_CHARS: usize = 20;
pub const MAX_CATEGORY_CHARS: usize = 50;
/// A member may hold at most this many coupons of one template (the claim-slot range).
pub const MAX_PER_MEMBER_LIMIT: i32 = 1_000;
pub const MAX_TOTAL_QUANTITY: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateStatus {
    Draft,
    Active,
    Paused,
    Ended,
}

impl TemplateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Active => "ACTIVE",
            Self::Paused => "PAUSED",
            Self::Ended => "ENDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DRAFT" => Some(Self::Draft),
            "ACTIVE" => Some(Self::Active),
            "PAUSED" => Some(Self::Paused),
            "ENDED" => Some(Self::Ended),
            _ => None,
        }
    }

    /// Whether a template may move from `self` to `to`. ENDED is final; a DRAFT goes live or
    /// is dropped, never paused; staying put is always allowed.
    pub fn can_become(self, to: Self) -> bool {
        use TemplateStatus::*;
        self == to
            || matches!(
                (self, to),
                (Draft, Active)
                    | (Draft, Ended)
                    | (Active, Paused)
                    | (Active, Ended)
                    | (Paused, Active)
                    | (Paused, Ended)
            )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IssueMethod {
    Admin,
    Campaign,
    Claim,
    OnJoin,
    Birthday,
}

impl IssueMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::Campaign => "CAMPAIGN",
            Self::Claim => "CLAIM",
            Self::OnJoin => "ON_JOIN",
            Self::Birthday => "BIRTHDAY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN" => Some(Self::Admin),
            "CAMPAIGN" => Some(Self::Campaign),
            "CLAIM" => Some(Self::Claim),
            "ON_JOIN" => Some(Self::OnJoin),
            "BIRTHDAY" => Some(Self::Birthday),
            _ => None,
        }
    }

    /// The methods a caller may name in IssueCoupon / StartBulkIssue (the others belong to
    /// ClaimCoupon and the automatic issuers).
    pub fn is_manual(self) -> bool {
        matches!(self, Self::Admin | Self::Campaign)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub discount: Discount,
    pub min_purchase_krw: i64,
    /// Empty = every store.
    pub store_codes: Vec<String>,
    /// Empty = every category.
    pub categories: Vec<String>,
    pub validity: Validity,
    /// `None` = unlimited.
    pub total_quantity: Option<i64>,
    pub issued_count: i64,
    /// `None` = unlimited.
    pub per_member_limit: Option<i32>,
    pub issue_methods: Vec<IssueMethod>,
    pub stackable: bool,
    pub status: TemplateStatus,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

impl Template {
    /// Whether coupons may be issued now by `method`: the template is ACTIVE, allows the
    /// method, and a fixed validity has not ended (the coupon could never be used).
    pub fn check_issuable(
        &self,
        method: IssueMethod,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Result<(), ServiceError> {
        if self.status != TemplateStatus::Active {
            return Err(ServiceError::precondition(
                reasons::TEMPLATE_NOT_ACTIVE,
                format!(
                    "발급 중인 쿠폰이 아닙니다 (template is {}, coupons are issued only while ACTIVE)",
                    self.status.as_str()
                ),
            ));
        }
        if !self.issue_methods.contains(&method) {
            return Err(ServiceError::precondition(
                reasons::ISSUE_METHOD_NOT_ALLOWED,
                format!(
                    "이 방식으로는 발급할 수 없는 쿠폰입니다 (template does not allow {} issue; allowed: {})",
                    method.as_str(),
                    self.issue_methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(end) = self.validity.fixed_end()
            && end < local_date(now, zone)
        {
            return Err(ServiceError::precondition(
                reasons::TEMPLATE_VALIDITY_ENDED,
                format!("사용 기간이 끝난 쿠폰입니다 (template validity ended on {end})"),
            ));
        }
        Ok(())
    }

    /// Whether every coupon of a limited template has been issued (as far as this read knows;
    /// the conditional update at issue is the exact guard).
    pub fn sold_out(&self) -> bool {
        self.total_quantity.is_some_and(|q| self.issued_count >= q)
    }

    /// The claim slot of a member who already holds `held` coupons of this template: `None`
    /// for an unlimited template, `Some(held + 1)` below the limit. The slot is unique per
    /// (template, member), so two concurrent issues computing the same slot cannot both commit.
    pub fn next_claim_slot(&self, held: i64) -> Result<Option<i32>, ServiceError> {
        match self.per_member_limit {
            None => Ok(None),
            Some(limit) if held < limit as i64 => Ok(Some(held as i32 + 1)),
            Some(limit) => Err(limit_reached(limit)),
        }
    }
}

/// Counter shards per template. A single counter row is a hot spot on PostgreSQL: every
/// claim holds its lock until its commit is flushed, so one row caps claims at about one
/// commit latency each (~830/s measured with fsync on the 2-core test machine). Spreading the
/// quantity over shards lets that many claims commit in parallel while each shard still
/// holds its own quota exactly.
pub const MAX_SHARDS: i32 = 16;

/// How many shards a template with this total gets: no shard without quota.
pub fn shard_count(total: Option<i64>) -> i32 {
    match total {
        Some(q) => q.clamp(1, MAX_SHARDS as i64) as i32,
        None => MAX_SHARDS,
    }
}

/// The quota of each shard so that they sum to `total`, given what each shard has issued
/// already: what remains is spread evenly on top. `None` when `total` is below what was
/// issued. Unlimited (`total` = `None`) gives every shard an unlimited quota.
pub fn shard_quotas(total: Option<i64>, issued: &[i64]) -> Option<Vec<Option<i64>>> {
    let Some(total) = total else {
        return Some(vec![None; issued.len()]);
    };
    let n = issued.len() as i64;
    let used: i64 = issued.iter().sum();
    if n == 0 || total < used {
        return None;
    }
    let remaining = total - used;
    Some(
        issued
            .iter()
            .enumerate()
            .map(|(i, done)| Some(done + remaining / n + i64::from((i as i64) < remaining % n)))
            .collect(),
    )
}

pub fn sold_out(total: Option<i64>) -> ServiceError {
    ServiceError::ResourceExhausted {
        reason: reasons::COUPON_SOLD_OUT,
        message: match total {
            Some(q) => format!(
                "쿠폰이 모두 소진되었습니다 (coupon sold out: all {} issued)",
                count(q)
            ),
            None => "쿠폰이 모두 소진되었습니다 (coupon sold out)".into(),
        },
    }
}

pub fn limit_reached(limit: i32) -> ServiceError {
    ServiceError::already_exists(
        reasons::COUPON_LIMIT_REACHED,
        format!("이미 발급받은 쿠폰입니다 (per-member limit of {limit} reached for this template)"),
    )
}

/// A `CreateTemplate` request as sent (enums already read; numbers and text unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateForm {
    pub name: String,
    pub description: String,
    pub discount: Option<Discount>,
    pub min_purchase_krw: i64,
    pub store_codes: Vec<String>,
    pub categories: Vec<String>,
    pub validity: Option<ValidityForm>,
    /// 0 = unlimited.
    pub total_quantity: i64,
    /// 0 = unlimited.
    pub per_member_limit: i32,
    pub issue_methods: Vec<IssueMethod>,
    pub stackable: bool,
    /// `None` = DRAFT.
    pub status: Option<TemplateStatus>,
}

/// A checked template, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    pub name: String,
    pub description: String,
    pub discount: Discount,
    pub min_purchase_krw: i64,
    pub store_codes: Vec<String>,
    pub categories: Vec<String>,
    pub validity: Validity,
    pub total_quantity: Option<i64>,
    pub per_member_limit: Option<i32>,
    pub issue_methods: Vec<IssueMethod>,
    pub stackable: bool,
    pub status: TemplateStatus,
}

const P: &str = "template";

impl TemplateForm {
    /// Trims and checks every field, recording each bad one in `v` (paths `template.<field>`).
    pub fn validate(self, today: NaiveDate, v: &mut Violations) -> Option<NewTemplate> {
        let name = check_name(v, &format!("{P}.name"), &self.name);
        let description = check_description(v, &format!("{P}.description"), &self.description);
        let discount = match self.discount {
            Some(d) => {
                d.check(&format!("{P}.discount"), v);
                Some(d)
            }
            None => {
                v.add(
                    &format!("{P}.discount"),
                    "할인(금액 또는 비율)은 필수입니다 (is required: amount_krw or percent)",
                );
                None
            }
        };
        v.check(
            (0..=super::discount::MAX_AMOUNT_KRW).contains(&self.min_purchase_krw),
            &format!("{P}.min_purchase_krw"),
            "최소 구매 금액은 0원 이상 1억원 이하입니다 (must be 0..=100,000,000 KRW)",
        );
        let store_codes = check_list(
            v,
            &format!("{P}.store_codes"),
            self.store_codes,
            MAX_STORE_CODE_CHARS,
        );
        let categories = check_list(
            v,
            &format!("{P}.categories"),
            self.categories,
            MAX_CATEGORY_CHARS,
        );
        let validity = match &self.validity {
            Some(f) => f.validate(&format!("{P}.validity"), today, v),
            None => {
                v.add(
                    &format!("{P}.validity"),
                    "유효 기간은 필수입니다 (is required: fixed dates or days_from_issue)",
                );
                None
            }
        };
        v.check(
            (0..=MAX_TOTAL_QUANTITY).contains(&self.total_quantity),
            &format!("{P}.total_quantity"),
            "총 수량은 0(무제한) 이상 10억 이하입니다 (must be 0 for unlimited, or 1..=1,000,000,000)",
        );
        v.check(
            (0..=MAX_PER_MEMBER_LIMIT).contains(&self.per_member_limit),
            &format!("{P}.per_member_limit"),
            "1인당 한도는 0(무제한) 이상 1000 이하입니다 (must be 0 for unlimited, or 1..=1000)",
        );
        let mut methods = self.issue_methods;
        methods.sort_by_key(|m| *m as u8);
        methods.dedup();
        v.check(
            !methods.is_empty(),
            &format!("{P}.issue_methods"),
            "발급 방식을 하나 이상 지정하세요 (at least one issue method is required)",
        );
        let status = self.status.unwrap_or(TemplateStatus::Draft);
        v.check(
            matches!(status, TemplateStatus::Draft | TemplateStatus::Active),
            &format!("{P}.status"),
            "새 템플릿은 DRAFT 또는 ACTIVE입니다 (a new template starts as DRAFT or ACTIVE)",
        );
        if !v.is_empty() {
            return None;
        }
        Some(NewTemplate {
            name: name?,
            description: description?,
            discount: discount?,
            min_purchase_krw: self.min_purchase_krw,
            store_codes: store_codes?,
            categories: categories?,
            validity: validity?,
            total_quantity: (self.total_quantity > 0).then_some(self.total_quantity),
            per_member_limit: (self.per_member_limit > 0).then_some(self.per_member_limit),
            issue_methods: methods,
            stackable: self.stackable,
            status,
        })
    }
}

/// The fields `UpdateTemplate` may change (`None` = not in the mask).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplatePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<TemplateStatus>,
    /// `Some(0)` = unlimited.
    pub total_quantity: Option<i64>,
}

impl TemplatePatch {
    /// Applies the patch to `t`, checking every field and the status transition.
    pub fn apply(self, mut t: Template, now: DateTime<Utc>) -> Result<Template, ServiceError> {
        let mut v = Violations::new();
        if let Some(name) = &self.name
            && let Some(n) = check_name(&mut v, &format!("{P}.name"), name)
        {
            t.name = n;
        }
        if let Some(d) = &self.description
            && let Some(d) = check_description(&mut v, &format!("{P}.description"), d)
        {
            t.description = d;
        }
        if let Some(q) = self.total_quantity {
            v.check(
                (0..=MAX_TOTAL_QUANTITY).contains(&q),
                &format!("{P}.total_quantity"),
                "총 수량은 0(무제한) 이상 10억 이하입니다 (must be 0 for unlimited, or 1..=1,000,000,000)",
            );
        }
        v.finish()?;
        if let Some(q) = self.total_quantity {
            if q > 0 && q < t.issued_count {
                return Err(ServiceError::precondition(
                    reasons::QUANTITY_BELOW_ISSUED,
                    format!(
                        "이미 발급된 수량보다 적게 줄일 수 없습니다 (total_quantity {} is below the {} already issued)",
                        count(q),
                        count(t.issued_count)
                    ),
                ));
            }
            t.total_quantity = (q > 0).then_some(q);
        }
        if let Some(to) = self.status {
            if !t.status.can_become(to) {
                return Err(ServiceError::precondition(
                    reasons::INVALID_STATUS_TRANSITION,
                    format!(
                        "템플릿 상태를 바꿀 수 없습니다 (a template cannot go from {} to {})",
                        t.status.as_str(),
                        to.as_str()
                    ),
                ));
            }
            t.status = to;
        }
        t.updated_time = now;
        Ok(t)
    }
}

fn check_name(v: &mut Violations, field: &str, name: &str) -> Option<String> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        v.add(field, "이름은 1~100자입니다 (must be 1..=100 characters)");
        return None;
    }
    Some(name.to_string())
}

fn check_description(v: &mut Violations, field: &str, d: &str) -> Option<String> {
    let d = d.trim();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        v.add(
            field,
            "설명은 1000자 이하입니다 (must be at most 1000 characters)",
        );
        return None;
    }
    Some(d.to_string())
}

/// Trimmed, de-duplicated entries in the order given; every entry 1..=`max_chars` long.
fn check_list(
    v: &mut Violations,
    field: &str,
    list: Vec<String>,
    max_chars: usize,
) -> Option<Vec<String>> {
    if list.len() > MAX_LIST_ENTRIES {
        v.add(
            field,
            "최대 1000개까지 지정할 수 있습니다 (at most 1000 entries)",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, raw) in list.iter().enumerate() {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > max_chars {
            v.add(
                &format!("{field}[{i}]"),
                format!("1~{max_chars}자여야 합니다 (must be 1..={max_chars} characters)"),
            );
            ok = false;
        } else if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> TemplateForm {
        TemplateForm {
            name: " 신규 가입 5,000원 ".into(),
            description: String::new(),
            discount: Some(Discount::Fixed { amount_krw: 5_000 }),
            min_purchase_krw: 30_000,
            store_codes: vec!["GN001".into(), " GN001 ".into(), "HD002".into()],
            categories: vec![],
            validity: Some(ValidityForm::DaysFromIssue(30)),
            total_quantity: 1_000,
            per_member_limit: 1,
            issue_methods: vec![IssueMethod::Claim, IssueMethod::Admin, IssueMethod::Claim],
            stackable: false,
            status: Some(TemplateStatus::Active),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 10).expect("date")
    }

    fn fields(v: Violations) -> Vec<String> {
        match v.finish() {
            Err(ServiceError::InvalidArgument(f)) => f.into_iter().map(|f| f.field).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    fn template() -> Template {
        let n = form()
            .validate(today(), &mut Violations::new())
            .expect("valid");
        Template {
            id: Uuid::now_v7(),
            name: n.name,
            description: n.description,
            discount: n.discount,
            min_purchase_krw: n.min_purchase_krw,
            store_codes: n.store_codes,
            categories: n.categories,
            validity: n.validity,
            total_quantity: n.total_quantity,
            issued_count: 0,
            per_member_limit: n.per_member_limit,
            issue_methods: n.issue_methods,
            stackable: n.stackable,
            status: n.status,
            created_time: Utc::now(),
            updated_time: Utc::now(),
        }
    }

    #[test]
    fn a_good_form_is_normalised() {
        let n = form()
            .validate(today(), &mut Violations::new())
            .expect("valid");
        assert_eq!(n.name, "신규 가입 5,000원");
        assert_eq!(n.store_codes, ["GN001", "HD002"]);
        assert_eq!(n.issue_methods, [IssueMethod::Admin, IssueMethod::Claim]);
        assert_eq!(n.total_quantity, Some(1_000));
        assert_eq!(n.per_member_limit, Some(1));
        let unlimited = TemplateForm {
            total_quantity: 0,
            per_member_limit: 0,
            status: None,
            ..form()
        }
        .validate(today(), &mut Violations::new())
        .expect("valid");
        assert_eq!(
            (unlimited.total_quantity, unlimited.per_member_limit),
            (None, None)
        );
        assert_eq!(unlimited.status, TemplateStatus::Draft);
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = TemplateForm {
            name: "  ".into(),
            description: "x".repeat(1001),
            discount: None,
            min_purchase_krw: -1,
            store_codes: vec!["".into()],
            categories: vec!["x".repeat(51)],
            validity: None,
            total_quantity: -5,
            per_member_limit: 1001,
            issue_methods: vec![],
            stackable: true,
            status: Some(TemplateStatus::Paused),
        };
        let mut v = Violations::new();
        assert!(bad.validate(today(), &mut v).is_none());
        assert_eq!(
            fields(v),
            [
                "template.name",
                "template.description",
                "template.discount",
                "template.min_purchase_krw",
                "template.store_codes[0]",
                "template.categories[0]",
                "template.validity",
                "template.total_quantity",
                "template.per_member_limit",
                "template.issue_methods",
                "template.status",
            ]
        );
    }

    #[test]
    fn status_transitions() {
        use TemplateStatus::*;
        assert!(Draft.can_become(Active));
        assert!(Active.can_become(Paused) && Paused.can_become(Active));
        assert!(Paused.can_become(Ended));
        assert!(!Draft.can_become(Paused));
        assert!(!Ended.can_become(Active));
        assert!(Ended.can_become(Ended));
    }

    #[test]
    fn issuing_needs_an_active_template_the_method_and_time_left() {
        let now = Utc::now();
        let zone = spharos_kit::time::DEFAULT_TIME_ZONE;
        let mut t = template();
        assert!(t.check_issuable(IssueMethod::Claim, now, zone).is_ok());
        let e = t
            .check_issuable(IssueMethod::Birthday, now, zone)
            .expect_err("not allowed");
        assert!(matches!(
            e,
            ServiceError::FailedPrecondition {
                reason: reasons::ISSUE_METHOD_NOT_ALLOWED,
                ..
            }
        ));
        t.status = TemplateStatus::Paused;
        let e = t
            .check_issuable(IssueMethod::Claim, now, zone)
            .expect_err("paused");
        assert!(matches!(
            e,
            ServiceError::FailedPrecondition {
                reason: reasons::TEMPLATE_NOT_ACTIVE,
                ..
            }
        ));
        t.status = TemplateStatus::Active;
        let yesterday = local_date(now, zone).pred_opt().expect("date");
        t.validity = Validity::Fixed {
            start: yesterday,
            end: yesterday,
        };
        let e = t
            .check_issuable(IssueMethod::Claim, now, zone)
            .expect_err("over");
        assert!(matches!(
            e,
            ServiceError::FailedPrecondition {
                reason: reasons::TEMPLATE_VALIDITY_ENDED,
                ..
            }
        ));
    }

    #[test]
    fn claim_slots_count_up_to_the_limit() {
        let mut t = template();
        assert_eq!(t.next_claim_slot(0).expect("free"), Some(1));
        let e = t.next_claim_slot(1).expect_err("limit 1");
        assert!(matches!(
            e,
            ServiceError::AlreadyExists {
                reason: reasons::COUPON_LIMIT_REACHED,
                ..
            }
        ));
        t.per_member_limit = Some(3);
        assert_eq!(t.next_claim_slot(2).expect("free"), Some(3));
        t.per_member_limit = None;
        assert_eq!(t.next_claim_slot(99).expect("unlimited"), None);
        t.total_quantity = Some(2);
        t.issued_count = 2;
        assert!(t.sold_out());
    }

    #[test]
    fn shards_split_the_quantity_exactly() {
        assert_eq!(shard_count(Some(3)), 3);
        assert_eq!(shard_count(Some(1_000)), MAX_SHARDS);
        assert_eq!(shard_count(None), MAX_SHARDS);
        let fresh = shard_quotas(Some(1_000), &[0; 16]).expect("fits");
        assert_eq!(
            fresh.iter().map(|q| q.expect("limited")).sum::<i64>(),
            1_000
        );
        assert_eq!(
            (fresh[0], fresh[15]),
            (Some(63), Some(62)),
            "1000 = 8 × 63 + 8 × 62"
        );
        let raised = shard_quotas(Some(10), &[3, 0, 1]).expect("fits");
        assert_eq!(
            raised,
            [Some(5), Some(2), Some(3)],
            "6 remaining spread over 3, on top of each issued"
        );
        assert_eq!(
            shard_quotas(Some(3), &[3, 0, 1]),
            None,
            "below the 4 issued"
        );
        assert_eq!(shard_quotas(None, &[1, 2]), Some(vec![None, None]));
    }

    #[test]
    fn patches_check_quantity_and_transitions() {
        let mut t = template();
        t.issued_count = 10;
        let now = Utc::now();
        let e = TemplatePatch {
            total_quantity: Some(5),
            ..Default::default()
        }
        .apply(t.clone(), now)
        .expect_err("below issued");
        assert!(matches!(
            e,
            ServiceError::FailedPrecondition {
                reason: reasons::QUANTITY_BELOW_ISSUED,
                ..
            }
        ));
        let ok = TemplatePatch {
            total_quantity: Some(0),
            status: Some(TemplateStatus::Paused),
            name: Some(" 새 이름 ".into()),
            ..Default::default()
        }
        .apply(t.clone(), now)
        .expect("valid");
        assert_eq!(
            (ok.total_quantity, ok.status, ok.name.as_str()),
            (None, TemplateStatus::Paused, "새 이름")
        );
        let mut ended = t;
        ended.status = TemplateStatus::Ended;
        let e = TemplatePatch {
            status: Some(TemplateStatus::Active),
            ..Default::default()
        }
        .apply(ended, now)
        .expect_err("ended is final");
        assert!(matches!(
            e,
            ServiceError::FailedPrecondition {
                reason: reasons::INVALID_STATUS_TRANSITION,
                ..
            }
        ));
    }
}
