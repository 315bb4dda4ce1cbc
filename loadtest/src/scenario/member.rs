//! The `member` scenario: sign-ups and card look-ups on the member service.
//!
//! Seed: one store through `CreateStore` (code `LT-<random>`), then `--seed-members` members
//! through `JoinMember` (unique random mobile numbers, joined at that store), keeping their card
//! numbers. Phases:
//! * `join`: every request signs up a new member (`부하테스트`, a fresh phone number, a new
//!   idempotency key), so it measures the full write path (PII encryption, blind index, card
//!   number, outbox event);
//! * `find`: `FindMember` by the card number of a random seeded member (the POS read path).
//!
//! The seed steps ([`create_store`], [`seed_members`]) are shared with the points scenario,
//! which needs real members too.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use spharos_proto::common::JoinChannel;
use spharos_proto::member::{
    CardType, CreateStoreRequest, FindMemberRequest, JoinMemberRequest, StoreStatus,
    find_member_request,
};

use super::{Scenario, status_line};
use crate::connect::{MemberClient, Pool};
use crate::driver::{Outcome, Phase, Worker};
use crate::phone::PhoneGen;
use crate::report::SeedReport;

/// Name of every member the load test signs up.
const MEMBER_NAME: &str = "부하테스트";
/// Sign-up attempts per seed member when the phone number already exists (an earlier run).
const SEED_ATTEMPTS: usize = 5;
/// Most concurrent sign-ups while seeding.
const SEED_CONCURRENCY: usize = 32;

/// The member scenario and its seeded data.
pub struct MemberScenario {
    pool: Pool,
    seed_members: usize,
    phones: Arc<PhoneGen>,
    store_id: Arc<str>,
    cards: Arc<[String]>,
}

impl MemberScenario {
    /// A scenario over `pool` that seeds `seed_members` members.
    pub fn new(pool: Pool, seed_members: usize) -> Self {
        Self {
            pool,
            seed_members: seed_members.max(1),
            phones: Arc::new(PhoneGen::new(&mut StdRng::from_entropy())),
            store_id: Arc::from(""),
            cards: Arc::from(Vec::new()),
        }
    }
}

impl Scenario for MemberScenario {
    fn name(&self) -> &'static str {
        "member"
    }

    fn seed(&mut self) -> BoxFuture<'_, anyhow::Result<SeedReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let store = create_store(&self.pool).await?;
            let members =
                seed_members(&self.pool, &self.phones, &store.id, self.seed_members).await?;

            self.store_id = Arc::from(store.id.as_str());
            self.cards = members.into_iter().map(|m| m.card).collect();
            let mut report = SeedReport {
                seconds: started.elapsed().as_secs_f64(),
                ..SeedReport::default()
            };
            report.created.insert("stores".into(), 1);
            report
                .created
                .insert("members".into(), self.cards.len() as u64);
            report.ids.insert("store_id".into(), store.id);
            report.ids.insert("store_code".into(), store.code);
            Ok(report)
        })
    }

    fn phases(&self) -> Vec<Phase> {
        let (pool, phones, store_id) = (
            self.pool.clone(),
            self.phones.clone(),
            self.store_id.clone(),
        );
        let join = Phase {
            name: "join",
            make_worker: Box::new(move |i| {
                Box::new(JoinWorker {
                    client: pool.member(i),
                    phones: phones.clone(),
                    store_id: store_id.clone(),
                })
            }),
        };
        let (pool, cards) = (self.pool.clone(), self.cards.clone());
        let find = Phase {
            name: "find",
            make_worker: Box::new(move |i| {
                Box::new(FindWorker {
                    client: pool.member(i),
                    cards: cards.clone(),
                    rng: StdRng::from_entropy(),
                })
            }),
        };
        vec![join, find]
    }
}

/// A store the seed created.
#[derive(Clone, Debug)]
pub struct SeededStore {
    pub id: String,
    /// `LT-` and ten random characters; the points scenario earns at this store code.
    pub code: String,
}

/// A member the seed signed up.
#[derive(Clone, Debug)]
pub struct SeededMember {
    pub id: String,
    pub card: String,
}

/// Creates one open store with a random `LT-...` code through `CreateStore`.
pub async fn create_store(pool: &Pool) -> anyhow::Result<SeededStore> {
    let code = format!(
        "LT-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase()
    );
    let request = CreateStoreRequest {
        code: code.clone(),
        name: "부하테스트 매장".into(),
        region: "서울".into(),
        trade_area: "강남역".into(),
        status: StoreStatus::Open as i32,
    };
    let store = pool
        .member(0)
        .create_store(request)
        .await
        .map_err(|s| anyhow!("seed: CreateStore failed: {}", status_line(&s)))?
        .into_inner()
        .store
        .context("seed: CreateStore answered without a store")?;
    if store.store_id.is_empty() {
        bail!("seed: CreateStore answered with an empty store_id");
    }
    Ok(SeededStore {
        id: store.store_id,
        code,
    })
}

/// Signs up `count` members at `store_id` through `JoinMember`, [`SEED_CONCURRENCY`] at a
/// time, in no particular order.
pub async fn seed_members(
    pool: &Pool,
    phones: &PhoneGen,
    store_id: &str,
    count: usize,
) -> anyhow::Result<Vec<SeededMember>> {
    futures::stream::iter(0..count)
        .map(|i| seed_member(pool.member(i), phones, store_id))
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await
}

/// A sign-up request for a new member at `store_id`.
fn join_request(phone: String, store_id: &str) -> JoinMemberRequest {
    JoinMemberRequest {
        name: MEMBER_NAME.into(),
        phone,
        join_store_id: store_id.to_owned(),
        join_channel: JoinChannel::Pos as i32,
        card_type: CardType::Mobile as i32,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        ..JoinMemberRequest::default()
    }
}

/// Signs up one seed member; retries with another phone number when the drawn one is taken.
async fn seed_member(
    mut client: MemberClient,
    phones: &PhoneGen,
    store_id: &str,
) -> anyhow::Result<SeededMember> {
    for _ in 0..SEED_ATTEMPTS {
        let phone = phones
            .next_phone()
            .context("seed: ran out of phone numbers")?;
        match client.join_member(join_request(phone, store_id)).await {
            Ok(response) => {
                let response = response.into_inner();
                let member = response
                    .member
                    .context("seed: JoinMember answered without a member")?;
                let card = response
                    .card
                    .context("seed: JoinMember answered without a card")?;
                if member.member_id.is_empty() || card.card_number.is_empty() {
                    bail!("seed: JoinMember answered with an empty member id or card number");
                }
                return Ok(SeededMember {
                    id: member.member_id,
                    card: card.card_number,
                });
            }
            Err(status) if status.code() == tonic::Code::AlreadyExists => {}
            Err(status) => bail!("seed: JoinMember failed: {}", status_line(&status)),
        }
    }
    bail!("seed: JoinMember answered ALREADY_EXISTS {SEED_ATTEMPTS} times in a row")
}

/// `join` phase client: each call signs up a new member.
struct JoinWorker {
    client: MemberClient,
    phones: Arc<PhoneGen>,
    store_id: Arc<str>,
}

impl Worker for JoinWorker {
    fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
        Box::pin(async move {
            let phone = self.phones.next_phone().ok_or_else(|| {
                tonic::Status::resource_exhausted("loadtest ran out of phone numbers")
            })?;
            self.client
                .join_member(join_request(phone, &self.store_id))
                .await
                .map(|_| Outcome::Ok)
        })
    }
}

/// `find` phase client: each call looks up a random seeded card.
struct FindWorker {
    client: MemberClient,
    cards: Arc<[String]>,
    rng: StdRng,
}

impl Worker for FindWorker {
    fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
        Box::pin(async move {
            if self.cards.is_empty() {
                return Err(tonic::Status::failed_precondition("no seeded cards"));
            }
            let card = self.cards[self.rng.gen_range(0..self.cards.len())].clone();
            let request = FindMemberRequest {
                key: Some(find_member_request::Key::CardNumber(card)),
                unmask: None,
            };
            self.client.find_member(request).await.map(|_| Outcome::Ok)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_requests_are_distinct_sign_ups() {
        let a = join_request("010-2000-0001".into(), "store");
        let b = join_request("010-2000-0002".into(), "store");
        assert_eq!(a.name, MEMBER_NAME);
        assert_eq!(a.join_store_id, "store");
        assert_eq!(a.join_channel, JoinChannel::Pos as i32);
        assert_ne!(a.idempotency_key, b.idempotency_key);
        assert!(uuid::Uuid::parse_str(&a.idempotency_key).is_ok());
    }
}
