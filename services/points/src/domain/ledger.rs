//! The ledger's arithmetic on a member's lots: credits (earn, grant) pay debt first, spends
//! take the soonest-expiring usable lots first, earn cancels reverse in proportion to the
//! refund, spend cancels restore the very lots they took (with their original expiry), and
//! settling matures pending lots and expires due ones.
//!
//! Every operation returns a [`Posting`]: the lot movements and the debt change it made. The
//! application layer persists exactly that, so the invariants proved here by the property
//! tests (balance = Σ remaining − debt = Σ postings; no lot below zero; a spend restored at
//! most once; debt only while no lot holds points) hold for the stored ledger too.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member's account: the sums the lots and the debt add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Σ remaining of lots that are usable now.
    pub available: i64,
    /// Σ remaining of lots still in their pending period.
    pub pending: i64,
    /// Owed by the member; non-zero only while every lot is empty.
    pub debt: i64,
}

impl Balance {
    /// available + pending − debt: what Σ postings adds up to.
    pub fn net(&self) -> i64 {
        self.available + self.pending - self.debt
    }

    fn bucket(&mut self, lot: &Lot) -> &mut i64 {
        if lot.pending {
            &mut self.pending
        } else {
            &mut self.available
        }
    }
}

/// One lot: the points of one credit, with its own expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub id: Uuid,
    pub remaining: i64,
    /// Points of this lot that expired and no earn cancel has absorbed since (a refund after
    /// expiry must not take the same points from the member twice).
    pub expired: i64,
    pub pending: bool,
    pub available_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
}

/// What changed a lot's `remaining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MovementKind {
    Credit,
    DebtPayment,
    Spend,
    Restore,
    Reverse,
    Deduct,
    Expire,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credit => "CREDIT",
            Self::DebtPayment => "DEBT_PAYMENT",
            Self::Spend => "SPEND",
            Self::Restore => "RESTORE",
            Self::Reverse => "REVERSE",
            Self::Deduct => "DEDUCT",
            Self::Expire => "EXPIRE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CREDIT" => Self::Credit,
            "DEBT_PAYMENT" => Self::DebtPayment,
            "SPEND" => Self::Spend,
            "RESTORE" => Self::Restore,
            "REVERSE" => Self::Reverse,
            "DEDUCT" => Self::Deduct,
            "EXPIRE" => Self::Expire,
            _ => return None,
        })
    }
}

/// A change of one lot's `remaining` (signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub lot_id: Uuid,
    pub kind: MovementKind,
    pub points: i64,
}

/// What one ledger entry did to the lots and the debt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posting {
    pub movements: Vec<Movement>,
    /// > 0: debt created; < 0: debt paid off.
    pub debt_delta: i64,
    /// Earn cancels: expired points of the earned lot the reversal absorbed (no balance
    /// change: the member lost them already).
    pub absorbed_expired: i64,
}

impl Posting {
    /// The entry's signed change of the balance: Σ movements − debt change.
    pub fn points(&self) -> i64 {
        self.movements.iter().map(|m| m.points).sum::<i64>() - self.debt_delta
    }

    fn push(&mut self, lot: Uuid, kind: MovementKind, points: i64) {
        if points != 0 {
            self.movements.push(Movement {
                lot_id: lot,
                kind,
                points,
            });
        }
    }
}

/// Not enough usable points: how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub usable: i64,
}

/// An earn cancel would leave a debt the tenant does not allow: how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldLeaveDebt {
    pub shortfall: i64,
}

/// `expire_time` is the last valid instant (23:59:59.999999 of the last day, tenant zone).
fn unexpired(lot: &Lot, at: DateTime<Utc>) -> bool {
    lot.remaining > 0 && lot.expire_time >= at
}

/// Indexes of the lots a take may use, in the order it uses them: usable now before pending,
/// then soonest expiry first, then creation order (UUIDv7 ids sort by time).
fn take_order(lots: &[Lot], at: DateTime<Utc>, include_pending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lots.len())
        .filter(|&i| unexpired(&lots[i], at) && (include_pending || !lots[i].pending))
        .collect();
    order.sort_by_key(|&i| (lots[i].pending, lots[i].expire_time, lots[i].id));
    order
}

/// Takes `amount` from the lots in `order`; the caller checked they hold enough.
fn take(
    balance: &mut Balance,
    lots: &mut [Lot],
    order: &[usize],
    mut amount: i64,
    kind: MovementKind,
    posting: &mut Posting,
) {
    for &i in order {
        if amount == 0 {
            break;
        }
        let lot = &mut lots[i];
        let n = amount.min(lot.remaining);
        lot.remaining -= n;
        *balance.bucket(lot) -= n;
        posting.push(lot.id, kind, -n);
        amount -= n;
    }
}

/// Pays the debt from `lots` (the ones just credited or restored), in slice order.
fn pay_debt(balance: &mut Balance, lots: &mut [Lot], posting: &mut Posting) {
    for lot in lots.iter_mut() {
        if balance.debt == 0 {
            break;
        }
        let n = balance.debt.min(lot.remaining);
        lot.remaining -= n;
        *balance.bucket(lot) -= n;
        balance.debt -= n;
        posting.debt_delta -= n;
        posting.push(lot.id, MovementKind::DebtPayment, -n);
    }
}

/// Credits `points` to the new, empty `lot` (an earn or a grant), paying any debt first.
pub fn credit(balance: &mut Balance, lot: &mut Lot, points: i64) -> Posting {
    let mut posting = Posting::default();
    if points <= 0 {
        return posting;
    }
    lot.remaining += points;
    *balance.bucket(lot) += points;
    posting.push(lot.id, MovementKind::Credit, points);
    pay_debt(balance, std::slice::from_mut(lot), &mut posting);
    posting
}

/// Takes `amount` from usable lots, soonest-expiring first (`include_pending`: then from
/// pending lots, for staff deductions). Fails without touching anything when they hold less.
pub fn consume(
    balance: &mut Balance,
    lots: &mut [Lot],
    amount: i64,
    kind: MovementKind,
    include_pending: bool,
    at: DateTime<Utc>,
) -> Result<Posting, Shortfall> {
    let order = take_order(lots, at, include_pending);
    let usable: i64 = order.iter().map(|&i| lots[i].remaining).sum();
    if usable < amount {
        return Err(Shortfall { usable });
    }
    let mut posting = Posting::default();
    take(balance, lots, &order, amount, kind, &mut posting);
    Ok(posting)
}

/// Reverses `points` of an earn whose lot is `earned` (`None` when it credited nothing):
/// first what remains in that lot, then its expired points (absorbed, no balance change),
/// then the member's other lots soonest-expiring first, and the rest becomes debt, unless
/// `allow_debt` is false, in which case nothing changes.
pub fn reverse_earn(
    balance: &mut Balance,
    lots: &mut [Lot],
    earned: Option<Uuid>,
    points: i64,
    allow_debt: bool,
    at: DateTime<Utc>,
) -> Result<Posting, WouldLeaveDebt> {
    let own = earned.and_then(|id| lots.iter().position(|l| l.id == id));
    let (own_remaining, own_expired) = own
        .map(|i| (lots[i].remaining, lots[i].expired))
        .unwrap_or((0, 0));
    let others: Vec<usize> = take_order(lots, at, true)
        .into_iter()
        .filter(|&i| Some(i) != own)
        .collect();
    let others_total: i64 = others.iter().map(|&i| lots[i].remaining).sum();
    let shortfall = (points - own_remaining - own_expired - others_total).max(0);
    if shortfall > 0 && !allow_debt {
        return Err(WouldLeaveDebt { shortfall });
    }
    let mut posting = Posting::default();
    let mut left = points;
    if let Some(i) = own {
        let n = left.min(own_remaining);
        take(balance, lots, &[i], n, MovementKind::Reverse, &mut posting);
        left -= n;
        let absorbed = left.min(own_expired);
        lots[i].expired -= absorbed;
        posting.absorbed_expired = absorbed;
        left -= absorbed;
    }
    let n = left.min(others_total);
    take(
        balance,
        lots,
        &others,
        n,
        MovementKind::Reverse,
        &mut posting,
    );
    left -= n;
    balance.debt += left;
    posting.debt_delta += left;
    Ok(posting)
}

/// What a spend took from one lot and what its cancels gave back so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub lot_id: Uuid,
    pub taken: i64,
    pub restored: i64,
}

/// Which lots a spend cancel of `points` restores: the last taken first (the latest expiry,
/// the member's best points), never more than each lot gave. `points` must not exceed what
/// is left to restore.
pub fn plan_restore(taken: &[Taken], points: i64) -> Vec<(Uuid, i64)> {
    let mut left = points;
    let mut plan = Vec::new();
    for t in taken.iter().rev() {
        if left == 0 {
            break;
        }
        let n = left.min(t.taken - t.restored);
        if n > 0 {
            plan.push((t.lot_id, n));
            left -= n;
        }
    }
    plan
}

/// Restores points to the lots of `plan` (each keeps its original expiry; one already past
/// it expires at the next settle), then pays any debt from them.
pub fn restore(balance: &mut Balance, lots: &mut [Lot], plan: &[(Uuid, i64)]) -> Posting {
    let mut posting = Posting::default();
    let mut touched = Vec::new();
    for (id, n) in plan {
        if let Some(i) = lots.iter().position(|l| l.id == *id) {
            let lot = &mut lots[i];
            lot.remaining += n;
            *balance.bucket(lot) += n;
            posting.push(lot.id, MovementKind::Restore, *n);
            touched.push(i);
        }
    }
    for i in touched {
        pay_debt(balance, std::slice::from_mut(&mut lots[i]), &mut posting);
    }
    posting
}

/// How much of an earn a refund reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarnReversal {
    pub refund_krw: i64,
    pub points: i64,
}

/// Why an earn cannot be cancelled (further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundError {
    /// Everything was refunded already.
    AlreadyCancelled,
    /// The refund is more than the purchase amount not refunded yet.
    ExceedsPurchase { refundable_krw: i64 },
}

/// The points a refund of `refund_krw` (`None`: everything left) reverses, in proportion to
/// the purchase, rounded down, computed on the cumulative refund: the cancels of one earn
/// always add up to exactly its points once the whole purchase is refunded, and never more.
pub fn earn_reversal(
    earned_points: i64,
    purchase_krw: i64,
    refunded_before_krw: i64,
    reversed_before: i64,
    refund_krw: Option<i64>,
) -> Result<EarnReversal, RefundError> {
    let refundable_krw = purchase_krw - refunded_before_krw;
    if refundable_krw <= 0 {
        return Err(RefundError::AlreadyCancelled);
    }
    let refund = refund_krw.unwrap_or(refundable_krw);
    if refund > refundable_krw {
        return Err(RefundError::ExceedsPurchase { refundable_krw });
    }
    let after = refunded_before_krw + refund;
    let target = if after == purchase_krw {
        earned_points
    } else {
        let t = i128::from(earned_points) * i128::from(after) / i128::from(purchase_krw);
        i64::try_from(t).unwrap_or(earned_points)
    };
    Ok(EarnReversal {
        refund_krw: refund,
        points: (target - reversed_before).max(0),
    })
}

/// What settling did: points that became usable, and the expiry posting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    pub matured: i64,
    pub expired: Posting,
}

/// Brings the lots up to `at`: pending lots whose time came become usable; lots whose last
/// valid instant passed lose what remains (soonest first).
pub fn settle(balance: &mut Balance, lots: &mut [Lot], at: DateTime<Utc>) -> Settlement {
    let mut s = Settlement::default();
    for lot in lots.iter_mut() {
        if lot.pending && lot.available_time <= at {
            balance.pending -= lot.remaining;
            balance.available += lot.remaining;
            s.matured += lot.remaining;
            lot.pending = false;
        }
    }
    let mut due: Vec<usize> = (0..lots.len())
        .filter(|&i| lots[i].remaining > 0 && lots[i].expire_time < at)
        .collect();
    due.sort_by_key(|&i| (lots[i].expire_time, lots[i].id));
    for i in due {
        let lot = &mut lots[i];
        let n = lot.remaining;
        lot.remaining = 0;
        lot.expired += n;
        *balance.bucket(lot) -= n;
        s.expired.push(lot.id, MovementKind::Expire, -n);
    }
    s
}

#[cfg(test)]
mod tests;
