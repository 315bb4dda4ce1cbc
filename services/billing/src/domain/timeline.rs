//! A tenant's plan periods: half-open day ranges `[start, end)` in the tenant's zone, each with
//! one plan and its fees, contiguous and never overlapping. Subscribing, changing plan (at once
//! or from the next cycle) and cancelling are edits of the *live* periods (those not ended
//! before today); past periods never change, so closed invoices stay true.
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::catalogue::{ModuleFee, Plan, PlanChoice};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPeriod {
    pub id: Uuid,
    pub plan: Plan,
    /// Basic's monthly fee when the period began (a later catalogue change does not reprice
    /// it); 0 for Custom.
    pub base_fee_krw: i64,
    /// Custom only.
    pub module_fees: Vec<ModuleFee>,
    pub start: NaiveDate,
    /// Exclusive; `None` while open-ended.
    pub end: Option<NaiveDate>,
    /// When `billing.plan_limit_exceeded` was emitted for this period (at most once).
    pub limit_exceeded_time: Option<DateTime<Utc>>,
}

impl PlanPeriod {
    /// An open-ended period of `choice` from `start`.
    pub fn new(id: Uuid, choice: &PlanChoice, basic_fee_krw: i64, start: NaiveDate) -> Self {
        Self {
            id,
            plan: choice.plan,
            base_fee_krw: if choice.plan == Plan::Basic {
                basic_fee_krw
            } else {
                0
            },
            module_fees: choice.module_fees.clone(),
            start,
            end: None,
            limit_exceeded_time: None,
        }
    }

    pub fn covers(&self, day: NaiveDate) -> bool {
        self.start <= day && self.end.is_none_or(|e| day < e)
    }

    fn same_terms(&self, other: &PlanPeriod) -> bool {
        self.plan == other.plan && self.module_fees == other.module_fees
    }
}

/// Why a change cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineError {
    /// No period covers today (nothing to change).
    NoCurrentPeriod,
    /// The new terms equal the current ones and nothing is scheduled.
    Unchanged,
}

/// The period in force on `today`.
pub fn current(periods: &[PlanPeriod], today: NaiveDate) -> Option<&PlanPeriod> {
    periods.iter().find(|p| p.covers(today))
}

/// The change scheduled after today, if any.
pub fn scheduled(periods: &[PlanPeriod], today: NaiveDate) -> Option<&PlanPeriod> {
    periods.iter().find(|p| p.start > today)
}

/// Splits off scheduled periods and reopens the current one they would have ended.
fn without_scheduled(
    live: Vec<PlanPeriod>,
    today: NaiveDate,
) -> Result<(Vec<PlanPeriod>, bool), TimelineError> {
    let before = live.len();
    let mut kept: Vec<PlanPeriod> = live.into_iter().filter(|p| p.start <= today).collect();
    let had_scheduled = kept.len() != before;
    // A scheduled period starts where the current one ends, so the current one still covers
    // today and only needs reopening.
    let cur = kept
        .iter_mut()
        .find(|p| p.covers(today))
        .ok_or(TimelineError::NoCurrentPeriod)?;
    if had_scheduled {
        cur.end = None;
    }
    Ok((kept, had_scheduled))
}

/// Applies `new` (starting today) at once: the current period ends yesterday (or is replaced
/// when it began today), and any scheduled change is dropped. Today is billed on the new plan.
pub fn change_now(
    live: Vec<PlanPeriod>,
    mut new: PlanPeriod,
    today: NaiveDate,
) -> Result<Vec<PlanPeriod>, TimelineError> {
    let (mut kept, had_scheduled) = without_scheduled(live, today)?;
    let idx = kept
        .iter()
        .position(|p| p.covers(today))
        .ok_or(TimelineError::NoCurrentPeriod)?;
    if kept[idx].same_terms(&new) {
        return if had_scheduled {
            Ok(kept)
        } else {
            Err(TimelineError::Unchanged)
        };
    }
    new.start = today;
    new.end = None;
    if kept[idx].start == today {
        kept[idx] = new;
    } else {
        kept[idx].end = Some(today);
        kept.push(new);
    }
    Ok(kept)
}

/// Schedules `new` from `next_cycle` (the first day of next month): the current period ends
/// then. A scheduled change is replaced; asking for the current terms withdraws it.
pub fn change_next_cycle(
    live: Vec<PlanPeriod>,
    mut new: PlanPeriod,
    today: NaiveDate,
    next_cycle: NaiveDate,
) -> Result<Vec<PlanPeriod>, TimelineError> {
    let (mut kept, had_scheduled) = without_scheduled(live, today)?;
    let idx = kept
        .iter()
        .position(|p| p.covers(today))
        .ok_or(TimelineError::NoCurrentPeriod)?;
    if kept[idx].same_terms(&new) {
        return if had_scheduled {
            Ok(kept)
        } else {
            Err(TimelineError::Unchanged)
        };
    }
    kept[idx].end = Some(next_cycle);
    new.start = next_cycle;
    new.end = None;
    kept.push(new);
    Ok(kept)
}

/// Ends the subscription after today (today is billed) and drops scheduled changes.
pub fn cancel(live: Vec<PlanPeriod>, today: NaiveDate) -> Result<Vec<PlanPeriod>, TimelineError> {
    let (mut kept, _) = without_scheduled(live, today)?;
    let tomorrow = today.succ_opt().unwrap_or(today);
    for p in kept.iter_mut().filter(|p| p.covers(today)) {
        p.end = Some(tomorrow);
    }
    Ok(kept)
}

/// Makes room for a new subscription starting today after a cancellation: a period still
/// covering today ends today (or disappears when it began today), so no day is billed twice.
pub fn make_room(live: Vec<PlanPeriod>, today: NaiveDate) -> Vec<PlanPeriod> {
    live.into_iter()
        .filter(|p| p.start < today)
        .map(|mut p| {
            if p.end.is_none_or(|e| e > today) {
                p.end = Some(today);
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::Module;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn basic(start: &str) -> PlanPeriod {
        PlanPeriod::new(
            Uuid::now_v7(),
            &PlanChoice {
                plan: Plan::Basic,
                module_fees: vec![],
            },
            30_000,
            d(start),
        )
    }

    fn custom(start: &str, fee: i64) -> PlanPeriod {
        PlanPeriod::new(
            Uuid::now_v7(),
            &PlanChoice {
                plan: Plan::Custom,
                module_fees: vec![ModuleFee {
                    module: Module::Membership,
                    monthly_fee_krw: fee,
                }],
            },
            30_000,
            d(start),
        )
    }

    fn ranges(p: &[PlanPeriod]) -> Vec<(Plan, String, Option<String>)> {
        p.iter()
            .map(|p| (p.plan, p.start.to_string(), p.end.map(|e| e.to_string())))
            .collect()
    }

    #[test]
    fn an_immediate_change_splits_the_month_at_today() {
        let b = basic("2026-03-01");
        assert_eq!(b.base_fee_krw, 30_000);
        let out = change_now(
            vec![b.clone()],
            custom("2000-01-01", 500_000),
            d("2026-03-16"),
        )
        .expect("changed");
        assert_eq!(
            ranges(&out),
            [
                (Plan::Basic, "2026-03-01".into(), Some("2026-03-16".into())),
                (Plan::Custom, "2026-03-16".into(), None)
            ]
        );
        assert_eq!(out[0].id, b.id, "the old period keeps its id");
        assert_eq!(out[1].base_fee_krw, 0);
        assert_eq!(
            current(&out, d("2026-03-15")).map(|p| p.plan),
            Some(Plan::Basic)
        );
        assert_eq!(
            current(&out, d("2026-03-16")).map(|p| p.plan),
            Some(Plan::Custom)
        );
    }

    #[test]
    fn a_change_on_the_first_day_replaces_the_period() {
        let out = change_now(
            vec![basic("2026-03-16")],
            custom("2026-03-16", 1),
            d("2026-03-16"),
        )
        .expect("changed");
        assert_eq!(ranges(&out), [(Plan::Custom, "2026-03-16".into(), None)]);
    }

    #[test]
    fn the_same_terms_are_refused_unless_they_withdraw_a_scheduled_change() {
        let live = vec![basic("2026-03-01")];
        assert_eq!(
            change_now(live.clone(), basic("2026-03-10"), d("2026-03-10")),
            Err(TimelineError::Unchanged)
        );
        let scheduled_live = change_next_cycle(
            live,
            custom("2026-04-01", 9),
            d("2026-03-10"),
            d("2026-04-01"),
        )
        .expect("scheduled");
        assert_eq!(
            scheduled(&scheduled_live, d("2026-03-10")).map(|p| p.start),
            Some(d("2026-04-01"))
        );
        let withdrawn = change_next_cycle(
            scheduled_live,
            basic("2026-04-01"),
            d("2026-03-11"),
            d("2026-04-01"),
        )
        .expect("withdrawn");
        assert_eq!(
            ranges(&withdrawn),
            [(Plan::Basic, "2026-03-01".into(), None)]
        );
    }

    #[test]
    fn next_cycle_changes_start_on_the_first_of_next_month() {
        let out = change_next_cycle(
            vec![basic("2026-03-01")],
            custom("2000-01-01", 500_000),
            d("2026-03-20"),
            d("2026-04-01"),
        )
        .expect("scheduled");
        assert_eq!(
            ranges(&out),
            [
                (Plan::Basic, "2026-03-01".into(), Some("2026-04-01".into())),
                (Plan::Custom, "2026-04-01".into(), None)
            ]
        );
        // An immediate change afterwards drops the scheduled one.
        let now = change_now(out, custom("2000-01-01", 700_000), d("2026-03-25")).expect("now");
        assert_eq!(
            ranges(&now),
            [
                (Plan::Basic, "2026-03-01".into(), Some("2026-03-25".into())),
                (Plan::Custom, "2026-03-25".into(), None)
            ]
        );
        assert_eq!(now[1].module_fees[0].monthly_fee_krw, 700_000);
    }

    #[test]
    fn cancel_bills_today_and_drops_scheduled_changes() {
        let live = change_next_cycle(
            vec![basic("2026-03-01")],
            custom("2000-01-01", 1),
            d("2026-03-20"),
            d("2026-04-01"),
        )
        .expect("scheduled");
        let out = cancel(live, d("2026-03-20")).expect("cancelled");
        assert_eq!(
            ranges(&out),
            [(Plan::Basic, "2026-03-01".into(), Some("2026-03-21".into()))]
        );
        assert_eq!(
            cancel(vec![], d("2026-03-20")),
            Err(TimelineError::NoCurrentPeriod)
        );
    }

    #[test]
    fn a_restart_after_cancelling_never_bills_a_day_twice() {
        let cancelled = cancel(vec![basic("2026-03-01")], d("2026-03-20")).expect("cancelled");
        let room = make_room(cancelled, d("2026-03-20"));
        assert_eq!(
            ranges(&room),
            [(Plan::Basic, "2026-03-01".into(), Some("2026-03-20".into()))]
        );
        // Subscribed and cancelled on the same day, then subscribed again: nothing left.
        let same_day = cancel(vec![basic("2026-03-20")], d("2026-03-20")).expect("cancelled");
        assert!(make_room(same_day, d("2026-03-20")).is_empty());
    }
}
