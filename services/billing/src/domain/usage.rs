//! Metered usage: messages sent per channel, bucketed by the day they were sent in the tenant's
//! zone, and the date ranges usage reports may span.
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use spharos_kit::{ServiceError, Violations};

use super::catalogue::Channel;

/// The longest range a usage report covers.
pub const MAX_RANGE_DAYS: i64 = 366;

/// One `campaign.message.sent` as billing meters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageUsage {
    pub channel: Channel,
    pub count: i64,
    pub sent_time: DateTime<Utc>,
}

impl MessageUsage {
    /// The business day the messages count on.
    pub fn usage_date(&self, zone: Tz) -> NaiveDate {
        spharos_kit::time::local_date(self.sent_time, zone)
    }
}

/// Messages of one channel on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyUsage {
    pub date: NaiveDate,
    pub channel: Channel,
    pub count: i64,
}

/// Messages per channel over `days`, in channel order.
pub fn totals(days: &[DailyUsage]) -> Vec<(Channel, i64)> {
    let mut out: Vec<(Channel, i64)> = Vec::new();
    for d in days {
        match out.iter_mut().find(|(c, _)| *c == d.channel) {
            Some((_, n)) => *n = n.saturating_add(d.count),
            None => out.push((d.channel, d.count)),
        }
    }
    out.sort_by_key(|(c, _)| *c);
    out
}

/// Checks an inclusive `[from, to]` report range; both ends are required.
pub fn validate_range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), ServiceError> {
    let mut v = Violations::new();
    v.check(from.is_some(), "from_date", "필수 항목입니다 (is required)");
    v.check(to.is_some(), "to_date", "필수 항목입니다 (is required)");
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            v.add(
                "to_date",
                "종료일이 시작일보다 빠릅니다 (must not be before from_date)",
            );
        } else if (t - f).num_days() >= MAX_RANGE_DAYS {
            v.add(
                "to_date",
                format!("조회 기간은 {MAX_RANGE_DAYS}일 이내입니다 (the range spans at most {MAX_RANGE_DAYS} days)"),
            );
        }
    }
    v.finish()?;
    match (from, to) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(ServiceError::internal("validated range missing")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn messages_count_on_the_tenant_day() {
        // 2026-03-31 20:00 UTC is already 2026-04-01 05:00 in Seoul, still 16:00 in New York.
        let u = MessageUsage {
            channel: Channel::Sms,
            count: 1,
            sent_time: Utc
                .with_ymd_and_hms(2026, 3, 31, 20, 0, 0)
                .single()
                .expect("valid"),
        };
        assert_eq!(
            u.usage_date(chrono_tz::Asia::Seoul).to_string(),
            "2026-04-01"
        );
        assert_eq!(
            u.usage_date(chrono_tz::America::New_York).to_string(),
            "2026-03-31"
        );
    }

    #[test]
    fn totals_sum_per_channel() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let days = [
            DailyUsage {
                date: d("2026-03-01"),
                channel: Channel::KakaoAlimtalk,
                count: 3,
            },
            DailyUsage {
                date: d("2026-03-01"),
                channel: Channel::Sms,
                count: 2,
            },
            DailyUsage {
                date: d("2026-03-02"),
                channel: Channel::Sms,
                count: 5,
            },
        ];
        assert_eq!(
            totals(&days),
            [(Channel::Sms, 7), (Channel::KakaoAlimtalk, 3)]
        );
    }

    #[test]
    fn ranges_are_bounded() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        assert!(validate_range(d("2026-03-01"), d("2026-03-31")).is_ok());
        assert!(validate_range(d("2026-03-01"), d("2026-03-01")).is_ok());
        assert!(validate_range(d("2026-03-02"), d("2026-03-01")).is_err());
        assert!(validate_range(d("2025-01-01"), d("2026-03-01")).is_err());
        let Err(ServiceError::InvalidArgument(v)) = validate_range(None, None) else {
            panic!("expected InvalidArgument");
        };
        assert_eq!(v.len(), 2);
    }
}
