//! Expiry dates and notices: a lot expires at the end of its last valid day in the tenant's
//! zone; members hear about it 2 months, 1 month and 3 days before that day, each notice at
//! most once per lot and horizon, and a lot born inside a horizon gets only the nearest notice.
use chrono::{DateTime, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// How long before expiry a notice goes out, earliest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Horizon {
    TwoMonths,
    OneMonth,
    ThreeDays,
}

pub const HORIZONS: [Horizon; 3] = [Horizon::TwoMonths, Horizon::OneMonth, Horizon::ThreeDays];

impl Horizon {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwoMonths => "TWO_MONTHS",
            Self::OneMonth => "ONE_MONTH",
            Self::ThreeDays => "THREE_DAYS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        HORIZONS.into_iter().find(|h| h.as_str() == s)
    }

    /// The date (tenant zone) this notice is due for a lot whose last valid day is
    /// `expire_date`.
    pub fn due_date(self, expire_date: NaiveDate) -> NaiveDate {
        let d = match self {
            Self::TwoMonths => expire_date.checked_sub_months(Months::new(2)),
            Self::OneMonth => expire_date.checked_sub_months(Months::new(1)),
            Self::ThreeDays => expire_date.checked_sub_days(Days::new(3)),
        };
        d.unwrap_or(NaiveDate::MIN)
    }
}

/// The notice to send on `today` for a lot expiring on `expire_date`, given the last horizon
/// already handled: the latest horizon whose due date has come, if it is past `last`.
pub fn due_notice(
    expire_date: NaiveDate,
    today: NaiveDate,
    last: Option<Horizon>,
) -> Option<Horizon> {
    if today > expire_date {
        return None;
    }
    HORIZONS
        .into_iter()
        .filter(|h| Some(*h) > last && h.due_date(expire_date) <= today)
        .max()
}

/// When the job should next look at a lot: the due date of the first horizon after `last`.
pub fn next_notice_date(expire_date: NaiveDate, last: Option<Horizon>) -> Option<NaiveDate> {
    HORIZONS
        .into_iter()
        .find(|h| Some(*h) > last)
        .map(|h| h.due_date(expire_date))
}

/// The first instant of `date` in `zone`, in UTC.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    // Korea has no DST; elsewhere `earliest` picks the first valid instant of the day.
    zone.from_local_datetime(&midnight)
        .earliest()
        .unwrap_or_else(|| zone.from_utc_datetime(&midnight))
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn horizons_count_back_from_the_expiry_date() {
        let e = d("2031-12-31");
        assert_eq!(Horizon::TwoMonths.due_date(e), d("2031-10-31"));
        assert_eq!(Horizon::OneMonth.due_date(e), d("2031-11-30"));
        assert_eq!(Horizon::ThreeDays.due_date(e), d("2031-12-28"));
    }

    #[test]
    fn each_horizon_once_and_only_the_nearest_when_several_are_due() {
        let e = d("2031-12-31");
        assert_eq!(due_notice(e, d("2031-10-30"), None), None);
        assert_eq!(
            due_notice(e, d("2031-10-31"), None),
            Some(Horizon::TwoMonths)
        );
        assert_eq!(
            due_notice(e, d("2031-11-15"), Some(Horizon::TwoMonths)),
            None
        );
        assert_eq!(
            due_notice(e, d("2031-11-30"), Some(Horizon::TwoMonths)),
            Some(Horizon::OneMonth)
        );
        // A lot born ten days before expiry, or a job that was down: only the nearest.
        assert_eq!(
            due_notice(e, d("2031-12-29"), None),
            Some(Horizon::ThreeDays)
        );
        assert_eq!(
            due_notice(e, d("2031-12-30"), Some(Horizon::ThreeDays)),
            None
        );
        assert_eq!(due_notice(e, d("2032-01-01"), None), None);
        assert_eq!(next_notice_date(e, None), Some(d("2031-10-31")));
        assert_eq!(
            next_notice_date(e, Some(Horizon::OneMonth)),
            Some(d("2031-12-28"))
        );
        assert_eq!(next_notice_date(e, Some(Horizon::ThreeDays)), None);
    }

    #[test]
    fn days_start_at_local_midnight() {
        let s = start_of_day(d("2026-12-04"), chrono_tz::Asia::Seoul);
        assert_eq!(s.to_rfc3339(), "2026-12-03T15:00:00+00:00");
    }
}
