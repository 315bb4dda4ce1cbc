//! Group commit: concurrent earns and spends are written together, and each answer is what the
//! write would have got alone in some order of the concurrent requests. Writes a batch cannot
//! take (retried keys, receipts seen before or twice in one batch, members with lots to
//! settle, spends it cannot make) still answer as the one-by-one path does.
use std::collections::{HashMap, HashSet};

use chrono::{Duration, Utc};
use futures::future::join_all;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use spharos_kit::testing::TestBackend;
use spharos_points::store::entity::point_lots;
use spharos_proto::points as pb;
use tonic::Code;

use crate::helpers::{
    Member, TestApp, assert_reason, cancel_of, earn_request, spawn_app, spend_request,
};

on_both_backends!(
    concurrent_earns_share_transactions_and_answer_as_if_alone,
    earns_a_batch_cannot_take_answer_as_the_single_path_does,
    concurrent_earns_and_spends_of_the_same_members_add_up,
    spends_a_batch_cannot_take_answer_as_the_single_path_does,
    spends_take_the_soonest_lots_however_many_a_member_holds,
    concurrent_refunds_add_up_as_if_one_after_another,
);

/// One write of a mixed burst.
#[derive(Clone)]
enum Write {
    Earn(pb::EarnRequest),
    Spend(pb::SpendRequest),
    Cancel(pb::CancelRequest),
}

/// What a write answered: its transaction, or the refusal.
type Answered = Result<pb::Transaction, tonic::Status>;

/// Sends `writes` at once, each on its own clone of the client.
async fn write_all(app: &TestApp, writes: Vec<Write>) -> Vec<Answered> {
    let calls = writes.into_iter().map(|w| {
        let mut client = app.points.clone();
        async move {
            match w {
                Write::Earn(r) => client
                    .earn(app.req(r))
                    .await
                    .map(|r| r.into_inner().transaction.expect("transaction")),
                Write::Spend(r) => client
                    .spend(app.req(r))
                    .await
                    .map(|r| r.into_inner().transaction.expect("transaction")),
                Write::Cancel(r) => client
                    .cancel(app.req(r))
                    .await
                    .map(|r| r.into_inner().transaction.expect("transaction")),
            }
        }
    });
    join_all(calls).await
}

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
    let stats = app.app.ledger_batches();
    assert!(
        stats.largest > 1,
        "160 concurrent earns never shared a transaction: {stats:?}"
    );
    assert_eq!(stats.rolled_back, 0, "{stats:?}");
    // The batches show in the process's metrics (other tests of this process may add to
    // them under `cargo test`; under nextest each test is a process of its own).
    let (count, sum) = spharos_kit::telemetry::group_commit_totals("points")
        .expect("the points batches are in the metrics");
    assert!(
        count >= stats.committed && sum >= stats.earns as f64 && stats.earns >= 160,
        "metrics count {count}, sum {sum}; {stats:?}"
    );

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

async fn concurrent_earns_and_spends_of_the_same_members_add_up(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("batch-spends", &["points.used"]).await;
    let mut members = Vec::new();
    for i in 0..6 {
        let m = app.member().await;
        app.earn(&m, &format!("SEED-{i}"), 1_000_000).await; // 10,000 P
        members.push(m);
    }
    // Enough for one of its three spends only, whatever the order.
    let poor = app.member().await;
    app.earn(&poor, "SEED-POOR", 10_000).await; // 100 P

    // Per member 10 earns of 100 P and 10 spends of 50 P, interleaved; the poor member's
    // three spends of 60 P among them.
    let mut writes = Vec::new();
    for round in 0..10 {
        for (i, m) in members.iter().enumerate() {
            writes.push(Write::Earn(earn_request(
                m,
                &format!("E-{i}-{round}"),
                10_000,
            )));
            writes.push(Write::Spend(spend_request(
                m,
                &format!("S-{i}-{round}"),
                50,
            )));
        }
        if round < 3 {
            writes.push(Write::Spend(spend_request(
                &poor,
                &format!("P-{round}"),
                60,
            )));
        }
    }
    let answers = write_all(&app, writes.clone()).await;
    let stats = app.app.ledger_batches();
    assert!(stats.spends > 0, "no spend went through a batch: {stats:?}");
    assert!(stats.largest > 1, "nothing shared a transaction: {stats:?}");

    let mut poor_ok = 0;
    for (w, a) in writes.iter().zip(&answers) {
        match (w, a) {
            (Write::Spend(r), Ok(t)) if r.pos_transaction_id.starts_with("P-") => {
                assert_eq!(t.points, -60);
                poor_ok += 1;
            }
            (Write::Spend(r), Err(e)) if r.pos_transaction_id.starts_with("P-") => {
                assert_reason(e, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
            }
            (Write::Earn(_), Ok(t)) => assert_eq!(t.points, 100),
            (Write::Spend(_), Ok(t)) => assert_eq!(t.points, -50),
            (_, Err(e)) => panic!("a write with points enough was refused: {e:?}"),
            (Write::Cancel(_), Ok(_)) => unreachable!("this burst has no cancels"),
        }
    }
    assert_eq!(poor_ok, 1, "exactly one of the poor member's spends fits");
    let b = app.balance(&poor).await;
    assert_eq!((b.available, b.lifetime_spent), (40, 60));

    for m in &members {
        let b = app.balance(m).await;
        assert_eq!(b.available, 10_000 + 10 * 100 - 10 * 50);
        assert_eq!((b.lifetime_earned, b.lifetime_spent), (11_000, 500));
        // In ledger order, balance_after is the running sum of the member's entries: the
        // batch applied every write to the account as it stood after the ones before.
        let mut history = app.history(m).await;
        assert_eq!(history.len(), 21);
        history.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
        let mut running = 0;
        for t in &history {
            running += t.points;
            assert_eq!(t.balance_after, running, "{}", t.transaction_id);
        }
        app.assert_ledger_consistent(m.uuid()).await;
    }
    app.assert_ledger_consistent(poor.uuid()).await;

    // One event per spend, and a retry of every write answers the first result.
    for m in &members {
        tap.wait_for_n("points.used", &m.id, 10).await;
    }
    tap.wait_for_n("points.used", &poor.id, 1).await;
    assert_eq!(tap.all("points.used").len(), 61);
    let retried = write_all(&app, writes).await;
    for (first, again) in answers.iter().zip(&retried) {
        if let (Ok(first), Ok(again)) = (first, again) {
            assert_eq!(first, again, "a retry answers the first result");
        }
    }
    for m in &members {
        assert_eq!(app.history(m).await.len(), 21, "a retry wrote again");
    }
}

async fn spends_a_batch_cannot_take_answer_as_the_single_path_does(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["spend_unit"],
        pb::PointsPolicy {
            spend_unit: 10,
            ..Default::default()
        },
    )
    .await;
    let regular = app.member().await;
    let ageing = app.member().await;
    app.earn(&regular, "SEED-R", 100_000).await; // 1,000 P
    app.earn(&ageing, "OLD-1", 50_000).await; // 500 P, to expire
    age_lots(&app, &ageing).await;
    app.spend(&regular, "SEEN-S", 10)
        .await
        .expect("a first spend");

    let mut writes = Vec::new();
    // The same spend five times (one key): one ledger entry, five equal answers.
    for _ in 0..5 {
        writes.push(Write::Spend(spend_request(&regular, "DUP", 20)));
    }
    // One receipt under two keys: one spends, the other is ALREADY_EXISTS.
    let mut a = spend_request(&regular, "TWICE", 30);
    a.idempotency_key = "twice-a".into();
    let mut b = a.clone();
    b.idempotency_key = "twice-b".into();
    writes.push(Write::Spend(a));
    writes.push(Write::Spend(b));
    // A receipt the ledger holds already, under a new key.
    let mut seen = spend_request(&regular, "SEEN-S", 10);
    seen.idempotency_key = "seen-again".into();
    writes.push(Write::Spend(seen));
    // Not a multiple of the spend unit.
    writes.push(Write::Spend(spend_request(&regular, "ODD", 15)));
    // More than the member holds.
    writes.push(Write::Spend(spend_request(&regular, "HUGE", 100_000)));
    // A member whose points expired: once they are settled, nothing is left to spend.
    writes.push(Write::Spend(spend_request(&ageing, "GONE", 100)));
    // Plain writes around them.
    for i in 0..10 {
        writes.push(Write::Spend(spend_request(&regular, &format!("S-{i}"), 10)));
        writes.push(Write::Earn(earn_request(
            &regular,
            &format!("E-{i}"),
            1_000,
        )));
    }
    let answers = write_all(&app, writes).await;

    let dup: HashSet<String> = answers[..5]
        .iter()
        .map(|a| {
            a.as_ref()
                .expect("a retried key answers")
                .transaction_id
                .clone()
        })
        .collect();
    assert_eq!(dup.len(), 1, "one key, one transaction");
    assert_eq!(answers[5..7].iter().filter(|a| a.is_ok()).count(), 1);
    let refused = answers[5..7]
        .iter()
        .find_map(|a| a.as_ref().err())
        .expect("one refusal");
    assert_reason(refused, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");
    let seen = answers[7].as_ref().expect_err("a receipt seen before");
    assert_reason(seen, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");
    let odd = answers[8].as_ref().expect_err("not a multiple of 10");
    spharos_kit::testing::assert_invalid(odd, &["points"]);
    let huge = answers[9].as_ref().expect_err("more than the balance");
    assert_reason(huge, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let gone = answers[10].as_ref().expect_err("expired first");
    assert_reason(gone, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    for a in &answers[11..] {
        assert!(a.is_ok(), "{a:?}");
    }

    let kinds: Vec<i32> = app
        .history(&ageing)
        .await
        .iter()
        .map(|t| t.r#type)
        .collect();
    assert_eq!(
        kinds,
        [pb::TransactionType::Earn as i32],
        "a refused spend leaves nothing behind, not even its settling"
    );
    // 1,000 − SEEN-S 10 − DUP 20 − TWICE 30 − 10 × 10 + 10 × 10.
    let b = app.balance(&regular).await;
    assert_eq!(b.available, 940);
    app.assert_ledger_consistent(regular.uuid()).await;
    app.assert_ledger_consistent(ageing.uuid()).await;
}

async fn spends_take_the_soonest_lots_however_many_a_member_holds(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    // 30 lots of 10 P, all expiring the same day: spends take them in the order they came.
    for i in 0..30 {
        app.earn(&m, &format!("LOT-{i}"), 1_000).await;
    }
    // The first is covered by the soonest lots a batch reads; the second needs lots beyond
    // them, which the single path reads.
    let answers = write_all(
        &app,
        vec![
            Write::Spend(spend_request(&m, "BIG-1", 150)),
            Write::Spend(spend_request(&m, "BIG-2", 100)),
        ],
    )
    .await;
    for a in &answers {
        assert!(a.is_ok(), "{a:?}");
    }
    let b = app.balance(&m).await;
    assert_eq!((b.available, b.lifetime_spent), (50, 250));
    let tx = app.app.db().begin(app.tenant).await.expect("tx");
    let mut lots = point_lots::Entity::find()
        .filter(point_lots::Column::TenantId.eq(app.tenant.as_uuid()))
        .filter(point_lots::Column::MemberId.eq(m.uuid()))
        .all(&*tx)
        .await
        .expect("lots");
    tx.commit().await.expect("commit");
    lots.sort_by_key(|l| (l.expire_time, l.id));
    let remaining: Vec<i64> = lots.iter().map(|l| l.remaining).collect();
    let mut expected = vec![0; 25];
    expected.extend([10; 5]);
    assert_eq!(
        remaining, expected,
        "the oldest 25 lots were taken, in order"
    );
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn concurrent_refunds_add_up_as_if_one_after_another(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("batch-refunds", &["points.cancelled"]).await;
    let m = app.member().await;
    app.earn(&m, "SEED", 1_000_000).await; // 10,000 P
    let e = app.earn(&m, "E", 100_000).await.transaction.expect("t"); // 1,000 P
    let f = app.earn(&m, "F", 30_000).await.transaction.expect("t"); // 300 P

    let mut writes = Vec::new();
    // E refunded in four quarters at once: in proportion, 250 P each, exactly 1,000 in all.
    for q in 0..4 {
        writes.push(Write::Cancel(pb::CancelRequest {
            refund_amount_krw: 25_000,
            ..cancel_of(&e.transaction_id, &format!("quarter-{q}"))
        }));
    }
    // F cancelled in full twice (two keys): once, then ALREADY_CANCELLED.
    writes.push(Write::Cancel(cancel_of(&f.transaction_id, "f-a")));
    writes.push(Write::Cancel(cancel_of(&f.transaction_id, "f-b")));
    // An unknown transaction.
    writes.push(Write::Cancel(cancel_of(
        &uuid::Uuid::now_v7().to_string(),
        "nobody",
    )));
    // Earns and spends of the same member around them.
    for i in 0..5 {
        writes.push(Write::Earn(earn_request(&m, &format!("X-{i}"), 10_000)));
        writes.push(Write::Spend(spend_request(&m, &format!("Y-{i}"), 20)));
    }
    let answers = write_all(&app, writes.clone()).await;
    let stats = app.app.ledger_batches();
    assert!(
        stats.cancels > 0,
        "no cancel went through a batch: {stats:?}"
    );

    for a in &answers[..4] {
        let t = a.as_ref().expect("a quarter refund");
        assert_eq!((t.amount_krw, t.points), (25_000, -250));
        assert_eq!(t.original_transaction_id, e.transaction_id);
    }
    assert_eq!(answers[4..6].iter().filter(|a| a.is_ok()).count(), 1);
    let twice = answers[4..6]
        .iter()
        .find_map(|a| a.as_ref().err())
        .expect("the second full cancel");
    assert_reason(twice, Code::FailedPrecondition, "ALREADY_CANCELLED");
    let nobody = answers[6].as_ref().expect_err("unknown transaction");
    assert_eq!(nobody.code(), Code::NotFound);
    for a in &answers[7..] {
        assert!(a.is_ok(), "{a:?}");
    }

    // 10,000 + 1,000 − 1,000 + 300 − 300 + 5 × 100 − 5 × 20.
    let b = app.balance(&m).await;
    assert_eq!(b.available, 10_400);
    assert_eq!((b.lifetime_earned, b.lifetime_spent), (10_500, 100));
    let mut history = app.history(&m).await;
    history.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
    let mut running = 0;
    for t in &history {
        running += t.points;
        assert_eq!(t.balance_after, running, "{}", t.transaction_id);
    }
    app.assert_ledger_consistent(m.uuid()).await;
    tap.wait_for_n("points.cancelled", &m.id, 5).await;
    assert_eq!(tap.all("points.cancelled").len(), 5);
    // Retries answer the first results and write nothing.
    let retried = write_all(&app, writes).await;
    for (first, again) in answers.iter().zip(&retried) {
        if let (Ok(first), Ok(again)) = (first, again) {
            assert_eq!(first, again);
        }
    }
    assert_eq!(app.history(&m).await.len(), history.len());
}
