//! Staff adjustments: grants and deductions with a reason, audited in the ledger and the
//! `points.adjusted` event, behind the `points:admin` permission.
use spharos_kit::testing::TestBackend;
use spharos_proto::points::{self as pb, PointsAdjusted};
use tonic::Code;

use crate::helpers::{ADMIN, assert_invalid, assert_reason, cancel_of, spawn_app};

on_both_backends!(staff_grant_and_deduct_with_a_reason_and_it_is_audited);

async fn staff_grant_and_deduct_with_a_reason_and_it_is_audited(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("adjust-test", &["points.adjusted"]).await;
    let m = app.member().await;
    let grant = app.adjust(&m, 500, "a-1").await.expect("granted");
    let t = grant.transaction.expect("t");
    assert_eq!(t.r#type, pb::TransactionType::Adjust as i32);
    assert_eq!((t.points, t.balance_after), (500, 500));
    assert_eq!((t.reason.as_str(), t.actor.as_str()), ("고객 보상", ADMIN));
    assert!(t.expire_time.is_some());
    let e: PointsAdjusted = tap
        .wait_for("points.adjusted", &m.id)
        .await
        .decode()
        .expect("decode");
    assert_eq!(
        (e.points, e.actor.as_str(), e.reason.as_str()),
        (500, ADMIN, "고객 보상")
    );

    let deduct = app.adjust(&m, -200, "a-2").await.expect("deducted");
    assert_eq!(deduct.balance.expect("b").available, 300);
    let err = app.adjust(&m, -301, "a-3").await.expect_err("too much");
    assert_reason(&err, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    assert!(
        err.message().contains("available 300 P"),
        "{}",
        err.message()
    );

    // Tills cannot adjust; staff must give a reason and a non-zero amount.
    let err = app
        .points
        .clone()
        .adjust(app.req(pb::AdjustRequest {
            member: m.by_id(),
            points: 100,
            reason: "x".into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = app
        .points
        .clone()
        .adjust(app.admin(pb::AdjustRequest {
            member: None,
            points: 0,
            reason: String::new(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["member", "points", "reason"]);
    // Adjustments are not cancellable (another adjustment corrects them).
    let err = app
        .cancel(cancel_of(
            &deduct.transaction.expect("t").transaction_id,
            "c-1",
        ))
        .await
        .expect_err("not cancellable");
    assert_reason(&err, Code::FailedPrecondition, "NOT_CANCELLABLE");
    app.assert_ledger_consistent(m.uuid()).await;
}
