//! A month's invoice from its plan periods and usage: fees prorated by days, usage by channel ×
//! unit price, VAT 10 % truncated below 1 won, all in integer won. Also the invoice's status
//! machine: draft → issued → paid, and draft or issued → void.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{
    catalogue::{BillingCatalogue, Channel, Plan, VAT_PERCENT},
    month::YearMonth,
    timeline::PlanPeriod,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    BaseFee,
    ModuleFee,
    Usage,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BaseFee => "BASE_FEE",
            Self::ModuleFee => "MODULE_FEE",
            Self::Usage => "USAGE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BASE_FEE" => Some(Self::BaseFee),
            "MODULE_FEE" => Some(Self::ModuleFee),
            "USAGE" => Some(Self::Usage),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// 1-based, in the order computed.
    pub line_no: i32,
    pub kind: LineKind,
    /// `BASIC`, `MODULE_<module>` or `CHANNEL_<channel>`.
    pub code: String,
    pub description: String,
    /// Days active (fees) or messages (usage).
    pub quantity: i64,
    /// Per month (fees) or per message (usage).
    pub unit_price_krw: i64,
    pub days_active: Option<i32>,
    pub days_in_month: Option<i32>,
    pub amount_krw: i64,
}

/// The computed content of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceAmounts {
    pub lines: Vec<InvoiceLine>,
    pub subtotal_krw: i64,
    pub vat_krw: i64,
    pub total_krw: i64,
}

/// `monthly_fee × days_active / days_in_month`, rounded down (integer division; the
/// intermediate product in `i128` cannot overflow).
pub fn prorate(monthly_fee_krw: i64, days_active: u32, days_in_month: u32) -> i64 {
    if days_in_month == 0 {
        return 0;
    }
    let v = i128::from(monthly_fee_krw) * i128::from(days_active) / i128::from(days_in_month);
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// VAT on `subtotal`: floor(subtotal × 10 / 100). Korean practice truncates won below 1.
pub fn vat(subtotal_krw: i64) -> i64 {
    let v = i128::from(subtotal_krw) * i128::from(VAT_PERCENT);
    i64::try_from(v.div_euclid(100)).unwrap_or(i64::MAX)
}

fn span(month: YearMonth, p: &PlanPeriod) -> (NaiveDate, NaiveDate) {
    let from = p.start.max(month.first_day());
    let to = p
        .end
        .map_or(month.end_exclusive(), |e| e.min(month.end_exclusive()));
    (from, to.pred_opt().unwrap_or(to))
}

/// The invoice of `month`: one fee line per Basic period and per Custom module per period
/// (each prorated and rounded down on its own), then one usage line per channel with
/// messages (`usage` holds the month's total per channel), then VAT and the total.
pub fn compute(
    month: YearMonth,
    periods: &[PlanPeriod],
    usage: &[(Channel, i64)],
    catalogue: &BillingCatalogue,
) -> InvoiceAmounts {
    let days_in_month = month.days();
    let mut lines: Vec<InvoiceLine> = Vec::new();
    let mut sorted: Vec<&PlanPeriod> = periods.iter().collect();
    sorted.sort_by_key(|p| p.start);
    for p in sorted {
        let days = month.overlap_days(p.start, p.end);
        if days == 0 {
            continue;
        }
        let (from, to) = span(month, p);
        let dates = format!("{from}~{to}, {days}/{days_in_month}일");
        let fee_line = |kind, code: String, description: String, fee: i64| InvoiceLine {
            line_no: 0,
            kind,
            code,
            description,
            quantity: i64::from(days),
            unit_price_krw: fee,
            days_active: i32::try_from(days).ok(),
            days_in_month: i32::try_from(days_in_month).ok(),
            amount_krw: prorate(fee, days, days_in_month),
        };
        match p.plan {
            Plan::Basic => lines.push(fee_line(
                LineKind::BaseFee,
                "BASIC".into(),
                format!("Basic 요금제 기본료 (Basic plan fee) {dates}"),
                p.base_fee_krw,
            )),
            Plan::Custom => {
                for f in &p.module_fees {
                    lines.push(fee_line(
                        LineKind::ModuleFee,
                        format!("MODULE_{}", f.module.as_str()),
                        format!("Custom 모듈 이용료 {} {dates}", f.module.label()),
                        f.monthly_fee_krw,
                    ));
                }
            }
        }
    }
    for channel in Channel::ALL {
        let count: i64 = usage
            .iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, n)| *n)
            .sum();
        if count <= 0 {
            continue;
        }
        let price = catalogue.unit_price(channel);
        lines.push(InvoiceLine {
            line_no: 0,
            kind: LineKind::Usage,
            code: format!("CHANNEL_{}", channel.as_str()),
            description: channel.label().to_string(),
            quantity: count,
            unit_price_krw: price,
            days_active: None,
            days_in_month: None,
            amount_krw: count.saturating_mul(price),
        });
    }
    for (i, l) in lines.iter_mut().enumerate() {
        l.line_no = i32::try_from(i + 1).unwrap_or(i32::MAX);
    }
    let subtotal_krw = lines
        .iter()
        .fold(0i64, |acc, l| acc.saturating_add(l.amount_krw));
    let vat_krw = vat(subtotal_krw);
    InvoiceAmounts {
        lines,
        subtotal_krw,
        vat_krw,
        total_krw: subtotal_krw.saturating_add(vat_krw),
    }
}

/// A month's invoice as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: Uuid,
    pub tenant: TenantId,
    pub month: YearMonth,
    pub status: InvoiceStatus,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub amounts: InvoiceAmounts,
    pub issue_time: Option<DateTime<Utc>>,
    pub paid_time: Option<DateTime<Utc>>,
    pub void_time: Option<DateTime<Utc>>,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Issued,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Issued => "ISSUED",
            Self::Paid => "PAID",
            Self::Void => "VOID",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DRAFT" => Some(Self::Draft),
            "ISSUED" => Some(Self::Issued),
            "PAID" => Some(Self::Paid),
            "VOID" => Some(Self::Void),
            _ => None,
        }
    }
}

/// What the platform does to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceAction {
    Issue,
    MarkPaid,
    Void,
}

/// The status after `action`, or `FAILED_PRECONDITION` (`INVOICE_STATUS_CONFLICT`).
pub fn transition(
    from: InvoiceStatus,
    action: InvoiceAction,
) -> Result<InvoiceStatus, ServiceError> {
    use InvoiceAction as A;
    use InvoiceStatus as S;
    match (from, action) {
        (S::Draft, A::Issue) => Ok(S::Issued),
        (S::Issued, A::MarkPaid) => Ok(S::Paid),
        (S::Draft | S::Issued, A::Void) => Ok(S::Void),
        (from, action) => {
            let (ko, en) = match action {
                A::Issue => ("발행", "issued"),
                A::MarkPaid => ("입금 처리", "marked paid"),
                A::Void => ("무효 처리", "voided"),
            };
            Err(ServiceError::precondition(
                "INVOICE_STATUS_CONFLICT",
                format!(
                    "{} 상태의 청구서는 {ko}할 수 없습니다 (a {} invoice cannot be {en})",
                    from.as_str(),
                    from.as_str().to_lowercase()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        catalogue::{Module, ModuleFee, PlanChoice},
        timeline::{self, PlanPeriod},
    };

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn period(plan: Plan, fees: &[(Module, i64)], start: &str, end: Option<&str>) -> PlanPeriod {
        let mut p = PlanPeriod::new(
            Uuid::now_v7(),
            &PlanChoice {
                plan,
                module_fees: fees
                    .iter()
                    .map(|(m, f)| ModuleFee {
                        module: *m,
                        monthly_fee_krw: *f,
                    })
                    .collect(),
            },
            30_000,
            d(start),
        );
        p.end = end.map(d);
        p
    }

    #[test]
    fn proration_and_vat_round_down() {
        // 30,000 × 15 / 31 = 450,000 / 31 = 14,516.12… → 14,516
        assert_eq!(prorate(30_000, 15, 31), 14_516);
        assert_eq!(prorate(30_000, 31, 31), 30_000);
        assert_eq!(prorate(30_000, 0, 31), 0);
        // 29 days of February in a leap year: the whole fee.
        assert_eq!(prorate(30_000, 29, 29), 30_000);
        assert_eq!(vat(90_000), 9_000);
        // 12,345 × 10 / 100 = 1,234.5 → 1,234
        assert_eq!(vat(12_345), 1_234);
        assert_eq!(vat(9), 0);
    }

    #[test]
    fn a_full_basic_month_with_sms_and_alimtalk() {
        let mar = YearMonth::parse("2026-03").expect("month");
        let periods = [period(Plan::Basic, &[], "2026-02-10", None)];
        let usage = [(Channel::Sms, 1_000), (Channel::KakaoAlimtalk, 5_000)];
        let inv = compute(mar, &periods, &usage, &BillingCatalogue::default());
        // 30,000 (base) + 1,000 × 20 (SMS) + 5,000 × 8 (Alimtalk) = 90,000; VAT 9,000.
        let amounts: Vec<(&str, i64)> = inv
            .lines
            .iter()
            .map(|l| (l.code.as_str(), l.amount_krw))
            .collect();
        assert_eq!(
            amounts,
            [
                ("BASIC", 30_000),
                ("CHANNEL_SMS", 20_000),
                ("CHANNEL_KAKAO_ALIMTALK", 40_000)
            ]
        );
        assert_eq!(
            (inv.subtotal_krw, inv.vat_krw, inv.total_krw),
            (90_000, 9_000, 99_000)
        );
        assert_eq!(inv.lines[0].days_active, Some(31));
        assert_eq!(
            inv.lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_mid_month_change_prorates_each_side() {
        let mar = YearMonth::parse("2026-03").expect("month");
        let live = vec![period(Plan::Basic, &[], "2026-03-01", None)];
        let new = period(
            Plan::Custom,
            &[(Module::Membership, 500_000), (Module::Campaign, 300_000)],
            "2026-03-16",
            None,
        );
        let periods = timeline::change_now(live, new, d("2026-03-16")).expect("changed");
        let inv = compute(mar, &periods, &[], &BillingCatalogue::default());
        // Basic 3/1–3/15: 30,000 × 15 / 31 = 14,516
        // Membership 3/16–3/31: 500,000 × 16 / 31 = 8,000,000 / 31 = 258,064.5… → 258,064
        // Campaign 3/16–3/31: 300,000 × 16 / 31 = 4,800,000 / 31 = 154,838.7… → 154,838
        let amounts: Vec<(&str, i64)> = inv
            .lines
            .iter()
            .map(|l| (l.code.as_str(), l.amount_krw))
            .collect();
        assert_eq!(
            amounts,
            [
                ("BASIC", 14_516),
                ("MODULE_MEMBERSHIP", 258_064),
                ("MODULE_CAMPAIGN", 154_838)
            ]
        );
        // 14,516 + 258,064 + 154,838 = 427,418; VAT floor(42,741.8) = 42,741.
        assert_eq!(inv.subtotal_krw, 427_418);
        assert_eq!(inv.vat_krw, 42_741);
        assert_eq!(inv.total_krw, 470_159);
        assert!(inv.lines[0].description.contains("2026-03-01~2026-03-15"));
    }

    #[test]
    fn periods_outside_the_month_and_empty_usage_add_nothing() {
        let mar = YearMonth::parse("2026-03").expect("month");
        let periods = [period(Plan::Basic, &[], "2026-04-01", None)];
        let inv = compute(
            mar,
            &periods,
            &[(Channel::AppPush, 0)],
            &BillingCatalogue::default(),
        );
        assert!(inv.lines.is_empty());
        assert_eq!(inv.total_krw, 0);
        // Free channels still show their count.
        let inv = compute(
            mar,
            &[],
            &[(Channel::AppPush, 7)],
            &BillingCatalogue::default(),
        );
        assert_eq!(inv.lines[0].quantity, 7);
        assert_eq!(inv.lines[0].amount_krw, 0);
    }

    #[test]
    fn statuses_move_forward_only() {
        use InvoiceAction as A;
        use InvoiceStatus as S;
        assert_eq!(transition(S::Draft, A::Issue).expect("ok"), S::Issued);
        assert_eq!(transition(S::Issued, A::MarkPaid).expect("ok"), S::Paid);
        assert_eq!(transition(S::Draft, A::Void).expect("ok"), S::Void);
        assert_eq!(transition(S::Issued, A::Void).expect("ok"), S::Void);
        for (from, action) in [
            (S::Draft, A::MarkPaid),
            (S::Paid, A::Void),
            (S::Paid, A::Issue),
            (S::Void, A::Issue),
            (S::Void, A::MarkPaid),
            (S::Issued, A::Issue),
        ] {
            match transition(from, action) {
                Err(ServiceError::FailedPrecondition { reason, .. }) => {
                    assert_eq!(reason, "INVOICE_STATUS_CONFLICT")
                }
                other => panic!("{from:?} {action:?}: {other:?}"),
            }
        }
    }
}
