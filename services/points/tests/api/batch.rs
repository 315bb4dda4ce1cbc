//! Group commit: concurrent earns are written together, and each answer is what the earn
//! would have got alone. Earns a batch cannot take (retried keys, receipts seen before or twice
//! in one batch, members with lots to settle) still answer as the one-by-one path does.
use std::collections::{HashMap, HashSet};

use chrono::{Duration, Utc};
use futures::future::join_all;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use spharos_kit::testing::TestBackend;
use spharos_points::store::entity::point_lots;
use spharos_proto::points as pb;
use tonic::Code;

use crate::helpers::{Member, TestApp, assert_reason, earn_request, spawn_app};

on_both_backends!(
    concurrent_earns_share_transactions_and_answer_as_if_alone,
    earns_a_batch_cannot_take_answer_as_the_single_path_does,
);

/// Sends `requests` at once, each on its own clone of the client.
async fn earn_all(
    app: &TestApp,
    requests: Vec<pb::EarnRequest>,
) -> Vec<Result<pb::EarnResponse, tonic::Status>> {
    let calls = requests.into_iter().map(|r| {
        let mut client = app.points.clone();
        let req = app.req(r);
        async move { client.earn(req).await.map(|r| r.into_inner()) }
    });
    join_all(calls).await
}

async fn concurrent_earns_share_transactions_and_answer_as_if_alone(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("batch-test", &["points.earned"]).await;
    let mut members = Vec::new();
    for _ in 0..8 {
        let m = app.member().await;
        // Tills know their members: the member lookups are cached before the rush (160 cold
        // lookups at once would measure the member service, not the ledger).
        assert_eq!(app.balance(&m).await.available, 0);
        members.push(m);
    }
    // 160 earns over 8 members, all at once: 1,000..=160,000원, 1 % each.
    let requests: Vec<pb::EarnRequest> = (0..160)
        .map(|i| earn_request(&members[i % 8], &format!("B-{i}"), 1_000 * (i as i64 + 1)))
        .collect();
    let answers = earn_all(&app, requests.clone()).await;
    let stats = app.app.earn_batches();
    assert!(
        stats.largest > 1,
        "160 concurrent earns never shared a transaction: {stats:?}"
    );
    assert_eq!(stats.rolled_back, 0, "{stats:?}");

    let mut per_member: HashMap<String, Vec<pb::Transaction>> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        let a = a.as_ref().expect("every earn succeeds");
        let t = a.transaction.clone().expect("transaction");
        assert_eq!(t.points, 10 * (i as i64 + 1), "earn {i}");
        assert_eq!(t.pos_transaction_id, format!("B-{i}"));
        let b = a.balance.clone().expect("balance");
        // The answer's balance is the account right after this earn.
        assert_eq!(b.available, t.balance_after, "earn {i}");
        assert_eq!(b.expiring_within_30_days, 0);
        per_member.entry(t.member_id.clone()).or_default().push(t);
    }
    for m in &members {
        let mut earned = per_member.remove(&m.id).expect("earns of every member");
        assert_eq!(earned.len(), 20);
        // In ledger order, each earn's balance_after is the running sum: no two answers of
        // one member overlap, whichever batches they went in.
        earned.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
        let mut running = 0;
        for t in &earned {
            running += t.points;
            assert_eq!(t.balance_after, running, "{}", t.transaction_id);
        }
        let b = app.balance(m).await;
        assert_eq!((b.available, b.lifetime_earned), (running, running));
        let history = app.history(m).await;
        assert_eq!(history.len(), 20);
        app.assert_ledger_consistent(m.uuid()).await;
    }
    // One event per earn, and a retry of every request answers the first result.
    for m in &members {
        tap.wait_for_n("points.earned", &m.id, 20).await;
    }
    assert_eq!(tap.all("points.earned").len(), 160);
    let retried = earn_all(&app, requests).await;
    for (first, again) in answers.iter().zip(&retried) {
        assert_eq!(
            first.as_ref().expect("first").transaction,
            again.as_ref().expect("a retry answers").transaction
        );
    }
    for m in &members {
        assert_eq!(app.history(m).await.len(), 20, "a retry wrote again");
    }
}

/// Makes `m`'s lots look as if their last day passed an hour ago.
async fn age_lots(app: &TestApp, m: &Member) {
    let tx = app.app.db().begin(app.tenant).await.expect("tx");
    point_lots::Entity::update_many()
        .col_expr(
            point_lots::Column::ExpireTime,
            Expr::value(Utc::now() - Duration::hours(1)),
        )
        .filter(point_lots::Column::TenantId.eq(app.tenant.as_uuid()))
        .filter(point_lots::Column::MemberId.eq(m.uuid()))
        .exec(&tx)
        .await
        .expect("lots aged");
    tx.commit().await.expect("commit");
}

async fn earns_a_batch_cannot_take_answer_as_the_single_path_does(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let regular = app.member().await;
    let ageing = app.member().await;
    app.earn(&ageing, "OLD-1", 50_000).await; // 500 P, to expire
    age_lots(&app, &ageing).await;
    app.earn(&regular, "SEEN-1", 10_000).await;

    let mut requests = Vec::new();
    // The same request five times (one key): one ledger entry, five equal answers.
    for _ in 0..5 {
        requests.push(earn_request(&regular, "DUP-KEY", 20_000));
    }
    // One receipt under two keys: one earns, the other is ALREADY_EXISTS.
    let mut a = earn_request(&regular, "TWICE", 30_000);
    a.idempotency_key = "twice-a".into();
    let mut b = a.clone();
    b.idempotency_key = "twice-b".into();
    requests.push(a);
    requests.push(b);
    // A receipt the ledger holds already, under a new key.
    let mut seen = earn_request(&regular, "SEEN-1", 10_000);
    seen.idempotency_key = "seen-again".into();
    requests.push(seen);
    // A member whose points expired: settled first (EXPIRE entry), then the earn.
    requests.push(earn_request(&ageing, "NEW-1", 40_000));
    // Plain earns around them.
    for i in 0..20 {
        requests.push(earn_request(&regular, &format!("P-{i}"), 1_000));
    }
    let answers = earn_all(&app, requests).await;

    let dup: HashSet<String> = answers[..5]
        .iter()
        .map(|a| {
            a.as_ref()
                .expect("a retried key answers")
                .transaction
                .clone()
                .expect("t")
                .transaction_id
        })
        .collect();
    assert_eq!(dup.len(), 1, "one key, one transaction");
    let twice: Vec<&Result<pb::EarnResponse, tonic::Status>> = answers[5..7].iter().collect();
    assert_eq!(twice.iter().filter(|a| a.is_ok()).count(), 1);
    let refused = twice
        .iter()
        .find_map(|a| a.as_ref().err())
        .expect("one refusal");
    assert_reason(refused, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");
    let seen = answers[7].as_ref().expect_err("a receipt seen before");
    assert_reason(seen, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");
    let after_expiry = answers[8].as_ref().expect("earn after expiry");
    let t = after_expiry.transaction.clone().expect("t");
    assert_eq!(
        (t.points, t.balance_after),
        (400, 400),
        "the 500 P expired first"
    );
    for a in &answers[9..] {
        assert!(a.is_ok(), "{a:?}");
    }

    let history = app.history(&ageing).await;
    let kinds: Vec<i32> = history.iter().map(|t| t.r#type).collect();
    assert_eq!(
        kinds,
        [
            pb::TransactionType::Earn as i32,
            pb::TransactionType::Expire as i32,
            pb::TransactionType::Earn as i32
        ],
        "newest first"
    );
    let b = app.balance(&ageing).await;
    assert_eq!((b.available, b.lifetime_earned), (400, 900));
    // SEEN-1 100 + DUP-KEY 200 + TWICE 300 + 20 × 10.
    let b = app.balance(&regular).await;
    assert_eq!(b.available, 800);
    assert_eq!(app.history(&regular).await.len(), 23);
    app.assert_ledger_consistent(regular.uuid()).await;
    app.assert_ledger_consistent(ageing.uuid()).await;
}
