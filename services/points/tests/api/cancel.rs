//! Cancels: full and proportional earn reversals, spend restores with the original expiry,
//! debt when spent points are reversed (or refusal, by tenant policy), once-only semantics,
//! and every bad input.
use chrono::{DateTime, Duration, Utc};
use spharos_kit::testing::TestBackend;
use spharos_proto::points::{self as pb, PointsCancelled, PointsEarned};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{assert_invalid, assert_reason, cancel_of, spawn_app};

on_both_backends!(
    a_full_refund_reverses_the_earn_exactly_once,
    partial_refunds_reverse_in_proportion_and_never_more_than_earned,
    a_spend_cancel_restores_the_lots_with_their_original_expiry,
    reversing_spent_points_leaves_a_debt_that_later_earns_pay_first,
    a_tenant_may_refuse_to_reverse_spent_points,
    a_refund_after_expiry_does_not_take_the_points_twice,
    cancels_by_till_receipt_and_bad_cancels,
);

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("valid")
}

fn refund(id: &str, key: &str, krw: i64) -> pb::CancelRequest {
    pb::CancelRequest {
        refund_amount_krw: krw,
        ..cancel_of(id, key)
    }
}

async fn a_full_refund_reverses_the_earn_exactly_once(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("cancel-test", &["points.cancelled"]).await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    let c = app
        .cancel(cancel_of(&earn.transaction_id, "c-1"))
        .await
        .expect("cancelled");
    let t = c.transaction.clone().expect("t");
    assert_eq!(t.r#type, pb::TransactionType::CancelEarn as i32);
    assert_eq!((t.points, t.balance_after, t.amount_krw), (-100, 0, 10_000));
    assert_eq!(t.original_transaction_id, earn.transaction_id);
    assert_eq!(t.reason, "고객 환불");
    let b = c.balance.clone().expect("balance");
    assert_eq!((b.available, b.lifetime_earned), (0, 0));
    let e: PointsCancelled = tap
        .wait_for("points.cancelled", &m.id)
        .await
        .decode()
        .expect("decode");
    assert_eq!((e.points, e.refund_amount_krw), (-100, 10_000));
    assert_eq!(e.original_type, pb::TransactionType::Earn as i32);

    // A retry (same key) is the first answer; a second cancel (new key) finds nothing left.
    assert_eq!(
        app.cancel(cancel_of(&earn.transaction_id, "c-1"))
            .await
            .expect("replay"),
        c
    );
    let err = app
        .cancel(cancel_of(&earn.transaction_id, "c-2"))
        .await
        .expect_err("again");
    assert_reason(&err, Code::FailedPrecondition, "ALREADY_CANCELLED");
    assert_eq!(app.history(&m).await.len(), 2);
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn partial_refunds_reverse_in_proportion_and_never_more_than_earned(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["base_rate_bp"],
        pb::PointsPolicy {
            base_rate_bp: 333,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    assert_eq!(earn.points, 333);
    let id = earn.transaction_id.as_str();
    let a = app
        .cancel(refund(id, "p-1", 3_000))
        .await
        .expect("30 %")
        .transaction
        .expect("t");
    assert_eq!((a.points, a.amount_krw), (-99, 3_000));
    let b = app
        .cancel(refund(id, "p-2", 3_000))
        .await
        .expect("60 %")
        .transaction
        .expect("t");
    assert_eq!(b.points, -100);
    let err = app
        .cancel(refund(id, "p-3", 4_001))
        .await
        .expect_err("too much");
    assert_reason(&err, Code::FailedPrecondition, "REFUND_EXCEEDS_PURCHASE");
    assert!(err.message().contains("4,000원"), "{}", err.message());
    let c = app
        .cancel(refund(id, "p-4", 0))
        .await
        .expect("the rest")
        .transaction
        .expect("t");
    assert_eq!((c.points, c.amount_krw), (-134, 4_000));
    assert_eq!(a.points + b.points + c.points, -333);
    let err = app
        .cancel(refund(id, "p-5", 1))
        .await
        .expect_err("nothing left");
    assert_reason(&err, Code::FailedPrecondition, "ALREADY_CANCELLED");
    assert_eq!(app.balance(&m).await.balance, 0);
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn a_spend_cancel_restores_the_lots_with_their_original_expiry(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["validity_months", "validity_days"],
        pb::PointsPolicy {
            validity_months: 0,
            validity_days: 10,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    let spend = app
        .spend(&m, "S-1", 100)
        .await
        .expect("spent")
        .transaction
        .expect("t");
    let part = app
        .cancel(pb::CancelRequest {
            points: 30,
            ..cancel_of(&spend.transaction_id, "s-1")
        })
        .await
        .expect("partial")
        .transaction
        .expect("t");
    assert_eq!(
        (part.points, part.r#type),
        (30, pb::TransactionType::CancelSpend as i32)
    );
    let err = app
        .cancel(pb::CancelRequest {
            points: 71,
            ..cancel_of(&spend.transaction_id, "s-2")
        })
        .await
        .expect_err("more than left");
    assert_reason(&err, Code::FailedPrecondition, "RESTORE_EXCEEDS_SPEND");
    let rest = app
        .cancel(cancel_of(&spend.transaction_id, "s-3"))
        .await
        .expect("rest");
    assert_eq!(rest.transaction.expect("t").points, 70);
    let b = rest.balance.expect("balance");
    assert_eq!((b.available, b.lifetime_spent), (100, 0));
    let err = app
        .cancel(cancel_of(&spend.transaction_id, "s-4"))
        .await
        .expect_err("done");
    assert_reason(&err, Code::FailedPrecondition, "ALREADY_CANCELLED");
    // Restored into the original lot: it still expires with it.
    let expire = time(&earn.expire_time);
    assert_eq!(
        app.app
            .run_expiry(app.tenant, expire)
            .await
            .expect("run")
            .expired_points,
        0
    );
    let run = app
        .app
        .run_expiry(app.tenant, expire + Duration::microseconds(1))
        .await
        .expect("run");
    assert_eq!(run.expired_points, 100);
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn reversing_spent_points_leaves_a_debt_that_later_earns_pay_first(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("debt-test", &["points.earned"]).await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 100_000).await.transaction.expect("t");
    app.spend(&m, "S-1", 800).await.expect("spent");
    let c = app
        .cancel(cancel_of(&earn.transaction_id, "c-1"))
        .await
        .expect("cancelled");
    let t = c.transaction.expect("t");
    assert_eq!(
        (t.points, t.debt_delta, t.balance_after),
        (-1_000, 800, -800)
    );
    let b = c.balance.expect("balance");
    assert_eq!((b.available, b.debt, b.balance), (0, 800, -800));
    // Spending with a debt: nothing is available.
    let err = app.spend(&m, "S-2", 10).await.expect_err("in debt");
    assert_reason(&err, Code::FailedPrecondition, "INSUFFICIENT_POINTS");

    let first = app.earn(&m, "R-2", 50_000).await;
    let t = first.transaction.expect("t");
    assert_eq!((t.points, t.debt_delta, t.balance_after), (500, -500, -300));
    let b = first.balance.expect("balance");
    assert_eq!((b.available, b.debt), (0, 300));
    let second = app.earn(&m, "R-3", 50_000).await.balance.expect("balance");
    assert_eq!(
        (second.available, second.debt, second.balance),
        (200, 0, 200)
    );
    let events = tap.wait_for_n("points.earned", &m.id, 3).await;
    let paid: Vec<i64> = events
        .iter()
        .map(|e| e.decode::<PointsEarned>().expect("decode").debt_paid)
        .collect();
    assert_eq!(paid, [0, 500, 300]);
    app.spend(&m, "S-3", 200)
        .await
        .expect("what is left after the debt");
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn a_tenant_may_refuse_to_reverse_spent_points(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["earn_cancel_shortfall"],
        pb::PointsPolicy {
            earn_cancel_shortfall: pb::EarnCancelShortfall::Reject as i32,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 100_000).await.transaction.expect("t");
    app.spend(&m, "S-1", 800).await.expect("spent");
    let err = app
        .cancel(cancel_of(&earn.transaction_id, "c-1"))
        .await
        .expect_err("refused");
    assert_reason(&err, Code::FailedPrecondition, "POINTS_ALREADY_SPENT");
    assert!(err.message().contains("800 P"), "{}", err.message());
    assert_eq!(app.balance(&m).await.available, 200);
    // With other points to cover it, the reversal needs no debt and goes through.
    app.earn(&m, "R-2", 100_000).await;
    let c = app
        .cancel(cancel_of(&earn.transaction_id, "c-2"))
        .await
        .expect("covered");
    let b = c.balance.expect("balance");
    assert_eq!((b.available, b.debt), (200, 0));
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn a_refund_after_expiry_does_not_take_the_points_twice(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["validity_months", "validity_days"],
        pb::PointsPolicy {
            validity_months: 0,
            validity_days: 10,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let earn = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    app.app
        .run_expiry(
            app.tenant,
            time(&earn.expire_time) + Duration::microseconds(1),
        )
        .await
        .expect("expired");
    let c = app
        .cancel(cancel_of(&earn.transaction_id, "c-1"))
        .await
        .expect("cancelled");
    assert_eq!(c.transaction.expect("t").points, 0);
    let b = c.balance.expect("balance");
    assert_eq!((b.balance, b.debt, b.lifetime_earned), (0, 0, 0));
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn cancels_by_till_receipt_and_bad_cancels(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    app.earn(&m, "R-1", 10_000).await;
    app.spend(&m, "R-1", 40)
        .await
        .expect("spent on the same receipt");
    let by_pos = |kind: pb::TransactionType, key: &str| pb::CancelRequest {
        target: Some(pb::cancel_request::Target::Pos(pb::PosReference {
            store_code: "GN001".into(),
            pos_transaction_id: "R-1".into(),
            r#type: kind as i32,
        })),
        ..cancel_of("", key)
    };
    let spend_cancel = app
        .cancel(by_pos(pb::TransactionType::Spend, "k-1"))
        .await
        .expect("spend cancelled");
    assert_eq!(spend_cancel.transaction.clone().expect("t").points, 40);
    let earn_cancel = app
        .cancel(by_pos(pb::TransactionType::Earn, "k-2"))
        .await
        .expect("earn cancelled");
    assert_eq!(earn_cancel.transaction.clone().expect("t").points, -100);

    let missing = pb::CancelRequest {
        target: None,
        refund_amount_krw: -1,
        ..cancel_of("", "k-3")
    };
    assert_invalid(
        &app.cancel(missing).await.expect_err("no target"),
        &["target", "refund_amount_krw"],
    );
    let err = app
        .cancel(by_pos(pb::TransactionType::Adjust, "k-4"))
        .await
        .expect_err("type");
    assert_invalid(&err, &["pos.type"]);
    assert_invalid(
        &app.cancel(cancel_of("nope", "k-5")).await.expect_err("id"),
        &["transaction_id"],
    );
    let err = app
        .cancel(cancel_of(&Uuid::now_v7().to_string(), "k-6"))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let cancel_id = earn_cancel.transaction.expect("t").transaction_id;
    let err = app
        .cancel(cancel_of(&cancel_id, "k-7"))
        .await
        .expect_err("a cancel");
    assert_reason(&err, Code::FailedPrecondition, "NOT_CANCELLABLE");

    let fresh = app.earn(&m, "R-2", 10_000).await.transaction.expect("t");
    let err = app
        .cancel(pb::CancelRequest {
            points: 5,
            ..cancel_of(&fresh.transaction_id, "k-8")
        })
        .await
        .expect_err("points on an earn");
    assert_invalid(&err, &["points"]);
    let spend = app
        .spend(&m, "S-9", 10)
        .await
        .expect("spent")
        .transaction
        .expect("t");
    let err = app
        .cancel(pb::CancelRequest {
            refund_amount_krw: 5,
            ..cancel_of(&spend.transaction_id, "k-9")
        })
        .await
        .expect_err("refund on a spend");
    assert_invalid(&err, &["refund_amount_krw"]);
    // Another tenant cannot see, let alone cancel, this tenant's transactions.
    let other = spharos_kit::TenantId::generate();
    let err = app
        .points
        .clone()
        .cancel(app.req_as(other, &[], cancel_of(&fresh.transaction_id, "k-10")))
        .await
        .expect_err("foreign");
    assert_eq!(err.code(), Code::NotFound);
    app.assert_ledger_consistent(m.uuid()).await;
}
