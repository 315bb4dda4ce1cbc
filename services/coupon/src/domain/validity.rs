//! When an issued coupon (or voucher) may be used: a fixed date range, or N days from issue
//! with the issue day counting as the first. Days start and end at midnight in the tenant's
//! zone; the stored window is in UTC.
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use spharos_kit::{
    Violations,
    time::{end_of_day, local_date},
};

/// Ten years: longer validity is a typing error, not a promotion.
pub const MAX_DAYS: i32 = 3_650;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validity {
    /// From the start of `start` to the end of `end`, in the tenant zone.
    Fixed { start: NaiveDate, end: NaiveDate },
    /// From issue to the end of the `n`-th day (1 = until the end of the issue day).
    DaysFromIssue(i32),
}

/// A validity as typed: dates not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ValidityForm {
    Fixed {
        start_date: String,
        end_date: String,
    },
    DaysFromIssue(i32),
}

impl ValidityForm {
    /// Parses and checks; `field` is the validity's path (`template.validity`). A fixed range
    /// must not end before `today` (it could never be used).
    pub fn validate(&self, field: &str, today: NaiveDate, v: &mut Violations) -> Option<Validity> {
        match self {
            ValidityForm::DaysFromIssue(n) => {
                if (1..=MAX_DAYS).contains(n) {
                    Some(Validity::DaysFromIssue(*n))
                } else {
                    v.add(
                        &format!("{field}.days_from_issue"),
                        "유효 일수는 1~3650일입니다 (must be 1..=3650 days)",
                    );
                    None
                }
            }
            ValidityForm::Fixed {
                start_date,
                end_date,
            } => {
                let start = parse_date(v, &format!("{field}.fixed.start_date"), start_date);
                let end = parse_date(v, &format!("{field}.fixed.end_date"), end_date);
                let (start, end) = (start?, end?);
                let end_field = format!("{field}.fixed.end_date");
                if end < start {
                    v.add(
                        &end_field,
                        "종료일은 시작일 이후여야 합니다 (must not be before start_date)",
                    );
                    return None;
                }
                if end < today {
                    v.add(
                        &end_field,
                        "종료일이 이미 지났습니다 (must not be in the past)",
                    );
                    return None;
                }
                if (end - start).num_days() > MAX_DAYS as i64 {
                    v.add(
                        &end_field,
                        "유효 기간은 최대 3650일입니다 (the range may span at most 3650 days)",
                    );
                    return None;
                }
                Some(Validity::Fixed { start, end })
            }
        }
    }
}

fn parse_date(v: &mut Violations, field: &str, value: &str) -> Option<NaiveDate> {
    if value.is_empty() {
        v.add(field, "필수 항목입니다 (is required)");
        return None;
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.add(
                field,
                "날짜 형식은 YYYY-MM-DD입니다 (must be a date YYYY-MM-DD)",
            );
            None
        }
    }
}

/// The first instant of `date` in `zone`, in UTC.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    zone.from_local_datetime(&midnight)
        .earliest()
        .unwrap_or_else(|| zone.from_utc_datetime(&midnight))
        .with_timezone(&Utc)
}

impl Validity {
    /// (valid from, expire) of something issued at `issue_time`.
    pub fn window(&self, issue_time: DateTime<Utc>, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        match *self {
            Validity::Fixed { start, end } => (start_of_day(start, zone), end_of_day(end, zone)),
            Validity::DaysFromIssue(n) => {
                let first = local_date(issue_time, zone);
                let last = first
                    .checked_add_days(Days::new(n.max(1) as u64 - 1))
                    .unwrap_or(NaiveDate::MAX);
                (issue_time, end_of_day(last, zone))
            }
        }
    }

    /// The last day something issued under this validity can be used, when it does not depend
    /// on the issue day.
    pub fn fixed_end(&self) -> Option<NaiveDate> {
        match *self {
            Validity::Fixed { end, .. } => Some(end),
            Validity::DaysFromIssue(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use spharos_kit::time::DEFAULT_TIME_ZONE as SEOUL;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn days_from_issue_end_at_midnight_in_seoul() {
        // 23:30 UTC on Dec 3 is 08:30 on Dec 4 in Seoul: Dec 4 is day 1.
        let issued = utc("2026-12-03T23:30:00Z");
        let (from, until) = Validity::DaysFromIssue(7).window(issued, SEOUL);
        assert_eq!(from, issued);
        assert_eq!(until.to_rfc3339(), "2026-12-10T14:59:59.999999+00:00");
        let (_, same_day) = Validity::DaysFromIssue(1).window(issued, SEOUL);
        assert_eq!(same_day.to_rfc3339(), "2026-12-04T14:59:59.999999+00:00");
    }

    #[test]
    fn fixed_ranges_cover_whole_days() {
        let v = Validity::Fixed {
            start: d("2026-12-01"),
            end: d("2026-12-31"),
        };
        let (from, until) = v.window(utc("2026-11-20T00:00:00Z"), SEOUL);
        assert_eq!(from.to_rfc3339(), "2026-11-30T15:00:00+00:00");
        assert_eq!(until.to_rfc3339(), "2026-12-31T14:59:59.999999+00:00");
    }

    #[test]
    fn forms_are_checked_with_field_paths() {
        let today = d("2026-12-10");
        let mut v = Violations::new();
        assert!(
            ValidityForm::DaysFromIssue(0)
                .validate("t.validity", today, &mut v)
                .is_none()
        );
        let bad = ValidityForm::Fixed {
            start_date: "2026-12-31".into(),
            end_date: "2026-12-01".into(),
        };
        assert!(bad.validate("t.validity", today, &mut v).is_none());
        let past = ValidityForm::Fixed {
            start_date: "2026-11-01".into(),
            end_date: "2026-12-09".into(),
        };
        assert!(past.validate("t.validity", today, &mut v).is_none());
        let garbage = ValidityForm::Fixed {
            start_date: "".into(),
            end_date: "12/31".into(),
        };
        assert!(garbage.validate("t.validity", today, &mut v).is_none());
        let Err(spharos_kit::ServiceError::InvalidArgument(f)) = v.finish() else {
            panic!("violations expected")
        };
        let fields: Vec<_> = f.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "t.validity.days_from_issue",
                "t.validity.fixed.end_date",
                "t.validity.fixed.end_date",
                "t.validity.fixed.start_date",
                "t.validity.fixed.end_date"
            ]
        );
        let mut ok = Violations::new();
        let good = ValidityForm::Fixed {
            start_date: "2026-12-01".into(),
            end_date: "2026-12-10".into(),
        };
        assert_eq!(
            good.validate("t.validity", today, &mut ok),
            Some(Validity::Fixed {
                start: d("2026-12-01"),
                end: d("2026-12-10")
            })
        );
        assert!(ok.is_empty());
    }
}
