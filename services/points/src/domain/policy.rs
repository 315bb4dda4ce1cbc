//! The tenant's points policy and the earn arithmetic: grade rate × store, category and
//! promotion multipliers, minimum purchase, per-earn cap, fixed bonuses, rounding down once at
//! the end with integer math (rates and multipliers are basis points, never floats), and the
//! validity and pending periods that date a new lot.
use std::collections::BTreeMap;

use chrono::{Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

/// 100 % in basis points; also the neutral multiplier (x1).
pub const BP: i64 = 10_000;
pub const MAX_RATE_BP: i32 = 10_000;
/// x100: far above any real promotion, low enough for i128 arithmetic to stay exact.
pub const MAX_MULTIPLIER_BP: i32 = 1_000_000;
/// 100 billion KRW: above any single purchase.
pub const MAX_AMOUNT_KRW: i64 = 100_000_000_000;
/// Ten billion points: above any balance, far below i64 overflow in sums.
pub const MAX_POINTS: i64 = 10_000_000_000;
pub const MAX_BONUS_POINTS: i64 = 10_000_000;
pub const MAX_VALIDITY_MONTHS: i32 = 120;
pub const MAX_VALIDITY_DAYS: i32 = 3_650;
pub const MAX_PENDING_DAYS: i32 = 365;
pub const MAX_SPEND_UNIT: i64 = 100_000;
pub const MAX_LIST_ENTRIES: usize = 1_000;
pub const MAX_PROMOTIONS: usize = 100;
pub const MAX_CODE_CHARS: usize = 50;
pub const MAX_NAME_CHARS: usize = 100;

/// What a cancelled earn does when the member's points no longer cover it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ShortfallRule {
    /// The rest becomes debt, paid first by later credits.
    #[default]
    Debt,
    /// The cancel is refused.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub name: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// Empty: every store.
    pub store_codes: Vec<String>,
    /// 0: no multiplier.
    pub multiplier_bp: i32,
    pub bonus_points: i64,
}

impl Promotion {
    fn applies(&self, store_code: &str, date: NaiveDate) -> bool {
        self.start_date <= date
            && date <= self.end_date
            && (self.store_codes.is_empty() || self.store_codes.iter().any(|s| s == store_code))
    }
}

/// A validated policy. Stored as JSON per version, so adding a field with a serde default
/// needs no migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub base_rate_bp: i32,
    pub grade_rates: BTreeMap<Uuid, i32>,
    pub store_multipliers: BTreeMap<String, i32>,
    pub category_multipliers: BTreeMap<String, i32>,
    pub promotions: Vec<Promotion>,
    pub min_purchase_krw: i64,
    /// 0: no cap.
    pub max_points_per_earn: i64,
    pub validity_months: i32,
    pub validity_days: i32,
    pub pending_days: i32,
    pub min_balance_to_spend: i64,
    pub spend_unit: i64,
    pub earn_cancel_shortfall: ShortfallRule,
}

impl Default for Policy {
    /// The built-in policy (version 0): 1 % for everyone, five years' validity, no pending
    /// period, spend any amount, cancels after a spend leave a debt.
    fn default() -> Self {
        Self {
            base_rate_bp: 100,
            grade_rates: BTreeMap::new(),
            store_multipliers: BTreeMap::new(),
            category_multipliers: BTreeMap::new(),
            promotions: Vec::new(),
            min_purchase_krw: 0,
            max_points_per_earn: 0,
            validity_months: 60,
            validity_days: 0,
            pending_days: 0,
            min_balance_to_spend: 0,
            spend_unit: 1,
            earn_cancel_shortfall: ShortfallRule::Debt,
        }
    }
}

/// A policy with its version and who last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedPolicy {
    /// 0: the built-in default, never stored.
    pub version: i32,
    pub policy: Policy,
    pub updated_time: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_by: String,
}

impl VersionedPolicy {
    pub fn builtin() -> Self {
        Self {
            version: 0,
            policy: Policy::default(),
            updated_time: None,
            updated_by: String::new(),
        }
    }
}

/// One line of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub category: String,
    /// Line total (unit price × quantity).
    pub amount_krw: i64,
    pub quantity: i32,
}

/// What the policy is applied to.
#[derive(Debug, Clone, Copy)]
pub struct Purchase<'a> {
    pub store_code: &'a str,
    pub amount_krw: i64,
    pub items: &'a [LineItem],
    /// The purchase's business date in the tenant zone (promotions are by date).
    pub date: NaiveDate,
}

/// What an earn credits and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub points: i64,
    pub rate_bp: i32,
    pub bonus_points: i64,
    pub capped: bool,
    pub below_minimum: bool,
    pub promotions: Vec<String>,
}

impl Policy {
    /// The rate of a member: the policy's override for the grade, else the member service's
    /// grade rate, else the base rate.
    pub fn rate_for(&self, grade: Option<Uuid>, grade_table_rate: Option<i32>) -> i32 {
        grade
            .and_then(|g| self.grade_rates.get(&g).copied())
            .or(grade_table_rate)
            .unwrap_or(self.base_rate_bp)
            .clamp(0, MAX_RATE_BP)
    }

    /// Points for `purchase` at `rate_bp`. Multipliers compound (grade rate × store ×
    /// category × the best promotion), bonuses add, the cap applies last, and the result is
    /// rounded down once, so splitting a receipt into lines never loses or gains a point.
    pub fn quote(&self, rate_bp: i32, purchase: &Purchase<'_>) -> Quote {
        let mut q = Quote {
            points: 0,
            rate_bp,
            bonus_points: 0,
            capped: false,
            below_minimum: false,
            promotions: Vec::new(),
        };
        if purchase.amount_krw < self.min_purchase_krw {
            q.below_minimum = true;
            return q;
        }
        let bp = i128::from(BP);
        // Σ amount × category multiplier, in KRW·bp.
        let weighted: i128 = if purchase.items.is_empty() {
            i128::from(purchase.amount_krw) * bp
        } else {
            purchase
                .items
                .iter()
                .map(|i| {
                    let m = self
                        .category_multipliers
                        .get(&i.category)
                        .copied()
                        .unwrap_or(BP as i32);
                    i128::from(i.amount_krw) * i128::from(m)
                })
                .sum()
        };
        let store = self
            .store_multipliers
            .get(purchase.store_code)
            .copied()
            .unwrap_or(BP as i32);
        let mut promo = BP as i32;
        for p in self
            .promotions
            .iter()
            .filter(|p| p.applies(purchase.store_code, purchase.date))
        {
            q.promotions.push(p.name.clone());
            if p.multiplier_bp > 0 && (promo == BP as i32 || p.multiplier_bp > promo) {
                promo = p.multiplier_bp;
            }
            q.bonus_points += p.bonus_points;
        }
        let numerator = weighted * i128::from(rate_bp) * i128::from(store) * i128::from(promo);
        let base = numerator / (bp * bp * bp * bp);
        let mut points = i64::try_from(base).unwrap_or(MAX_POINTS).min(MAX_POINTS) + q.bonus_points;
        if self.max_points_per_earn > 0 && points > self.max_points_per_earn {
            points = self.max_points_per_earn;
            q.capped = true;
        }
        q.points = points;
        q
    }

    /// The last valid date of a lot from a purchase on `purchase_date` (months first, clamped
    /// to the month's end: 2024-02-29 + 12 months is 2025-02-28).
    pub fn expire_date(&self, purchase_date: NaiveDate) -> NaiveDate {
        purchase_date
            .checked_add_months(Months::new(self.validity_months.max(0) as u32))
            .and_then(|d| d.checked_add_days(Days::new(self.validity_days.max(0) as u64)))
            .unwrap_or(NaiveDate::MAX)
    }

    /// The first date a lot from a purchase on `purchase_date` is usable, or `None` without a
    /// pending period.
    pub fn available_date(&self, purchase_date: NaiveDate) -> Option<NaiveDate> {
        (self.pending_days > 0).then(|| {
            purchase_date
                .checked_add_days(Days::new(self.pending_days as u64))
                .unwrap_or(NaiveDate::MAX)
        })
    }
}

/// A policy as sent, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyForm {
    pub base_rate_bp: i32,
    /// (grade_id, rate_bp)
    pub grade_rates: Vec<(String, i32)>,
    /// (store_code, multiplier_bp)
    pub store_multipliers: Vec<(String, i32)>,
    /// (category, multiplier_bp)
    pub category_multipliers: Vec<(String, i32)>,
    pub promotions: Vec<PromotionForm>,
    pub min_purchase_krw: i64,
    pub max_points_per_earn: i64,
    pub validity_months: i32,
    pub validity_days: i32,
    pub pending_days: i32,
    pub min_balance_to_spend: i64,
    pub spend_unit: i64,
    /// `None`: unspecified, which means the default (debt).
    pub earn_cancel_shortfall: Option<ShortfallRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromotionForm {
    pub name: String,
    pub start_date: String,
    pub end_date: String,
    pub store_codes: Vec<String>,
    pub multiplier_bp: i32,
    pub bonus_points: i64,
}

impl Policy {
    /// The form that validates back into this policy (an update starts from it and
    /// overwrites the fields its mask names).
    pub fn to_form(&self) -> PolicyForm {
        PolicyForm {
            base_rate_bp: self.base_rate_bp,
            grade_rates: self
                .grade_rates
                .iter()
                .map(|(g, r)| (g.to_string(), *r))
                .collect(),
            store_multipliers: self
                .store_multipliers
                .iter()
                .map(|(s, m)| (s.clone(), *m))
                .collect(),
            category_multipliers: self
                .category_multipliers
                .iter()
                .map(|(c, m)| (c.clone(), *m))
                .collect(),
            promotions: self
                .promotions
                .iter()
                .map(|p| PromotionForm {
                    name: p.name.clone(),
                    start_date: p.start_date.to_string(),
                    end_date: p.end_date.to_string(),
                    store_codes: p.store_codes.clone(),
                    multiplier_bp: p.multiplier_bp,
                    bonus_points: p.bonus_points,
                })
                .collect(),
            min_purchase_krw: self.min_purchase_krw,
            max_points_per_earn: self.max_points_per_earn,
            validity_months: self.validity_months,
            validity_days: self.validity_days,
            pending_days: self.pending_days,
            min_balance_to_spend: self.min_balance_to_spend,
            spend_unit: self.spend_unit,
            earn_cancel_shortfall: Some(self.earn_cancel_shortfall),
        }
    }
}

fn code_ok(s: &str) -> bool {
    let n = s.chars().count();
    n > 0 && n <= MAX_CODE_CHARS && s.trim() == s
}

fn range_msg(lo: impl std::fmt::Display, hi: impl std::fmt::Display) -> String {
    format!("{lo}~{hi} 사이여야 합니다 (must be between {lo} and {hi})")
}

/// Validates one keyed multiplier list (`policy.store_multipliers[i].store_code` ...).
fn keyed(
    v: &mut Violations,
    list: &[(String, i32)],
    field: &str,
    key: &str,
    value: &str,
    max: i32,
) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    if list.len() > MAX_LIST_ENTRIES {
        v.add(
            &format!("policy.{field}"),
            format!("최대 {MAX_LIST_ENTRIES}개입니다 (at most {MAX_LIST_ENTRIES} entries)"),
        );
    }
    for (i, (k, m)) in list.iter().enumerate() {
        if !code_ok(k) {
            v.add(
                &format!("policy.{field}[{i}].{key}"),
                format!(
                    "1~{MAX_CODE_CHARS}자, 앞뒤 공백 없이 입력하세요 (1 to {MAX_CODE_CHARS} characters without surrounding spaces)"
                ),
            );
        } else if out.contains_key(k) {
            v.add(
                &format!("policy.{field}[{i}].{key}"),
                "중복되었습니다 (duplicate)",
            );
        }
        if !(0..=max).contains(m) {
            v.add(&format!("policy.{field}[{i}].{value}"), range_msg(0, max));
        }
        out.insert(k.clone(), *m);
    }
    out
}

impl PolicyForm {
    /// The policy, or `InvalidArgument` naming every bad field (`policy.promotions[1].end_date`).
    pub fn validate(&self) -> Result<Policy, ServiceError> {
        let mut v = Violations::new();
        if !(0..=MAX_RATE_BP).contains(&self.base_rate_bp) {
            v.add("policy.base_rate_bp", range_msg(0, MAX_RATE_BP));
        }
        let mut grade_rates = BTreeMap::new();
        if self.grade_rates.len() > MAX_LIST_ENTRIES {
            v.add(
                "policy.grade_rates",
                format!("최대 {MAX_LIST_ENTRIES}개입니다 (at most {MAX_LIST_ENTRIES} entries)"),
            );
        }
        for (i, (g, r)) in self.grade_rates.iter().enumerate() {
            match Uuid::parse_str(g) {
                Ok(id) if grade_rates.contains_key(&id) => {
                    v.add(
                        &format!("policy.grade_rates[{i}].grade_id"),
                        "중복되었습니다 (duplicate)",
                    );
                }
                Ok(id) => {
                    grade_rates.insert(id, *r);
                }
                Err(_) => {
                    v.add(
                        &format!("policy.grade_rates[{i}].grade_id"),
                        "등급 ID(UUID)여야 합니다 (must be a grade id, a UUID)",
                    );
                }
            }
            if !(0..=MAX_RATE_BP).contains(r) {
                v.add(
                    &format!("policy.grade_rates[{i}].rate_bp"),
                    range_msg(0, MAX_RATE_BP),
                );
            }
        }
        let store_multipliers = keyed(
            &mut v,
            &self.store_multipliers,
            "store_multipliers",
            "store_code",
            "multiplier_bp",
            MAX_MULTIPLIER_BP,
        );
        let category_multipliers = keyed(
            &mut v,
            &self.category_multipliers,
            "category_multipliers",
            "category",
            "multiplier_bp",
            MAX_MULTIPLIER_BP,
        );
        if self.promotions.len() > MAX_PROMOTIONS {
            v.add(
                "policy.promotions",
                format!("최대 {MAX_PROMOTIONS}개입니다 (at most {MAX_PROMOTIONS} promotions)"),
            );
        }
        let mut promotions = Vec::with_capacity(self.promotions.len());
        for (i, p) in self.promotions.iter().enumerate() {
            let f = |name: &str| format!("policy.promotions[{i}].{name}");
            let name = p.name.trim();
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                v.add(
                    &f("name"),
                    format!(
                        "1~{MAX_NAME_CHARS}자입니다 (must be 1 to {MAX_NAME_CHARS} characters)"
                    ),
                );
            }
            let date = |s: &str, field: &str, v: &mut Violations| {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
                if d.is_none() {
                    v.add(
                        &f(field),
                        "YYYY-MM-DD 형식이어야 합니다 (must be a date YYYY-MM-DD)",
                    );
                }
                d
            };
            let start = date(&p.start_date, "start_date", &mut v);
            let end = date(&p.end_date, "end_date", &mut v);
            if let (Some(s), Some(e)) = (start, end)
                && e < s
            {
                v.add(
                    &f("end_date"),
                    "종료일이 시작일보다 빠릅니다 (must not be before start_date)",
                );
            }
            for (j, s) in p.store_codes.iter().enumerate() {
                if !code_ok(s) {
                    v.add(
                        &format!("policy.promotions[{i}].store_codes[{j}]"),
                        format!("1~{MAX_CODE_CHARS}자입니다 (1 to {MAX_CODE_CHARS} characters)"),
                    );
                }
            }
            if !(0..=MAX_MULTIPLIER_BP).contains(&p.multiplier_bp) {
                v.add(&f("multiplier_bp"), range_msg(0, MAX_MULTIPLIER_BP));
            }
            if !(0..=MAX_BONUS_POINTS).contains(&p.bonus_points) {
                v.add(&f("bonus_points"), range_msg(0, MAX_BONUS_POINTS));
            }
            if p.multiplier_bp == 0 && p.bonus_points == 0 {
                v.add(
                    &f("multiplier_bp"),
                    "배율이나 보너스 포인트 중 하나는 있어야 합니다 (a promotion needs a multiplier or a bonus)",
                );
            }
            if let (Some(start_date), Some(end_date)) = (start, end) {
                promotions.push(Promotion {
                    name: name.to_string(),
                    start_date,
                    end_date,
                    store_codes: p.store_codes.clone(),
                    multiplier_bp: p.multiplier_bp,
                    bonus_points: p.bonus_points,
                });
            }
        }
        if !(0..=MAX_AMOUNT_KRW).contains(&self.min_purchase_krw) {
            v.add("policy.min_purchase_krw", range_msg(0, MAX_AMOUNT_KRW));
        }
        if !(0..=MAX_POINTS).contains(&self.max_points_per_earn) {
            v.add("policy.max_points_per_earn", range_msg(0, MAX_POINTS));
        }
        let months_ok = (0..=MAX_VALIDITY_MONTHS).contains(&self.validity_months);
        let days_ok = (0..=MAX_VALIDITY_DAYS).contains(&self.validity_days);
        if !months_ok {
            v.add("policy.validity_months", range_msg(0, MAX_VALIDITY_MONTHS));
        }
        if !days_ok {
            v.add("policy.validity_days", range_msg(0, MAX_VALIDITY_DAYS));
        }
        if months_ok && days_ok && self.validity_months == 0 && self.validity_days == 0 {
            v.add(
                "policy.validity_months",
                "유효기간이 필요합니다 (validity_months or validity_days must be positive)",
            );
        }
        if !(0..=MAX_PENDING_DAYS).contains(&self.pending_days) {
            v.add("policy.pending_days", range_msg(0, MAX_PENDING_DAYS));
        } else if months_ok
            && days_ok
            // The shortest month has 28 days: points must become usable before they expire.
            && i64::from(self.pending_days)
                >= i64::from(self.validity_months) * 28 + i64::from(self.validity_days)
        {
            v.add(
                "policy.pending_days",
                "적립 대기 기간은 유효기간보다 짧아야 합니다 (must be shorter than the validity)",
            );
        }
        if !(0..=MAX_POINTS).contains(&self.min_balance_to_spend) {
            v.add("policy.min_balance_to_spend", range_msg(0, MAX_POINTS));
        }
        if !(1..=MAX_SPEND_UNIT).contains(&self.spend_unit) {
            v.add("policy.spend_unit", range_msg(1, MAX_SPEND_UNIT));
        }
        v.finish()?;
        Ok(Policy {
            base_rate_bp: self.base_rate_bp,
            grade_rates,
            store_multipliers,
            category_multipliers,
            promotions,
            min_purchase_krw: self.min_purchase_krw,
            max_points_per_earn: self.max_points_per_earn,
            validity_months: self.validity_months,
            validity_days: self.validity_days,
            pending_days: self.pending_days,
            min_balance_to_spend: self.min_balance_to_spend,
            spend_unit: self.spend_unit,
            earn_cancel_shortfall: self.earn_cancel_shortfall.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn purchase<'a>(store: &'a str, amount: i64, items: &'a [LineItem]) -> Purchase<'a> {
        Purchase {
            store_code: store,
            amount_krw: amount,
            items,
            date: date("2026-12-03"),
        }
    }

    fn item(category: &str, amount: i64) -> LineItem {
        LineItem {
            sku: format!("SKU-{category}"),
            category: category.into(),
            amount_krw: amount,
            quantity: 1,
        }
    }

    #[test]
    fn the_default_policy_gives_one_percent_for_five_years() {
        let p = Policy::default();
        assert_eq!(
            p.quote(p.rate_for(None, None), &purchase("GN001", 12_345, &[]))
                .points,
            123
        );
        assert_eq!(p.expire_date(date("2026-12-03")), date("2031-12-03"));
        assert_eq!(p.available_date(date("2026-12-03")), None);
        assert_eq!(p.to_form().validate().expect("valid"), p);
    }

    #[test]
    fn rates_come_from_the_policy_then_the_grade_table_then_the_base() {
        let gold = Uuid::now_v7();
        let vip = Uuid::now_v7();
        let mut p = Policy::default();
        p.grade_rates.insert(vip, 500);
        assert_eq!(p.rate_for(Some(vip), Some(300)), 500);
        assert_eq!(p.rate_for(Some(gold), Some(200)), 200);
        assert_eq!(p.rate_for(Some(gold), None), 100);
        assert_eq!(p.rate_for(None, None), 100);
    }

    #[test]
    fn multipliers_compound_and_round_down_once() {
        let mut p = Policy::default();
        p.store_multipliers.insert("GN001".into(), 15_000);
        p.category_multipliers.insert("beverage".into(), 20_000);
        // 10,000 beverage x2 + 5,555 other x1 = 25,555 weighted; x1.5 store = 38,332.5; at 3 %
        // = 1,149.975 -> 1,149.
        let items = [item("beverage", 10_000), item("bakery", 5_555)];
        let q = p.quote(300, &purchase("GN001", 15_555, &items));
        assert_eq!(q.points, 1_149);
        // Another store: no store multiplier.
        let q = p.quote(300, &purchase("HD002", 15_555, &items));
        assert_eq!(q.points, 766); // 25,555 x 3 % = 766.65
    }

    #[test]
    fn promotions_apply_by_date_and_store_best_multiplier_and_all_bonuses() {
        let p = Policy {
            promotions: vec![
                Promotion {
                    name: "연말 2배".into(),
                    start_date: date("2026-12-01"),
                    end_date: date("2026-12-31"),
                    store_codes: vec![],
                    multiplier_bp: 20_000,
                    bonus_points: 0,
                },
                Promotion {
                    name: "강남 3배".into(),
                    start_date: date("2026-12-03"),
                    end_date: date("2026-12-03"),
                    store_codes: vec!["GN001".into()],
                    multiplier_bp: 30_000,
                    bonus_points: 100,
                },
                Promotion {
                    name: "오픈 보너스".into(),
                    start_date: date("2026-12-03"),
                    end_date: date("2026-12-04"),
                    store_codes: vec![],
                    multiplier_bp: 0,
                    bonus_points: 50,
                },
                Promotion {
                    name: "지난 행사".into(),
                    start_date: date("2026-11-01"),
                    end_date: date("2026-11-30"),
                    store_codes: vec![],
                    multiplier_bp: 100_000,
                    bonus_points: 9_999,
                },
            ],
            ..Policy::default()
        };
        let q = p.quote(100, &purchase("GN001", 10_000, &[]));
        assert_eq!(q.points, 300 + 150);
        assert_eq!(q.bonus_points, 150);
        assert_eq!(q.promotions, ["연말 2배", "강남 3배", "오픈 보너스"]);
        let q = p.quote(100, &purchase("HD002", 10_000, &[]));
        assert_eq!(q.points, 200 + 50);
    }

    #[test]
    fn minimum_purchase_and_cap() {
        let p = Policy {
            min_purchase_krw: 5_000,
            max_points_per_earn: 1_000,
            ..Policy::default()
        };
        let q = p.quote(100, &purchase("GN001", 4_999, &[]));
        assert!(q.below_minimum);
        assert_eq!(q.points, 0);
        assert_eq!(p.quote(100, &purchase("GN001", 5_000, &[])).points, 50);
        let q = p.quote(100, &purchase("GN001", 1_000_000, &[]));
        assert!(q.capped);
        assert_eq!(q.points, 1_000);
    }

    #[test]
    fn validity_months_clamp_to_the_month_end_and_pending_counts_days() {
        let p = Policy {
            validity_months: 12,
            validity_days: 1,
            pending_days: 7,
            ..Policy::default()
        };
        assert_eq!(p.expire_date(date("2024-02-29")), date("2025-03-01"));
        assert_eq!(
            p.available_date(date("2026-12-30")),
            Some(date("2027-01-06"))
        );
    }

    #[test]
    fn validation_names_every_bad_field() {
        let form = PolicyForm {
            base_rate_bp: 10_001,
            grade_rates: vec![("nope".into(), 100), (Uuid::nil().to_string(), -1)],
            store_multipliers: vec![("GN001".into(), 10_000), ("GN001".into(), 2_000_000)],
            category_multipliers: vec![(" x".into(), 10_000)],
            promotions: vec![PromotionForm {
                name: String::new(),
                start_date: "2026-12-31".into(),
                end_date: "2026-12-01".into(),
                store_codes: vec![],
                multiplier_bp: 0,
                bonus_points: 0,
            }],
            min_purchase_krw: -1,
            max_points_per_earn: -1,
            validity_months: 0,
            validity_days: 0,
            pending_days: 400,
            min_balance_to_spend: -5,
            spend_unit: 0,
            earn_cancel_shortfall: None,
        };
        let err = form.validate().expect_err("invalid");
        let ServiceError::InvalidArgument(v) = err else {
            panic!("expected InvalidArgument, got {err:?}");
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        for f in [
            "policy.base_rate_bp",
            "policy.grade_rates[0].grade_id",
            "policy.grade_rates[1].rate_bp",
            "policy.store_multipliers[1].store_code",
            "policy.store_multipliers[1].multiplier_bp",
            "policy.category_multipliers[0].category",
            "policy.promotions[0].name",
            "policy.promotions[0].end_date",
            "policy.promotions[0].multiplier_bp",
            "policy.min_purchase_krw",
            "policy.max_points_per_earn",
            "policy.validity_months",
            "policy.pending_days",
            "policy.min_balance_to_spend",
            "policy.spend_unit",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn pending_must_end_before_expiry() {
        let mut f = Policy::default().to_form();
        f.validity_months = 0;
        f.validity_days = 10;
        f.pending_days = 10;
        assert!(f.validate().is_err());
        f.pending_days = 9;
        assert!(f.validate().is_ok());
    }

    proptest! {
        /// Splitting a receipt into lines of one category never changes the points, and the
        /// points are never above the exact (unrounded) value.
        #[test]
        fn lines_do_not_change_the_points(
            amounts in proptest::collection::vec(0i64..5_000_000, 1..8),
            rate in 0i32..=MAX_RATE_BP,
            store_m in 0i32..=100_000,
        ) {
            let mut p = Policy::default();
            p.store_multipliers.insert("S".into(), store_m);
            let total: i64 = amounts.iter().sum();
            let items: Vec<LineItem> = amounts.iter().map(|a| item("c", *a)).collect();
            let whole = p.quote(rate, &purchase("S", total, &[]));
            let split = p.quote(rate, &purchase("S", total, &items));
            prop_assert_eq!(whole.points, split.points);
            let exact = i128::from(total) * i128::from(rate) * i128::from(store_m);
            prop_assert!(i128::from(whole.points) * i128::from(BP) * i128::from(BP) <= exact);
            prop_assert!(i128::from(whole.points + 1) * i128::from(BP) * i128::from(BP) > exact);
        }
    }
}
