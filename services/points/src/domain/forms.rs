//! Requests as sent, and their validation: every bad field is named at once (`member.card_number`,
//! `items[2].amount_krw`), and the canonical body an idempotency key is bound to.
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

use super::policy::{LineItem, MAX_AMOUNT_KRW, MAX_CODE_CHARS, MAX_POINTS};

pub const MAX_POS_ID_CHARS: usize = 100;
pub const MAX_REASON_CHARS: usize = 200;
pub const MAX_ITEMS: usize = 500;
pub const MAX_SKU_CHARS: usize = 100;
pub const MAX_QUANTITY: i32 = 100_000;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
/// How far in the future a till's clock may be.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The kinds of ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxKind {
    Earn,
    Spend,
    CancelEarn,
    CancelSpend,
    Adjust,
    Expire,
}

impl TxKind {
    pub const ALL: [TxKind; 6] = [
        Self::Earn,
        Self::Spend,
        Self::CancelEarn,
        Self::CancelSpend,
        Self::Adjust,
        Self::Expire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "EARN",
            Self::Spend => "SPEND",
            Self::CancelEarn => "CANCEL_EARN",
            Self::CancelSpend => "CANCEL_SPEND",
            Self::Adjust => "ADJUST",
            Self::Expire => "EXPIRE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A member reference as sent: by id or by card number (or neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRefForm {
    Missing,
    Id(String),
    Card(String),
}

/// A validated member reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemberKey {
    Id(Uuid),
    /// 16 digits, separators removed.
    Card(String),
}

impl MemberRefForm {
    /// The validated reference, or `InvalidArgument` naming the bad field.
    pub fn validate(&self) -> Result<MemberKey, ServiceError> {
        let mut v = Violations::new();
        let key = self.check(&mut v);
        v.finish()?;
        key.ok_or_else(|| ServiceError::internal("a checked member reference went missing"))
    }

    fn check(&self, v: &mut Violations) -> Option<MemberKey> {
        match self {
            Self::Missing => {
                v.add(
                    "member",
                    "member_id 또는 card_number가 필요합니다 (member_id or card_number is required)",
                );
                None
            }
            Self::Id(s) => match Uuid::parse_str(s) {
                Ok(id) => Some(MemberKey::Id(id)),
                Err(_) => {
                    v.add(
                        "member.member_id",
                        "회원 ID(UUID)여야 합니다 (must be a UUID)",
                    );
                    None
                }
            },
            Self::Card(s) => {
                let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
                if digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Some(MemberKey::Card(digits))
                } else {
                    v.add(
                        "member.card_number",
                        "카드 번호는 16자리 숫자입니다 (must be 16 digits)",
                    );
                    None
                }
            }
        }
    }
}

fn text(v: &mut Violations, field: &str, s: &str, required: bool, max: usize) {
    let n = s.chars().count();
    if required && s.trim().is_empty() {
        v.add(field, "필수 항목입니다 (is required)");
    } else if n > max {
        v.add(
            field,
            format!("최대 {max}자입니다 (at most {max} characters)"),
        );
    }
}

fn key(v: &mut Violations, k: &str) {
    text(v, "idempotency_key", k, false, MAX_IDEMPOTENCY_KEY_CHARS);
}

fn items(v: &mut Violations, items: &[LineItem], amount_krw: i64) {
    if items.len() > MAX_ITEMS {
        v.add(
            "items",
            format!("최대 {MAX_ITEMS}개입니다 (at most {MAX_ITEMS} items)"),
        );
        return;
    }
    let mut sum: i64 = 0;
    for (i, it) in items.iter().enumerate() {
        text(v, &format!("items[{i}].sku"), &it.sku, false, MAX_SKU_CHARS);
        text(
            v,
            &format!("items[{i}].category"),
            &it.category,
            false,
            MAX_CODE_CHARS,
        );
        if !(0..=MAX_AMOUNT_KRW).contains(&it.amount_krw) {
            v.add(
                &format!("items[{i}].amount_krw"),
                "0원 이상이어야 합니다 (must be between 0 and 100,000,000,000)",
            );
        }
        if !(1..=MAX_QUANTITY).contains(&it.quantity) {
            v.add(
                &format!("items[{i}].quantity"),
                format!("1~{MAX_QUANTITY} 사이여야 합니다 (must be between 1 and {MAX_QUANTITY})"),
            );
        }
        sum = sum.saturating_add(it.amount_krw.max(0));
    }
    if !items.is_empty() && sum != amount_krw {
        v.add(
            "items",
            format!(
                "품목 금액의 합({sum})이 결제 금액({amount_krw})과 다릅니다 (item amounts must add up to amount_krw)"
            ),
        );
    }
}

fn amount(v: &mut Violations, field: &str, a: i64) {
    if !(1..=MAX_AMOUNT_KRW).contains(&a) {
        v.add(
            field,
            "1원 이상 1,000억원 이하여야 합니다 (must be between 1 and 100,000,000,000)",
        );
    }
}

fn occurred(v: &mut Violations, t: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if let Some(t) = t
        && t > now + MAX_CLOCK_SKEW
    {
        v.add(
            "occurred_time",
            "미래 시각일 수 없습니다 (must not be in the future)",
        );
    }
}

/// The body an idempotency key is bound to: the operation and the request without the key.
pub fn fingerprint(operation: &str, body: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(&(operation, body)).unwrap_or_default();
    spharos_kit::idempotency::fingerprint(&bytes)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarnForm {
    pub member: MemberRefForm,
    pub store_code: String,
    pub pos_transaction_id: String,
    pub amount_krw: i64,
    pub items: Vec<LineItem>,
    pub occurred_time: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub idempotency_key: String,
}

impl EarnForm {
    /// The member, or every bad field.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<MemberKey, ServiceError> {
        let mut v = Violations::new();
        let member = self.member.check(&mut v);
        text(&mut v, "store_code", &self.store_code, true, MAX_CODE_CHARS);
        text(
            &mut v,
            "pos_transaction_id",
            &self.pos_transaction_id,
            true,
            MAX_POS_ID_CHARS,
        );
        amount(&mut v, "amount_krw", self.amount_krw);
        items(&mut v, &self.items, self.amount_krw);
        occurred(&mut v, self.occurred_time, now);
        key(&mut v, &self.idempotency_key);
        v.finish()?;
        member.ok_or_else(|| ServiceError::internal("a checked member reference went missing"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewForm {
    pub member: MemberRefForm,
    pub store_code: String,
    pub amount_krw: i64,
    pub items: Vec<LineItem>,
    pub occurred_time: Option<DateTime<Utc>>,
}

impl PreviewForm {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<MemberKey, ServiceError> {
        let mut v = Violations::new();
        let member = self.member.check(&mut v);
        text(&mut v, "store_code", &self.store_code, true, MAX_CODE_CHARS);
        amount(&mut v, "amount_krw", self.amount_krw);
        items(&mut v, &self.items, self.amount_krw);
        occurred(&mut v, self.occurred_time, now);
        v.finish()?;
        member.ok_or_else(|| ServiceError::internal("a checked member reference went missing"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendForm {
    pub member: MemberRefForm,
    pub points: i64,
    pub store_code: String,
    pub pos_transaction_id: String,
    #[serde(skip)]
    pub idempotency_key: String,
}

impl SpendForm {
    pub fn validate(&self) -> Result<MemberKey, ServiceError> {
        let mut v = Violations::new();
        let member = self.member.check(&mut v);
        if !(1..=MAX_POINTS).contains(&self.points) {
            v.add(
                "points",
                "1 이상이어야 합니다 (must be between 1 and 10,000,000,000)",
            );
        }
        text(&mut v, "store_code", &self.store_code, true, MAX_CODE_CHARS);
        text(
            &mut v,
            "pos_transaction_id",
            &self.pos_transaction_id,
            true,
            MAX_POS_ID_CHARS,
        );
        key(&mut v, &self.idempotency_key);
        v.finish()?;
        member.ok_or_else(|| ServiceError::internal("a checked member reference went missing"))
    }
}

/// What a cancel names, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CancelTargetForm {
    Missing,
    TransactionId(String),
    /// (store_code, pos_transaction_id, kind: EARN or SPEND, or None when unspecified)
    Pos(String, String, Option<TxKind>),
}

/// A validated cancel target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    Transaction(Uuid),
    Pos {
        store_code: String,
        pos_transaction_id: String,
        kind: TxKind,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CancelForm {
    pub target: CancelTargetForm,
    /// 0: everything not refunded yet.
    pub refund_amount_krw: i64,
    /// 0: everything not restored yet.
    pub points: i64,
    pub store_code: String,
    pub pos_transaction_id: String,
    pub reason: String,
    #[serde(skip)]
    pub idempotency_key: String,
}

impl CancelForm {
    pub fn validate(&self) -> Result<CancelTarget, ServiceError> {
        let mut v = Violations::new();
        let target = match &self.target {
            CancelTargetForm::Missing => {
                v.add(
                    "target",
                    "transaction_id 또는 pos가 필요합니다 (transaction_id or pos is required)",
                );
                None
            }
            CancelTargetForm::TransactionId(s) => match Uuid::parse_str(s) {
                Ok(id) => Some(CancelTarget::Transaction(id)),
                Err(_) => {
                    v.add(
                        "transaction_id",
                        "거래 ID(UUID)여야 합니다 (must be a UUID)",
                    );
                    None
                }
            },
            CancelTargetForm::Pos(store, pos, kind) => {
                text(&mut v, "pos.store_code", store, true, MAX_CODE_CHARS);
                text(
                    &mut v,
                    "pos.pos_transaction_id",
                    pos,
                    true,
                    MAX_POS_ID_CHARS,
                );
                match kind {
                    Some(k @ (TxKind::Earn | TxKind::Spend)) => Some(CancelTarget::Pos {
                        store_code: store.clone(),
                        pos_transaction_id: pos.clone(),
                        kind: *k,
                    }),
                    _ => {
                        v.add(
                            "pos.type",
                            "TRANSACTION_TYPE_EARN 또는 TRANSACTION_TYPE_SPEND여야 합니다 (must be EARN or SPEND)",
                        );
                        None
                    }
                }
            }
        };
        if !(0..=MAX_AMOUNT_KRW).contains(&self.refund_amount_krw) {
            v.add(
                "refund_amount_krw",
                "0 이상이어야 합니다 (must not be negative)",
            );
        }
        if !(0..=MAX_POINTS).contains(&self.points) {
            v.add("points", "0 이상이어야 합니다 (must not be negative)");
        }
        if self.refund_amount_krw > 0 && self.points > 0 {
            v.add(
                "points",
                "refund_amount_krw(적립 취소)와 points(사용 취소)는 함께 쓸 수 없습니다 (refund_amount_krw is for earn cancels, points for spend cancels)",
            );
        }
        text(
            &mut v,
            "store_code",
            &self.store_code,
            false,
            MAX_CODE_CHARS,
        );
        text(
            &mut v,
            "pos_transaction_id",
            &self.pos_transaction_id,
            false,
            MAX_POS_ID_CHARS,
        );
        text(&mut v, "reason", &self.reason, false, MAX_REASON_CHARS);
        key(&mut v, &self.idempotency_key);
        v.finish()?;
        target.ok_or_else(|| ServiceError::internal("a checked cancel target went missing"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdjustForm {
    pub member: MemberRefForm,
    pub points: i64,
    pub reason: String,
    #[serde(skip)]
    pub idempotency_key: String,
}

impl AdjustForm {
    pub fn validate(&self) -> Result<MemberKey, ServiceError> {
        let mut v = Violations::new();
        let member = self.member.check(&mut v);
        if self.points == 0 || self.points.unsigned_abs() > MAX_POINTS as u64 {
            v.add(
                "points",
                "0이 아니어야 합니다: 지급은 양수, 차감은 음수 (must be non-zero: positive grants, negative deducts)",
            );
        }
        text(&mut v, "reason", &self.reason, true, MAX_REASON_CHARS);
        key(&mut v, &self.idempotency_key);
        v.finish()?;
        member.ok_or_else(|| ServiceError::internal("a checked member reference went missing"))
    }
}

/// History filters as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryForm {
    pub member: MemberRefForm,
    /// Unknown type numbers arrive as `None` and are named in the error.
    pub types: Vec<Option<TxKind>>,
    pub start_date: String,
    pub end_date: String,
}

/// Validated history filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFilter {
    pub types: Vec<TxKind>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

impl HistoryForm {
    pub fn validate(&self) -> Result<(MemberKey, HistoryFilter), ServiceError> {
        let mut v = Violations::new();
        let member = self.member.check(&mut v);
        let mut types = Vec::new();
        for (i, t) in self.types.iter().enumerate() {
            match t {
                Some(k) => types.push(*k),
                None => {
                    v.add(
                        &format!("types[{i}]"),
                        "알 수 없는 거래 유형입니다 (unknown transaction type)",
                    );
                }
            }
        }
        let mut date = |s: &str, field: &str| {
            if s.is_empty() {
                return None;
            }
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            if d.is_none() {
                v.add(
                    field,
                    "YYYY-MM-DD 형식이어야 합니다 (must be a date YYYY-MM-DD)",
                );
            }
            d
        };
        let start_date = date(&self.start_date, "start_date");
        let end_date = date(&self.end_date, "end_date");
        if let (Some(s), Some(e)) = (start_date, end_date)
            && e < s
        {
            v.add(
                "end_date",
                "종료일이 시작일보다 빠릅니다 (must not be before start_date)",
            );
        }
        v.finish()?;
        let member = member
            .ok_or_else(|| ServiceError::internal("a checked member reference went missing"))?;
        Ok((
            member,
            HistoryFilter {
                types,
                start_date,
                end_date,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: ServiceError) -> Vec<String> {
        match e {
            ServiceError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn earn() -> EarnForm {
        EarnForm {
            member: MemberRefForm::Card("1234-5678-9012-3456".into()),
            store_code: "GN001".into(),
            pos_transaction_id: "R-1".into(),
            amount_krw: 10_000,
            items: vec![],
            occurred_time: None,
            idempotency_key: "k".into(),
        }
    }

    #[test]
    fn a_good_earn_names_its_member() {
        assert_eq!(
            earn().validate(Utc::now()).expect("valid"),
            MemberKey::Card("1234567890123456".into())
        );
    }

    #[test]
    fn a_bad_earn_names_every_field() {
        let now = Utc::now();
        let f = EarnForm {
            member: MemberRefForm::Id("x".into()),
            store_code: " ".into(),
            pos_transaction_id: String::new(),
            amount_krw: 0,
            items: vec![LineItem {
                sku: "s".into(),
                category: "c".into(),
                amount_krw: -1,
                quantity: 0,
            }],
            occurred_time: Some(now + chrono::TimeDelta::hours(1)),
            idempotency_key: "k".repeat(201),
        };
        let got = fields(f.validate(now).expect_err("invalid"));
        for want in [
            "member.member_id",
            "store_code",
            "pos_transaction_id",
            "amount_krw",
            "items[0].amount_krw",
            "items[0].quantity",
            "occurred_time",
            "idempotency_key",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
        }
    }

    #[test]
    fn items_must_add_up_to_the_amount() {
        let mut f = earn();
        f.items = vec![LineItem {
            sku: "A".into(),
            category: "c".into(),
            amount_krw: 9_000,
            quantity: 2,
        }];
        assert_eq!(
            fields(f.validate(Utc::now()).expect_err("invalid")),
            ["items"]
        );
        f.items[0].amount_krw = 10_000;
        assert!(f.validate(Utc::now()).is_ok());
    }

    #[test]
    fn fingerprints_ignore_the_key_and_see_the_body() {
        let a = earn();
        let mut b = earn();
        b.idempotency_key = "other".into();
        assert_eq!(fingerprint("earn", &a), fingerprint("earn", &b));
        b.amount_krw += 1;
        assert_ne!(fingerprint("earn", &a), fingerprint("earn", &b));
        assert_ne!(fingerprint("earn", &a), fingerprint("spend", &a));
    }

    #[test]
    fn cancels_need_a_target_and_one_kind_of_amount() {
        let f = CancelForm {
            target: CancelTargetForm::Pos("GN001".into(), String::new(), Some(TxKind::Adjust)),
            refund_amount_krw: 100,
            points: 10,
            store_code: String::new(),
            pos_transaction_id: String::new(),
            reason: String::new(),
            idempotency_key: String::new(),
        };
        let got = fields(f.validate().expect_err("invalid"));
        assert!(
            got.contains(&"pos.pos_transaction_id".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"pos.type".to_string()), "{got:?}");
        assert!(got.contains(&"points".to_string()), "{got:?}");
        let missing = CancelForm {
            target: CancelTargetForm::Missing,
            refund_amount_krw: 0,
            points: 0,
            store_code: String::new(),
            pos_transaction_id: String::new(),
            reason: String::new(),
            idempotency_key: String::new(),
        };
        assert_eq!(fields(missing.validate().expect_err("invalid")), ["target"]);
    }

    #[test]
    fn adjustments_need_points_and_a_reason() {
        let f = AdjustForm {
            member: MemberRefForm::Missing,
            points: 0,
            reason: " ".into(),
            idempotency_key: String::new(),
        };
        assert_eq!(
            fields(f.validate().expect_err("invalid")),
            ["member", "points", "reason"]
        );
    }
}
