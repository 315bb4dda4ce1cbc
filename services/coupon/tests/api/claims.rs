//! First-come claims under real concurrency: the rush (1,000 coupons, 5,000 concurrent claims
//! from 3,000 members, 1 per member → exactly 1,000 issued, nobody holds two, every refusal
//! `ResourceExhausted` COUPON_SOLD_OUT or `AlreadyExists` COUPON_LIMIT_REACHED), checked from
//! the responses and from the database; idempotent claims; the limit under a burst of one
//! member's own claims.
use std::{collections::HashMap, time::Instant};

use futures::{StreamExt, stream};
use spharos_coupon::store::{coupons, templates};
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb, coupon_service_client::CouponServiceClient};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    assert_reason, channel, fixed_template, member, reason, spawn_app, with_token,
};

on_both_backends!(
    rush,
    claim_is_idempotent,
    one_members_burst_respects_the_limit
);

const QUANTITY: i64 = 1_000;
const MEMBERS: usize = 3_000;
const CLAIMS: usize = 5_000;
const IN_FLIGHT: usize = 256;
const CHANNELS: usize = 4;

async fn rush(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("선착순 1,000장");
    t.total_quantity = QUANTITY;
    t.per_member_limit = 1;
    t.issue_methods = vec![pb::IssueMethod::Claim.into()];
    let t = app.create_template(t).await;
    let template_id = Uuid::parse_str(&t.template_id).expect("uuid");

    // 3,000 members (not in the projection: accepted by design), 2,000 of them claiming twice
    // back to back so their two claims race each other.
    let members: Vec<String> = (0..MEMBERS).map(|_| Uuid::now_v7().to_string()).collect();
    let mut claims = Vec::with_capacity(CLAIMS);
    for (i, m) in members.iter().enumerate() {
        claims.push(m.clone());
        if i < CLAIMS - MEMBERS {
            claims.push(m.clone());
        }
    }
    assert_eq!(claims.len(), CLAIMS);

    let mut clients = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        clients.push(CouponServiceClient::new(channel(app.addr).await));
    }
    let token = app.token();
    let started = Instant::now();
    let results: Vec<(String, Result<pb::Coupon, tonic::Status>)> =
        stream::iter(claims.into_iter().enumerate())
            .map(|(i, m)| {
                let mut client = clients[i % CHANNELS].clone();
                let req = with_token(
                    pb::ClaimCouponRequest {
                        template_id: t.template_id.clone(),
                        member_id: m.clone(),
                        idempotency_key: String::new(),
                    },
                    &token,
                );
                async move {
                    let r = client
                        .claim_coupon(req)
                        .await
                        .map(|r| r.into_inner().coupon.expect("coupon"));
                    (m, r)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
    let elapsed = started.elapsed();
    eprintln!(
        "rush on {:?}: {CLAIMS} claims in {:.2}s = {:.0} claims/s ({} build, {IN_FLIGHT} in flight over {CHANNELS} channels)",
        app.backend,
        elapsed.as_secs_f64(),
        CLAIMS as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );

    let mut won: HashMap<String, usize> = HashMap::new();
    let (mut sold_out, mut limit) = (0, 0);
    for (m, r) in &results {
        match r {
            Ok(c) => {
                assert_eq!(&c.member_id, m);
                *won.entry(m.clone()).or_default() += 1;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert_reason(s, Code::ResourceExhausted, "COUPON_SOLD_OUT");
                assert!(s.message().contains("sold out"), "{}", s.message());
                sold_out += 1;
            }
            Err(s) if s.code() == Code::AlreadyExists => {
                assert_reason(s, Code::AlreadyExists, "COUPON_LIMIT_REACHED");
                assert!(s.message().contains("limit of 1"), "{}", s.message());
                limit += 1;
            }
            Err(s) => panic!("unexpected refusal {:?} {:?}: {s:?}", s.code(), reason(s)),
        }
    }
    let issued: usize = won.values().sum();
    assert_eq!(issued, QUANTITY as usize, "exactly the quantity was issued");
    assert!(won.values().all(|n| *n == 1), "nobody holds two");
    assert_eq!(issued + sold_out + limit, CLAIMS);
    let batches = app.app.claim_batches();
    eprintln!(
        "rush outcome: issued {issued}, sold out {sold_out}, limit reached {limit}; batches {batches:?}"
    );
    assert!(
        batches.claims > 0 && batches.largest > 1 && batches.refused > 0,
        "concurrent claims were written together: {batches:?}"
    );

    // The database agrees.
    let db = app.app.db();
    let tx = db.begin(app.tenant).await.expect("tx");
    assert_eq!(
        templates::issued_count(&tx, app.tenant, template_id)
            .await
            .expect("count"),
        Some(QUANTITY)
    );
    assert_eq!(
        coupons::count_for_template(&tx, app.tenant, template_id)
            .await
            .expect("rows"),
        QUANTITY as u64
    );
    assert_eq!(
        coupons::max_held_by_a_member(&tx, app.tenant, template_id)
            .await
            .expect("max"),
        1
    );
    tx.commit().await.expect("commit");

    // And a late claim is still refused.
    let err = app
        .claim(&t.template_id, &member())
        .await
        .expect_err("late");
    assert_reason(&err, Code::ResourceExhausted, "COUPON_SOLD_OUT");
}

async fn claim_is_idempotent(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let t = app.create_template(fixed_template("선착순")).await;
    let m = member();
    let mut c = app.client.clone();
    let req = |key: &str| {
        app.req(pb::ClaimCouponRequest {
            template_id: t.template_id.clone(),
            member_id: m.clone(),
            idempotency_key: key.into(),
        })
    };
    let first = c
        .claim_coupon(req("app-tap-1"))
        .await
        .expect("claimed")
        .into_inner()
        .coupon;
    let retry = c
        .claim_coupon(req("app-tap-1"))
        .await
        .expect("retry answers the first")
        .into_inner()
        .coupon;
    assert_eq!(first, retry);
    let err = c
        .claim_coupon(req("app-tap-2"))
        .await
        .expect_err("a new claim over the limit");
    assert_reason(&err, Code::AlreadyExists, "COUPON_LIMIT_REACHED");
}

/// 40 concurrent claims of one member on a limit of 3: exactly 3 succeed, the quantity counts
/// only those.
async fn one_members_burst_respects_the_limit(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("1인 3장");
    t.per_member_limit = 3;
    t.total_quantity = 100;
    let t = app.create_template(t).await;
    let m = member();
    let token = app.token();
    let client = app.client.clone();
    let results: Vec<Result<_, tonic::Status>> = stream::iter(0..40)
        .map(|_| {
            let mut c = client.clone();
            let req = with_token(
                pb::ClaimCouponRequest {
                    template_id: t.template_id.clone(),
                    member_id: m.clone(),
                    idempotency_key: String::new(),
                },
                &token,
            );
            async move { c.claim_coupon(req).await }
        })
        .buffer_unordered(40)
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_reason(r, Code::AlreadyExists, "COUPON_LIMIT_REACHED");
    }
    let template = app
        .client
        .clone()
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: t.template_id.clone(),
        }))
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(
        template.issued_count, 3,
        "refused claims consumed no quantity"
    );
    assert_eq!(app.wallet(&m, pb::WalletView::Usable).await.len(), 3);
}
