//! Time rules of a consent's and a member's life: the biennial re-confirmation notice of
//! advertising consents (정보통신망법 시행령 제62조의3) and the retention period after which a
//! withdrawn member's PII is erased.
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use spharos_kit::ServiceError;

/// Every 2 years each member is told what advertising they consented to.
pub const RECONFIRMATION_MONTHS: u32 = 24;
/// The notice is announced this many days before it is owed, so the campaign has time to send.
pub const RECONFIRMATION_LEAD_DAYS: u64 = 30;
/// Withdrawn members' PII is kept this long unless the tenant says otherwise.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;
/// Longest configurable retention (5 years, the longest period Korean commerce law asks for).
pub const MAX_RETENTION_DAYS: i32 = 1825;

/// The date the notice of a cycle that started at `cycle_start` is owed (tenant zone).
pub fn reconfirmation_due_date(cycle_start: DateTime<Utc>, zone: Tz) -> NaiveDate {
    let start = spharos_kit::time::local_date(cycle_start, zone);
    start
        .checked_add_months(Months::new(RECONFIRMATION_MONTHS))
        .unwrap_or(start)
}

/// Cycles that started at or before this instant are due for their notice at `now`: their
/// due date minus the lead time has come.
pub fn reconfirmation_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    let ahead = now
        .checked_add_days(Days::new(RECONFIRMATION_LEAD_DAYS))
        .unwrap_or(now);
    ahead
        .checked_sub_months(Months::new(RECONFIRMATION_MONTHS))
        .unwrap_or(ahead)
}

/// Checks a tenant's retention period in days.
pub fn check_retention_days(days: i32) -> Result<i32, ServiceError> {
    if (0..=MAX_RETENTION_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(ServiceError::invalid(
            "settings.retention_days",
            "보관 기간은 0~1825일입니다 (0 to 1825 days)",
        ))
    }
}

/// When a member withdrawn at `withdraw_time` is to be erased.
pub fn erase_due(withdraw_time: DateTime<Utc>, retention_days: i32) -> DateTime<Utc> {
    withdraw_time + chrono::Duration::days(i64::from(retention_days.max(0)))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn notices_are_owed_two_years_after_the_cycle_start() {
        let seoul = spharos_kit::time::DEFAULT_TIME_ZONE;
        let granted = Utc
            .with_ymd_and_hms(2024, 12, 10, 16, 0, 0) // 2024-12-11 01:00 KST
            .single()
            .expect("valid");
        assert_eq!(
            reconfirmation_due_date(granted, seoul).to_string(),
            "2026-12-11"
        );
        // Leap day: Feb 29 + 24 months is Feb 28 (chrono clamps to the month's end).
        let leap = Utc
            .with_ymd_and_hms(2024, 2, 29, 3, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(
            reconfirmation_due_date(leap, seoul).to_string(),
            "2026-02-28"
        );
    }

    #[test]
    fn the_cutoff_announces_thirty_days_ahead() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 10, 0, 0, 0)
            .single()
            .expect("valid");
        let cutoff = reconfirmation_cutoff(now);
        assert_eq!(cutoff.to_rfc3339(), "2025-01-09T00:00:00+00:00");
        // Granted 2 years minus 29 days ago: due within the lead time.
        let due_soon = Utc
            .with_ymd_and_hms(2025, 1, 8, 0, 0, 0)
            .single()
            .expect("valid");
        assert!(due_soon <= cutoff);
        let not_yet = Utc
            .with_ymd_and_hms(2025, 2, 1, 0, 0, 0)
            .single()
            .expect("valid");
        assert!(not_yet > cutoff);
    }

    #[test]
    fn retention_is_bounded_and_counted_from_withdrawal() {
        assert_eq!(check_retention_days(30).expect("ok"), 30);
        assert_eq!(check_retention_days(0).expect("ok"), 0);
        assert!(check_retention_days(-1).is_err());
        assert!(check_retention_days(MAX_RETENTION_DAYS + 1).is_err());
        let w = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(erase_due(w, 30).to_rfc3339(), "2026-01-31T00:00:00+00:00");
    }
}
