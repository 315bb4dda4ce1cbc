//! Group commit of earns. At a till rush most of an earn's cost is the transaction around it
//! (about a dozen statements and a commit), not its arithmetic, so concurrent earns of one
//! tenant are written together: a few workers each take every earn waiting in the queue (up
//! to [`MAX_BATCH`]) and write them in one transaction with one statement per table.
//!
//! Only plain earns go into a batch. Anything that needs the one-by-one path's care goes back
//! to it, after the batch committed: a retried or reused idempotency key or a receipt the
//! ledger holds already (found by the inserts of the keys and of the ledger rows, which are
//! the checks: the batch rolls back and goes again without those), a key or receipt that
//! appears twice in the batch, a member with lots to settle (expiry, maturation), a purchase
//! too old to earn. If the batch's transaction fails
//! for any other reason (a concurrent request took a receipt, a deadlock, a lost connection)
//! it rolls back whole and every one of its earns is done one by one, so a batch never changes
//! an answer: each earn gets what it would have got alone, in the order the queue held them.
//!
//! Batches are natural, not timed: a worker never waits to fill one. A lone earn is a batch
//! of one; under load, earns queue while the worker commits and the next batch takes them all.
//! Each tenant's earns go to one of [`WORKERS`] workers (by tenant id): a busy tenant's earns
//! make the largest batches one worker can (per earn, a batch of 30 costs a fraction of a batch
//! of 10), two batches in flight never lock the same account, and the many small tenants of
//! the shared tier are written by several workers at once.
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
    idempotency,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    Earned, SCOPE, balance_of, draft, expiring_window, json,
    ledger::{EarnPlan, credit_lot, earn_row, plan_earn, quote_view},
    load_policy, now, posted, view,
};
use crate::{
    domain::{
        forms::{EarnForm, TxKind, fingerprint},
        ledger::{Balance, Posting},
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

/// Most earns in one transaction (a few thousand bind parameters per statement).
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once, each of its own tenants.
const WORKERS: usize = 4;
/// Earns waiting for each worker; a full queue makes callers wait (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// What became of a submitted earn.
pub(super) enum Reply {
    /// Written by a batch.
    Done(Box<Earned>),
    /// Left to the one-by-one path (the form comes back).
    Single(EarnForm),
}

struct Job {
    tenant: TenantId,
    actor: String,
    member: MemberFacts,
    grade_rate: Option<i32>,
    form: EarnForm,
    pos: String,
    reply: oneshot::Sender<Reply>,
}

/// The queue into the batch workers. Cheap to clone; the workers stop when the last clone is
/// dropped.
#[derive(Clone)]
pub(super) struct EarnBatcher {
    /// One queue per worker; a tenant's earns always take the same one.
    queues: Arc<[mpsc::Sender<Job>]>,
    stats: Arc<Counters>,
}

/// What the batches did since the module started (see [`super::PointsApp::earn_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchStats {
    /// Batch transactions committed.
    pub committed: u64,
    /// Earns those transactions wrote.
    pub earns: u64,
    /// The most earns one transaction wrote.
    pub largest: u64,
    /// Batch transactions rolled back (their earns were then done one by one).
    pub rolled_back: u64,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    earns: AtomicU64,
    largest: AtomicU64,
    rolled_back: AtomicU64,
}

struct Writer {
    db: Db,
    zone: Tz,
    stats: Arc<Counters>,
}

impl EarnBatcher {
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
            largest: self.stats.largest.load(Ordering::Relaxed),
            rolled_back: self.stats.rolled_back.load(Ordering::Relaxed),
        }
    }

    /// Queues an earn (validated, its member active) and waits for its batch.
    pub(super) async fn submit(
        &self,
        tenant: TenantId,
        caller: &Caller,
        member: MemberFacts,
        grade_rate: Option<i32>,
        form: EarnForm,
    ) -> Result<Reply, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tenant,
            actor: caller.actor.clone(),
            member,
            grade_rate,
            pos: pos_key(TxKind::Earn, &form.store_code, &form.pos_transaction_id),
            form,
            reply,
        };
        // Tenant ids end in random bits: an even spread of tenants over the workers.
        let queue = &self.queues[tenant.as_uuid().as_bytes()[15] as usize % self.queues.len()];
        if let Err(refused) = queue.send(job).await {
            return Ok(Reply::Single(refused.0.form));
        }
        answer.await.map_err(|_| {
            // Only a panicking worker drops a reply; whether its batch committed is unknown,
            // which a retry with the same idempotency key settles.
            ServiceError::Unavailable(
                "the earn was interrupted; retry with the same idempotency_key".into(),
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

/// A member's account as the batch changes it.
struct Account {
    stored: AccountRow,
    balance: Balance,
    lifetime_earned: i64,
    expiring: i64,
}

impl Account {
    fn new(stored: AccountRow, expiring: i64) -> Self {
        Self {
            balance: Balance {
                available: stored.available,
                pending: stored.pending,
                debt: stored.debt,
            },
            lifetime_earned: stored.lifetime_earned,
            stored,
            expiring,
        }
    }

    fn current(&self, at: DateTime<Utc>) -> AccountRow {
        let mut row = self.stored.clone();
        row.available = self.balance.available;
        row.pending = self.balance.pending;
        row.debt = self.balance.debt;
        row.lifetime_earned = self.lifetime_earned;
        if row != self.stored {
            row.updated_time = at;
        }
        row
    }
}

/// What one attempt at a batch did.
enum Written {
    /// Committed: the answer of each earn written, `None` for those left to the single path.
    Committed(Vec<Option<Earned>>),
    /// Rolled back: these requests' idempotency keys or till receipts were used before.
    Taken(Vec<usize>),
    /// Rolled back after creating the accounts of members earning for the first time.
    AccountsCreated,
}

/// Everything a batch writes, one statement per table.
#[derive(Default)]
struct Writes {
    keys: Vec<(usize, String, Vec<u8>)>,
    lots: Vec<LotRow>,
    transactions: Vec<TransactionRow>,
    /// The job of each of `transactions`.
    owners: Vec<usize>,
    movements: Vec<MovementRow>,
    events: Vec<Envelope>,
}

impl Writer {
    async fn run(&self, tenant: TenantId, jobs: Vec<Job>) {
        // A key or a receipt seen earlier in the batch: its second use must see the first.
        let mut keys = HashSet::new();
        let mut receipts = HashSet::new();
        let eligible: Vec<bool> = jobs
            .iter()
            .map(|j| {
                let key = &j.form.idempotency_key;
                let fresh = (key.is_empty() || !keys.contains(key)) && !receipts.contains(&j.pos);
                if fresh {
                    keys.insert(key.clone());
                    receipts.insert(j.pos.clone());
                }
                fresh
            })
            .collect();
        let mut eligible = eligible;
        let size = jobs.len();
        // A key or receipt found taken rolls the batch back; it is written again without the
        // requests whose keys or receipts were taken. First earns of members have their
        // accounts made first, then the batch goes again. Four attempts at most; then all go
        // to the single path.
        let mut results = None;
        for attempt in 1..=4 {
            match self.write(tenant, &jobs, &eligible).await {
                Ok(Written::Committed(done)) => {
                    let written = done.iter().filter(|r| r.is_some()).count() as u64;
                    if written > 0 {
                        self.stats.committed.fetch_add(1, Ordering::Relaxed);
                        self.stats.earns.fetch_add(written, Ordering::Relaxed);
                        self.stats.largest.fetch_max(written, Ordering::Relaxed);
                    }
                    results = Some(done);
                    break;
                }
                Ok(Written::AccountsCreated) => {}
                Ok(Written::Taken(taken)) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant_id = %tenant, earns = size, taken = taken.len(), attempt, "earn batch rolled back: idempotency keys or receipts used before");
                    for i in taken {
                        eligible[i] = false;
                    }
                }
                Err(e) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant_id = %tenant, earns = size, error = %e, "earn batch rolled back; its earns are done one by one");
                    break;
                }
            }
        }
        let mut results = results.unwrap_or_else(|| (0..size).map(|_| None).collect());
        for (job, result) in jobs.into_iter().zip(results.iter_mut()) {
            let reply = match result.take() {
                Some(earned) => {
                    tracing::info!(tenant_id = %tenant, member_id = %job.member.id, transaction_id = %earned.transaction.id, points = earned.transaction.points, batch = size, "points earned");
                    Reply::Done(Box::new(earned))
                }
                None => Reply::Single(job.form),
            };
            // A caller that went away (deadline, cancel) no longer needs its answer.
            let _ = job.reply.send(reply);
        }
    }

    /// Writes the eligible earns it can; `None` for those left to the one-by-one path.
    async fn write(
        &self,
        tenant: TenantId,
        jobs: &[Job],
        eligible: &[bool],
    ) -> Result<Written, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        let policy = load_policy(&tx, tenant).await?;
        let mut plans: Vec<Option<EarnPlan>> = jobs
            .iter()
            .zip(eligible)
            .map(|(j, ok)| {
                ok.then(|| plan_earn(&policy, &j.member, j.grade_rate, &j.form, at, self.zone))
                    .and_then(Result::ok)
            })
            .collect();
        let live = |plans: &[Option<EarnPlan>]| -> Vec<usize> {
            (0..jobs.len()).filter(|i| plans[*i].is_some()).collect()
        };

        let mut members: Vec<Uuid> = live(&plans).iter().map(|i| jobs[*i].member.id).collect();
        members.sort_unstable();
        members.dedup();
        let mut accounts = accounts::lock_many(&tx, tenant, &members).await?;
        if accounts.len() < members.len() {
            // First earns of some members. Their accounts are made in a short transaction of
            // their own, then the batch starts over: creating them here, after locking the
            // others, would take row locks out of member order (two batches could deadlock).
            tx.rollback().await?;
            let have: HashSet<Uuid> = accounts.iter().map(|a| a.member_id).collect();
            let missing: Vec<Uuid> = members
                .iter()
                .copied()
                .filter(|m| !have.contains(m))
                .collect();
            self.create_accounts(tenant, &missing, at).await?;
            return Ok(Written::AccountsCreated);
        }
        let (until_date, until) = expiring_window(at, self.zone);
        let open = lots::open_summaries(&tx, tenant, &members, at, until).await?;
        for i in live(&plans) {
            if open.get(&jobs[i].member.id).is_some_and(|s| s.due) {
                plans[i] = None;
            }
        }
        let live_now = live(&plans);
        if live_now.is_empty() {
            tx.rollback().await?;
            return Ok(Written::Committed(jobs.iter().map(|_| None).collect()));
        }
        let mut state: HashMap<Uuid, Account> = accounts
            .drain(..)
            .map(|a| {
                let sum = open.get(&a.member_id).map_or(0, |s| s.expiring);
                (a.member_id, Account::new(a, sum))
            })
            .collect();

        let mut writes = Writes::default();
        let mut results: Vec<Option<Earned>> = jobs.iter().map(|_| None).collect();
        for i in live_now {
            let job = &jobs[i];
            let Some(plan) = plans[i].take() else {
                continue;
            };
            let account = state.get_mut(&job.member.id).ok_or_else(|| {
                ServiceError::internal("a point account vanished after it was locked")
            })?;
            let points = plan.quote.points;
            let mut row = earn_row(
                draft(tenant, job.member.id, &job.actor, TxKind::Earn),
                &job.form,
                &plan,
                policy.version,
                job.pos.clone(),
            );
            let posting = if points > 0 {
                let (lot, posting) = credit_lot(
                    tenant,
                    job.member.id,
                    row.id,
                    points,
                    &plan.dates,
                    &mut account.balance,
                );
                if lot.expire_time <= until {
                    account.expiring += lot.remaining;
                }
                row.lot_id = Some(lot.id);
                writes.lots.push(lot);
                posting
            } else {
                Posting::default()
            };
            let (row, moves) = posted(tenant, row, &posting, &account.balance);
            account.lifetime_earned += points;
            if points > 0 {
                writes
                    .events
                    .push(events::earned(tenant, &row, &job.form.items));
            }
            writes
                .events
                .push(events::purchase_recorded(tenant, &row, &job.form.items));
            let result = Earned {
                transaction: view(&row)?,
                balance: balance_of(&account.current(at), account.expiring, until_date),
                quote: quote_view(plan, policy.version),
            };
            if !job.form.idempotency_key.is_empty() {
                writes
                    .keys
                    .push((i, fingerprint("earn", &job.form), json(&result)?));
            }
            writes.movements.extend(moves);
            writes.transactions.push(row);
            writes.owners.push(i);
            results[i] = Some(result);
        }

        let entries: Vec<(&str, &str, &[u8])> = writes
            .keys
            .iter()
            .map(|(i, hash, response)| {
                (
                    jobs[*i].form.idempotency_key.as_str(),
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
                .filter(|i| !recorded.contains(&jobs[*i].form.idempotency_key))
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
        lots::insert_many(&tx, &writes.lots).await?;
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
