//! Random sequences of earn / spend / cancel / adjust / expire on members, over gRPC and the
//! real databases, with the stored ledger checked after every step (the domain's property
//! test proves the arithmetic; this proves the persistence of it). Deterministic: proptest's
//! seeded runner generates the sequences.
use chrono::{Duration, Utc};
use proptest::{
    prelude::*,
    strategy::{Strategy, ValueTree},
    test_runner::TestRunner,
};
use spharos_kit::testing::TestBackend;
use spharos_proto::points as pb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::{cancel_of, spawn_app};

on_both_backends!(random_sequences_keep_the_stored_ledger_consistent);

const CASES: usize = 5;
const STEPS: usize = 25;

#[derive(Debug, Clone)]
enum Op {
    Earn(i64),
    Spend(i64),
    /// Which earn (modulo), refunded percent (None: the rest).
    CancelEarn(usize, Option<u8>),
    /// Which spend (modulo), points (None: the rest).
    CancelSpend(usize, Option<i64>),
    Adjust(i64),
    /// The expiry job runs this many days later than the last run.
    Expire(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1_000i64..200_000).prop_map(Op::Earn),
        3 => (1i64..2_500).prop_map(Op::Spend),
        2 => (any::<usize>(), proptest::option::of(1u8..=100)).prop_map(|(i, p)| Op::CancelEarn(i, p)),
        2 => (any::<usize>(), proptest::option::of(1i64..1_500)).prop_map(|(i, p)| Op::CancelSpend(i, p)),
        1 => (-1_500i64..1_500).prop_filter("non-zero", |n| *n != 0).prop_map(Op::Adjust),
        1 => (1i64..20).prop_map(Op::Expire),
    ]
}

/// Business refusals the sequence may run into; anything else fails the test.
fn expected_refusal(s: &Status) {
    let reason = s
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    assert!(
        s.code() == Code::FailedPrecondition
            && [
                "INSUFFICIENT_POINTS",
                "ALREADY_CANCELLED",
                "REFUND_EXCEEDS_PURCHASE",
                "RESTORE_EXCEEDS_SPEND",
                "POINTS_ALREADY_SPENT",
            ]
            .contains(&reason.as_str()),
        "unexpected failure: {s:?}"
    );
}

async fn random_sequences_keep_the_stored_ledger_consistent(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["validity_months", "validity_days"],
        pb::PointsPolicy {
            validity_months: 0,
            validity_days: 30,
            ..Default::default()
        },
    )
    .await;
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(op(), STEPS);
    let mut job_offset = Duration::zero();
    for case in 0..CASES {
        // Half the cases run under a tenant that refuses to reverse spent points.
        let rule = if case % 2 == 0 {
            pb::EarnCancelShortfall::Debt
        } else {
            pb::EarnCancelShortfall::Reject
        };
        app.set_policy(
            &["earn_cancel_shortfall"],
            pb::PointsPolicy {
                earn_cancel_shortfall: rule as i32,
                ..Default::default()
            },
        )
        .await;
        let ops = strategy
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let m = app.member().await;
        let mut earns: Vec<(String, i64)> = Vec::new();
        let mut spends: Vec<String> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let key = format!("c{case}-s{step}");
            match op {
                Op::Earn(amount) => {
                    let t = app.earn(&m, &key, *amount).await.transaction.expect("t");
                    earns.push((t.transaction_id, *amount));
                }
                Op::Spend(points) => match app.spend(&m, &key, *points).await {
                    Ok(r) => spends.push(r.transaction.expect("t").transaction_id),
                    Err(s) => expected_refusal(&s),
                },
                Op::CancelEarn(i, pct) => {
                    if earns.is_empty() {
                        continue;
                    }
                    let (id, amount) = &earns[i % earns.len()];
                    let refund = pct
                        .map(|p| (amount * i64::from(p) / 100).max(1))
                        .unwrap_or(0);
                    let r = pb::CancelRequest {
                        refund_amount_krw: refund,
                        ..cancel_of(id, &key)
                    };
                    if let Err(s) = app.cancel(r).await {
                        expected_refusal(&s);
                    }
                }
                Op::CancelSpend(i, points) => {
                    if spends.is_empty() {
                        continue;
                    }
                    let r = pb::CancelRequest {
                        points: points.unwrap_or(0),
                        ..cancel_of(&spends[i % spends.len()], &key)
                    };
                    if let Err(s) = app.cancel(r).await {
                        expected_refusal(&s);
                    }
                }
                Op::Adjust(points) => {
                    if let Err(s) = app.adjust(&m, *points, &key).await {
                        expected_refusal(&s);
                    }
                }
                Op::Expire(days) => {
                    job_offset += Duration::days(*days);
                    app.app
                        .run_expiry(app.tenant, Utc::now() + job_offset)
                        .await
                        .expect("expiry job");
                }
            }
            app.assert_ledger_consistent(m.uuid()).await;
        }
        // The API's balance is the stored one.
        let b = app.balance(&m).await;
        let history = app.history(&m).await;
        assert_eq!(
            b.balance,
            history.iter().map(|t| t.points).sum::<i64>(),
            "case {case}: {ops:?}"
        );
    }
}
