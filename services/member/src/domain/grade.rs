//! Grades: a tenant-defined table of purchase thresholds. A member holds the grade with the
//! highest threshold not above their purchases over the trailing 12 months.
use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

pub const MAX_GRADE_NAME_CHARS: usize = 30;
pub const MAX_POINTS_RATE_BP: i32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grade {
    pub id: Uuid,
    pub name: String,
    pub min_purchase_krw: i64,
    pub points_rate_bp: i32,
}

/// A purchase as the points service announced it: what grade evaluation sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub member_id: Uuid,
    pub store_code: String,
    pub pos_transaction_id: String,
    pub amount_krw: i64,
    pub occurred_time: DateTime<Utc>,
}

/// One row of a `SetGrades` request, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GradeForm {
    /// Empty for a new grade.
    pub id: String,
    pub name: String,
    pub min_purchase_krw: i64,
    pub points_rate_bp: i32,
}

/// A validated row: the id when the caller named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeDraft {
    pub id: Option<Uuid>,
    pub name: String,
    pub min_purchase_krw: i64,
    pub points_rate_bp: i32,
}

/// Validates a whole grade table, naming every bad row and field (`grades[2].name`).
pub fn validate_table(forms: &[GradeForm]) -> Result<Vec<GradeDraft>, ServiceError> {
    let mut v = Violations::new();
    if forms.is_empty() {
        v.add(
            "grades",
            "등급을 하나 이상 입력하세요 (at least one grade is required)",
        );
    }
    let mut drafts = Vec::with_capacity(forms.len());
    for (i, f) in forms.iter().enumerate() {
        let field = |name: &str| format!("grades[{i}].{name}");
        let name = f.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_GRADE_NAME_CHARS {
            v.add(
                &field("name"),
                format!("등급 이름은 1~{MAX_GRADE_NAME_CHARS}자입니다 (must be 1 to {MAX_GRADE_NAME_CHARS} characters)"),
            );
        } else if forms[..i].iter().any(|o| o.name.trim() == name) {
            v.add(
                &field("name"),
                "등급 이름이 중복됩니다 (grade names must be unique)",
            );
        }
        if f.min_purchase_krw < 0 {
            v.add(
                &field("min_purchase_krw"),
                "0 이상이어야 합니다 (must not be negative)",
            );
        } else if forms[..i]
            .iter()
            .any(|o| o.min_purchase_krw == f.min_purchase_krw)
        {
            v.add(
                &field("min_purchase_krw"),
                "등급 기준 금액이 중복됩니다 (thresholds must be unique)",
            );
        }
        if !(0..=MAX_POINTS_RATE_BP).contains(&f.points_rate_bp) {
            v.add(
                &field("points_rate_bp"),
                "0~10000 (0~100%) 사이여야 합니다 (must be between 0 and 10000 basis points)",
            );
        }
        let id = if f.id.is_empty() {
            None
        } else {
            match Uuid::parse_str(&f.id) {
                Ok(id) if forms[..i].iter().any(|o| o.id == f.id) => {
                    v.add(
                        &field("grade_id"),
                        "등급 ID가 중복됩니다 (grade ids must be unique)",
                    );
                    Some(id)
                }
                Ok(id) => Some(id),
                Err(_) => {
                    v.add(
                        &field("grade_id"),
                        "UUID 형식이어야 합니다 (must be a UUID)",
                    );
                    None
                }
            }
        };
        drafts.push(GradeDraft {
            id,
            name,
            min_purchase_krw: f.min_purchase_krw,
            points_rate_bp: f.points_rate_bp,
        });
    }
    let base_count = forms.iter().filter(|f| f.min_purchase_krw == 0).count();
    if !forms.is_empty() && base_count != 1 {
        v.add(
            "grades",
            "기준 금액이 0원인 기본 등급이 정확히 하나 있어야 합니다 (exactly one grade must have min_purchase_krw = 0)",
        );
    }
    v.finish()?;
    Ok(drafts)
}

/// Sorts a grade table by threshold, lowest first (the order every API returns).
pub fn sort(grades: &mut [Grade]) {
    grades.sort_by_key(|g| g.min_purchase_krw);
}

/// The grade for a trailing purchase sum: the highest threshold not above it.
pub fn select(grades: &[Grade], trailing_purchase_krw: i64) -> Option<&Grade> {
    grades
        .iter()
        .filter(|g| g.min_purchase_krw <= trailing_purchase_krw)
        .max_by_key(|g| g.min_purchase_krw)
}

/// The grade a new member starts with (the lowest; validation guarantees it is 0 KRW).
pub fn base(grades: &[Grade]) -> Option<&Grade> {
    grades.iter().min_by_key(|g| g.min_purchase_krw)
}

/// The first instant counted in the trailing 12 months that end at `now` (in UTC: a
/// purchase's `occurred_time` is an instant, and a window of instants needs no zone).
pub fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(12))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn table() -> Vec<Grade> {
        [
            ("WELCOME", 0),
            ("SILVER", 300_000),
            ("GOLD", 1_000_000),
            ("VIP", 5_000_000),
        ]
        .into_iter()
        .map(|(n, min)| Grade {
            id: Uuid::now_v7(),
            name: n.into(),
            min_purchase_krw: min,
            points_rate_bp: 100,
        })
        .collect()
    }

    #[test]
    fn selects_the_highest_threshold_reached() {
        let t = table();
        let pick = |sum| select(&t, sum).map(|g| g.name.as_str());
        assert_eq!(pick(0), Some("WELCOME"));
        assert_eq!(pick(299_999), Some("WELCOME"));
        assert_eq!(pick(300_000), Some("SILVER"));
        assert_eq!(pick(4_999_999), Some("GOLD"));
        assert_eq!(pick(50_000_000), Some("VIP"));
        assert_eq!(pick(-1), None, "refunds beyond purchases select nothing");
        assert_eq!(base(&t).map(|g| g.name.as_str()), Some("WELCOME"));
        assert!(select(&[], 10).is_none());
    }

    #[test]
    fn window_is_twelve_calendar_months() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 3, 9, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(window_start(now).to_rfc3339(), "2025-12-03T09:00:00+00:00");
        let leap = Utc
            .with_ymd_and_hms(2028, 2, 29, 0, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(window_start(leap).to_rfc3339(), "2027-02-28T00:00:00+00:00");
    }

    fn form(name: &str, min: i64, bp: i32) -> GradeForm {
        GradeForm {
            id: String::new(),
            name: name.into(),
            min_purchase_krw: min,
            points_rate_bp: bp,
        }
    }

    fn fields(err: ServiceError) -> Vec<String> {
        match err {
            ServiceError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_table_passes() {
        let drafts =
            validate_table(&[form("WELCOME", 0, 100), form(" GOLD ", 1_000, 300)]).expect("valid");
        assert_eq!(drafts[1].name, "GOLD");
        assert_eq!(drafts[0].id, None);
    }

    #[test]
    fn every_bad_row_and_field_is_named() {
        let mut bad_id = form("X", 5, 0);
        bad_id.id = "nope".into();
        let err = validate_table(&[
            form("", 0, 100),
            form("SILVER", -1, 10_001),
            form("SILVER", 0, 0),
            bad_id,
        ])
        .expect_err("invalid");
        let f = fields(err);
        for expected in [
            "grades[0].name",
            "grades[1].min_purchase_krw",
            "grades[1].points_rate_bp",
            "grades[2].name",
            "grades[2].min_purchase_krw",
            "grades[3].grade_id",
            "grades",
        ] {
            assert!(
                f.iter().any(|x| x == expected),
                "{expected} missing from {f:?}"
            );
        }
    }

    #[test]
    fn exactly_one_base_grade() {
        assert_eq!(
            fields(validate_table(&[form("A", 10, 0)]).expect_err("no base")),
            ["grades"]
        );
        assert_eq!(fields(validate_table(&[]).expect_err("empty")), ["grades"]);
    }
}
