//! The group commit of claims: concurrent claims are written together and answer exactly as
//! one by one would. Keys replayed within and after a burst give the first coupon and one
//! event; claims racing staff issues (which take the one-by-one path) for the last units
//! never over-issue; a refused claim in a burst hears its own reason while the others claim.
use std::collections::{HashMap, HashSet};

use futures::{StreamExt, stream};
use spharos_coupon::{
    domain::member::MemberState,
    store::{coupons, members, templates},
};
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_reason, fixed_template, mask, member, spawn_app, with_token};

on_both_backends!(
    keys_replay_within_and_after_a_burst,
    claims_and_staff_issues_race_for_the_last_units,
    a_refused_claim_in_a_burst_hears_its_own_reason,
    a_refusal_is_not_kept_under_its_key
);

/// Sends every request at once; the answers in request order.
async fn burst(
    app: &TestApp,
    requests: Vec<pb::ClaimCouponRequest>,
) -> Vec<Result<pb::Coupon, tonic::Status>> {
    let token = app.token();
    let n = requests.len();
    stream::iter(requests)
        .map(|r| {
            let mut c = app.client.clone();
            let req = with_token(r, &token);
            async move {
                c.claim_coupon(req)
                    .await
                    .map(|r| r.into_inner().coupon.expect("coupon"))
            }
        })
        .buffered(n)
        .collect()
        .await
}

/// 80 members claim with their own keys, each key sent twice at once; then every key again.
/// Each key's answers are one coupon; 80 coupons and 80 events exist; the claims went in
/// batches.
async fn keys_replay_within_and_after_a_burst(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-batch-issued", &["coupon.issued"]).await;
    let mut t = fixed_template("선착순 배치");
    t.total_quantity = 500;
    let t = app.create_template(t).await;
    let members: Vec<String> = (0..80).map(|_| member()).collect();
    let request = |i: usize| pb::ClaimCouponRequest {
        template_id: t.template_id.clone(),
        member_id: members[i].clone(),
        idempotency_key: format!("tap-{i}"),
    };
    let before = app.app.claim_batches();
    let first = burst(&app, (0..160).map(|k| request(k / 2)).collect()).await;
    let mut by_key: HashMap<usize, pb::Coupon> = HashMap::new();
    for (k, r) in first.into_iter().enumerate() {
        let c = r.expect("every claim and its replay succeed");
        assert_eq!(c.member_id, members[k / 2]);
        assert_eq!(c.issue_method(), pb::IssueMethod::Claim);
        match by_key.get(&(k / 2)) {
            Some(earlier) => assert_eq!(earlier, &c, "a key's two answers are one coupon"),
            None => {
                by_key.insert(k / 2, c);
            }
        }
    }
    let after = app.app.claim_batches();
    assert!(
        after.claims > before.claims && after.largest > 1,
        "the burst was written in batches: {after:?}"
    );
    // The batches show in the process's metrics (under `cargo test` other tests of this
    // process add to them too).
    let (count, sum) = spharos_kit::telemetry::group_commit_totals("coupon")
        .expect("the coupon batches are in the metrics");
    assert!(
        count >= after.committed && sum >= after.claims as f64,
        "group-commit metrics ({count} batches, {sum} writes) behind the batches' own counts {after:?}"
    );

    let again = burst(&app, (0..80).map(request).collect()).await;
    for (i, r) in again.into_iter().enumerate() {
        assert_eq!(
            r.expect("retry"),
            by_key[&i],
            "a retry answers the first coupon"
        );
    }
    let ids: HashSet<&str> = by_key.values().map(|c| c.coupon_id.as_str()).collect();
    assert_eq!(ids.len(), 80);

    let template_id = Uuid::parse_str(&t.template_id).expect("uuid");
    let tx = app.app.db().begin(app.tenant).await.expect("tx");
    assert_eq!(
        coupons::count_for_template(&tx, app.tenant, template_id)
            .await
            .expect("rows"),
        80
    );
    assert_eq!(
        templates::issued_count(&tx, app.tenant, template_id)
            .await
            .expect("count"),
        Some(80)
    );
    tx.commit().await.expect("commit");
    for c in by_key.values() {
        let e = tap.wait_for("coupon.issued", &c.coupon_id).await;
        assert_eq!(e.subject_id, c.coupon_id);
    }
    // No second event for any coupon (the relay has had time to send all of them).
    assert_eq!(tap.all("coupon.issued").len(), 80);
}

/// 60 units; 100 claims (batched) and 60 staff issues (one by one) of other members at once:
/// exactly 60 coupons, the rest sold out, the shards' counters equal the rows.
async fn claims_and_staff_issues_race_for_the_last_units(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("마지막 60장");
    t.total_quantity = 60;
    let t = app.create_template(t).await;
    let token = app.token();
    let claims = (0..100).map(|_| {
        let mut c = app.client.clone();
        let req = with_token(
            pb::ClaimCouponRequest {
                template_id: t.template_id.clone(),
                member_id: member(),
                idempotency_key: Uuid::now_v7().to_string(),
            },
            &token,
        );
        Box::pin(async move { c.claim_coupon(req).await.map(|r| r.into_inner().coupon) })
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    });
    let issues = (0..60).map(|_| {
        let mut c = app.client.clone();
        let req = with_token(
            pb::IssueCouponRequest {
                template_id: t.template_id.clone(),
                member_id: member(),
                issue_method: pb::IssueMethod::Admin.into(),
                idempotency_key: Uuid::now_v7().to_string(),
            },
            &token,
        );
        Box::pin(async move { c.issue_coupon(req).await.map(|r| r.into_inner().coupon) })
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    });
    let all: Vec<_> = claims.chain(issues).collect();
    let results: Vec<Result<Option<pb::Coupon>, tonic::Status>> =
        stream::iter(all).buffer_unordered(160).collect().await;
    let mut issued = 0;
    for r in &results {
        match r {
            Ok(c) => {
                assert!(c.is_some());
                issued += 1;
            }
            Err(s) => assert_reason(s, Code::ResourceExhausted, "COUPON_SOLD_OUT"),
        }
    }
    assert_eq!(issued, 60, "exactly the quantity");

    let template_id = Uuid::parse_str(&t.template_id).expect("uuid");
    let tx = app.app.db().begin(app.tenant).await.expect("tx");
    assert_eq!(
        coupons::count_for_template(&tx, app.tenant, template_id)
            .await
            .expect("rows"),
        60
    );
    assert_eq!(
        templates::issued_count(&tx, app.tenant, template_id)
            .await
            .expect("count"),
        Some(60)
    );
    tx.commit().await.expect("commit");
}

/// In one burst: a withdrawn member, a member already holding the coupon, and 30 others. The
/// two hear their own refusals; the 30 claim.
async fn a_refused_claim_in_a_burst_hears_its_own_reason(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let t = app.create_template(fixed_template("배치 거절")).await;
    let gone = member();
    app.publish_withdrawn(&gone).await;
    let gone_id = Uuid::parse_str(&gone).expect("uuid");
    app.eventually("the projection sees the withdrawal", || async {
        let tx = app.app.db().begin(app.tenant).await.expect("tx");
        let state = members::state(&tx, app.tenant, gone_id)
            .await
            .expect("state");
        tx.commit().await.expect("commit");
        state == Some(MemberState::Withdrawn)
    })
    .await;
    let holder = member();
    app.claim(&t.template_id, &holder)
        .await
        .expect("first claim");

    let mut who = vec![gone.clone(), holder.clone()];
    who.extend((0..30).map(|_| member()));
    let requests = who
        .iter()
        .map(|m| pb::ClaimCouponRequest {
            template_id: t.template_id.clone(),
            member_id: m.clone(),
            idempotency_key: Uuid::now_v7().to_string(),
        })
        .collect();
    let results = burst(&app, requests).await;
    assert_reason(
        results[0].as_ref().expect_err("withdrawn"),
        Code::FailedPrecondition,
        "MEMBER_WITHDRAWN",
    );
    assert_reason(
        results[1].as_ref().expect_err("holds one"),
        Code::AlreadyExists,
        "COUPON_LIMIT_REACHED",
    );
    for (r, m) in results[2..].iter().zip(&who[2..]) {
        assert_eq!(&r.as_ref().expect("claimed").member_id, m);
    }
}

/// A claim refused as sold out, retried with its key after the quantity was raised, is judged
/// again and claims (errors are not stored under a key; the batch only proved the key unused).
async fn a_refusal_is_not_kept_under_its_key(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("한정 1장");
    t.total_quantity = 1;
    let t = app.create_template(t).await;
    app.claim(&t.template_id, &member())
        .await
        .expect("the one unit");
    let late = member();
    let request = || pb::ClaimCouponRequest {
        template_id: t.template_id.clone(),
        member_id: late.clone(),
        idempotency_key: "late-tap".into(),
    };
    let refused = burst(&app, vec![request()]).await.remove(0);
    assert_reason(
        refused.as_ref().expect_err("sold out"),
        Code::ResourceExhausted,
        "COUPON_SOLD_OUT",
    );
    app.client
        .clone()
        .update_template(app.req(pb::UpdateTemplateRequest {
            template_id: t.template_id.clone(),
            template: Some(pb::CouponTemplate {
                total_quantity: 2,
                ..Default::default()
            }),
            update_mask: mask(&["total_quantity"]),
        }))
        .await
        .expect("quantity raised");
    let retried = burst(&app, vec![request()]).await.remove(0);
    let coupon = retried.expect("the retry claims the new unit");
    assert_eq!(coupon.member_id, late);
    let replay = burst(&app, vec![request()]).await.remove(0);
    assert_eq!(
        replay.expect("replay"),
        coupon,
        "now the key holds the coupon"
    );
}
