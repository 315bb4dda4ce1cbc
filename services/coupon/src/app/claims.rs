//! Group commit of first-come claims. In a rush (a limited coupon opened at noon) a claim's
//! cost is the transaction around it (its idempotency key, the template read, the coupon
//! insert, the counter update, the event and the commit), not its few checks, so concurrent
//! claims of one tenant are done together: a worker takes every claim waiting in its queue
//! (up to [`MAX_BATCH`]) and does them in one transaction with one statement per table.
//!
//! The batch holds the same rules as the one-by-one path (`issue_in`), exactly:
//! - it judges each claim as `issue_in` would, in queue order, against the rows as read plus
//!   the batch's own earlier claims (a member's second claim in a batch sees the first), and
//!   answers refusals itself (sold out, limit reached, template not ACTIVE or not claimable,
//!   unknown template, withdrawn member);
//! - the quantity: after inserting its coupons the batch adds what it took to the template's
//!   counter shards, one statement whose every shard's update is conditional on the room read
//!   being still there; when a concurrent claim took it (the last units of a rush) or the
//!   template stopped, it rolls back and goes again with a fresh read;
//! - the per-member limit: each coupon goes in the member's next claim slot under the same
//!   unique index; a slot taken since the read is not inserted and that claim goes again;
//! - the idempotency key: a claim's is recorded with its response in the same transaction; a
//!   refusal's is inserted to prove it unused, in a savepoint rolled back at once (errors are
//!   not kept). A key used before (or by a concurrent request, whose commit the insert waits for) is not
//!   recorded: such a claim goes again, such a refusal goes one by one (which replays).
//!
//! What a batch leaves goes to the one-by-one path after the batch ended: a key that appears
//! twice in the batch (its second use must see the first's answer), a replay. A batch whose
//! transaction fails for another reason rolls back whole and its claims go one by one. A
//! batch never changes an answer: its claims were all in flight at once, so doing them in
//! queue order, the ones it leaves after the others, is one of the orders they could have
//! happened in.
//!
//! Batches are natural, not timed: a worker never waits to fill one. Each tenant's claims go
//! to one of [`WORKERS`] workers (by tenant id), so a rush makes the largest batches one
//! worker can and two batches never take the same template's shard locks.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono_tz::Tz;
use rand::{Rng, rngs::OsRng};
use spharos_kit::{
    ServiceError, TenantId,
    bus::{self, Envelope},
    db::Db,
    idempotency::{self, fingerprint},
    telemetry,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{
    CouponView,
    issue::{CLAIM_SCOPE, IssueRequest},
    json, member_withdrawn, now, template_not_found,
};
use crate::{
    domain::{
        code::Code,
        coupon::{Coupon, CouponStatus},
        member::MemberState,
        template::{self, IssueMethod, Template},
    },
    events,
    store::{coupons, entity::template_shards as shards, members, templates},
};

/// Most claims in one transaction.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once, each of its own tenants.
const WORKERS: usize = 4;
/// Claims waiting for each worker; a full queue makes callers wait (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// Attempts at one batch (a key used before, a slot or the last units taken meanwhile);
/// then its claims go one by one.
const ATTEMPTS: usize = 4;

/// A claim as the batch receives it.
#[derive(Debug, Clone)]
pub(super) struct ClaimForm {
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub idempotency_key: String,
}

/// What became of a submitted claim.
pub(super) enum Reply {
    /// Claimed in a batch.
    Claimed(Box<CouponView>),
    /// Refused in a batch (sold out, limit reached, ...), its key proven unused.
    Refused(ServiceError),
    /// Left to the one-by-one path.
    Single,
}

/// A batch's answer for one claim.
enum Outcome {
    Claimed(Box<CouponView>),
    Refused(ServiceError),
    Single,
}

struct Job {
    tenant: TenantId,
    form: ClaimForm,
    reply: oneshot::Sender<Reply>,
}

/// The queues into the claim workers. Cheap to clone; the workers stop when the last clone is
/// dropped.
#[derive(Clone)]
pub(super) struct ClaimBatcher {
    queues: Arc<[mpsc::Sender<Job>]>,
    stats: Arc<Counters>,
}

/// What the claim batches did since the module started (see
/// [`super::CouponApp::claim_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClaimBatchStats {
    /// Batch transactions committed.
    pub committed: u64,
    /// Coupons those transactions issued.
    pub claims: u64,
    /// The most claims one transaction did.
    pub largest: u64,
    /// Claims the batches refused themselves (sold out, limit reached, ...).
    pub refused: u64,
    /// Batch transactions rolled back (their claims were then tried again or done one by one).
    pub rolled_back: u64,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    claims: AtomicU64,
    largest: AtomicU64,
    refused: AtomicU64,
    rolled_back: AtomicU64,
}

struct Writer {
    db: Db,
    zone: Tz,
    stats: Arc<Counters>,
}

/// What one attempt at a batch did.
enum Written {
    /// Committed (or, with nothing to write, rolled back): each claim's answer.
    Committed(Vec<Outcome>),
    /// Rolled back: these claims' keys were used before, or their claim slots taken since the
    /// read; the batch goes again without them.
    Taken(Vec<usize>),
    /// Rolled back: the shards held less than the batch took (concurrent claims took the last
    /// units); the batch goes again with a fresh read.
    Short,
}

impl ClaimBatcher {
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

    pub(super) fn stats(&self) -> ClaimBatchStats {
        ClaimBatchStats {
            committed: self.stats.committed.load(Ordering::Relaxed),
            claims: self.stats.claims.load(Ordering::Relaxed),
            largest: self.stats.largest.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            rolled_back: self.stats.rolled_back.load(Ordering::Relaxed),
        }
    }

    /// Queues a claim and waits for its batch.
    pub(super) async fn submit(
        &self,
        tenant: TenantId,
        form: ClaimForm,
    ) -> Result<Reply, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tenant,
            form,
            reply,
        };
        // Tenant ids end in random bits: an even spread of tenants over the workers.
        let queue = &self.queues[tenant.as_uuid().as_bytes()[15] as usize % self.queues.len()];
        if queue.send(job).await.is_err() {
            return Ok(Reply::Single);
        }
        answer.await.map_err(|_| {
            // Only a panicking worker drops a reply; whether its batch committed is unknown,
            // which a retry with the same idempotency key settles.
            ServiceError::Unavailable(
                "the claim was interrupted; retry with the same idempotency_key".into(),
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

/// Which claims of a batch to leave out from the start: the second and later uses of a key
/// (each must see the first's answer, which only the one-by-one path gives).
fn first_uses(forms: &[&ClaimForm]) -> Vec<bool> {
    let mut keys = HashSet::new();
    forms
        .iter()
        .map(|f| f.idempotency_key.is_empty() || keys.insert(f.idempotency_key.as_str()))
        .collect()
}

/// Spreads `units` over shards with room (shard, issued, quota), starting at shard index
/// `start` and going round: what each shard adds. `None` when they hold fewer than `units`.
fn spread(shards: &[(i32, i64, Option<i64>)], units: i64, start: usize) -> Option<Vec<(i32, i64)>> {
    let mut left = units;
    let mut takes = Vec::new();
    for k in 0..shards.len() {
        if left == 0 {
            break;
        }
        let (shard, issued, quota) = shards[(start + k) % shards.len()];
        let room = quota.map_or(left, |q| (q - issued).max(0));
        let take = room.min(left);
        if take > 0 {
            takes.push((shard, take));
            left -= take;
        }
    }
    (left == 0).then_some(takes)
}

impl Writer {
    async fn run(&self, tenant: TenantId, jobs: Vec<Job>) {
        let started = Instant::now();
        let forms: Vec<&ClaimForm> = jobs.iter().map(|j| &j.form).collect();
        let mut eligible = first_uses(&forms);
        let size = jobs.len();
        let mut results = None;
        // Claims the committed batch decided (claimed or refused).
        let mut decided = 0;
        for attempt in 1..=ATTEMPTS {
            match self.write(tenant, &forms, &eligible).await {
                Ok(Written::Committed(done)) => {
                    let claims = done
                        .iter()
                        .filter(|r| matches!(r, Outcome::Claimed(_)))
                        .count() as u64;
                    if claims > 0 {
                        self.stats.committed.fetch_add(1, Ordering::Relaxed);
                        self.stats.claims.fetch_add(claims, Ordering::Relaxed);
                        self.stats.largest.fetch_max(claims, Ordering::Relaxed);
                    }
                    let refused = done
                        .iter()
                        .filter(|r| matches!(r, Outcome::Refused(_)))
                        .count() as u64;
                    self.stats.refused.fetch_add(refused, Ordering::Relaxed);
                    decided = (claims + refused) as usize;
                    results = Some(done);
                    break;
                }
                Ok(Written::Taken(taken)) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant_id = %tenant, claims = size, taken = taken.len(), attempt, "claim batch rolled back: keys used before or claim slots taken");
                    for i in taken {
                        eligible[i] = false;
                    }
                }
                Ok(Written::Short) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant_id = %tenant, claims = size, attempt, "claim batch rolled back: the last units went to concurrent claims, or the template stopped");
                }
                Err(e) => {
                    self.stats.rolled_back.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant_id = %tenant, claims = size, error = %e, "claim batch rolled back; its claims are done one by one");
                    break;
                }
            }
        }
        let results = results.unwrap_or_else(|| (0..size).map(|_| Outcome::Single).collect());
        for (job, result) in jobs.into_iter().zip(results) {
            let reply = match result {
                Outcome::Claimed(view) => {
                    let c = &view.coupon;
                    tracing::info!(tenant_id = %tenant, member_id = %c.member_id, template_id = %c.template_id, coupon_id = %c.id, batch = size, "coupon claimed");
                    Reply::Claimed(view)
                }
                Outcome::Refused(e) => Reply::Refused(e),
                Outcome::Single => Reply::Single,
            };
            // A caller that went away (deadline, cancel) no longer needs its answer.
            let _ = job.reply.send(reply);
        }
        if decided > 0 {
            telemetry::observe_group_commit("coupon", decided, started.elapsed());
        }
    }

    /// Judges the eligible claims against the rows as read, and writes those that pass.
    async fn write(
        &self,
        tenant: TenantId,
        forms: &[&ClaimForm],
        eligible: &[bool],
    ) -> Result<Written, ServiceError> {
        let at = now();
        let live: Vec<usize> = (0..forms.len()).filter(|i| eligible[*i]).collect();
        let mut template_ids: Vec<Uuid> = live.iter().map(|i| forms[*i].template_id).collect();
        template_ids.sort_unstable();
        template_ids.dedup();
        let mut member_ids: Vec<Uuid> = live.iter().map(|i| forms[*i].member_id).collect();
        member_ids.sort_unstable();
        member_ids.dedup();

        let tx = self.db.begin(tenant).await?;
        let found: HashMap<Uuid, (Template, Vec<shards::Model>)> =
            templates::for_claims(&tx, tenant, &template_ids)
                .await?
                .into_iter()
                .map(|(t, s)| (t.id, (t, s)))
                .collect();
        let states = members::states(&tx, tenant, &member_ids).await?;
        let mut pairs: Vec<(Uuid, Uuid)> = live
            .iter()
            .map(|i| (forms[*i].template_id, forms[*i].member_id))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut held = coupons::held_counts(&tx, tenant, &pairs).await?;

        // The claims in queue order, judged as `issue_in` judges one, against the holdings
        // and the quantity as read plus the batch's own earlier claims.
        let mut issued: HashMap<Uuid, i64> = HashMap::new();
        let mut results: Vec<Outcome> = forms.iter().map(|_| Outcome::Single).collect();
        let mut planned: Vec<(usize, Coupon, Option<i32>)> = Vec::new();
        for &i in &live {
            let f = forms[i];
            let judged = match found.get(&f.template_id) {
                None => Err(template_not_found()),
                Some((t, _)) => {
                    let taken = issued.entry(t.id).or_insert(t.issued_count);
                    let holding = held.entry((t.id, f.member_id)).or_insert(0);
                    judge(t, states.get(&f.member_id), *taken, *holding, at, self.zone).map(
                        |slot| {
                            *taken += 1;
                            *holding += 1;
                            (t, slot)
                        },
                    )
                }
            };
            match judged {
                Ok((t, slot)) => {
                    let (valid_from_time, expire_time) = t.validity.window(at, self.zone);
                    let coupon = Coupon {
                        id: Uuid::now_v7(),
                        template_id: t.id,
                        member_id: f.member_id,
                        code: Code::generate(&mut OsRng).into_string(),
                        status: CouponStatus::Issued,
                        issue_method: IssueMethod::Claim,
                        issue_time: at,
                        valid_from_time,
                        expire_time,
                        redeem_time: None,
                        bulk_issue_id: None,
                    };
                    planned.push((i, coupon, slot));
                }
                Err(e) => results[i] = Outcome::Refused(e),
            }
        }

        // The keys first. A key used before (or by a concurrent request, whose commit the
        // insert waits for) is not recorded: such a refusal goes to the one-by-one path, which
        // replays the first answer; such a claim goes again without it. A refusal's key is
        // inserted only to prove it unused, in a savepoint rolled back at once (errors are not
        // kept, as the one-by-one path rolls them back).
        let refused: Vec<(usize, String)> = live
            .iter()
            .filter(|i| {
                matches!(results[**i], Outcome::Refused(_))
                    && !forms[**i].idempotency_key.is_empty()
            })
            .map(|i| Ok((*i, request_hash(forms[*i])?)))
            .collect::<Result<_, ServiceError>>()?;
        if !refused.is_empty() {
            let entries: Vec<(&str, &str, &[u8])> = refused
                .iter()
                .map(|(i, request)| {
                    (
                        forms[*i].idempotency_key.as_str(),
                        request.as_str(),
                        &[][..],
                    )
                })
                .collect();
            let probe = if planned.is_empty() {
                None
            } else {
                Some(tx.savepoint().await?)
            };
            let recorded = idempotency::record_many(
                probe.as_ref().map_or(&tx, |p| p),
                tenant,
                CLAIM_SCOPE,
                &entries,
            )
            .await?;
            if let Some(p) = probe {
                p.rollback().await?;
            }
            for (i, _) in &refused {
                if !recorded.contains(forms[*i].idempotency_key.as_str()) {
                    results[*i] = Outcome::Single;
                }
            }
        }
        if planned.is_empty() {
            // Nothing to write (the rollback forgets the refusals' keys).
            tx.rollback().await?;
            return Ok(Written::Committed(results));
        }
        let mut keyed: Vec<(usize, String, Vec<u8>)> = Vec::new();
        for (i, coupon, _) in &planned {
            let f = forms[*i];
            if f.idempotency_key.is_empty() {
                continue;
            }
            let view = CouponView {
                coupon: coupon.clone(),
                template_name: found[&f.template_id].0.name.clone(),
            };
            keyed.push((*i, request_hash(f)?, json(&view)?));
        }
        let entries: Vec<(&str, &str, &[u8])> = keyed
            .iter()
            .map(|(i, request, response)| {
                (
                    forms[*i].idempotency_key.as_str(),
                    request.as_str(),
                    response.as_slice(),
                )
            })
            .collect();
        let recorded = idempotency::record_many(&tx, tenant, CLAIM_SCOPE, &entries).await?;
        if recorded.len() != entries.len() {
            let taken = keyed
                .iter()
                .map(|(i, _, _)| *i)
                .filter(|i| !recorded.contains(forms[*i].idempotency_key.as_str()))
                .collect();
            tx.rollback().await?;
            return Ok(Written::Taken(taken));
        }

        // Then the coupons, before the counters (the one-by-one path's order of locks): a
        // claim slot taken since the read is not inserted, and that claim goes again.
        let rows: Vec<(Coupon, Option<i32>)> =
            planned.iter().map(|(_, c, s)| (c.clone(), *s)).collect();
        let inserted = coupons::insert_new_many(&tx, tenant, &rows).await?;
        if inserted.len() != rows.len() {
            let taken = planned
                .iter()
                .filter(|(_, c, _)| !inserted.contains(&c.id))
                .map(|(i, _, _)| *i)
                .collect();
            tx.rollback().await?;
            return Ok(Written::Taken(taken));
        }

        // The counters: each template's units spread over its shards with room as read, each
        // update conditional on the room being still there.
        for id in &template_ids {
            let units = planned
                .iter()
                .filter(|(_, c, _)| c.template_id == *id)
                .count() as i64;
            if units == 0 {
                continue;
            }
            let mine: Vec<(i32, i64, Option<i64>)> = found[id]
                .1
                .iter()
                .map(|s| (s.shard, s.issued, s.quota))
                .collect();
            if mine.is_empty() {
                return Err(ServiceError::internal(format!(
                    "coupon template {id} has no counter shards"
                )));
            }
            let start = rand::thread_rng().gen_range(0..mine.len());
            let taken = match spread(&mine, units, start) {
                Some(takes) => templates::take_from_shards(&tx, tenant, *id, &takes).await?,
                // The judging kept within the quantity read; shards' rooms sum to it.
                None => false,
            };
            if !taken {
                tx.rollback().await?;
                return Ok(Written::Short);
            }
        }
        let events: Vec<Envelope> = planned
            .iter()
            .map(|(_, c, _)| events::coupon_issued(tenant, c))
            .collect();
        bus::enqueue_many(&tx, &events).await?;
        tx.commit().await?;
        for (i, coupon, _) in planned {
            let template_name = found[&coupon.template_id].0.name.clone();
            results[i] = Outcome::Claimed(Box::new(CouponView {
                coupon,
                template_name,
            }));
        }
        Ok(Written::Committed(results))
    }
}

/// The fingerprint of a claim's request, as the one-by-one path records it.
fn request_hash(f: &ClaimForm) -> Result<String, ServiceError> {
    Ok(fingerprint(&json(&IssueRequest {
        template_id: f.template_id,
        member_id: f.member_id,
        method: IssueMethod::Claim,
    })?))
}

/// A claim of `t` by a member in `state` holding `holding` of its coupons, with `taken` of
/// its quantity issued: its claim slot, or the refusal `issue_in` gives, checked in the same
/// order (member, template state and method, quantity, per-member limit).
fn judge(
    t: &Template,
    state: Option<&MemberState>,
    taken: i64,
    holding: i64,
    at: DateTime<Utc>,
    zone: Tz,
) -> Result<Option<i32>, ServiceError> {
    if state == Some(&MemberState::Withdrawn) {
        return Err(member_withdrawn());
    }
    t.check_issuable(IssueMethod::Claim, at, zone)?;
    if t.total_quantity.is_some_and(|q| taken >= q) {
        return Err(template::sold_out(t.total_quantity));
    }
    t.next_claim_slot(holding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_fills_shards_round_from_the_start_within_their_quotas() {
        let shards = [(0, 5, Some(5)), (1, 2, Some(5)), (2, 0, Some(5))];
        assert_eq!(spread(&shards, 4, 1), Some(vec![(1, 3), (2, 1)]));
        assert_eq!(spread(&shards, 8, 2), Some(vec![(2, 5), (1, 3)]));
        assert_eq!(spread(&shards, 9, 0), None);
        assert_eq!(spread(&[(0, 7, None)], 100, 0), Some(vec![(0, 100)]));
    }

    #[test]
    fn a_key_used_twice_in_a_batch_leaves_the_second_use_to_the_single_path() {
        let form = |key: &str| ClaimForm {
            template_id: Uuid::nil(),
            member_id: Uuid::now_v7(),
            idempotency_key: key.into(),
        };
        let forms = [form("a"), form(""), form("a"), form(""), form("b")];
        let refs: Vec<&ClaimForm> = forms.iter().collect();
        assert_eq!(first_uses(&refs), vec![true, true, false, true, true]);
    }
}
