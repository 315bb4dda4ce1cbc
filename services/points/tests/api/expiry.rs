//! The expiry job: notices 2 months, 1 month and 3 days before a lot's last day (each once
//! per lot and horizon, the nearest only when several are due), the RunExpiry RPC, and the
//! schedule that runs on its own.
use chrono::{DateTime, Duration, Months, Utc};
use chrono_tz::Asia::Seoul;
use spharos_kit::testing::TestBackend;
use spharos_points::{PointsOptions, domain::expiry::start_of_day};
use spharos_proto::points::{self as pb, PointsExpiryNotice};
use tonic::Code;

use crate::helpers::{spawn_app, spawn_app_with};

on_both_backends!(
    notices_go_out_two_months_one_month_and_three_days_before_once_each,
    a_lot_born_inside_a_horizon_gets_the_nearest_notice_only,
    run_expiry_needs_the_admin_permission_and_sends_due_notices,
    the_schedule_runs_the_job_on_its_own,
);

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("valid")
}

async fn notices_go_out_two_months_one_month_and_three_days_before_once_each(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("notice-test", &["points.expiry_notice"]).await;
    let m = app.member().await;
    let t = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    let expire = time(&t.expire_time);
    let last_day = spharos_kit::time::local_date(expire, Seoul);
    let two = start_of_day(
        last_day.checked_sub_months(Months::new(2)).expect("date"),
        Seoul,
    );
    let one = start_of_day(
        last_day.checked_sub_months(Months::new(1)).expect("date"),
        Seoul,
    );
    let three = start_of_day(last_day - Duration::days(3), Seoul);
    let run = |at| app.app.run_expiry(app.tenant, at);

    assert_eq!(
        run(two - Duration::microseconds(1))
            .await
            .expect("run")
            .notices,
        0
    );
    assert_eq!(run(two).await.expect("run").notices, 1);
    assert_eq!(run(two + Duration::days(1)).await.expect("run").notices, 0);
    assert_eq!(run(one).await.expect("run").notices, 1);
    assert_eq!(run(one).await.expect("run").notices, 0);
    assert_eq!(run(three).await.expect("run").notices, 1);
    assert_eq!(run(expire).await.expect("run").notices, 0);
    let notices = tap.wait_for_n("points.expiry_notice", &m.id, 3).await;
    let horizons: Vec<i32> = notices
        .iter()
        .map(|e| e.decode::<PointsExpiryNotice>().expect("decode").horizon)
        .collect();
    assert_eq!(
        horizons,
        [
            pb::ExpiryNoticeHorizon::TwoMonths as i32,
            pb::ExpiryNoticeHorizon::OneMonth as i32,
            pb::ExpiryNoticeHorizon::ThreeDays as i32
        ]
    );
    let n: PointsExpiryNotice = notices[2].decode().expect("decode");
    assert_eq!(
        (n.points, n.expire_date.as_str()),
        (100, last_day.to_string().as_str())
    );
    // The last day passes: the points expire, and no notice follows.
    let run_after = run(expire + Duration::microseconds(1)).await.expect("run");
    assert_eq!((run_after.expired_points, run_after.notices), (100, 0));
    assert_eq!(tap.all("points.expiry_notice").len(), 3);
}

async fn a_lot_born_inside_a_horizon_gets_the_nearest_notice_only(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("near-notice-test", &["points.expiry_notice"]).await;
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
    let t = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    let last_day = spharos_kit::time::local_date(time(&t.expire_time), Seoul);
    // Two months and one month before are both past: one notice, the nearer (one month).
    let now = Utc::now();
    assert_eq!(
        app.app
            .run_expiry(app.tenant, now)
            .await
            .expect("run")
            .notices,
        1
    );
    assert_eq!(
        app.app
            .run_expiry(app.tenant, now)
            .await
            .expect("run")
            .notices,
        0
    );
    let three = start_of_day(last_day - Duration::days(3), Seoul);
    assert_eq!(
        app.app
            .run_expiry(app.tenant, three)
            .await
            .expect("run")
            .notices,
        1
    );
    let notices = tap.wait_for_n("points.expiry_notice", &m.id, 2).await;
    let horizons: Vec<i32> = notices
        .iter()
        .map(|e| e.decode::<PointsExpiryNotice>().expect("decode").horizon)
        .collect();
    assert_eq!(
        horizons,
        [
            pb::ExpiryNoticeHorizon::OneMonth as i32,
            pb::ExpiryNoticeHorizon::ThreeDays as i32
        ]
    );
}

async fn run_expiry_needs_the_admin_permission_and_sends_due_notices(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(&["validity_months", "validity_days"], short_validity())
        .await;
    let mut client = app.points.clone();
    let err = client
        .run_expiry(app.req(pb::RunExpiryRequest {}))
        .await
        .expect_err("till token");
    assert_eq!(err.code(), Code::PermissionDenied);
    let a = app.member().await;
    app.earn(&a, "R-1", 10_000).await;
    let run = client
        .run_expiry(app.admin(pb::RunExpiryRequest {}))
        .await
        .expect("run")
        .into_inner();
    assert_eq!(
        (run.expired_members, run.expired_points, run.notices),
        (0, 0, 1)
    );
    let again = client
        .run_expiry(app.admin(pb::RunExpiryRequest {}))
        .await
        .expect("run")
        .into_inner();
    assert_eq!(again.notices, 0);
}

async fn the_schedule_runs_the_job_on_its_own(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        PointsOptions {
            expiry_interval: std::time::Duration::from_secs(1),
        },
    )
    .await;
    let tap = app.tap("schedule-test", &["points.expiry_notice"]).await;
    app.set_policy(&["validity_months", "validity_days"], short_validity())
        .await;
    let b = app.member().await;
    app.earn(&b, "R-2", 10_000).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tap.all("points.expiry_notice").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule sent no notice within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Later passes find nothing new: one notice per lot and horizon.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let notices = tap.all("points.expiry_notice");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].subject_id, b.id);
}

fn short_validity() -> pb::PointsPolicy {
    pb::PointsPolicy {
        validity_months: 0,
        validity_days: 10,
        ..Default::default()
    }
}
