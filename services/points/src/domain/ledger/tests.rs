//! Unit tests of the ledger arithmetic, and the property test: random sequences of earn /
//! spend / cancel / adjust / expire on one member, run through the same functions the
//! application layer persists, with every invariant checked after every step.
use std::collections::HashMap;

use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

fn lot(expire_in_days: i64, pending: bool) -> Lot {
    Lot {
        id: Uuid::now_v7(),
        remaining: 0,
        expired: 0,
        pending,
        available_time: t0() + Duration::days(if pending { 3 } else { 0 }),
        expire_time: t0() + Duration::days(expire_in_days),
    }
}

fn credited(b: &mut Balance, days: i64, points: i64) -> Lot {
    let mut l = lot(days, false);
    credit(b, &mut l, points);
    l
}

#[test]
fn spends_take_the_soonest_expiring_lots_first() {
    let mut b = Balance::default();
    let late = credited(&mut b, 300, 500);
    let soon = credited(&mut b, 10, 300);
    let mid = credited(&mut b, 100, 400);
    let mut lots = vec![late, soon, mid];
    let p = consume(&mut b, &mut lots, 600, MovementKind::Spend, false, t0()).expect("enough");
    assert_eq!(p.points(), -600);
    let by_id: HashMap<Uuid, i64> = p.movements.iter().map(|m| (m.lot_id, m.points)).collect();
    assert_eq!(by_id[&lots[1].id], -300);
    assert_eq!(by_id[&lots[2].id], -300);
    assert!(!by_id.contains_key(&lots[0].id));
    assert_eq!(b.available, 600);
}

#[test]
fn a_spend_beyond_the_usable_points_changes_nothing() {
    let mut b = Balance::default();
    let mut lots = vec![credited(&mut b, 30, 500)];
    let mut pending = lot(30, true);
    credit(&mut b, &mut pending, 1_000);
    lots.push(pending);
    let before = (b, lots.clone());
    let err = consume(&mut b, &mut lots, 600, MovementKind::Spend, false, t0()).expect_err("short");
    assert_eq!(err, Shortfall { usable: 500 });
    assert_eq!((b, lots.clone()), before);
    // A staff deduction may take pending points too.
    let p = consume(&mut b, &mut lots, 600, MovementKind::Deduct, true, t0()).expect("enough");
    assert_eq!(p.points(), -600);
    assert_eq!((b.available, b.pending), (0, 900));
}

#[test]
fn cancelling_a_spent_earn_takes_other_lots_then_leaves_debt_that_credits_pay_first() {
    let mut b = Balance::default();
    let earned = credited(&mut b, 100, 1_000);
    let other = credited(&mut b, 50, 200);
    let mut lots = vec![earned, other];
    consume(&mut b, &mut lots, 1_100, MovementKind::Spend, false, t0()).expect("enough");
    // left: earned 100 (the other lot expires sooner and went first)
    assert_eq!((lots[0].remaining, lots[1].remaining), (100, 0));
    let id = lots[0].id;
    let err = reverse_earn(&mut b, &mut lots, Some(id), 1_000, false, t0()).expect_err("reject");
    assert_eq!(err.shortfall, 900);
    let p = reverse_earn(&mut b, &mut lots, Some(id), 1_000, true, t0()).expect("debt");
    assert_eq!(p.points(), -1_000);
    assert_eq!(p.debt_delta, 900);
    assert_eq!(
        b,
        Balance {
            available: 0,
            pending: 0,
            debt: 900
        }
    );
    // The next earn pays the debt first.
    let mut next = lot(365, false);
    let p = credit(&mut b, &mut next, 1_200);
    assert_eq!(p.points(), 1_200);
    assert_eq!(p.debt_delta, -900);
    assert_eq!(next.remaining, 300);
    assert_eq!(
        b,
        Balance {
            available: 300,
            pending: 0,
            debt: 0
        }
    );
}

#[test]
fn a_refund_after_expiry_absorbs_the_expired_points_instead_of_taking_them_twice() {
    let mut b = Balance::default();
    let mut lots = vec![credited(&mut b, 10, 1_000)];
    let s = settle(
        &mut b,
        &mut lots,
        t0() + Duration::days(10) + Duration::microseconds(1),
    );
    assert_eq!(s.expired.points(), -1_000);
    let id = lots[0].id;
    let p = reverse_earn(&mut b, &mut lots, Some(id), 1_000, false, t0()).expect("absorbed");
    assert_eq!(p.points(), 0);
    assert_eq!(p.absorbed_expired, 1_000);
    assert_eq!(b, Balance::default());
}

#[test]
fn partial_refunds_add_up_to_exactly_the_earned_points() {
    // 333 points on 10,000 KRW, refunded 3,000 + 3,000 + 4,000.
    let r1 = earn_reversal(333, 10_000, 0, 0, Some(3_000)).expect("ok");
    assert_eq!(r1.points, 99);
    let r2 = earn_reversal(333, 10_000, 3_000, 99, Some(3_000)).expect("ok");
    assert_eq!(r2.points, 100); // floor(333 * 0.6) = 199
    let r3 = earn_reversal(333, 10_000, 6_000, 199, None).expect("ok");
    assert_eq!((r3.refund_krw, r3.points), (4_000, 134));
    assert_eq!(
        earn_reversal(333, 10_000, 10_000, 333, None),
        Err(RefundError::AlreadyCancelled)
    );
    assert_eq!(
        earn_reversal(333, 10_000, 6_000, 199, Some(4_001)),
        Err(RefundError::ExceedsPurchase {
            refundable_krw: 4_000
        })
    );
}

#[test]
fn spend_cancels_restore_the_lots_taken_last_first_and_never_more() {
    let a = Uuid::now_v7();
    let b = Uuid::now_v7();
    let taken = [
        Taken {
            lot_id: a,
            taken: 300,
            restored: 0,
        },
        Taken {
            lot_id: b,
            taken: 200,
            restored: 50,
        },
    ];
    assert_eq!(plan_restore(&taken, 250), vec![(b, 150), (a, 100)]);
    assert_eq!(plan_restore(&taken, 450), vec![(b, 150), (a, 300)]);
}

#[test]
fn settling_matures_pending_lots_and_expires_due_ones_at_their_instant() {
    let mut b = Balance::default();
    let mut p = lot(10, true);
    credit(&mut b, &mut p, 700);
    assert_eq!(b.pending, 700);
    let mut lots = vec![p];
    let s = settle(
        &mut b,
        &mut lots,
        t0() + Duration::days(3) - Duration::microseconds(1),
    );
    assert_eq!(s.matured, 0);
    let s = settle(&mut b, &mut lots, t0() + Duration::days(3));
    assert_eq!(s.matured, 700);
    assert_eq!((b.available, b.pending), (700, 0));
    // expire_time is the last valid instant.
    let s = settle(&mut b, &mut lots, t0() + Duration::days(10));
    assert!(s.expired.movements.is_empty());
    let s = settle(
        &mut b,
        &mut lots,
        t0() + Duration::days(10) + Duration::microseconds(1),
    );
    assert_eq!(s.expired.points(), -700);
    assert_eq!(b, Balance::default());
}

// ---- the property test ------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Earn {
        points: i64,
        purchase: i64,
        pending: bool,
        validity_days: i64,
    },
    Spend(i64),
    /// Which earn (modulo), and the refunded share in percent (None: the rest).
    CancelEarn(usize, Option<u8>),
    /// Which spend (modulo), and the points (None: the rest).
    CancelSpend(usize, Option<i64>),
    Adjust(i64),
    /// Time passes (days), then the expiry job settles.
    Expire(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0i64..3_000, 1i64..100_000, any::<bool>(), 1i64..120).prop_map(
            |(points, purchase, pending, validity_days)| Op::Earn { points, purchase, pending, validity_days }
        ),
        3 => (1i64..4_000).prop_map(Op::Spend),
        2 => (any::<usize>(), proptest::option::of(1u8..=100)).prop_map(|(i, s)| Op::CancelEarn(i, s)),
        2 => (any::<usize>(), proptest::option::of(1i64..3_000)).prop_map(|(i, p)| Op::CancelSpend(i, p)),
        1 => (-2_000i64..2_000).prop_map(Op::Adjust),
        1 => (0i64..60).prop_map(Op::Expire),
    ]
}

struct EarnRec {
    lot: Option<Uuid>,
    points: i64,
    purchase: i64,
    refunded: i64,
    reversed: i64,
}

struct SpendRec {
    points: i64,
    taken: Vec<Taken>,
}

/// The whole ledger of one member, kept the way the database keeps it.
struct Book {
    now: DateTime<Utc>,
    allow_debt: bool,
    balance: Balance,
    lots: Vec<Lot>,
    /// (entry points, movements) of every posting, in order.
    entries: Vec<Posting>,
    earns: Vec<EarnRec>,
    spends: Vec<SpendRec>,
}

impl Book {
    fn post(&mut self, p: Posting) {
        self.entries.push(p);
    }

    fn settle(&mut self) {
        let s = settle(&mut self.balance, &mut self.lots, self.now);
        if !s.expired.movements.is_empty() {
            self.post(s.expired);
        }
    }

    fn new_lot(&self, validity_days: i64, pending: bool) -> Lot {
        Lot {
            id: Uuid::now_v7(),
            remaining: 0,
            expired: 0,
            pending,
            available_time: self.now + Duration::days(if pending { 2 } else { 0 }),
            expire_time: self.now + Duration::days(validity_days),
        }
    }

    fn apply(&mut self, op: &Op) {
        self.settle();
        match op {
            Op::Earn {
                points,
                purchase,
                pending,
                validity_days,
            } => {
                let mut lot = self.new_lot(*validity_days, *pending);
                let p = credit(&mut self.balance, &mut lot, *points);
                assert_eq!(p.points(), *points);
                let id = (*points > 0).then_some(lot.id);
                if *points > 0 {
                    self.lots.push(lot);
                }
                self.post(p);
                self.earns.push(EarnRec {
                    lot: id,
                    points: *points,
                    purchase: *purchase,
                    refunded: 0,
                    reversed: 0,
                });
            }
            Op::Spend(n) => {
                let before = self.balance;
                match consume(
                    &mut self.balance,
                    &mut self.lots,
                    *n,
                    MovementKind::Spend,
                    false,
                    self.now,
                ) {
                    Ok(p) => {
                        assert_eq!(p.points(), -n);
                        let taken = p
                            .movements
                            .iter()
                            .map(|m| Taken {
                                lot_id: m.lot_id,
                                taken: -m.points,
                                restored: 0,
                            })
                            .collect();
                        self.post(p);
                        self.spends.push(SpendRec { points: *n, taken });
                    }
                    Err(Shortfall { usable }) => {
                        assert!(usable < *n);
                        assert_eq!(usable, before.available);
                        assert_eq!(self.balance, before);
                    }
                }
            }
            Op::CancelEarn(i, share) => {
                if self.earns.is_empty() {
                    return;
                }
                let k = i % self.earns.len();
                let e = &self.earns[k];
                let refund = share.map(|s| (e.purchase * i64::from(s) / 100).max(1));
                let Ok(r) = earn_reversal(e.points, e.purchase, e.refunded, e.reversed, refund)
                else {
                    return;
                };
                let lot = e.lot;
                let before = (self.balance, self.lots.clone());
                match reverse_earn(
                    &mut self.balance,
                    &mut self.lots,
                    lot,
                    r.points,
                    self.allow_debt,
                    self.now,
                ) {
                    Ok(p) => {
                        assert_eq!(p.points(), -(r.points - p.absorbed_expired));
                        self.post(p);
                        let e = &mut self.earns[k];
                        e.refunded += r.refund_krw;
                        e.reversed += r.points;
                    }
                    Err(_) => {
                        assert!(!self.allow_debt);
                        assert_eq!((self.balance, self.lots.clone()), before);
                    }
                }
            }
            Op::CancelSpend(i, points) => {
                if self.spends.is_empty() {
                    return;
                }
                let k = i % self.spends.len();
                let left: i64 = self.spends[k]
                    .taken
                    .iter()
                    .map(|t| t.taken - t.restored)
                    .sum();
                let n = points.unwrap_or(left).min(left);
                if n == 0 {
                    return;
                }
                let plan = plan_restore(&self.spends[k].taken, n);
                assert_eq!(plan.iter().map(|(_, n)| n).sum::<i64>(), n);
                let p = restore(&mut self.balance, &mut self.lots, &plan);
                assert_eq!(p.points(), n);
                self.post(p);
                for (id, r) in plan {
                    if let Some(t) = self.spends[k].taken.iter_mut().find(|t| t.lot_id == id) {
                        t.restored += r;
                    }
                }
                // A restore into a lot already past its expiry expires at once.
                self.settle();
            }
            Op::Adjust(n) if *n > 0 => {
                let mut lot = self.new_lot(365, false);
                let p = credit(&mut self.balance, &mut lot, *n);
                self.lots.push(lot);
                self.post(p);
            }
            Op::Adjust(n) => {
                if let Ok(p) = consume(
                    &mut self.balance,
                    &mut self.lots,
                    -n,
                    MovementKind::Deduct,
                    true,
                    self.now,
                ) {
                    self.post(p);
                }
            }
            Op::Expire(days) => {
                self.now += Duration::days(*days);
                self.settle();
            }
        }
    }

    fn check(&self) {
        let b = self.balance;
        assert!(b.available >= 0 && b.pending >= 0 && b.debt >= 0, "{b:?}");
        for l in &self.lots {
            assert!(l.remaining >= 0 && l.expired >= 0, "negative lot {l:?}");
        }
        let avail: i64 = self
            .lots
            .iter()
            .filter(|l| !l.pending)
            .map(|l| l.remaining)
            .sum();
        let pend: i64 = self
            .lots
            .iter()
            .filter(|l| l.pending)
            .map(|l| l.remaining)
            .sum();
        assert_eq!((b.available, b.pending), (avail, pend), "buckets vs lots");
        // balance == Σ remaining − debt == Σ ledger
        let ledger: i64 = self.entries.iter().map(Posting::points).sum();
        assert_eq!(avail + pend - b.debt, b.net());
        assert_eq!(b.net(), ledger, "balance vs ledger");
        // Debt only while nothing is left to take it from.
        if b.debt > 0 {
            assert_eq!(avail + pend, 0, "debt next to points");
        }
        // Each lot's remaining is exactly the sum of its movements.
        let mut per_lot: HashMap<Uuid, i64> = HashMap::new();
        for m in self.entries.iter().flat_map(|p| &p.movements) {
            *per_lot.entry(m.lot_id).or_default() += m.points;
        }
        for l in &self.lots {
            assert_eq!(
                per_lot.get(&l.id).copied().unwrap_or(0),
                l.remaining,
                "lot {l:?}"
            );
        }
        // Nothing restored twice: per lot and per spend.
        for s in &self.spends {
            let restored: i64 = s.taken.iter().map(|t| t.restored).sum();
            assert!(restored <= s.points);
            assert!(s.taken.iter().all(|t| t.restored <= t.taken));
        }
        for e in &self.earns {
            assert!(e.reversed <= e.points && e.refunded <= e.purchase);
            if e.refunded == e.purchase {
                assert_eq!(e.reversed, e.points);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_ledger_always_balances(ops in proptest::collection::vec(op(), 1..60), allow_debt in any::<bool>()) {
        let mut book = Book {
            now: t0(),
            allow_debt,
            balance: Balance::default(),
            lots: Vec::new(),
            entries: Vec::new(),
            earns: Vec::new(),
            spends: Vec::new(),
        };
        for op in &ops {
            book.apply(op);
            book.check();
        }
    }
}
