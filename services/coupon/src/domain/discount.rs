//! Discounts: a fixed amount of won, or a rate in basis points rounded down to the won with an
//! optional cap. Integer arithmetic only; a discount never exceeds the amount it applies to.
use serde::{Deserialize, Serialize};
use spharos_kit::Violations;

/// Largest fixed discount or cap a template may carry (100 million won): far above any
/// till basket, low enough that no sum of them overflows.
pub const MAX_AMOUNT_KRW: i64 = 100_000_000;
pub const MAX_RATE_BP: i32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discount {
    Fixed {
        amount_krw: i64,
    },
    Percent {
        rate_bp: i32,
        /// `None` = no cap.
        max_discount_krw: Option<i64>,
    },
}

impl Discount {
    /// The discount on `eligible_krw` (the part of the basket the coupon applies to).
    pub fn apply(&self, eligible_krw: i64) -> i64 {
        let eligible = eligible_krw.max(0);
        let d = match *self {
            Discount::Fixed { amount_krw } => amount_krw,
            Discount::Percent {
                rate_bp,
                max_discount_krw,
            } => {
                // i128: amount × rate cannot overflow, and the division rounds down.
                let raw = (eligible as i128 * rate_bp as i128 / MAX_RATE_BP as i128) as i64;
                match max_discount_krw {
                    Some(cap) => raw.min(cap),
                    None => raw,
                }
            }
        };
        d.clamp(0, eligible)
    }

    /// Checks the numbers; `field` is the discount's path (`template.discount`).
    pub fn check(&self, field: &str, v: &mut Violations) {
        match *self {
            Discount::Fixed { amount_krw } => {
                v.check(
                    (1..=MAX_AMOUNT_KRW).contains(&amount_krw),
                    &format!("{field}.amount_krw"),
                    "할인 금액은 1원 이상 1억원 이하입니다 (must be 1..=100,000,000 KRW)",
                );
            }
            Discount::Percent {
                rate_bp,
                max_discount_krw,
            } => {
                v.check(
                    (1..=MAX_RATE_BP).contains(&rate_bp),
                    &format!("{field}.percent.rate_bp"),
                    "할인율은 1~10000 bp입니다 (must be 1..=10000 basis points; 1000 = 10%)",
                );
                if let Some(cap) = max_discount_krw {
                    v.check(
                        (1..=MAX_AMOUNT_KRW).contains(&cap),
                        &format!("{field}.percent.max_discount_krw"),
                        "최대 할인 금액은 0(제한 없음) 또는 1원 이상 1억원 이하입니다 (must be 0 for no cap, or 1..=100,000,000 KRW)",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fixed_amounts_never_exceed_the_basket() {
        let d = Discount::Fixed { amount_krw: 5_000 };
        assert_eq!(d.apply(30_000), 5_000);
        assert_eq!(d.apply(3_000), 3_000);
        assert_eq!(d.apply(0), 0);
    }

    #[test]
    fn rates_round_down_and_respect_the_cap() {
        let ten = Discount::Percent {
            rate_bp: 1_000,
            max_discount_krw: Some(3_000),
        };
        assert_eq!(ten.apply(12_345), 1_234, "10% of 12,345 rounds down");
        assert_eq!(ten.apply(50_000), 3_000, "capped");
        let uncapped = Discount::Percent {
            rate_bp: 333,
            max_discount_krw: None,
        };
        assert_eq!(uncapped.apply(1_000_000), 33_300);
        assert_eq!(uncapped.apply(29), 0);
        let all = Discount::Percent {
            rate_bp: 10_000,
            max_discount_krw: None,
        };
        assert_eq!(all.apply(i64::MAX), i64::MAX, "no overflow at the extreme");
    }

    #[test]
    fn checks_name_the_field() {
        let mut v = Violations::new();
        Discount::Fixed { amount_krw: 0 }.check("template.discount", &mut v);
        Discount::Percent {
            rate_bp: 10_001,
            max_discount_krw: Some(-1),
        }
        .check("template.discount", &mut v);
        let Err(spharos_kit::ServiceError::InvalidArgument(f)) = v.finish() else {
            panic!("violations expected")
        };
        let fields: Vec<_> = f.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "template.discount.amount_krw",
                "template.discount.percent.rate_bp",
                "template.discount.percent.max_discount_krw"
            ]
        );
    }

    proptest! {
        #[test]
        fn a_discount_is_between_zero_and_the_eligible_amount(
            eligible in 0i64..1_000_000_000,
            rate in 1i32..=10_000,
            cap in proptest::option::of(1i64..=MAX_AMOUNT_KRW),
            fixed in 1i64..=MAX_AMOUNT_KRW,
        ) {
            let kinds = [
                Discount::Percent { rate_bp: rate, max_discount_krw: cap },
                Discount::Fixed { amount_krw: fixed },
            ];
            for d in kinds {
                let x = d.apply(eligible);
                prop_assert!(x >= 0 && x <= eligible);
            }
        }
    }
}
