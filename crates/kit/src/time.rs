//! Business-time helpers: times are stored in UTC, business dates are computed in the tenant's
//! zone (default `Asia/Seoul`).
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The platform's default business time zone.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Seoul;

/// Parses an IANA zone name ("Asia/Seoul").
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The last instant (23:59:59.999999) of `date` in `zone`, in UTC.
pub fn end_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let next = date.succ_opt().unwrap_or(date);
    let midnight = next.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    // Korea has no DST; for zones that do, `earliest` picks the first valid instant.
    let start_next = zone
        .from_local_datetime(&midnight)
        .earliest()
        .unwrap_or_else(|| zone.from_utc_datetime(&midnight));
    start_next.with_timezone(&Utc) - chrono::Duration::microseconds(1)
}

/// The business date of `at` in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// Formats a UTC time for Korean users: `2026년 12월 3일 18:40` in the zone.
pub fn format_korean(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone)
        .format("%Y년 %-m월 %-d일 %H:%M")
        .to_string()
}

/// Formats won with thousands separators: `30,000원`.
pub fn format_krw(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if amount < 0 {
        out.insert(0, '-');
    }
    out.push('원');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_day_is_in_the_tenant_zone() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 3).expect("valid date");
        let eod = end_of_day(d, DEFAULT_TIME_ZONE);
        // 2026-12-03 23:59:59.999999 KST == 14:59:59.999999 UTC
        assert_eq!(eod.to_rfc3339(), "2026-12-03T14:59:59.999999+00:00");
    }

    #[test]
    fn a_late_evening_utc_time_is_the_next_korean_day() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 3, 15, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(local_date(at, DEFAULT_TIME_ZONE).to_string(), "2026-12-04");
    }

    #[test]
    fn won_are_grouped_by_thousands() {
        assert_eq!(format_krw(30_000), "30,000원");
        assert_eq!(format_krw(1_234_567), "1,234,567원");
        assert_eq!(format_krw(999), "999원");
        assert_eq!(format_krw(-5_000), "-5,000원");
    }

    #[test]
    fn korean_date_format() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 3, 9, 40, 0)
            .single()
            .expect("valid");
        assert_eq!(
            format_korean(at, DEFAULT_TIME_ZONE),
            "2026년 12월 3일 18:40"
        );
    }
}
