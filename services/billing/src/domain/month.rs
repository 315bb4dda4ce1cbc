//! Billing months (`YYYY-MM`) in the tenant's time zone: their first day, length and the month
//! that follows, with half-open day ranges `[first, next.first)` for overlap arithmetic.
use std::fmt;

use chrono::{Datelike, NaiveDate};

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    /// Years billing deals with; keeps every date computation in range.
    const MIN_YEAR: i32 = 2000;
    const MAX_YEAR: i32 = 9998;

    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((Self::MIN_YEAR..=Self::MAX_YEAR).contains(&year) && (1..=12).contains(&month))
            .then_some(Self { year, month })
    }

    /// `2026-03` (exactly four digits, a dash, two digits).
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Self::new(y.parse().ok()?, m.parse().ok()?)
    }

    /// The month `date` falls in.
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .expect("YearMonth holds a valid year and month")
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn prev(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The first day after the month (the exclusive end of its day range).
    pub fn end_exclusive(self) -> NaiveDate {
        self.next().first_day()
    }

    pub fn last_day(self) -> NaiveDate {
        self.end_exclusive()
            .pred_opt()
            .expect("a month's last day exists")
    }

    /// 28 to 31.
    pub fn days(self) -> u32 {
        self.last_day().day()
    }

    /// Days of the half-open range `[start, end)` (end `None` = open) inside this month.
    pub fn overlap_days(self, start: NaiveDate, end: Option<NaiveDate>) -> u32 {
        let from = start.max(self.first_day());
        let to = end.map_or(self.end_exclusive(), |e| e.min(self.end_exclusive()));
        u32::try_from((to - from).num_days()).unwrap_or(0)
    }
}

/// The months from `first` through `last_ended` that have no invoice yet, oldest first, at
/// most the `max_back` most recent of them (a job that was down for years does not bill a
/// decade at once; the platform closes older months by hand).
pub fn due_months(
    first: YearMonth,
    last_ended: YearMonth,
    invoiced: &[YearMonth],
    max_back: usize,
) -> Vec<YearMonth> {
    let mut out = Vec::new();
    let mut m = last_ended;
    for _ in 0..max_back {
        if m < first {
            break;
        }
        if !invoiced.contains(&m) {
            out.push(m);
        }
        m = m.prev();
    }
    out.reverse();
    out
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn parses_and_prints() {
        let m = YearMonth::parse("2026-03").expect("valid");
        assert_eq!(m.to_string(), "2026-03");
        for bad in [
            "2026-3", "2026-13", "2026-00", "26-03", "2026/03", "", "abcd-ef", "1999-12",
        ] {
            assert_eq!(YearMonth::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn month_lengths_and_neighbours() {
        assert_eq!(YearMonth::parse("2026-02").expect("m").days(), 28);
        assert_eq!(YearMonth::parse("2028-02").expect("m").days(), 29);
        assert_eq!(YearMonth::parse("2026-03").expect("m").days(), 31);
        assert_eq!(YearMonth::parse("2026-04").expect("m").days(), 30);
        let dec = YearMonth::parse("2026-12").expect("m");
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.next().prev(), dec);
        assert_eq!(dec.last_day(), d("2026-12-31"));
        assert_eq!(YearMonth::of(d("2026-03-16")).to_string(), "2026-03");
    }

    #[test]
    fn due_months_skip_invoiced_ones_and_stop_at_the_first() {
        let m = |s: &str| YearMonth::parse(s).expect("month");
        let due = due_months(m("2026-01"), m("2026-04"), &[m("2026-02")], 12);
        assert_eq!(due, [m("2026-01"), m("2026-03"), m("2026-04")]);
        assert!(due_months(m("2026-05"), m("2026-04"), &[], 12).is_empty());
        let capped = due_months(m("2020-01"), m("2026-04"), &[], 3);
        assert_eq!(capped, [m("2026-02"), m("2026-03"), m("2026-04")]);
    }

    #[test]
    fn overlaps_count_days_of_half_open_ranges() {
        let mar = YearMonth::parse("2026-03").expect("m");
        // Whole month, open-ended.
        assert_eq!(mar.overlap_days(d("2026-01-10"), None), 31);
        // 1st to 15th (the 16th is the first day of the next period).
        assert_eq!(mar.overlap_days(d("2026-03-01"), Some(d("2026-03-16"))), 15);
        assert_eq!(mar.overlap_days(d("2026-03-16"), None), 16);
        // Outside the month either way.
        assert_eq!(mar.overlap_days(d("2026-04-01"), None), 0);
        assert_eq!(mar.overlap_days(d("2026-01-01"), Some(d("2026-03-01"))), 0);
        // A single day.
        assert_eq!(mar.overlap_days(d("2026-03-31"), Some(d("2026-04-01"))), 1);
    }
}
