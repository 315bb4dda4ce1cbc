//! Spending: soonest-expiring lots first, the tenant's unit and minimum balance, the
//! available balance in the refusal, and every bad input.
use chrono::{DateTime, Duration, Utc};
use spharos_kit::testing::TestBackend;
use spharos_proto::points::{self as pb, PointsUsed};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, spawn_app, spend_request};

on_both_backends!(
    spends_the_soonest_expiring_points_first,
    the_tenant_sets_the_spend_unit_and_minimum_balance,
    bad_spends_name_every_field,
);

fn validity_days(days: i32) -> pb::PointsPolicy {
    pb::PointsPolicy {
        validity_months: 0,
        validity_days: days,
        ..Default::default()
    }
}

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("valid")
}

async fn spends_the_soonest_expiring_points_first(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("spend-test", &["points.used"]).await;
    let m = app.member().await;
    // Earned first but expiring later...
    app.set_policy(&["validity_months", "validity_days"], validity_days(20))
        .await;
    let late = app.earn(&m, "LATE", 20_000).await.transaction.expect("t");
    // ...then earned later, expiring sooner: spent first.
    app.set_policy(&["validity_months", "validity_days"], validity_days(10))
        .await;
    let soon = app.earn(&m, "SOON", 10_000).await.transaction.expect("t");
    assert!(time(&soon.expire_time) < time(&late.expire_time));

    let spent = app.spend(&m, "S-1", 150).await.expect("spent");
    let t = spent.transaction.expect("t");
    assert_eq!((t.points, t.balance_after), (-150, 150));
    assert_eq!(t.r#type, pb::TransactionType::Spend as i32);
    let b = spent.balance.expect("balance");
    assert_eq!(
        (b.available, b.lifetime_spent, b.lifetime_earned),
        (150, 150, 300)
    );
    let used: PointsUsed = tap
        .wait_for("points.used", &m.id)
        .await
        .decode()
        .expect("decode");
    assert_eq!(
        (
            used.points,
            used.balance_after,
            used.pos_transaction_id.as_str()
        ),
        (150, 150, "S-1")
    );

    // The sooner lot is empty: its expiry takes nothing; the later one loses its 150.
    let run = app
        .app
        .run_expiry(
            app.tenant,
            time(&soon.expire_time) + Duration::microseconds(1),
        )
        .await
        .expect("expiry");
    assert_eq!(run.expired_points, 0);
    let run = app
        .app
        .run_expiry(
            app.tenant,
            time(&late.expire_time) + Duration::microseconds(1),
        )
        .await
        .expect("expiry");
    assert_eq!(run.expired_points, 150);
    assert_eq!(app.balance(&m).await.available, 0);
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn the_tenant_sets_the_spend_unit_and_minimum_balance(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["spend_unit", "min_balance_to_spend"],
        pb::PointsPolicy {
            spend_unit: 10,
            min_balance_to_spend: 1_000,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    app.earn(&m, "R-1", 100_000).await;
    let err = app.spend(&m, "S-1", 15).await.expect_err("unit");
    assert_invalid(&err, &["points"]);
    assert!(err.message().contains("10"), "{}", err.message());
    app.spend(&m, "S-2", 1_000).await.expect("from 1,000 P");
    app.earn(&m, "R-2", 50_000).await;
    let err = app.spend(&m, "S-3", 100).await.expect_err("below minimum");
    assert_reason(&err, Code::FailedPrecondition, "BALANCE_BELOW_MINIMUM");
    assert!(
        err.message().contains("available 500 P"),
        "{}",
        err.message()
    );

    app.set_policy(&["min_balance_to_spend"], pb::PointsPolicy::default())
        .await;
    let err = app.spend(&m, "S-4", 600).await.expect_err("insufficient");
    assert_reason(&err, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    assert!(
        err.message().contains("available 500 P"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("포인트가 부족합니다"),
        "{}",
        err.message()
    );
    app.spend(&m, "S-5", 500).await.expect("everything");
    assert_eq!(app.balance(&m).await.available, 0);
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn bad_spends_name_every_field(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    app.earn(&m, "R-1", 100_000).await;
    let mut client = app.points.clone();
    let err = client
        .spend(app.req(pb::SpendRequest {
            member: None,
            points: 0,
            store_code: String::new(),
            pos_transaction_id: " ".into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("invalid");
    assert_invalid(
        &err,
        &["member", "points", "store_code", "pos_transaction_id"],
    );
    let err = app.spend(&m, "S-1", -5).await.expect_err("negative");
    assert_invalid(&err, &["points"]);

    app.spend(&m, "S-1", 100).await.expect("spent");
    let mut again = spend_request(&m, "S-1", 100);
    again.idempotency_key = "new-key".into();
    let err = client
        .spend(app.req(again))
        .await
        .expect_err("same receipt");
    assert_reason(&err, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");

    let gone = app.member().await;
    app.earn(&gone, "G-1", 10_000).await;
    app.withdraw(&gone).await;
    // Cached as ACTIVE for up to 30 s in this process; a fresh lookup by card sees the
    // withdrawal (FindMember finds only ACTIVE members).
    let mut by_card = spend_request(&gone, "G-S", 10);
    by_card.member = gone.by_card();
    let err = client.spend(app.req(by_card)).await.expect_err("withdrawn");
    assert_eq!(err.code(), Code::NotFound);
    let stranger = app.member_of(spharos_kit::TenantId::generate()).await;
    let err = client
        .spend(app.req(spend_request(&stranger, "X", 10)))
        .await
        .expect_err("foreign");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(app.balance(&m).await.available, 900);
}
