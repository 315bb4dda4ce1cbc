//! Concurrency on PostgreSQL (READ COMMITTED, a real connection pool): many spends against one
//! member never overdraw, and one idempotency key sent many times at once makes one ledger
//! entry. (SQLite serialises every transaction on its single connection.)
use std::collections::HashSet;

use futures::future::join_all;
use spharos_kit::testing::TestBackend;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{cancel_of, earn_request, spawn_app, spend_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_spends_never_overdraw() {
    let app = spawn_app(TestBackend::Postgres).await;
    let m = app.member().await;
    app.earn(&m, "R-1", 1_000_000).await; // 10,000 P
    let spends = (0..50).map(|i| {
        let mut client = app.points.clone();
        let req = app.req(spend_request(&m, &format!("S-{i}"), 300));
        async move { client.spend(req).await }
    });
    let results = join_all(spends).await;
    let mut ok = 0;
    for r in &results {
        match r {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                let info = s.get_error_details().error_info().cloned().expect("reason");
                assert_eq!(info.reason, "INSUFFICIENT_POINTS");
            }
        }
    }
    // 33 × 300 = 9,900 ≤ 10,000 < 34 × 300.
    assert_eq!(ok, 33);
    let b = app.balance(&m).await;
    assert_eq!((b.available, b.lifetime_spent), (100, 9_900));
    app.assert_ledger_consistent(m.uuid()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_retries_of_one_key_make_one_transaction() {
    let app = spawn_app(TestBackend::Postgres).await;
    let m = app.member().await;
    let earns = (0..20).map(|_| {
        let mut client = app.points.clone();
        let req = app.req(earn_request(&m, "R-1", 10_000));
        async move { client.earn(req).await }
    });
    let ids: HashSet<String> = join_all(earns)
        .await
        .into_iter()
        .map(|r| {
            r.expect("every retry answers")
                .into_inner()
                .transaction
                .expect("t")
                .transaction_id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let spends = (0..20).map(|_| {
        let mut client = app.points.clone();
        let req = app.req(spend_request(&m, "S-1", 40));
        async move { client.spend(req).await }
    });
    let ids: HashSet<String> = join_all(spends)
        .await
        .into_iter()
        .map(|r| {
            r.expect("every retry answers")
                .into_inner()
                .transaction
                .expect("t")
                .transaction_id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let spend_id = ids.into_iter().next().expect("one id");
    let cancels = (0..20).map(|_| {
        let mut client = app.points.clone();
        let req = app.req(cancel_of(&spend_id, "c-1"));
        async move { client.cancel(req).await }
    });
    let ids: HashSet<String> = join_all(cancels)
        .await
        .into_iter()
        .map(|r| {
            r.expect("every retry answers")
                .into_inner()
                .transaction
                .expect("t")
                .transaction_id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.history(&m).await.len(), 3);
    assert_eq!(app.balance(&m).await.available, 100);
    app.assert_ledger_consistent(m.uuid()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_earns_spends_and_cancels_of_one_member_stay_consistent() {
    let app = spawn_app(TestBackend::Postgres).await;
    let m = app.member().await;
    let seed: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                app.earn(&m, &format!("SEED-{i}"), 50_000)
                    .await
                    .transaction
                    .expect("t")
                    .transaction_id,
            );
        }
        ids
    };
    let mut calls = Vec::new();
    for i in 0..15 {
        let mut c = app.points.clone();
        let req = app.req(earn_request(&m, &format!("E-{i}"), 30_000));
        calls.push(Box::pin(async move { c.earn(req).await.map(|_| ()) })
            as std::pin::Pin<Box<dyn Future<Output = _> + Send>>);
        let mut c = app.points.clone();
        let req = app.req(spend_request(&m, &format!("S-{i}"), 450));
        calls.push(Box::pin(async move { c.spend(req).await.map(|_| ()) }));
    }
    for (i, id) in seed.iter().enumerate() {
        // Each earn cancelled twice at once under two keys: one reverses, one finds it done.
        for k in 0..2 {
            let mut c = app.points.clone();
            let req = app.req(cancel_of(id, &format!("C-{i}-{k}")));
            calls.push(Box::pin(async move { c.cancel(req).await.map(|_| ()) }));
        }
    }
    for r in join_all(calls).await {
        if let Err(s) = r {
            let reason = s
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default();
            assert!(
                ["INSUFFICIENT_POINTS", "ALREADY_CANCELLED"].contains(&reason.as_str()),
                "unexpected failure {s:?}"
            );
        }
    }
    let history = app.history(&m).await;
    let cancels = history
        .iter()
        .filter(|t| t.r#type == spharos_proto::points::TransactionType::CancelEarn as i32)
        .count();
    assert_eq!(cancels, 10, "each seed earn reversed exactly once");
    app.assert_ledger_consistent(m.uuid()).await;
}
