//! The `coupon` scenario: a first-come claim rush, then the coupons used at the till.
//!
//! Seed: one ACTIVE template through `CreateTemplate`: 1,000원 off any purchase, valid 30 days
//! from issue, members claim it (`ISSUE_METHOD_CLAIM`), `--quantity` coupons in all, one per
//! member.
//!
//! Phases:
//! * `claim`: `ClaimCoupon` for a new member id (a UUIDv7; the coupon service accepts members
//!   it has not seen yet, by design), or, for `--repeat-percent` of the calls, again for a
//!   member this client already got a coupon for. Sold out (`RESOURCE_EXHAUSTED`
//!   COUPON_SOLD_OUT) and the per-member limit (`ALREADY_EXISTS` COUPON_LIMIT_REACHED) are the
//!   expected refusals: reported apart, not as errors. Once a client saw sold out, every client
//!   stops at its next call, so the phase's window (and claims/s) ends at the sell-out; with
//!   `--claim-after-sold-out` they go on claiming (and being refused) until the phase ends.
//! * `validate`: `ValidateCoupon` of a random issued coupon with the redeem basket; an answer
//!   "not applicable" counts as a `FAILED_PRECONDITION` error.
//! * `redeem`: `RedeemCoupon` of each issued coupon once, with a unique till transaction id, for
//!   its member; the clients stop when every issued coupon is redeemed.
//!
//! Checks afterwards: when the quantity did not sell out during the phases, the rest is
//! claimed first (not measured), so the template always ends sold out. Then the template's
//! `issued_count` must equal the quantity and the claims the run saw succeed; no repeated claim
//! may have been accepted; and a sample of the coupons must have the status the run left them
//! in (REDEEMED or ISSUED, by `GetCoupon`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use spharos_proto::coupon::{
    Basket, ClaimCouponRequest, CouponStatus, CouponTemplate, CreateTemplateRequest, Discount,
    GetCouponRequest, GetTemplateRequest, IssueMethod, RedeemCouponRequest, TemplateStatus,
    ValidateCouponRequest, Validity, discount, get_coupon_request, validity,
};

use super::{Scenario, error_reason, status_line, unanswered};
use crate::connect::{CouponClient, Pool};
use crate::driver::{Outcome, Phase, Worker};
use crate::report::{Check, PhaseReport, SeedReport, Verification, group_thousands};

/// Most concurrent calls while seeding, selling out and checking.
const CHECK_CONCURRENCY: usize = 32;
/// Coupons of each status read back by `GetCoupon` in the check.
const STATUS_SAMPLE: usize = 200;
/// The template's discount and the basket of every validate and redeem.
const DISCOUNT_KRW: i64 = 1_000;
const BASKET_KRW: i64 = 50_000;
/// Claims the check sends at most to sell out the rest of the quantity; above it, the check
/// says "not sold out" instead of claiming for minutes.
const MAX_SELL_OUT_CLAIMS: u64 = 200_000;
/// Stable reasons of the expected refusals (`google.rpc.ErrorInfo`).
const SOLD_OUT: &str = "COUPON_SOLD_OUT";
const LIMIT_REACHED: &str = "COUPON_LIMIT_REACHED";

/// Settings of the coupon scenario.
#[derive(Clone, Copy, Debug)]
pub struct CouponOptions {
    pub quantity: u64,
    pub repeat_percent: u32,
    pub claim_after_sold_out: bool,
}

/// A coupon a claim issued.
#[derive(Clone, Debug)]
struct Issued {
    code: String,
    member_id: String,
}

/// What the claims and redemptions did; shared by every worker.
#[derive(Default)]
struct Wallets {
    /// Issued and not redeemed (yet).
    unredeemed: Mutex<Vec<Issued>>,
    /// Codes the run redeemed.
    redeemed: Mutex<Vec<String>>,
    claimed: AtomicU64,
    sold_out: AtomicBool,
    repeats_sent: AtomicU64,
    /// Repeated claims the service accepted: each one breaks the per-member limit.
    repeats_accepted: AtomicU64,
    redemptions: AtomicU64,
}

impl Wallets {
    fn unredeemed(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        // A worker that panicked holding the lock left the list whole (push / pop only).
        self.unredeemed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn redeemed(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.redeemed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The coupon scenario and its template.
pub struct CouponScenario {
    pool: Pool,
    options: CouponOptions,
    run: Arc<str>,
    template_id: Arc<str>,
    wallets: Arc<Wallets>,
}

impl CouponScenario {
    /// A scenario over `pool` with `options`.
    pub fn new(pool: Pool, options: CouponOptions) -> Self {
        Self {
            pool,
            options,
            run: Arc::from(&uuid::Uuid::new_v4().simple().to_string()[..8]),
            template_id: Arc::from(""),
            wallets: Arc::new(Wallets::default()),
        }
    }
}

impl Scenario for CouponScenario {
    fn name(&self) -> &'static str {
        "coupon"
    }

    fn seed(&mut self) -> BoxFuture<'_, anyhow::Result<SeedReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let quantity = i64::try_from(self.options.quantity)
                .context("seed: --quantity does not fit the API")?;
            let template = CouponTemplate {
                name: format!("부하테스트 선착순 {}", self.run),
                description: "spharos-loadtest coupon scenario".into(),
                discount: Some(Discount {
                    kind: Some(discount::Kind::AmountKrw(DISCOUNT_KRW)),
                }),
                min_purchase_krw: 0,
                validity: Some(Validity {
                    kind: Some(validity::Kind::DaysFromIssue(30)),
                }),
                total_quantity: quantity,
                per_member_limit: 1,
                issue_methods: vec![IssueMethod::Claim as i32],
                stackable: false,
                status: TemplateStatus::Active as i32,
                ..CouponTemplate::default()
            };
            let created = self
                .pool
                .coupon(0)
                .create_template(CreateTemplateRequest {
                    template: Some(template),
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                })
                .await
                .map_err(|s| anyhow!("seed: CreateTemplate failed: {}", status_line(&s)))?
                .into_inner()
                .template
                .context("seed: CreateTemplate answered without a template")?;
            if created.template_id.is_empty() {
                bail!("seed: CreateTemplate answered with an empty template_id");
            }
            if created.total_quantity != quantity || created.per_member_limit != 1 {
                bail!(
                    "seed: CreateTemplate stored quantity {} and per-member limit {} (asked {quantity} and 1)",
                    created.total_quantity,
                    created.per_member_limit
                );
            }
            self.template_id = Arc::from(created.template_id.as_str());
            let mut report = SeedReport {
                seconds: started.elapsed().as_secs_f64(),
                ..SeedReport::default()
            };
            report.created.insert("templates".into(), 1);
            report
                .ids
                .insert("template_id".into(), created.template_id.clone());
            report.ids.insert("run".into(), self.run.to_string());
            Ok(report)
        })
    }

    fn phases(&self) -> Vec<Phase> {
        let shared = Shared {
            pool: self.pool.clone(),
            wallets: self.wallets.clone(),
            template_id: self.template_id.clone(),
            run: self.run.clone(),
            options: self.options,
        };
        let make = |name: &'static str, op: Op| {
            let shared = shared.clone();
            Phase {
                name,
                make_worker: Box::new(move |i| Box::new(CouponWorker::new(&shared, op, i))),
            }
        };
        vec![
            make("claim", Op::Claim),
            make("validate", Op::Validate),
            make("redeem", Op::Redeem),
        ]
    }

    fn verify<'a>(
        &'a mut self,
        phases: &'a [PhaseReport],
    ) -> BoxFuture<'a, anyhow::Result<Verification>> {
        Box::pin(async move {
            let wallets = &self.wallets;
            let quantity = self.options.quantity;
            let mut verification = Verification::default();
            let sold_out_in_phases = wallets.sold_out.load(Ordering::Relaxed);
            verification
                .facts
                .insert("sold_out_during_phases".into(), sold_out_in_phases.into());
            let remaining = quantity.saturating_sub(wallets.claimed.load(Ordering::Relaxed));
            if !sold_out_in_phases && remaining <= MAX_SELL_OUT_CLAIMS {
                let sent = self.sell_out(remaining).await?;
                verification
                    .facts
                    .insert("claims_to_sell_out_after_phases".into(), sent.into());
            }
            let sold_out = wallets.sold_out.load(Ordering::Relaxed);

            let template = self
                .pool
                .coupon(0)
                .get_template(GetTemplateRequest {
                    template_id: self.template_id.to_string(),
                })
                .await
                .map_err(|s| anyhow!("check: GetTemplate failed: {}", status_line(&s)))?
                .into_inner()
                .template
                .context("check: GetTemplate answered without a template")?;
            let issued = u64::try_from(template.issued_count).unwrap_or(0);
            let claimed = wallets.claimed.load(Ordering::Relaxed);
            let lost = unanswered(phases);
            let caveat = if lost > 0 {
                format!("; {lost} measured request(s) went unanswered and may have been applied")
            } else {
                String::new()
            };
            let exact = issued == quantity && issued == claimed && sold_out;
            verification.checks.push(Check::new(
                "issued_count",
                exact,
                format!(
                    "template issued_count {} (quantity {}, claims the run saw succeed {}, sold out: {}){}",
                    group_thousands(issued),
                    group_thousands(quantity),
                    group_thousands(claimed),
                    if sold_out { "yes" } else { "no" },
                    if exact { String::new() } else { caveat.clone() }
                ),
            ));
            let (repeats_sent, repeats_accepted) = (
                wallets.repeats_sent.load(Ordering::Relaxed),
                wallets.repeats_accepted.load(Ordering::Relaxed),
            );
            verification.checks.push(Check::new(
                "per_member_limit",
                repeats_accepted == 0,
                format!(
                    "{} of {} repeated claims by a member holding the coupon were accepted",
                    group_thousands(repeats_accepted),
                    group_thousands(repeats_sent)
                ),
            ));
            verification.checks.push(self.status_check().await?);
            verification.facts.insert(
                "redemptions".into(),
                wallets.redemptions.load(Ordering::Relaxed).into(),
            );
            Ok(verification)
        })
    }
}

impl CouponScenario {
    /// Claims up to `remaining` coupons for new members (and one more, which must be refused)
    /// so the template sells out; returns how many claims were sent.
    async fn sell_out(&self, remaining: u64) -> anyhow::Result<u64> {
        let (pool, template_id, wallets) = (&self.pool, &self.template_id, &self.wallets);
        let results: Vec<Result<(), tonic::Status>> = futures::stream::iter(0..=remaining)
            .map(|i| async move {
                let mut client = pool.coupon(usize::try_from(i).unwrap_or(0));
                let member = uuid::Uuid::now_v7().to_string();
                match claim(&mut client, template_id, &member).await {
                    Ok(issued) => {
                        wallets.claimed.fetch_add(1, Ordering::Relaxed);
                        wallets.unredeemed().push(issued);
                        Ok(())
                    }
                    Err(status) if error_reason(&status) == SOLD_OUT => {
                        wallets.sold_out.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(status) => Err(status),
                }
            })
            .buffer_unordered(CHECK_CONCURRENCY)
            .collect()
            .await;
        if let Some(Err(status)) = results.iter().find(|r| r.is_err()) {
            bail!(
                "check: ClaimCoupon (selling out the rest) failed: {}",
                status_line(status)
            );
        }
        Ok(remaining + 1)
    }

    /// Reads back a sample of the redeemed and of the unredeemed coupons.
    async fn status_check(&self) -> anyhow::Result<Check> {
        let redeemed: Vec<String> = self
            .wallets
            .redeemed()
            .iter()
            .take(STATUS_SAMPLE)
            .cloned()
            .collect();
        let unredeemed: Vec<String> = self
            .wallets
            .unredeemed()
            .iter()
            .take(STATUS_SAMPLE)
            .map(|c| c.code.clone())
            .collect();
        let expectations = redeemed
            .into_iter()
            .map(|c| (c, CouponStatus::Redeemed))
            .chain(unredeemed.into_iter().map(|c| (c, CouponStatus::Issued)));
        let pool = &self.pool;
        let results: Vec<anyhow::Result<Option<String>>> = futures::stream::iter(expectations)
            .enumerate()
            .map(|(i, (code, expected))| async move {
                let coupon = pool
                    .coupon(i)
                    .get_coupon(GetCouponRequest {
                        key: Some(get_coupon_request::Key::Code(code.clone())),
                    })
                    .await
                    .map_err(|s| anyhow!("check: GetCoupon failed: {}", status_line(&s)))?
                    .into_inner()
                    .coupon
                    .context("check: GetCoupon answered without a coupon")?;
                let actual = CouponStatus::try_from(coupon.status).unwrap_or_default();
                Ok((actual != expected).then(|| {
                    format!(
                        "{}: {} instead of {}",
                        coupon.display_code,
                        actual.as_str_name(),
                        expected.as_str_name()
                    )
                }))
            })
            .buffer_unordered(CHECK_CONCURRENCY)
            .collect()
            .await;
        let mut wrong = Vec::new();
        for result in results.iter() {
            match result {
                Ok(Some(line)) => wrong.push(line.clone()),
                Ok(None) => {}
                Err(error) => bail!("{error:#}"),
            }
        }
        let passed = wrong.is_empty();
        let detail = if passed {
            format!(
                "{} coupons read back have the status the run left them in",
                results.len()
            )
        } else {
            format!(
                "{} of {} coupons read back have another status ({})",
                wrong.len(),
                results.len(),
                wrong.into_iter().take(3).collect::<Vec<_>>().join("; ")
            )
        };
        Ok(Check::new("coupon_status", passed, detail))
    }
}

/// Claims the template for `member_id`.
async fn claim(
    client: &mut CouponClient,
    template_id: &str,
    member_id: &str,
) -> Result<Issued, tonic::Status> {
    let coupon = client
        .claim_coupon(ClaimCouponRequest {
            template_id: template_id.to_owned(),
            member_id: member_id.to_owned(),
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        })
        .await?
        .into_inner()
        .coupon
        .ok_or_else(|| tonic::Status::internal("ClaimCoupon answered without a coupon"))?;
    Ok(Issued {
        code: coupon.code,
        member_id: member_id.to_owned(),
    })
}

/// The basket of every validate and redeem.
fn basket(store_code: &str) -> Option<Basket> {
    Some(Basket {
        amount_krw: BASKET_KRW,
        store_code: store_code.to_owned(),
        items: Vec::new(),
    })
}

/// What every worker of the scenario shares.
#[derive(Clone)]
struct Shared {
    pool: Pool,
    wallets: Arc<Wallets>,
    template_id: Arc<str>,
    run: Arc<str>,
    options: CouponOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Claim,
    Validate,
    Redeem,
}

/// A client of one of the phases.
struct CouponWorker {
    client: CouponClient,
    shared: Shared,
    op: Op,
    rng: StdRng,
    /// Store code of this client's till.
    store_code: String,
    /// Till transaction ids: `<run>-r<client>-<n>`.
    pos_prefix: String,
    next_pos: u64,
    /// Members this client got a coupon for (claim phase), for the repeated claims.
    holders: Vec<String>,
}

impl CouponWorker {
    fn new(shared: &Shared, op: Op, client: usize) -> Self {
        Self {
            client: shared.pool.coupon(client),
            shared: shared.clone(),
            op,
            rng: StdRng::from_entropy(),
            store_code: format!("LT-{}", client % 100),
            pos_prefix: format!("{}-r{client}", shared.run),
            next_pos: 0,
            holders: Vec::new(),
        }
    }

    async fn claim(&mut self) -> Result<Outcome, tonic::Status> {
        let wallets = &self.shared.wallets;
        if wallets.sold_out.load(Ordering::Relaxed) && !self.shared.options.claim_after_sold_out {
            return Ok(Outcome::Done);
        }
        let repeat = !self.holders.is_empty()
            && self.rng.gen_range(0..100) < self.shared.options.repeat_percent;
        let member = if repeat {
            self.holders[self.rng.gen_range(0..self.holders.len())].clone()
        } else {
            uuid::Uuid::now_v7().to_string()
        };
        if repeat {
            wallets.repeats_sent.fetch_add(1, Ordering::Relaxed);
        }
        match claim(&mut self.client, &self.shared.template_id, &member).await {
            Ok(issued) => {
                wallets.claimed.fetch_add(1, Ordering::Relaxed);
                if repeat {
                    wallets.repeats_accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.holders.push(member);
                }
                wallets.unredeemed().push(issued);
                Ok(Outcome::Ok)
            }
            Err(status) => match error_reason(&status).as_str() {
                SOLD_OUT if status.code() == tonic::Code::ResourceExhausted => {
                    wallets.sold_out.store(true, Ordering::Relaxed);
                    Ok(Outcome::Rejected(status))
                }
                LIMIT_REACHED if status.code() == tonic::Code::AlreadyExists => {
                    Ok(Outcome::Rejected(status))
                }
                _ => Err(status),
            },
        }
    }

    async fn validate(&mut self) -> Result<Outcome, tonic::Status> {
        let coupon = {
            let unredeemed = self.shared.wallets.unredeemed();
            if unredeemed.is_empty() {
                return Ok(Outcome::Done);
            }
            unredeemed[self.rng.gen_range(0..unredeemed.len())].clone()
        };
        let answer = self
            .client
            .validate_coupon(ValidateCouponRequest {
                code: coupon.code,
                basket: basket(&self.store_code),
                member_id: coupon.member_id,
                pos_transaction_id: String::new(),
            })
            .await?
            .into_inner();
        if !answer.applicable {
            return Err(tonic::Status::failed_precondition(format!(
                "not applicable: {} {}",
                answer.reason, answer.message
            )));
        }
        Ok(Outcome::Ok)
    }

    async fn redeem(&mut self) -> Result<Outcome, tonic::Status> {
        // Taken out before the call: a redemption that fails is not retried with the coupon.
        let Some(coupon) = self.shared.wallets.unredeemed().pop() else {
            return Ok(Outcome::Done);
        };
        self.next_pos += 1;
        let response = self
            .client
            .redeem_coupon(RedeemCouponRequest {
                code: coupon.code.clone(),
                basket: basket(&self.store_code),
                pos_transaction_id: format!("{}-{}", self.pos_prefix, self.next_pos),
                member_id: coupon.member_id,
            })
            .await?
            .into_inner();
        if response.replayed {
            return Err(tonic::Status::internal(
                "RedeemCoupon answered a first redemption as a replay",
            ));
        }
        let wallets = &self.shared.wallets;
        wallets.redemptions.fetch_add(1, Ordering::Relaxed);
        wallets.redeemed().push(coupon.code);
        Ok(Outcome::Ok)
    }
}

impl Worker for CouponWorker {
    fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
        Box::pin(async move {
            match self.op {
                Op::Claim => self.claim().await,
                Op::Validate => self.validate().await,
                Op::Redeem => self.redeem().await,
            }
        })
    }
}
