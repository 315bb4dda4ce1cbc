//! Group commit of the till's writes: earns, spends and refunds (cancels of earns). At a till
//! rush most of a write's cost is the transaction around it (about a dozen statements and a
//! commit), not its arithmetic, so concurrent writes of one tenant are done together: a worker
//! takes every write waiting in its queue (up to [`MAX_BATCH`]) and does them in one
//! transaction with one statement per table, applying them in queue order to the members'
//! accounts (and, for spends and refunds, lots) held in memory.
//!
//! Only plain writes go into a batch. Anything that needs the one-by-one path's care
//! goes back to it, after the batch committed: a retried or reused idempotency key or a
//! receipt the ledger holds already (found by the inserts of the keys and of the ledger rows,
//! which are the checks: the batch rolls back and goes again without those), a key or receipt
//! that appears twice in the batch, a member with lots to settle (expiry, maturation), a
//! purchase too old to earn, a spend the batch cannot make (not enough points, below the
//! minimum balance, not a multiple of the spend unit: the single path gives the error), a
//! cancel of a spend, or one the batch cannot make (unknown or fully cancelled transaction,
//! a refund larger than what is left, points already spent where debt is not allowed). If the
//! batch's transaction fails for any other reason (a deadlock, a lost connection) it rolls
//! back whole and every one of its writes is done one by one. A batch never changes an answer:
//! its writes were all in flight at once, so doing the ones it leaves after the others is one
//! of the orders they could have happened in.
//!
//! Batches are natural, not timed: a worker never waits to fill one. A lone write is a batch
//! of one; under load, writes queue while the worker commits and the next batch takes them
//! all. Each tenant's writes go to one of [`WORKERS`] workers (by tenant id): a busy tenant's
//! writes make the largest batches one worker can (per write, a batch of 30 costs a fraction
//! of a batch of 10), two batches in flight never lock the same account, and the many small
//! tenants of the shared tier are written by several workers at once.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{self, Envelope},
    db::Db,
    idempotency, telemetry,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use super::{
    Earned, Lots, Posted, SCOPE, balance_of, draft, expiring_window, json,
    ledger::{EarnPlan, credit_lot, earn_row, key_column, plan_earn, quote_view},
    load_policy, now, posted, view,
};
use crate::{
    domain::{
        forms::{CancelForm, CancelTarget, EarnForm, SpendForm, TxKind, fingerprint},
        ledger::{self, Balance, MovementKind, Posting},
        policy::ShortfallRule,
    },
    events,
    members::{Caller, MemberFacts},
    store::{
        accounts::{self, AccountRow},
        lots::{self, LotRow},
        movements::{self, MovementRow},
        tenants,
        transactions::{self, TransactionRow, pos_key},
    },
};

/// Most writes in one transaction (a few thousand bind parameters per statement).
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once, each of its own tenants.
const WORKERS: usize = 4;
/// Writes waiting for each worker; a full queue makes callers wait (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// Lots read per member who spends: the soonest-expiring ones, which spends take first. A
/// spend they do not cover goes to the single path, which reads them all.
const LOTS_PER_SPENDER: usize = 16;

/// A write a batch can do, validated; an earn's or a spend's member resolved and ACTIVE (a
/// cancel's member is the original transaction's).
pub(super) enum Op {
    Earn {
        form: EarnForm,
        member: MemberFacts,
        grade_rate: Option<i32>,
    },
    Spend {
        form: SpendForm,
        member: MemberFacts,
    },
    Cancel {
        form: CancelForm,
        target: CancelTarget,
    },
}

impl Op {
    fn idempotency_key(&self) -> &str {
        match self {
            Op::Earn { form, .. } => &form.idempotency_key,
            Op::Spend { form, .. } => &form.idempotency_key,
            Op::Cancel { form, .. } => &form.idempotency_key,
        }
    }

    /// The receipt's unique key in the ledger (cancels have none).
    fn pos_key(&self) -> Option<String> {
        match self {
            Op::Earn { form, .. } => Some(pos_key(
                TxKind::Earn,
                &form.store_code,
                &form.pos_transaction_id,
            )),
            Op::Spend { form, .. } => Some(pos_key(
                TxKind::Spend,
                &form.store_code,
                &form.pos_transaction_id,
            )),
            Op::Cancel { .. } => None,
        }
    }

    fn fingerprint(&self) -> String {
        match self {
            Op::Earn { form, .. } => fingerprint("earn", form),
            Op::Spend { form, .. } => fingerprint("spend", form),
            Op::Cancel { form, .. } => fingerprint("cancel", form),
        }
    }

    /// The member an earn or a spend is for.
    fn member(&self) -> Option<Uuid> {
        match self {
            Op::Earn { member, .. } | Op::Spend { member, .. } => Some(member.id),
            Op::Cancel { .. } => None,
        }
    }
}

/// What became of a submitted write.
pub(super) enum Reply {
    /// An earn a batch wrote.
    Earned(Box<Earned>),
    /// A spend or a cancel a batch wrote.
    Posted(Box<Posted>),
    /// Left to the one-by-one path (the write comes back).
    Single(Box<Op>),
}

/// The answer a batch computed for one write.
enum Answer {
    Earned(Earned),
    Spent(Posted),
    Cancelled(Posted),
}

struct Job {
    tenant: TenantId,
    actor: String,
    op: Op,
    pos: Option<String>,
    reply: oneshot::Sender<Reply>,
}

/// The queues into the batch workers. Cheap to clone; the workers stop when the last clone is
/// dropped.
#[derive(Clone)]
pub(super) struct LedgerBatcher {
    /// One queue per worker; a tenant's writes always take the same one.
    queues: Arc<[mpsc::Sender<Job>]>,
    stats: Arc<Counters>,
}

/// What the batches did since the module started (see [`super::PointsApp::ledger_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchStats {
    /// Batch transactions committed.
    pub committed: u64,
    /// Earns those transactions wrote.
    pub earns: u64,
    /// Spends those transactions wrote.
    pub spends: u64,
    /// Cancels those transactions wrote.
    pub cancels: u64,
    /// The most writes one transaction did.
    pub largest: u64,
    /// Batch transactions rolled back (their writes were then tried again or done one by one).
    pub rolled_back: u64,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    earns: AtomicU64,
    spends: AtomicU64,
    cancels: AtomicU64,
    largest: AtomicU64,
    rolled_back: AtomicU64,
}

struct Writer {
    db: Db,
    zone: Tz,
    stats: Arc<Counters>,
}

impl LedgerBatcher {
    pub(super) fn spawn(db: Db, zone: Tz) -> Self {
        let stats = Arc::new(Counters::default());
        let writer = Arc::new(Writer {
            db,
            zone,
            stats: stats.clone(),
        });
        let queues = (0..WORKERS)
            .map(|_| {
                let (queue, rx) = mpsc::channel(QUEUE);
                tokio::spawn(work(writer.clone(), rx));
                queue
            })
            .collect();
        Self { queues, stats }
    }

    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            committed: self.stats.committed.load(Ordering::Relaxed),
            earns: self.stats.earns.load(Ordering::Relaxed),
            spends: self.stats.spends.load(Ordering::Relaxed),
            cancels: self.stats.cancels.load(Ordering::Relaxed),
            largest: self.stats.largest.load(Ordering::Relaxed),
            rolled_back: self.stats.rolled_back.load(Ordering::Relaxed),
        }
    }

    /// Queues a write and waits for its batch.
    pub(super) async fn submit(
        &self,
        tenant: TenantId,
        caller: &Caller,
        op: Op,
    ) -> Result<Reply, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tenant,
            actor: caller.actor.clone(),
            pos: op.pos_key(),
            op,
            reply,
        };
        // Tenant ids end in random bits: an even spread of tenants over the workers.
        let queue = &self.queues[tenant.as_uuid().as_bytes()[15] as usize % self.queues.len()];
        if let Err(refused) = queue.send(job).await {
            return Ok(Reply::Single(Box::new(refused.0.op)));
        }
        answer.await.map_err(|_| {
            // Only a panicking worker drops a reply; whether its batch committed is unknown,
            // which a retry with the same idempotency key settles.
            ServiceError::Unavailable(
                "the write was interrupted; retry with the same idempotency_key".into(),
            )
        })
    }
}

async fn work(writer: Arc<Writer>, mut queue: mpsc::Receiver<Job>) {
    loop {
        let mut jobs = Vec::new();
        match queue.recv().await {
            Some(job) => jobs.push(job),
            None => return,
        }
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // One transaction per tenant (row-level security is per transaction), in queue order.
        let mut by_tenant: Vec<(TenantId, Vec<Job>)> = Vec::new();
        for job in jobs {
            match by_tenant.iter_mut().find(|(t, _)| *t == job.tenant) {
                Some((_, group)) => group.push(job),
                None => by_tenant.push((job.tenant, vec![job])),
            }
        }
        for (tenant, group) in by_tenant {
            writer.run(tenant, group).await;
        }
    }
}

/// A member's lots as a batch changes them: those loaded (the soonest-expiring usable lots,
/// for members who spend) and those the batch's earns created.
struct MemberLots {
    set: Lots,
    created: HashSet<Uuid>,
    /// Every usable lot of the member was loaded. When not, a spend may only take from the
    /// loaded ones: a lot the batch did not read might come before a lot it created.
    complete: bool,
}

impl MemberLots {
    /// Points left in the lots expiring by `until`.
    fn expiring(&self, until: DateTime<Utc>) -> i64 {
        self.set
            .lots
            .iter()
            .filter(|l| l.expire_time <= until)
            .map(|l| l.remaining)
            .sum()
    }

    /// What the loaded lots that existed before the batch hold now.
    fn loaded_remaining(&self) -> i64 {
        self.set
            .lots
            .iter()
            .filter(|l| !self.created.contains(&l.id))
            .map(|l| l.remaining)
            .sum()
    }
}

/// A member's account as the batch changes it.
struct Account {
    stored: AccountRow,
    balance: Balance,
    lifetime_earned: i64,
    lifetime_spent: i64,
    /// Points expiring within the window: the sum read at the start, plus what earns added to
    /// those lots, less what spends took from them.
    expiring: i64,
    lots: Option<MemberLots>,
}

impl Account {
    fn new(stored: AccountRow, expiring: i64, lots: Option<(Lots, bool)>) -> Self {
        Self {
            balance: Balance {
                available: stored.available,
                pending: stored.pending,
                debt: stored.debt,
            },
            lifetime_earned: stored.lifetime_earned,
            lifetime_spent: stored.lifetime_spent,
            stored,
            expiring,
            lots: lots.map(|(set, complete)| MemberLots {
                set,
                created: HashSet::new(),
                complete,
            }),
        }
    }

    fn current(&self, at: DateTime<Utc>) -> AccountRow {
        let mut row = self.stored.clone();
        row.available = self.balance.available;
        row.pending = self.balance.pending;
        row.debt = self.balance.debt;
        row.lifetime_earned = self.lifetime_earned;
        row.lifetime_spent = self.lifetime_spent;
        if row != self.stored {
            row.updated_time = at;
        }
        row
    }

    /// The balance an answer shows.
    fn view(&self, at: DateTime<Utc>, until_date: chrono::NaiveDate) -> super::BalanceView {
        balance_of(&self.current(at), self.expiring, until_date)
    }
}

/// What one attempt at a batch did.
enum Written {
    /// Committed: the answer of each write done, `None` for those left to the single path.
    Committed(Vec<Option<Answer>>),
    /// Rolled back: these requests' idempotency keys or till receipts were used before.
    Taken(Vec<usize>),
    /// Rolled back after creating the accounts of members writing for the first time.
    AccountsCreated,
}

/// Everything a batch writes, one statement per table.
#[derive(Default)]
struct Writes {
    keys: Vec<(usize, String, Vec<u8>)>,
    /// New lots of members whose lots are not loaded.
    lots: Vec<LotRow>,
    transactions: Vec<TransactionRow>,
    /// The job of each of `transactions`.
    owners: Vec<usize>,
    movements: Vec<MovementRow>,
    events: Vec<Envelope>,
}

/// What a batch decided for one write before touching any account.
enum Plan {
    Earn(EarnPlan),
    Spend,
    /// A refund: the earn it cancels.
    Cancel(Uuid),
}

/// What the log line of a write a batch did says.
struct Logged {
    kind: TxKind,
    member_id: Uuid,
    id: Uuid,
    original: Option<Uuid>,
    points: i64,
}

impl Logged {
    fn of(t: &super::TransactionView) -> Self {
        Self {
            kind: t.kind,
            member_id: t.member_id,
            id: t.id,
            original: t.original_transaction_id,
            points: t.points,
        }
    }
}

impl Writer {
    async fn run(&self, tenant: TenantId, jobs: Vec<Job>) {
        let started = Instant::now();
        // A key or a receipt seen earlier in the batch: its second use must see the first.
        let mut keys = HashSet::new();
        let mut receipts = HashSet::new();
        let mut eligible: Vec<bool> = jobs
            .iter()
            .map(|j| {
                let key = j.op.idempotency_key();
                let fresh = (key.is_empty() || !keys.contains(key))
                    && j.pos.as_ref().is_none_or(|p| !receipts.contains(p));
                if fresh {
                    keys.insert(key.to_string());
                    receipts.extend(j.pos.clone());
                }
                fresh
            })
            .collect();
        let size = jobs.len();
        // A key or receipt found taken rolls the batch back; it is written again without the
        // requests whose keys or receipts were taken. First writes of members have their
        // accounts made first, then the batch goes again. Four attempts at most; then all go
        // to the single path.
        let mut results = None;
        for attempt in 1..=4 {
            match self.write(tenant, &jobs, &eligible).await {
                Ok(Written::Committed(done)) => {
                    let earns = done
                        .iter()
                        .filter(|r| matches!(r, Some(Answer::Earned(_))))
                        .count() as u64;
                    let spends = done
                        .iter()
                        .filter(|r| matches!(r, Some(Answer::Spent(_))))
                        .count() as u64;
                    let cancels = done
                        .iter()
                        .filter(|r| matches!(r, Some(Answer::Cancelled(_))))
                        .count() as u64;
                    let all = earns + spends + cancels;
                    if all > 0 {
                        self.stats.committed.fetch_add(1, Ordering::Relaxed);
                        self.stats.earns.fetch_add(earns, Ordering::Relaxed);
                        self.stats.spends.fetch_add(spends, Ordering::Relaxed);
                        self.stats.cancels.fetch_add(cancels, Ordering::Relaxed);
                        self.stats.largest.fetch_max(all, Ordering::Relaxed);
                    }
                    results = Some(done);
                    break;
                }
                Ok(Written::AccountsCreated) => {}
                Ok(Written::Taken(taken)) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant_id = %tenant, writes = size, taken = taken.len(), attempt, "ledger batch rolled back: idempotency keys or receipts used before");
                    for i in taken {
                        eligible[i] = false;
                    }
                }
                Err(e) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant_id = %tenant, writes = size, error = %e, "ledger batch rolled back; its writes are done one by one");
                    break;
                }
            }
        }
        let mut results = results.unwrap_or_else(|| (0..size).map(|_| None).collect());
        // Every answer goes out first, then the log lines: a till waits for its commit, not
        // for the batch's log output.
        let mut written = Vec::with_capacity(size);
        for (job, result) in jobs.into_iter().zip(results.iter_mut()) {
            let reply = match result.take() {
                Some(Answer::Earned(earned)) => {
                    written.push(Logged::of(&earned.transaction));
                    Reply::Earned(Box::new(earned))
                }
                Some(Answer::Spent(spent)) => {
                    written.push(Logged::of(&spent.transaction));
                    Reply::Posted(Box::new(spent))
                }
                Some(Answer::Cancelled(cancelled)) => {
                    written.push(Logged::of(&cancelled.transaction));
                    Reply::Posted(Box::new(cancelled))
                }
                None => Reply::Single(Box::new(job.op)),
            };
            // A caller that went away (deadline, cancel) no longer needs its answer.
            let _ = job.reply.send(reply);
        }
        if !written.is_empty() {
            telemetry::observe_group_commit("points", written.len(), started.elapsed());
        }
        for w in written {
            match w.kind {
                TxKind::Earn => {
                    tracing::info!(tenant_id = %tenant, member_id = %w.member_id, transaction_id = %w.id, points = w.points, batch = size, "points earned")
                }
                TxKind::Spend => {
                    tracing::info!(tenant_id = %tenant, member_id = %w.member_id, transaction_id = %w.id, points = -w.points, batch = size, "points spent")
                }
                _ => {
                    tracing::info!(tenant_id = %tenant, member_id = %w.member_id, transaction_id = %w.id, original = ?w.original, points = w.points, batch = size, "points cancelled")
                }
            }
        }
    }

    /// Does the eligible writes it can; `None` for those left to the one-by-one path.
    async fn write(
        &self,
        tenant: TenantId,
        jobs: &[Job],
        eligible: &[bool],
    ) -> Result<Written, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        let policy = load_policy(&tx, tenant).await?;
        // The earns refunds cancel, found before any lock (their members are to be locked).
        let cancelled = self.find_cancelled(&tx, tenant, jobs, eligible).await?;
        let mut plans: Vec<Option<Plan>> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                if !eligible[i] {
                    return None;
                }
                match &j.op {
                    Op::Earn {
                        form,
                        member,
                        grade_rate,
                    } => plan_earn(&policy, member, *grade_rate, form, at, self.zone)
                        .ok()
                        .map(Plan::Earn),
                    Op::Spend { form, .. } => {
                        (form.points % policy.policy.spend_unit == 0).then_some(Plan::Spend)
                    }
                    // An earn is refunded by amount; points are for spend cancels.
                    Op::Cancel { form, .. } => cancelled
                        .get(&i)
                        .filter(|_| form.points == 0)
                        .map(|original| Plan::Cancel(original.id)),
                }
            })
            .collect();
        let member_of = |i: usize| -> Option<Uuid> {
            jobs[i]
                .op
                .member()
                .or_else(|| cancelled.get(&i).map(|o| o.member_id))
        };
        let live = |plans: &[Option<Plan>]| -> Vec<usize> {
            (0..jobs.len()).filter(|i| plans[*i].is_some()).collect()
        };

        let mut members: Vec<Uuid> = live(&plans).into_iter().filter_map(member_of).collect();
        members.sort_unstable();
        members.dedup();
        let (until_date, until) = expiring_window(at, self.zone);
        let mut accounts = accounts::lock_many_summarised(&tx, tenant, &members, at, until).await?;
        if accounts.len() < members.len() {
            // First writes of some members. Their accounts are made in a short transaction of
            // their own, then the batch starts over: creating them here, after locking the
            // others, would take row locks out of member order (two batches could deadlock).
            tx.rollback().await?;
            let have: HashSet<Uuid> = accounts.iter().map(|(a, _)| a.member_id).collect();
            let missing: Vec<Uuid> = members
                .iter()
                .copied()
                .filter(|m| !have.contains(m))
                .collect();
            self.create_accounts(tenant, &missing, at).await?;
            return Ok(Written::AccountsCreated);
        }
        // The refunded earns again, now that their members are locked: a cancel committed
        // since the first read shows.
        let mut originals: HashMap<Uuid, TransactionRow> = {
            let ids: Vec<Uuid> = live(&plans)
                .iter()
                .filter_map(|i| match plans[*i] {
                    Some(Plan::Cancel(id)) => Some(id),
                    _ => None,
                })
                .collect();
            transactions::get_many(&tx, tenant, &ids)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect()
        };
        let open: HashMap<Uuid, accounts::OpenSummary> = accounts
            .iter()
            .map(|(a, summary)| (a.member_id, *summary))
            .collect();
        for i in live(&plans) {
            if member_of(i).is_some_and(|m| open.get(&m).is_some_and(|s| s.due)) {
                plans[i] = None;
            }
        }
        let live_now = live(&plans);
        if live_now.is_empty() {
            tx.rollback().await?;
            return Ok(Written::Committed(jobs.iter().map(|_| None).collect()));
        }
        // Lots, in one read each. Members with a refund: all their open lots and the refunded
        // earns' lots (a refund takes from its own lot first, then from any). Members who
        // only spend: their soonest-expiring usable lots, which spends take first.
        let mut refunders: Vec<Uuid> = Vec::new();
        let mut refunded_lots: Vec<Uuid> = Vec::new();
        let mut spenders: Vec<Uuid> = Vec::new();
        for &i in &live_now {
            match &plans[i] {
                Some(Plan::Cancel(id)) => {
                    refunders.extend(member_of(i));
                    refunded_lots.extend(originals.get(id).and_then(|o| o.lot_id));
                }
                Some(Plan::Spend) => spenders.extend(member_of(i)),
                _ => {}
            }
        }
        refunders.sort_unstable();
        refunders.dedup();
        spenders.sort_unstable();
        spenders.dedup();
        spenders.retain(|m| refunders.binary_search(m).is_err());
        let mut all_lots = lots::open_of_members(&tx, tenant, &refunders, &refunded_lots).await?;
        let mut soonest = lots::soonest_usable(&tx, tenant, &spenders, LOTS_PER_SPENDER).await?;
        let mut state: HashMap<Uuid, Account> = accounts
            .drain(..)
            .map(|(a, summary)| {
                let m = a.member_id;
                let sum = summary.expiring;
                // A member without such lots has an empty, complete set: its writes are judged
                // (and, wanting points, refused) like any other.
                let lots = if refunders.binary_search(&m).is_ok() {
                    Some((Lots::new(all_lots.remove(&m).unwrap_or_default()), true))
                } else if spenders.binary_search(&m).is_ok() {
                    let (rows, complete) = soonest.remove(&m).unwrap_or_else(|| (Vec::new(), true));
                    Some((Lots::new(rows), complete))
                } else {
                    None
                };
                (m, Account::new(a, sum, lots))
            })
            .collect();
        let allow_debt = policy.policy.earn_cancel_shortfall == ShortfallRule::Debt;
        let mut refunded: HashSet<Uuid> = HashSet::new();

        let mut writes = Writes::default();
        let mut results: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
        for i in live_now {
            let job = &jobs[i];
            let Some(plan) = plans[i].take() else {
                continue;
            };
            let Some(member) = member_of(i) else {
                continue;
            };
            let account = state.get_mut(&member).ok_or_else(|| {
                ServiceError::internal("a point account vanished after it was locked")
            })?;
            let answer = match (plan, &job.op) {
                (Plan::Earn(plan), Op::Earn { form, .. }) => {
                    let points = plan.quote.points;
                    let mut row = earn_row(
                        draft(tenant, member, &job.actor, TxKind::Earn),
                        form,
                        &plan,
                        policy.version,
                        job.pos.clone().unwrap_or_default(),
                    );
                    let posting = if points > 0 {
                        let (lot, posting) = credit_lot(
                            tenant,
                            member,
                            row.id,
                            points,
                            &plan.dates,
                            &mut account.balance,
                        );
                        row.lot_id = Some(lot.id);
                        if lot.expire_time <= until {
                            account.expiring += lot.remaining;
                        }
                        match &mut account.lots {
                            // Later spends and refunds of this batch may take from it.
                            Some(l) => {
                                l.created.insert(lot.id);
                                l.set.lots.push(super::lot_of(&lot));
                                l.set.rows.push(lot);
                            }
                            None => writes.lots.push(lot),
                        }
                        posting
                    } else {
                        Posting::default()
                    };
                    let (row, moves) = posted(tenant, row, &posting, &account.balance);
                    account.lifetime_earned += points;
                    if points > 0 {
                        writes
                            .events
                            .push(events::earned(tenant, &row, &form.items));
                    }
                    writes
                        .events
                        .push(events::purchase_recorded(tenant, &row, &form.items));
                    let answer = Earned {
                        transaction: view(&row)?,
                        balance: account.view(at, until_date),
                        quote: quote_view(plan, policy.version),
                    };
                    writes.movements.extend(moves);
                    writes.transactions.push(row);
                    Answer::Earned(answer)
                }
                (Plan::Spend, Op::Spend { form, .. }) => {
                    if account.balance.available < policy.policy.min_balance_to_spend {
                        continue;
                    }
                    let Some(lots) = account.lots.as_mut() else {
                        return Err(ServiceError::internal("a spender's lots were not loaded"));
                    };
                    if !lots.complete && lots.loaded_remaining() < form.points {
                        continue;
                    }
                    let expiring_before = lots.expiring(until);
                    // Not enough points: the single path says so (nothing was touched).
                    let Ok(posting) = ledger::consume(
                        &mut account.balance,
                        &mut lots.set.lots,
                        form.points,
                        MovementKind::Spend,
                        false,
                        at,
                    ) else {
                        continue;
                    };
                    account.expiring += lots.expiring(until) - expiring_before;
                    let mut row = draft(tenant, member, &job.actor, TxKind::Spend);
                    row.store_code = Some(form.store_code.clone());
                    row.pos_transaction_id = Some(form.pos_transaction_id.clone());
                    row.pos_key = job.pos.clone();
                    row.idempotency_key = key_column(&form.idempotency_key);
                    row.occurred_time = at;
                    let (row, moves) = posted(tenant, row, &posting, &account.balance);
                    account.lifetime_spent += form.points;
                    writes.events.push(events::used(tenant, &row));
                    let answer = Posted {
                        transaction: view(&row)?,
                        balance: account.view(at, until_date),
                    };
                    writes.movements.extend(moves);
                    writes.transactions.push(row);
                    Answer::Spent(answer)
                }
                (Plan::Cancel(id), Op::Cancel { form, .. }) => {
                    let Some(original) = originals.get_mut(&id) else {
                        continue;
                    };
                    let refund = (form.refund_amount_krw > 0).then_some(form.refund_amount_krw);
                    // Fully cancelled already, or more than is left: the single path says so.
                    let Ok(r) = ledger::earn_reversal(
                        original.points,
                        original.amount_krw,
                        original.refunded_amount_krw,
                        original.reversed_points,
                        refund,
                    ) else {
                        continue;
                    };
                    let Some(lots) = account.lots.as_mut() else {
                        return Err(ServiceError::internal("a refunder's lots were not loaded"));
                    };
                    let expiring_before = lots.expiring(until);
                    let Ok(posting) = ledger::reverse_earn(
                        &mut account.balance,
                        &mut lots.set.lots,
                        original.lot_id,
                        r.points,
                        allow_debt,
                        at,
                    ) else {
                        continue;
                    };
                    account.expiring += lots.expiring(until) - expiring_before;
                    let mut row = draft(tenant, member, &job.actor, TxKind::CancelEarn);
                    row.original_transaction_id = Some(original.id);
                    row.store_code = key_column(&form.store_code);
                    row.pos_transaction_id = key_column(&form.pos_transaction_id);
                    row.reason = key_column(form.reason.trim());
                    row.idempotency_key = key_column(&form.idempotency_key);
                    row.occurred_time = at;
                    row.amount_krw = r.refund_krw;
                    let (row, moves) = posted(tenant, row, &posting, &account.balance);
                    original.refunded_amount_krw += r.refund_krw;
                    original.reversed_points += r.points;
                    refunded.insert(original.id);
                    account.lifetime_earned -= r.points;
                    writes
                        .events
                        .push(events::cancelled(tenant, &row, TxKind::Earn));
                    let answer = Posted {
                        transaction: view(&row)?,
                        balance: account.view(at, until_date),
                    };
                    writes.movements.extend(moves);
                    writes.transactions.push(row);
                    Answer::Cancelled(answer)
                }
                _ => {
                    return Err(ServiceError::internal(
                        "a batch plan does not fit its write",
                    ));
                }
            };
            if !job.op.idempotency_key().is_empty() {
                let response = match &answer {
                    Answer::Earned(e) => json(e)?,
                    Answer::Spent(p) | Answer::Cancelled(p) => json(p)?,
                };
                writes.keys.push((i, job.op.fingerprint(), response));
            }
            writes.owners.push(i);
            results[i] = Some(answer);
        }
        if writes.transactions.is_empty() {
            tx.rollback().await?;
            return Ok(Written::Committed(results));
        }

        let entries: Vec<(&str, &str, &[u8])> = writes
            .keys
            .iter()
            .map(|(i, hash, response)| {
                (
                    jobs[*i].op.idempotency_key(),
                    hash.as_str(),
                    response.as_slice(),
                )
            })
            .collect();
        // The keys go in first of the writes: a key used before (or by a concurrent request,
        // whose commit this waits for) is not recorded, and the batch goes again without it.
        // Nothing looks the keys up beforehand: the insert that must happen anyway is the check.
        let recorded = idempotency::record_many(&tx, tenant, SCOPE, &entries).await?;
        if recorded.len() != entries.len() {
            let taken = writes
                .keys
                .iter()
                .map(|(i, _, _)| *i)
                .filter(|i| !recorded.contains(jobs[*i].op.idempotency_key()))
                .collect();
            tx.rollback().await?;
            return Ok(Written::Taken(taken));
        }
        // Then the ledger rows: a receipt the ledger holds already (or a concurrent request's,
        // whose commit this waits for) is not inserted, and the batch goes again without it.
        let inserted = transactions::insert_new(&tx, &writes.transactions).await?;
        if inserted.len() != writes.transactions.len() {
            let taken = writes
                .transactions
                .iter()
                .zip(&writes.owners)
                .filter(|(row, _)| !inserted.contains(&row.id))
                .map(|(_, i)| *i)
                .collect();
            tx.rollback().await?;
            return Ok(Written::Taken(taken));
        }
        let t = now();
        let refunds: Vec<(Uuid, i64, i64)> = refunded
            .iter()
            .filter_map(|id| originals.get(id))
            .map(|o| (o.id, o.refunded_amount_krw, o.reversed_points))
            .collect();
        transactions::set_cancelled_many(&tx, tenant, &refunds, t).await?;
        let mut changed_lots = Vec::new();
        for account in state.values() {
            if let Some(l) = &account.lots {
                for (row, lot) in l.set.rows.iter().zip(&l.set.lots) {
                    let current = LotRow {
                        remaining: lot.remaining,
                        expired: lot.expired,
                        pending: lot.pending,
                        ..row.clone()
                    };
                    if l.created.contains(&row.id) {
                        changed_lots.push(current);
                    } else if current.remaining != row.remaining
                        || current.expired != row.expired
                        || current.pending != row.pending
                    {
                        changed_lots.push(LotRow {
                            updated_time: t,
                            ..current
                        });
                    }
                }
            }
        }
        // New lots and changed ones in one upsert.
        changed_lots.append(&mut writes.lots);
        lots::save(&tx, &changed_lots).await?;
        movements::insert_many(&tx, writes.movements).await?;
        let changed: Vec<AccountRow> = state
            .values()
            .filter_map(|a| Some(a.current(at)).filter(|row| *row != a.stored))
            .collect();
        accounts::save_many(&tx, &changed).await?;
        bus::enqueue_many(&tx, &writes.events).await?;
        tx.commit().await?;
        Ok(Written::Committed(results))
    }

    /// The earns the batch's cancels refund (by the cancel's position in the batch), read in
    /// one query; cancels of anything else (a spend, an unknown transaction) are left out and
    /// go to the single path.
    async fn find_cancelled(
        &self,
        tx: &spharos_kit::db::Tx,
        tenant: TenantId,
        jobs: &[Job],
        eligible: &[bool],
    ) -> Result<HashMap<usize, TransactionRow>, ServiceError> {
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for (j, ok) in jobs.iter().zip(eligible) {
            if let (true, Op::Cancel { target, .. }) = (ok, &j.op) {
                match target {
                    CancelTarget::Transaction(id) => ids.push(*id),
                    CancelTarget::Pos {
                        store_code,
                        pos_transaction_id,
                        kind,
                    } => keys.push(pos_key(*kind, store_code, pos_transaction_id)),
                }
            }
        }
        if ids.is_empty() && keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = transactions::find_by_ids_or_pos_keys(tx, tenant, &ids, &keys).await?;
        let mut by_job = HashMap::new();
        for (i, (j, ok)) in jobs.iter().zip(eligible).enumerate() {
            let (true, Op::Cancel { target, .. }) = (ok, &j.op) else {
                continue;
            };
            let original = found.iter().find(|t| match target {
                CancelTarget::Transaction(id) => t.id == *id,
                CancelTarget::Pos {
                    store_code,
                    pos_transaction_id,
                    kind,
                } => {
                    t.pos_key.as_deref()
                        == Some(pos_key(*kind, store_code, pos_transaction_id).as_str())
                }
            });
            if let Some(o) = original.filter(|o| o.kind == TxKind::Earn.as_str()) {
                by_job.insert(i, o.clone());
            }
        }
        Ok(by_job)
    }

    /// Creates the accounts of `members` (sorted), in a transaction of their own.
    async fn create_accounts(
        &self,
        tenant: TenantId,
        members: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if accounts::create_many(&tx, tenant, members, at).await? > 0 {
            tenants::register(&tx, tenant, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
