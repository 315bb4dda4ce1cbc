//! Idempotency keys: the same key and body return the first result without a second ledger
//! entry, for every write; the same key with another body (or another operation) is
//! ALREADY_EXISTS.
use spharos_kit::testing::TestBackend;
use tonic::Code;

use crate::helpers::{assert_reason, cancel_of, earn_request, spawn_app, spend_request};

on_both_backends!(the_same_key_returns_the_first_result_and_another_body_is_refused);

async fn the_same_key_returns_the_first_result_and_another_body_is_refused(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    let mut client = app.points.clone();

    let first = app.earn(&m, "R-1", 10_000).await;
    let again = app.earn(&m, "R-1", 10_000).await;
    assert_eq!(first, again);
    let s1 = client
        .spend(app.req(spend_request(&m, "S-1", 30)))
        .await
        .expect("spent")
        .into_inner();
    let s2 = client
        .spend(app.req(spend_request(&m, "S-1", 30)))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(s1, s2);
    let id = s1.transaction.expect("t").transaction_id;
    let c1 = app.cancel(cancel_of(&id, "c-1")).await.expect("cancelled");
    assert_eq!(app.cancel(cancel_of(&id, "c-1")).await.expect("replay"), c1);
    let a1 = app.adjust(&m, 10, "a-1").await.expect("adjusted");
    assert_eq!(app.adjust(&m, 10, "a-1").await.expect("replay"), a1);
    // One entry per request.
    assert_eq!(app.history(&m).await.len(), 4);
    assert_eq!(app.balance(&m).await.available, 110);

    // The same key with another body names the conflict.
    let mut other = earn_request(&m, "R-1", 20_000);
    other.idempotency_key = "earn-R-1".into();
    let err = client.earn(app.req(other)).await.expect_err("other body");
    assert_reason(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert!(err.message().contains("earn-R-1"), "{}", err.message());
    // One key space across operations: an earn's key cannot name a spend.
    let mut spend = spend_request(&m, "S-2", 10);
    spend.idempotency_key = "earn-R-1".into();
    let err = client
        .spend(app.req(spend))
        .await
        .expect_err("other operation");
    assert_reason(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.history(&m).await.len(), 4);
    app.assert_ledger_consistent(m.uuid()).await;
}
