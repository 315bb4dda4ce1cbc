//! The `points` scenario: the POS write and read paths of the points ledger.
//!
//! Seed, all through the public gRPC APIs:
//! 1. one store through `CreateStore` (its code is the store code of every earn and spend) and
//!    `--seed-members` members through `JoinMember`, as the `member` scenario does;
//! 2. the tenant's points policy set (`UpdatePointsPolicy`, needs `points:admin`) to the plain
//!    terms the phases rely on: 1 % base rate, no minimum purchase, no cap, no pending period,
//!    any spend amount, and a cancel after a spend leaves a debt rather than failing;
//! 3. one earn of `--seed-amount-krw` per member, so spends have points to take (10,000,000원
//!    earns 100,000 points, ten thousand spends of 10).
//!
//! Phases:
//! * `earn`: `Earn` for a random seeded member (by member id; the points service resolves it
//!   through the member service) of 1,000..100,000원, with a unique POS transaction id and
//!   idempotency key;
//! * `spend`: `Spend` of `--spend-points` from a random seeded member;
//! * `balance`: `GetBalance` of a random seeded member;
//! * `pos-mixed`: a till's mix, per call 70 % earn, 20 % spend, 10 % cancel (whole refund) of an
//!   earn this client made earlier in the phase and has not cancelled yet (an earn when it has
//!   none).
//!
//! Check afterwards: the run adds up, per member, the point changes the service reported for
//! every successful write (seed, warm-up and measured alike); each member's `GetBalance` must
//! equal that sum, so a lost, doubled or misapplied write shows up.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use spharos_proto::common::{MemberRef, member_ref};
use spharos_proto::points::{
    CancelRequest, EarnCancelShortfall, EarnRequest, GetBalanceRequest, PointsPolicy, SpendRequest,
    UpdatePointsPolicyRequest, cancel_request,
};

use super::member::{create_store, seed_members};
use super::{Scenario, status_line, unanswered};
use crate::connect::{PointsClient, Pool};
use crate::driver::{Outcome, Phase, Worker};
use crate::phone::PhoneGen;
use crate::report::{Check, PhaseReport, SeedReport, Verification, group_thousands};

/// Most concurrent calls while seeding and checking.
const SEED_CONCURRENCY: usize = 32;
/// `pos-mixed`: out of 100 calls, this many earns and spends; the rest cancel.
const MIX_EARN_PERCENT: u32 = 70;
const MIX_SPEND_PERCENT: u32 = 20;
/// The policy the phases rely on: 1 % of the purchase amount.
const BASE_RATE_BP: i32 = 100;
/// Earns of the measured phases: 1,000..=100,000원 in steps of 100원.
const EARN_HUNDREDS: std::ops::RangeInclusive<i64> = 10..=1_000;
/// Mismatching members named in a failed check.
const MISMATCH_EXAMPLES: usize = 3;

/// Settings of the points scenario.
#[derive(Clone, Debug)]
pub struct PointsOptions {
    pub seed_members: usize,
    pub seed_amount_krw: i64,
    pub spend_points: i64,
    /// The phases to run (by name); empty runs them all.
    pub phases: Vec<String>,
}

/// What the run did to the ledger, as the service reported it; shared by every worker.
struct Ledger {
    member_ids: Vec<String>,
    /// Per member (same index as `member_ids`): Σ of the `points` of its successful writes.
    expected: Vec<AtomicI64>,
    earns: AtomicU64,
    spends: AtomicU64,
    cancels: AtomicU64,
}

impl Ledger {
    fn new(member_ids: Vec<String>) -> Self {
        let expected = member_ids.iter().map(|_| AtomicI64::new(0)).collect();
        Self {
            member_ids,
            expected,
            earns: AtomicU64::new(0),
            spends: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
        }
    }

    fn member_ref(&self, index: usize) -> Option<MemberRef> {
        Some(MemberRef {
            r#ref: Some(member_ref::Ref::MemberId(self.member_ids[index].clone())),
        })
    }

    fn record(&self, index: usize, points: i64, counter: &AtomicU64) {
        self.expected[index].fetch_add(points, Ordering::Relaxed);
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Unique POS transaction ids: `<run>-<tag><client>-<n>`, short enough for any till column.
struct PosIds {
    prefix: String,
    next: u64,
}

impl PosIds {
    fn new(run: &str, tag: &str, client: usize) -> Self {
        Self {
            prefix: format!("{run}-{tag}{client}"),
            next: 0,
        }
    }

    fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }
}

/// The points scenario and its seeded data.
pub struct PointsScenario {
    pool: Pool,
    options: PointsOptions,
    /// Random per run, so POS ids never meet those of an earlier run against the same tenant.
    run: Arc<str>,
    store_code: Arc<str>,
    ledger: Arc<Ledger>,
}

impl PointsScenario {
    /// A scenario over `pool` with `options`.
    pub fn new(pool: Pool, options: PointsOptions) -> Self {
        Self {
            pool,
            options: PointsOptions {
                seed_members: options.seed_members.max(1),
                ..options
            },
            run: Arc::from(&uuid::Uuid::new_v4().simple().to_string()[..8]),
            store_code: Arc::from(""),
            ledger: Arc::new(Ledger::new(Vec::new())),
        }
    }
}

impl Scenario for PointsScenario {
    fn name(&self) -> &'static str {
        "points"
    }

    fn seed(&mut self) -> BoxFuture<'_, anyhow::Result<SeedReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let store = create_store(&self.pool).await?;
            let phones = PhoneGen::new(&mut StdRng::from_entropy());
            let members =
                seed_members(&self.pool, &phones, &store.id, self.options.seed_members).await?;
            let policy_version = set_policy(&mut self.pool.points(0)).await?;

            let ledger = Arc::new(Ledger::new(members.into_iter().map(|m| m.id).collect()));
            let store_code: Arc<str> = Arc::from(store.code.as_str());
            let (pool, run, amount) = (&self.pool, &self.run, self.options.seed_amount_krw);
            let seeded: Vec<i64> = futures::stream::iter(0..ledger.member_ids.len())
                .map(|i| {
                    let (ledger, store_code) = (ledger.clone(), store_code.clone());
                    async move {
                        let pos = format!("{run}-seed-{i}");
                        earn(&mut pool.points(i), &ledger, &store_code, i, pos, amount)
                            .await
                            .map(|(_, points)| points)
                            .map_err(|s| anyhow!("seed: Earn failed: {}", status_line(&s)))
                    }
                })
                .buffer_unordered(SEED_CONCURRENCY)
                .try_collect()
                .await?;
            let least = seeded.iter().copied().min().unwrap_or(0);
            if least < self.options.spend_points {
                bail!(
                    "seed: an earn of {amount}원 credited only {least} points, less than one spend of \
                     {} (the tenant's grade rates override the 1 % base rate?); raise \
                     --seed-amount-krw",
                    self.options.spend_points
                );
            }

            self.ledger = ledger;
            self.store_code = store_code;
            let mut report = SeedReport {
                seconds: started.elapsed().as_secs_f64(),
                ..SeedReport::default()
            };
            report.created.insert("stores".into(), 1);
            report
                .created
                .insert("members".into(), self.ledger.member_ids.len() as u64);
            report
                .created
                .insert("earns".into(), self.ledger.member_ids.len() as u64);
            report.ids.insert("store_id".into(), store.id);
            report.ids.insert("store_code".into(), store.code);
            report
                .ids
                .insert("policy_version".into(), policy_version.to_string());
            report.ids.insert("run".into(), self.run.to_string());
            Ok(report)
        })
    }

    fn phases(&self) -> Vec<Phase> {
        let base = Shared {
            pool: self.pool.clone(),
            ledger: self.ledger.clone(),
            store_code: self.store_code.clone(),
            run: self.run.clone(),
            spend_points: self.options.spend_points,
        };
        let make = |name: &'static str, op: Op| {
            let base = base.clone();
            Phase {
                name,
                make_worker: Box::new(move |i| Box::new(PointsWorker::new(&base, op, i))),
            }
        };
        let wanted = |name: &str| {
            self.options.phases.is_empty() || self.options.phases.iter().any(|p| p == name)
        };
        [
            ("earn", Op::Earn),
            ("spend", Op::Spend),
            ("balance", Op::Balance),
            ("pos-mixed", Op::Mixed),
        ]
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, op)| make(name, op))
        .collect()
    }

    fn verify<'a>(
        &'a mut self,
        phases: &'a [PhaseReport],
    ) -> BoxFuture<'a, anyhow::Result<Verification>> {
        Box::pin(async move {
            let ledger = &self.ledger;
            let pool = &self.pool;
            let balances: Vec<(usize, i64)> = futures::stream::iter(0..ledger.member_ids.len())
                .map(|i| async move {
                    let response = pool
                        .points(i)
                        .get_balance(GetBalanceRequest {
                            member: ledger.member_ref(i),
                        })
                        .await
                        .map_err(|s| anyhow!("check: GetBalance failed: {}", status_line(&s)))?;
                    let balance = response
                        .into_inner()
                        .balance
                        .context("check: GetBalance answered without a balance")?;
                    anyhow::Ok((i, balance.balance))
                })
                .buffer_unordered(SEED_CONCURRENCY)
                .try_collect()
                .await?;
            let mismatches: Vec<String> = balances
                .iter()
                .filter_map(|&(i, actual)| {
                    let expected = ledger.expected[i].load(Ordering::Relaxed);
                    (actual != expected).then(|| {
                        format!(
                            "member {}: service {actual}, run {expected}",
                            ledger.member_ids[i]
                        )
                    })
                })
                .collect();
            let (earns, spends, cancels) = (
                ledger.earns.load(Ordering::Relaxed),
                ledger.spends.load(Ordering::Relaxed),
                ledger.cancels.load(Ordering::Relaxed),
            );
            let writes = format!(
                "{} earns, {} spends and {} cancels",
                group_thousands(earns),
                group_thousands(spends),
                group_thousands(cancels)
            );
            let detail = if mismatches.is_empty() {
                format!(
                    "the balances of all {} members equal the sum of the {writes} the run made",
                    group_thousands(balances.len() as u64)
                )
            } else {
                let lost = unanswered(phases);
                let caveat = if lost > 0 {
                    format!(
                        "; {lost} measured request(s) went unanswered and may have been applied"
                    )
                } else {
                    String::new()
                };
                format!(
                    "{} of {} members differ from the {writes} the run made ({}{}){caveat}",
                    mismatches.len(),
                    balances.len(),
                    mismatches
                        .iter()
                        .take(MISMATCH_EXAMPLES)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; "),
                    if mismatches.len() > MISMATCH_EXAMPLES {
                        "; ..."
                    } else {
                        ""
                    }
                )
            };
            let mut verification = Verification {
                checks: vec![Check::new("balances", mismatches.is_empty(), detail)],
                ..Verification::default()
            };
            // Every successful write since the seed, warm-ups included (the measured counts are
            // in the phase reports).
            verification.facts.insert(
                "ledger_writes".into(),
                serde_json::json!({ "earn": earns, "spend": spends, "cancel": cancels }),
            );
            Ok(verification)
        })
    }
}

/// Sets the policy fields the phases rely on; returns the new policy version.
async fn set_policy(client: &mut PointsClient) -> anyhow::Result<i32> {
    let policy = PointsPolicy {
        base_rate_bp: BASE_RATE_BP,
        min_purchase_krw: 0,
        max_points_per_earn: 0,
        pending_days: 0,
        min_balance_to_spend: 0,
        spend_unit: 1,
        earn_cancel_shortfall: EarnCancelShortfall::Debt as i32,
        ..PointsPolicy::default()
    };
    let paths = [
        "base_rate_bp",
        "min_purchase_krw",
        "max_points_per_earn",
        "pending_days",
        "min_balance_to_spend",
        "spend_unit",
        "earn_cancel_shortfall",
    ];
    let request = UpdatePointsPolicyRequest {
        policy: Some(policy),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        expected_version: 0,
    };
    match client.update_points_policy(request).await {
        Ok(response) => Ok(response.into_inner().policy.map_or(0, |p| p.version)),
        Err(status) if status.code() == tonic::Code::PermissionDenied => bail!(
            "seed: UpdatePointsPolicy failed: {}; the token needs the points:admin permission \
             (spharos tenant token --tenant <id> --permission points:admin)",
            status_line(&status)
        ),
        Err(status) => bail!("seed: UpdatePointsPolicy failed: {}", status_line(&status)),
    }
}

/// Earns `amount_krw` for member `index`; returns the transaction id and the points credited.
async fn earn(
    client: &mut PointsClient,
    ledger: &Ledger,
    store_code: &str,
    index: usize,
    pos_transaction_id: String,
    amount_krw: i64,
) -> Result<(String, i64), tonic::Status> {
    let request = EarnRequest {
        member: ledger.member_ref(index),
        store_code: store_code.to_owned(),
        pos_transaction_id,
        amount_krw,
        items: Vec::new(),
        occurred_time: None,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    };
    let transaction = client
        .earn(request)
        .await?
        .into_inner()
        .transaction
        .ok_or_else(|| tonic::Status::internal("Earn answered without a transaction"))?;
    ledger.record(index, transaction.points, &ledger.earns);
    Ok((transaction.transaction_id, transaction.points))
}

/// Spends `points` of member `index`.
async fn spend(
    client: &mut PointsClient,
    ledger: &Ledger,
    store_code: &str,
    index: usize,
    pos_transaction_id: String,
    points: i64,
) -> Result<(), tonic::Status> {
    let request = SpendRequest {
        member: ledger.member_ref(index),
        points,
        store_code: store_code.to_owned(),
        pos_transaction_id,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    };
    let transaction = client
        .spend(request)
        .await?
        .into_inner()
        .transaction
        .ok_or_else(|| tonic::Status::internal("Spend answered without a transaction"))?;
    ledger.record(index, transaction.points, &ledger.spends);
    Ok(())
}

/// Cancels the whole of earn `transaction_id` of member `index`.
async fn cancel_earn(
    client: &mut PointsClient,
    ledger: &Ledger,
    index: usize,
    transaction_id: String,
) -> Result<(), tonic::Status> {
    let request = CancelRequest {
        target: Some(cancel_request::Target::TransactionId(transaction_id)),
        refund_amount_krw: 0,
        points: 0,
        store_code: String::new(),
        pos_transaction_id: String::new(),
        reason: "부하테스트 환불".into(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    };
    let transaction = client
        .cancel(request)
        .await?
        .into_inner()
        .transaction
        .ok_or_else(|| tonic::Status::internal("Cancel answered without a transaction"))?;
    ledger.record(index, transaction.points, &ledger.cancels);
    Ok(())
}

/// What every worker of the scenario shares.
#[derive(Clone)]
struct Shared {
    pool: Pool,
    ledger: Arc<Ledger>,
    store_code: Arc<str>,
    run: Arc<str>,
    spend_points: i64,
}

/// Which operation a phase's workers send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Earn,
    Spend,
    Balance,
    Mixed,
}

/// A client of one of the phases.
struct PointsWorker {
    client: PointsClient,
    shared: Shared,
    op: Op,
    pos: PosIds,
    rng: StdRng,
    /// `pos-mixed`: earns of this client not cancelled yet (transaction id, member index).
    own_earns: Vec<(String, usize)>,
}

impl PointsWorker {
    fn new(shared: &Shared, op: Op, client: usize) -> Self {
        let tag = match op {
            Op::Earn => "e",
            Op::Spend => "s",
            Op::Balance => "b",
            Op::Mixed => "m",
        };
        Self {
            client: shared.pool.points(client),
            shared: shared.clone(),
            op,
            pos: PosIds::new(&shared.run, tag, client),
            rng: StdRng::from_entropy(),
            own_earns: Vec::new(),
        }
    }

    fn random_member(&mut self) -> usize {
        self.rng.gen_range(0..self.shared.ledger.member_ids.len())
    }

    fn random_amount(&mut self) -> i64 {
        self.rng.gen_range(EARN_HUNDREDS) * 100
    }

    async fn earn(&mut self) -> Result<(), tonic::Status> {
        let (index, amount) = (self.random_member(), self.random_amount());
        let pos = self.pos.next_id();
        let (transaction_id, _) = earn(
            &mut self.client,
            &self.shared.ledger,
            &self.shared.store_code,
            index,
            pos,
            amount,
        )
        .await?;
        if self.op == Op::Mixed {
            self.own_earns.push((transaction_id, index));
        }
        Ok(())
    }

    async fn spend(&mut self) -> Result<(), tonic::Status> {
        let index = self.random_member();
        let pos = self.pos.next_id();
        spend(
            &mut self.client,
            &self.shared.ledger,
            &self.shared.store_code,
            index,
            pos,
            self.shared.spend_points,
        )
        .await
    }

    async fn balance(&mut self) -> Result<(), tonic::Status> {
        let index = self.random_member();
        let member = self.shared.ledger.member_ref(index);
        self.client
            .get_balance(GetBalanceRequest { member })
            .await
            .map(drop)
    }

    async fn mixed(&mut self) -> Result<(), tonic::Status> {
        let roll = self.rng.gen_range(0..100);
        if roll < MIX_EARN_PERCENT
            || (roll >= MIX_EARN_PERCENT + MIX_SPEND_PERCENT && self.own_earns.is_empty())
        {
            return self.earn().await;
        }
        if roll < MIX_EARN_PERCENT + MIX_SPEND_PERCENT {
            return self.spend().await;
        }
        // Taken out before the call: a cancel that fails is not retried on the same earn.
        let pick = self.rng.gen_range(0..self.own_earns.len());
        let (transaction_id, index) = self.own_earns.swap_remove(pick);
        cancel_earn(&mut self.client, &self.shared.ledger, index, transaction_id).await
    }
}

impl Worker for PointsWorker {
    fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
        Box::pin(async move {
            if self.shared.ledger.member_ids.is_empty() {
                return Err(tonic::Status::failed_precondition("no seeded members"));
            }
            match self.op {
                Op::Earn => self.earn().await,
                Op::Spend => self.spend().await,
                Op::Balance => self.balance().await,
                Op::Mixed => self.mixed().await,
            }
            .map(|()| Outcome::Ok)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_ids_are_unique_per_client_and_tag() {
        let mut a = PosIds::new("ab12cd34", "e", 3);
        let mut b = PosIds::new("ab12cd34", "s", 3);
        assert_eq!(a.next_id(), "ab12cd34-e3-1");
        assert_eq!(a.next_id(), "ab12cd34-e3-2");
        assert_eq!(b.next_id(), "ab12cd34-s3-1");
    }

    #[test]
    fn ledger_sums_per_member() {
        let ledger = Ledger::new(vec!["a".into(), "b".into()]);
        ledger.record(0, 500, &ledger.earns);
        ledger.record(0, -10, &ledger.spends);
        ledger.record(1, 70, &ledger.earns);
        ledger.record(1, -70, &ledger.cancels);
        assert_eq!(ledger.expected[0].load(Ordering::Relaxed), 490);
        assert_eq!(ledger.expected[1].load(Ordering::Relaxed), 0);
        assert_eq!(ledger.earns.load(Ordering::Relaxed), 2);
        assert_eq!(
            ledger.member_ref(1),
            Some(MemberRef {
                r#ref: Some(member_ref::Ref::MemberId("b".into()))
            })
        );
    }
}
