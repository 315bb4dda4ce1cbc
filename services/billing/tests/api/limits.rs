//! Plan limits: a Basic tenant reaching the store limit (default catalogue: 100 open stores) or
//! the member limit (a configured catalogue) emits `billing.plan_limit_exceeded` once and shows
//! it in its status; nothing is cut off; Custom tenants have no limits.
use std::time::Duration;

use spharos_billing::BillingCatalogue;
use spharos_kit::testing::TestBackend;
use spharos_proto::billing::{self as pb, PlanLimitExceeded};

use crate::helpers::{
    Spawn, member_joined, member_withdrawn, module_fees, spawn_app, spawn_app_with, store_event,
};

const TOPIC: &str = "billing.plan_limit_exceeded";

on_both_backends!(
    the_store_limit_is_signalled_once,
    the_member_limit_follows_the_catalogue,
);

async fn the_store_limit_is_signalled_once(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("limit-tap", &[TOPIC]).await;
    let id = app.create_tenant("가맹점").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;

    let stores: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let created: Vec<_> = stores[..99]
        .iter()
        .map(|s| store_event(&id, "store_created", s, true))
        .collect();
    app.publish(&created).await;
    let s = app
        .wait_for_status(&id, "99 stores", |s| s.store_count == 99)
        .await;
    assert!(s.plan_compliant, "99 stores is within Basic: {s:?}");
    assert!(tap.all(TOPIC).is_empty());

    // The 100th store reaches the limit.
    app.publish(&[store_event(&id, "store_created", &stores[99], true)])
        .await;
    let event = tap.wait_for_n(TOPIC, &id, 1).await.remove(0);
    let msg: PlanLimitExceeded = event.decode().expect("payload");
    assert_eq!(msg.reason, "BASIC_STORE_LIMIT_REACHED");
    assert_eq!((msg.store_count, msg.store_limit), (100, 100));
    assert_eq!(msg.tenant_id, id);
    let s = app
        .wait_for_status(&id, "not compliant", |s| !s.plan_compliant)
        .await;
    assert_eq!(s.plan_compliance_reason, "BASIC_STORE_LIMIT_REACHED");
    assert!(
        s.plan_compliance_message.contains("매장"),
        "{}",
        s.plan_compliance_message
    );
    assert!(s.plan_limit_exceeded_time.is_some());

    // More stores, a closed one, and a re-opened one: no second signal.
    app.publish(&[
        store_event(&id, "store_created", &stores[100], true),
        store_event(&id, "store_updated", &stores[0], false),
        store_event(&id, "store_updated", &stores[1], false),
        store_event(&id, "store_updated", &stores[1], true),
    ])
    .await;
    let s = app
        .wait_for_status(&id, "100 open stores after the updates", |s| {
            s.store_count == 100
        })
        .await;
    assert!(!s.plan_compliant);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tap.all(TOPIC).len(), 1, "signalled once");

    // Nothing is cut off: the tenant keeps working; moving to Custom makes it compliant.
    app.client
        .clone()
        .change_plan(app.admin(pb::ChangePlanRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Custom.into(),
            module_fees: module_fees(&[(pb::Module::Membership, 1_000_000)]),
            timing: pb::ChangeTiming::Immediate.into(),
        }))
        .await
        .expect("changed");
    let s = app.get_tenant(&id).await.status.expect("status");
    assert!(s.plan_compliant);
    assert_eq!((s.member_limit, s.store_limit), (0, 0));
    assert!(s.plan_limit_exceeded_time.is_none());
}

async fn the_member_limit_follows_the_catalogue(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            catalogue: BillingCatalogue {
                basic_member_limit: 3,
                ..BillingCatalogue::default()
            },
            ..Spawn::default()
        },
    )
    .await;
    let tap = app.tap("limit-tap", &[TOPIC]).await;
    let basic = app.create_tenant("베이직").await.tenant_id;
    let custom = app.create_tenant("커스텀").await.tenant_id;
    let late = app.create_tenant("나중에 구독").await.tenant_id;
    app.subscribe(&basic, pb::Plan::Basic, &[]).await;
    app.subscribe(&custom, pb::Plan::Custom, &[(pb::Module::Membership, 1)])
        .await;

    // 2 joined, 1 withdrew, 2 joined: 3 members reach the limit of 3.
    // The withdrawal is published before its join: events of different topics may arrive in
    // any order, and the count must not drift.
    let leaver = member_joined(&basic);
    app.publish(&[member_withdrawn(&leaver), member_joined(&basic)])
        .await;
    app.publish(&[leaver]).await;
    let s = app
        .wait_for_status(&basic, "one member", |s| s.member_count == 1)
        .await;
    assert!(s.plan_compliant);
    app.publish(&[member_joined(&basic), member_joined(&basic)])
        .await;
    let event = tap.wait_for_n(TOPIC, &basic, 1).await.remove(0);
    let msg: PlanLimitExceeded = event.decode().expect("payload");
    assert_eq!(msg.reason, "BASIC_MEMBER_LIMIT_REACHED");
    assert_eq!((msg.member_count, msg.member_limit), (3, 3));
    let s = app.get_tenant(&basic).await.status.expect("status");
    assert!(!s.plan_compliant);
    assert_eq!(s.member_count, 3);
    assert_eq!(s.member_limit, 3);

    // Custom has no member limit.
    let many: Vec<_> = (0..5).map(|_| member_joined(&custom)).collect();
    app.publish(&many).await;
    let s = app
        .wait_for_status(&custom, "five members", |s| s.member_count == 5)
        .await;
    assert!(s.plan_compliant);

    // A tenant already over the limit is signalled when it subscribes to Basic.
    let members: Vec<_> = (0..4).map(|_| member_joined(&late)).collect();
    app.publish(&members).await;
    app.wait_for_status(&late, "four members", |s| s.member_count == 4)
        .await;
    app.subscribe(&late, pb::Plan::Basic, &[]).await;
    tap.wait_for_n(TOPIC, &late, 1).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tap.all(TOPIC).len(),
        2,
        "one signal each for basic and late"
    );
}
