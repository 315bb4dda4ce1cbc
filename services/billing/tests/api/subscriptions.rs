//! Subscriptions: subscribe, suspend, resume, cancel and subscribe again; every rule and bad
//! input answered with its code and reason; a tenant reads its own subscription.
use spharos_kit::testing::TestBackend;
use spharos_proto::billing as pb;
use tonic::Code;

use crate::helpers::{Spawn, assert_invalid, assert_reason, kst, module_fees, spawn_app_with};

on_both_backends!(the_subscription_lifecycle, bad_plan_requests_are_refused,);

async fn the_subscription_lifecycle(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 3, 10, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let t = app.create_tenant("행복베이커리").await;
    let id = t.tenant_id.clone();

    let sub = app.subscribe(&id, pb::Plan::Basic, &[]).await;
    assert_eq!(sub.plan, i32::from(pb::Plan::Basic));
    assert_eq!(sub.status, i32::from(pb::SubscriptionStatus::Active));
    assert_eq!(sub.start_date, "2026-03-10");
    assert!(sub.module_fees.is_empty());

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Basic.into(),
            module_fees: vec![],
        }))
        .await
        .expect_err("twice");
    assert_reason(&err, Code::AlreadyExists, "ALREADY_SUBSCRIBED");

    // The tenant reads its own subscription with its own token.
    let own = c
        .get_subscription(app.as_tenant(&id, pb::GetSubscriptionRequest::default()))
        .await
        .expect("own subscription")
        .into_inner();
    assert_eq!(
        own.subscription.map(|s| s.subscription_id),
        Some(sub.subscription_id.clone())
    );
    let status = own.status.expect("status");
    assert_eq!(status.plan, i32::from(pb::Plan::Basic));
    assert!(status.plan_compliant);
    assert_eq!((status.member_limit, status.store_limit), (300_000, 100));

    // Suspend (with a reason), twice is refused, and tokens cannot be issued meanwhile.
    let s = c
        .suspend_subscription(app.admin(pb::SuspendSubscriptionRequest {
            tenant_id: id.clone(),
            reason: "미납 (unpaid)".into(),
        }))
        .await
        .expect("suspended")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(s.status, i32::from(pb::SubscriptionStatus::Suspended));
    let err = c
        .suspend_subscription(app.admin(pb::SuspendSubscriptionRequest {
            tenant_id: id.clone(),
            reason: String::new(),
        }))
        .await
        .expect_err("already suspended");
    assert_reason(&err, Code::FailedPrecondition, "SUBSCRIPTION_NOT_ACTIVE");
    let err = c
        .issue_token(app.admin(pb::IssueTokenRequest {
            tenant_id: id.clone(),
            subject: "pos-1".into(),
            ..Default::default()
        }))
        .await
        .expect_err("suspended tenants get no tokens");
    assert_reason(&err, Code::FailedPrecondition, "SUBSCRIPTION_SUSPENDED");

    let r = c
        .resume_subscription(app.admin(pb::ResumeSubscriptionRequest {
            tenant_id: id.clone(),
        }))
        .await
        .expect("resumed")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(r.status, i32::from(pb::SubscriptionStatus::Active));
    let err = c
        .resume_subscription(app.admin(pb::ResumeSubscriptionRequest {
            tenant_id: id.clone(),
        }))
        .await
        .expect_err("not suspended");
    assert_reason(&err, Code::FailedPrecondition, "SUBSCRIPTION_NOT_SUSPENDED");

    // Cancel: billed through today; no more changes; a new subscription may start.
    app.clock.set(kst(2026, 3, 20, 15));
    let cancelled = c
        .cancel_subscription(app.admin(pb::CancelSubscriptionRequest {
            tenant_id: id.clone(),
        }))
        .await
        .expect("cancelled")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(
        cancelled.status,
        i32::from(pb::SubscriptionStatus::Cancelled)
    );
    assert_eq!(cancelled.end_date, "2026-03-20");
    let err = c
        .change_plan(app.admin(pb::ChangePlanRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Custom.into(),
            module_fees: module_fees(&[(pb::Module::Membership, 100_000)]),
            timing: pb::ChangeTiming::Immediate.into(),
        }))
        .await
        .expect_err("cancelled");
    assert_reason(&err, Code::FailedPrecondition, "SUBSCRIPTION_CANCELLED");
    let err = c
        .cancel_subscription(app.admin(pb::CancelSubscriptionRequest {
            tenant_id: id.clone(),
        }))
        .await
        .expect_err("cancelled twice");
    assert_reason(&err, Code::FailedPrecondition, "SUBSCRIPTION_CANCELLED");

    app.clock.set(kst(2026, 3, 25, 11));
    let again = app
        .subscribe(&id, pb::Plan::Custom, &[(pb::Module::Membership, 100_000)])
        .await;
    assert_ne!(again.subscription_id, sub.subscription_id);
    assert_eq!(again.status, i32::from(pb::SubscriptionStatus::Active));
    assert_eq!(again.start_date, "2026-03-25");
    assert_eq!(again.plan, i32::from(pb::Plan::Custom));

    // March: Basic 3/10–3/20 (11 days) and Custom 3/25–3/31 (7 days).
    //   Basic:      30,000 × 11 / 31 = 330,000 / 31 = 10,645.16… → 10,645
    //   Membership: 100,000 × 7 / 31 = 700,000 / 31 = 22,580.64… → 22,580
    //   subtotal 33,225; VAT floor(3,322.5) = 3,322; total 36,547
    app.clock.set(kst(2026, 4, 1, 0));
    let inv = app
        .close_month(&id, "2026-03")
        .await
        .invoice
        .expect("invoice");
    let amounts: Vec<(&str, i64, i32)> = inv
        .lines
        .iter()
        .map(|l| (l.code.as_str(), l.amount_krw, l.days_active))
        .collect();
    assert_eq!(
        amounts,
        [("BASIC", 10_645, 11), ("MODULE_MEMBERSHIP", 22_580, 7)]
    );
    assert_eq!(
        (inv.subtotal_krw, inv.vat_krw, inv.total_krw),
        (33_225, 3_322, 36_547)
    );
}

async fn bad_plan_requests_are_refused(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 3, 10, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let t = app.create_tenant("가맹점").await;
    let id = t.tenant_id.clone();

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            plan: pb::Plan::Basic.into(),
            module_fees: vec![],
        }))
        .await
        .expect_err("unknown tenant");
    assert_eq!(err.code(), Code::NotFound);

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: "x".into(),
            plan: pb::Plan::Unspecified.into(),
            module_fees: vec![],
        }))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["tenant_id", "plan"]);

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Basic.into(),
            module_fees: module_fees(&[(pb::Module::Campaign, 10)]),
        }))
        .await
        .expect_err("basic with fees");
    assert_invalid(&err, &["module_fees"]);

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Custom.into(),
            module_fees: vec![],
        }))
        .await
        .expect_err("custom without fees");
    assert_invalid(&err, &["module_fees"]);

    let err = c
        .subscribe(app.admin(pb::SubscribeRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Custom.into(),
            module_fees: module_fees(&[
                (pb::Module::Unspecified, 1),
                (pb::Module::Analytics, -1),
                (pb::Module::Analytics, 5),
            ]),
        }))
        .await
        .expect_err("bad fees");
    assert_invalid(
        &err,
        &[
            "module_fees[0].module",
            "module_fees[1].monthly_fee_krw",
            "module_fees[2].module",
        ],
    );

    let change = |plan: pb::Plan, timing: pb::ChangeTiming| pb::ChangePlanRequest {
        tenant_id: id.clone(),
        plan: plan.into(),
        module_fees: if plan == pb::Plan::Custom {
            module_fees(&[(pb::Module::Membership, 1_000)])
        } else {
            vec![]
        },
        timing: timing.into(),
    };
    let err = c
        .change_plan(app.admin(change(pb::Plan::Custom, pb::ChangeTiming::Immediate)))
        .await
        .expect_err("not subscribed");
    assert_reason(&err, Code::FailedPrecondition, "NOT_SUBSCRIBED");

    app.subscribe(&id, pb::Plan::Basic, &[]).await;
    let err = c
        .change_plan(app.admin(change(pb::Plan::Custom, pb::ChangeTiming::Unspecified)))
        .await
        .expect_err("no timing");
    assert_invalid(&err, &["timing"]);
    let err = c
        .change_plan(app.admin(change(pb::Plan::Basic, pb::ChangeTiming::Immediate)))
        .await
        .expect_err("same plan");
    assert_reason(&err, Code::FailedPrecondition, "PLAN_UNCHANGED");

    // A scheduled change is visible, and asking for the current plan withdraws it.
    let scheduled = c
        .change_plan(app.admin(change(pb::Plan::Custom, pb::ChangeTiming::NextCycle)))
        .await
        .expect("scheduled")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(
        scheduled.plan,
        i32::from(pb::Plan::Basic),
        "still Basic this month"
    );
    let next = scheduled.scheduled_change.expect("a scheduled change");
    assert_eq!(next.effective_date, "2026-04-01");
    assert_eq!(next.plan, i32::from(pb::Plan::Custom));
    let withdrawn = c
        .change_plan(app.admin(change(pb::Plan::Basic, pb::ChangeTiming::NextCycle)))
        .await
        .expect("withdrawn")
        .into_inner()
        .subscription
        .expect("subscription");
    assert!(withdrawn.scheduled_change.is_none());

    let err = c
        .suspend_subscription(app.admin(pb::SuspendSubscriptionRequest {
            tenant_id: id.clone(),
            reason: "가".repeat(201),
        }))
        .await
        .expect_err("reason too long");
    assert_invalid(&err, &["reason"]);
}
