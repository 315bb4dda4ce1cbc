//! The coupon service's view of members: only what the member service's events say (active or
//! withdrawn, birth month-day for birthday coupons). No PII beyond "MM-DD".
use chrono::{Datelike, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Active,
    Withdrawn,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "WITHDRAWN" => Some(Self::Withdrawn),
            _ => None,
        }
    }
}

/// `"MM-DD"` as a (month, day) that exists in a leap year, else `None`.
pub fn parse_month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d) = (m.parse().ok()?, d.parse().ok()?);
    NaiveDate::from_ymd_opt(2000, m, d).map(|_| (m, d))
}

/// The month-days whose birthday is celebrated on `date`: its own, plus 02-29 on 28 February
/// of a common year (those members would otherwise get a birthday coupon only every 4 years).
pub fn birthdays_on(date: NaiveDate) -> Vec<String> {
    let mut out = vec![format!("{:02}-{:02}", date.month(), date.day())];
    let leap = NaiveDate::from_ymd_opt(date.year(), 2, 29).is_some();
    if date.month() == 2 && date.day() == 28 && !leap {
        out.push("02-29".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn month_days_parse_strictly() {
        assert_eq!(parse_month_day("05-17"), Some((5, 17)));
        assert_eq!(parse_month_day("02-29"), Some((2, 29)));
        assert_eq!(parse_month_day("02-30"), None);
        assert_eq!(parse_month_day("5-17"), None);
        assert_eq!(parse_month_day(""), None);
    }

    #[test]
    fn leap_day_birthdays_are_kept_on_the_28th_in_common_years() {
        assert_eq!(birthdays_on(d("2026-05-17")), ["05-17"]);
        assert_eq!(birthdays_on(d("2027-02-28")), ["02-28", "02-29"]);
        assert_eq!(birthdays_on(d("2028-02-28")), ["02-28"]);
        assert_eq!(birthdays_on(d("2028-02-29")), ["02-29"]);
    }
}
