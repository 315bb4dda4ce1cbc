//! Usage metering: replayed events count once (the consumer's processed-event record, even
//! past JetStream's de-duplication window), messages count on the tenant's own day, malformed
//! events are skipped without blocking the ones behind them, and usage reads validate ranges.
use std::time::Duration;

use chrono::{TimeZone, Utc};
use spharos_kit::testing::TestBackend;
use spharos_proto::{billing as pb, common::Channel};

use crate::helpers::{
    Spawn, TestApp, assert_invalid, kst, member_joined, message_sent, spawn_app, spawn_app_with,
    total,
};

on_both_backends!(
    replayed_usage_events_are_counted_once,
    messages_count_on_the_tenant_day,
    malformed_events_are_skipped_and_ranges_validated,
);

async fn replayed_usage_events_are_counted_once(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("가맹점").await.tenant_id;
    let at = kst(2026, 3, 5, 12);
    let first = message_sent(&id, Channel::Lms, 100, at);
    app.publish(std::slice::from_ref(&first)).await;
    // The same event twice more, as a redelivery after the de-duplication window would.
    app.replay(&first).await;
    app.replay(&first).await;
    let joined = member_joined(&id);
    app.publish(std::slice::from_ref(&joined)).await;
    app.replay(&joined).await;
    // A different event after them: once it is counted, the replays were handled too
    // (one consumer handles its events in order).
    app.publish(&[message_sent(&id, Channel::Lms, 5, at)]).await;
    let u = app
        .wait_for_usage(&id, "2026-03-05", "2026-03-05", Channel::Lms, 105)
        .await;
    assert_eq!(total(&u, Channel::Lms), 105, "replays were counted: {u:?}");
    assert_eq!(u.days.len(), 1);
    assert_eq!(u.days[0].usage_date, "2026-03-05");
    assert_eq!(u.days[0].message_count, 105);
    let status = app
        .wait_for_status(&id, "one member", |s| s.member_count >= 1)
        .await;
    assert_eq!(status.member_count, 1);
    // And it stays so.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let u = app
        .wait_for_usage(&id, "2026-03-05", "2026-03-05", Channel::Lms, 105)
        .await;
    assert_eq!(total(&u, Channel::Lms), 105);
    assert_eq!(
        app.get_tenant(&id)
            .await
            .status
            .expect("status")
            .member_count,
        1
    );
}

async fn messages_count_on_the_tenant_day(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let seoul = app.create_tenant("서울").await.tenant_id;
    let ny = c
        .create_tenant(app.admin(pb::CreateTenantRequest {
            time_zone: "America/New_York".into(),
            ..TestApp::create_request("뉴욕")
        }))
        .await
        .expect("created")
        .into_inner()
        .tenant
        .expect("tenant")
        .tenant_id;
    // 31 March 20:00 UTC: 1 April 05:00 in Seoul, 31 March 16:00 in New York.
    let at = Utc
        .with_ymd_and_hms(2026, 3, 31, 20, 0, 0)
        .single()
        .expect("valid");
    app.publish(&[
        message_sent(&seoul, Channel::Mms, 3, at),
        message_sent(&ny, Channel::Mms, 4, at),
    ])
    .await;
    let s = app
        .wait_for_usage(&seoul, "2026-03-31", "2026-04-01", Channel::Mms, 3)
        .await;
    assert_eq!(
        s.days
            .iter()
            .map(|d| d.usage_date.as_str())
            .collect::<Vec<_>>(),
        ["2026-04-01"]
    );
    let n = app
        .wait_for_usage(&ny, "2026-03-31", "2026-04-01", Channel::Mms, 4)
        .await;
    assert_eq!(
        n.days
            .iter()
            .map(|d| d.usage_date.as_str())
            .collect::<Vec<_>>(),
        ["2026-03-31"]
    );
    // A platform admin reads a tenant's usage by naming it.
    let by_admin = c
        .get_usage(app.admin(pb::GetUsageRequest {
            tenant_id: ny.clone(),
            from_date: "2026-03-01".into(),
            to_date: "2026-03-31".into(),
        }))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(total(&by_admin, Channel::Mms), 4);
    // Each tenant sees only its own usage.
    let seoul_march = c
        .get_usage(app.as_tenant(
            &seoul,
            pb::GetUsageRequest {
                tenant_id: String::new(),
                from_date: "2026-03-01".into(),
                to_date: "2026-03-31".into(),
            },
        ))
        .await
        .expect("read")
        .into_inner();
    assert!(seoul_march.days.is_empty());
}

async fn malformed_events_are_skipped_and_ranges_validated(backend: TestBackend) {
    let app = spawn_app_with(backend, Spawn::default()).await;
    let mut c = app.client.clone();
    let id = app.create_tenant("가맹점").await.tenant_id;
    let at = kst(2026, 6, 1, 12);
    let mut garbage = message_sent(&id, Channel::Sms, 1, at);
    garbage.payload = vec![0xff, 0xff, 0xff];
    app.publish(&[
        message_sent(&id, Channel::Unspecified, 10, at),
        message_sent(&id, Channel::Sms, 0, at),
        message_sent(&id, Channel::Sms, -3, at),
        garbage,
        message_sent(&id, Channel::Email, 2, at),
    ])
    .await;
    let u = app
        .wait_for_usage(&id, "2026-06-01", "2026-06-01", Channel::Email, 2)
        .await;
    assert_eq!(total(&u, Channel::Sms), 0);
    assert_eq!(u.days.len(), 1);

    let usage = |from: &str, to: &str| pb::GetUsageRequest {
        tenant_id: String::new(),
        from_date: from.into(),
        to_date: to.into(),
    };
    let err = c
        .get_usage(app.as_tenant(&id, usage("", "")))
        .await
        .expect_err("missing");
    assert_invalid(&err, &["from_date", "to_date"]);
    let err = c
        .get_usage(app.as_tenant(&id, usage("2026-06-02", "2026-06-01")))
        .await
        .expect_err("reversed");
    assert_invalid(&err, &["to_date"]);
    let err = c
        .get_usage(app.as_tenant(&id, usage("2025-01-01", "2026-06-01")))
        .await
        .expect_err("too long");
    assert_invalid(&err, &["to_date"]);
    let err = c
        .get_usage(app.as_tenant(&id, usage("2026-02-30", "June")))
        .await
        .expect_err("not dates");
    assert_invalid(&err, &["from_date", "to_date"]);
}
