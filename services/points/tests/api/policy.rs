//! The points policy: the built-in default, versioned masked updates recorded on each earn,
//! optimistic concurrency, permissions, validation, and the preview that writes nothing.
use chrono::Utc;
use chrono_tz::Asia::Seoul;
use spharos_kit::testing::TestBackend;
use spharos_proto::{member as mpb, points as pb};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, mask, spawn_app};

on_both_backends!(
    updates_are_versioned_and_earns_record_their_version,
    policy_updates_need_the_admin_permission_and_valid_fields,
    preview_applies_grade_store_category_promotions_and_cap_without_writing,
);

async fn updates_are_versioned_and_earns_record_their_version(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut client = app.points.clone();
    let p = client
        .get_points_policy(app.req(pb::GetPointsPolicyRequest {}))
        .await
        .expect("policy")
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(
        (p.version, p.base_rate_bp, p.validity_months, p.spend_unit),
        (0, 100, 60, 1)
    );
    assert_eq!(
        p.earn_cancel_shortfall,
        pb::EarnCancelShortfall::Debt as i32
    );

    let v1 = app
        .set_policy(
            &["base_rate_bp"],
            pb::PointsPolicy {
                base_rate_bp: 250,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        (v1.version, v1.base_rate_bp, v1.validity_months),
        (1, 250, 60)
    );
    assert_eq!(v1.updated_by, crate::helpers::ADMIN);
    let m = app.member().await;
    let t = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    assert_eq!((t.points, t.policy_version, t.rate_bp), (250, 1, 250));

    let v2 = app
        .set_policy(
            &["store_multipliers"],
            pb::PointsPolicy {
                store_multipliers: vec![pb::StoreMultiplier {
                    store_code: "GN001".into(),
                    multiplier_bp: 20_000,
                }],
                ..Default::default()
            },
        )
        .await;
    assert_eq!((v2.version, v2.base_rate_bp), (2, 250));
    let t = app.earn(&m, "R-2", 10_000).await.transaction.expect("t");
    assert_eq!((t.points, t.policy_version), (500, 2));

    // An editor who loaded version 1 cannot overwrite version 2.
    let err = client
        .update_points_policy(app.admin(pb::UpdatePointsPolicyRequest {
            policy: Some(pb::PointsPolicy {
                base_rate_bp: 1,
                ..Default::default()
            }),
            update_mask: mask(&["base_rate_bp"]),
            expected_version: 1,
        }))
        .await
        .expect_err("stale");
    assert_reason(&err, Code::FailedPrecondition, "POLICY_VERSION_CONFLICT");
    let current = client
        .get_points_policy(app.req(pb::GetPointsPolicyRequest {}))
        .await
        .expect("policy")
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(current, v2);
}

async fn policy_updates_need_the_admin_permission_and_valid_fields(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut client = app.points.clone();
    let update = |policy: pb::PointsPolicy, paths: &[&str]| pb::UpdatePointsPolicyRequest {
        policy: Some(policy),
        update_mask: mask(paths),
        expected_version: 0,
    };
    let err = client
        .update_points_policy(app.req(update(pb::PointsPolicy::default(), &["base_rate_bp"])))
        .await
        .expect_err("till token");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .update_points_policy(app.admin(pb::UpdatePointsPolicyRequest {
            policy: None,
            update_mask: None,
            expected_version: 0,
        }))
        .await
        .expect_err("no mask");
    assert_invalid(&err, &["update_mask"]);
    let err = client
        .update_points_policy(app.admin(update(pb::PointsPolicy::default(), &["version"])))
        .await
        .expect_err("output only");
    assert_invalid(&err, &["update_mask"]);
    let bad = pb::PointsPolicy {
        base_rate_bp: 20_000,
        grade_rates: vec![pb::GradeRate {
            grade_id: "gold".into(),
            rate_bp: 100,
        }],
        promotions: vec![pb::Promotion {
            name: "연말".into(),
            start_date: "2026-12-31".into(),
            end_date: "2026-13-01".into(),
            store_codes: vec![],
            multiplier_bp: 20_000,
            bonus_points: 0,
        }],
        validity_months: 0,
        validity_days: 0,
        spend_unit: 0,
        ..Default::default()
    };
    let err = client
        .update_points_policy(app.admin(update(
            bad,
            &[
                "base_rate_bp",
                "grade_rates",
                "promotions",
                "validity_months",
                "validity_days",
                "spend_unit",
            ],
        )))
        .await
        .expect_err("invalid");
    assert_invalid(
        &err,
        &[
            "policy.base_rate_bp",
            "policy.grade_rates[0].grade_id",
            "policy.promotions[0].end_date",
            "policy.validity_months",
            "policy.spend_unit",
        ],
    );
    // Nothing was stored.
    let p = client
        .get_points_policy(app.req(pb::GetPointsPolicyRequest {}))
        .await
        .expect("policy")
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(p.version, 0);
}

async fn preview_applies_grade_store_category_promotions_and_cap_without_writing(
    backend: TestBackend,
) {
    let app = spawn_app(backend).await;
    let grades = app
        .members
        .clone()
        .set_grades(app.req(mpb::SetGradesRequest {
            grades: vec![mpb::Grade {
                grade_id: String::new(),
                name: "BASIC".into(),
                min_purchase_krw: 0,
                points_rate_bp: 100,
            }],
        }))
        .await
        .expect("grades")
        .into_inner()
        .grades;
    let basic = grades[0].grade_id.clone();
    let today = spharos_kit::time::local_date(Utc::now(), Seoul).to_string();
    app.set_policy(
        &[
            "grade_rates",
            "store_multipliers",
            "category_multipliers",
            "promotions",
            "max_points_per_earn",
        ],
        pb::PointsPolicy {
            // The policy overrides the member service's 1 % for BASIC.
            grade_rates: vec![pb::GradeRate {
                grade_id: basic,
                rate_bp: 300,
            }],
            store_multipliers: vec![pb::StoreMultiplier {
                store_code: "GN001".into(),
                multiplier_bp: 15_000,
            }],
            category_multipliers: vec![pb::CategoryMultiplier {
                category: "beverage".into(),
                multiplier_bp: 20_000,
            }],
            promotions: vec![pb::Promotion {
                name: "오늘의 보너스".into(),
                start_date: today.clone(),
                end_date: today,
                store_codes: vec!["GN001".into()],
                multiplier_bp: 0,
                bonus_points: 50,
            }],
            max_points_per_earn: 5_000,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let preview = |store: &str, amount: i64, items: Vec<pb::LineItem>| pb::PreviewEarnRequest {
        member: m.by_card(),
        store_code: store.into(),
        amount_krw: amount,
        items,
        occurred_time: None,
    };
    let items = vec![
        pb::LineItem {
            sku: "LATTE".into(),
            category: "beverage".into(),
            amount_krw: 10_000,
            quantity: 2,
        },
        pb::LineItem {
            sku: "CAKE".into(),
            category: "bakery".into(),
            amount_krw: 5_555,
            quantity: 1,
        },
    ];
    let mut client = app.points.clone();
    let q = client
        .preview_earn(app.req(preview("GN001", 15_555, items)))
        .await
        .expect("preview")
        .into_inner()
        .quote
        .expect("quote");
    // (10,000 × 2 + 5,555) × 3 % × 1.5 = 1,149.975 → 1,149, + 50 bonus.
    assert_eq!((q.points, q.rate_bp, q.bonus_points), (1_199, 300, 50));
    assert_eq!(q.promotions, ["오늘의 보너스"]);
    assert!(!q.capped && !q.below_minimum);
    assert_eq!(q.policy_version, 1);
    let q = client
        .preview_earn(app.req(preview("HD002", 10_000_000, vec![])))
        .await
        .expect("preview")
        .into_inner()
        .quote
        .expect("quote");
    assert!(q.capped);
    assert_eq!(q.points, 5_000);
    let err = client
        .preview_earn(app.req(preview("", 0, vec![])))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["store_code", "amount_krw"]);
    // Nothing was written.
    assert!(app.history(&m).await.is_empty());
    assert_eq!(app.balance(&m).await.balance, 0);
}
