//! Grades: the tenant's table (validated, ids kept), base grade at join, re-evaluation from
//! `points.purchase_recorded` (counted once, however often it is delivered), from
//! `points.earned`, on request, after a table change, and on the schedule as purchases age
//! out of the trailing 12 months.
use std::time::Duration;

use chrono::Utc;
use spharos_kit::testing::{self, TestBackend};
use spharos_member::domain::grade::window_start;
use spharos_proto::{member as pb, points::PointsEarned};
use tonic::Code;

use crate::helpers::{assert_invalid, grade, purchase_envelope, spawn_app, spawn_app_with};

on_both_backends!(
    grades_follow_purchase_events,
    grade_table_and_evaluate_rpc,
    old_purchases_do_not_count,
    schedule_demotes_when_purchases_age_out,
);

async fn grades_follow_purchase_events(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-grades", &["member.grade_changed"]).await;
    let grades = app.set_standard_grades().await;
    let id_of = |name: &str| {
        grades
            .iter()
            .find(|g| g.name == name)
            .expect("grade")
            .grade_id
            .clone()
    };
    let m1 = app
        .join("홍길동", "010-1111-1111")
        .await
        .member
        .expect("member");
    let m2 = app
        .join("임꺽정", "010-2222-2222")
        .await
        .member
        .expect("member");
    assert_eq!(m1.grade_name, "BASIC", "members start at the base grade");
    assert_eq!(m1.grade_id, id_of("BASIC"));

    let purchase = app.publish_purchase(&m1.member_id, "POS-1", 120_000).await;
    app.wait_for_grade(&m1.member_id, "GOLD", Duration::from_secs(10))
        .await;
    let changed: pb::MemberGradeChanged = tap
        .wait_for("member.grade_changed", &m1.member_id)
        .await
        .decode()
        .expect("payload");
    assert_eq!(changed.from_grade_id, id_of("BASIC"));
    assert_eq!(changed.to_grade_id, id_of("GOLD"));
    assert_eq!(changed.to_grade_name, "GOLD");
    assert_eq!(changed.trailing_purchase_krw, 120_000);

    // The same event again, the same till transaction under a new event id, an unknown
    // member and a points.earned: none of them may count the 120,000 twice (which would be
    // VIP) or stop the consumer.
    app.platform
        .bus
        .publish_batch(&[purchase])
        .await
        .expect("replayed");
    app.publish_purchase(&m1.member_id, "POS-1", 120_000).await;
    app.publish_purchase(&uuid::Uuid::now_v7().to_string(), "POS-X", 999_999)
        .await;
    let earned = spharos_kit::bus::Envelope::new(
        "points",
        "earned",
        app.tenant,
        m1.member_id.clone(),
        &PointsEarned {
            member_id: m1.member_id.clone(),
            points: 1_200,
            purchase_amount_krw: 120_000,
            ..Default::default()
        },
    );
    app.platform
        .bus
        .publish_batch(&[earned])
        .await
        .expect("earned");
    // A sentinel behind them: once it is handled, so are they (one consumer, in order).
    app.publish_purchase(&m2.member_id, "POS-2", 100_000).await;
    app.wait_for_grade(&m2.member_id, "GOLD", Duration::from_secs(10))
        .await;
    assert_eq!(app.get_member(&m1.member_id).await.grade_name, "GOLD");
    assert_eq!(
        tap.all("member.grade_changed")
            .iter()
            .filter(|e| e.subject_id == m1.member_id)
            .count(),
        1
    );

    let e = app
        .client
        .clone()
        .evaluate_grades(app.req(pb::EvaluateGradesRequest {
            member_id: m1.member_id.clone(),
        }))
        .await
        .expect("evaluate")
        .into_inner();
    assert_eq!((e.evaluated, e.changed), (1, 0));

    app.publish_purchase(&m1.member_id, "POS-3", 90_000).await;
    app.wait_for_grade(&m1.member_id, "VIP", Duration::from_secs(10))
        .await;
    let to_vip = tap
        .wait_for_n("member.grade_changed", &m1.member_id, 2)
        .await;
    let to_vip: pb::MemberGradeChanged = to_vip
        .iter()
        .map(|e| e.decode::<pb::MemberGradeChanged>().expect("payload"))
        .find(|p| p.to_grade_name == "VIP")
        .expect("VIP event");
    assert_eq!(to_vip.trailing_purchase_krw, 210_000);
    assert_eq!(to_vip.from_grade_id, id_of("GOLD"));
}

async fn grade_table_and_evaluate_rpc(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();

    let err = c
        .set_grades(app.req(pb::SetGradesRequest {
            grades: vec![
                grade("", 0, 100),
                grade("GOLD", -5, 20_000),
                grade("GOLD", 0, 0),
            ],
        }))
        .await
        .expect_err("invalid table");
    assert_invalid(
        &err,
        &[
            "grades[0].name",
            "grades[1].min_purchase_krw",
            "grades[1].points_rate_bp",
            "grades[2].name",
            "grades[2].min_purchase_krw",
            "grades",
        ],
    );
    let err = c
        .set_grades(app.req(pb::SetGradesRequest {
            grades: vec![grade("GOLD", 10, 0)],
        }))
        .await
        .expect_err("no base grade");
    assert_invalid(&err, &["grades"]);

    // Members who joined before any table exist get placed when one is set.
    let m = app
        .join("홍길동", "010-1111-1111")
        .await
        .member
        .expect("member");
    assert_eq!(m.grade_id, "");
    let set = c
        .set_grades(app.req(pb::SetGradesRequest {
            grades: vec![
                grade("VIP", 200_000, 300),
                grade("BASIC", 0, 100),
                grade("GOLD", 100_000, 200),
            ],
        }))
        .await
        .expect("set")
        .into_inner()
        .grades;
    let names: Vec<_> = set.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["BASIC", "GOLD", "VIP"], "lowest threshold first");
    assert_eq!(app.get_member(&m.member_id).await.grade_name, "BASIC");
    let listed = c
        .list_grades(app.req(pb::ListGradesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .grades;
    assert_eq!(listed, set);

    app.publish_purchase(&m.member_id, "POS-1", 150_000).await;
    app.wait_for_grade(&m.member_id, "GOLD", Duration::from_secs(10))
        .await;

    // Raising GOLD above the member's purchases moves them back, in the same call; the
    // grades named by id keep it.
    let mut gold = set[1].clone();
    gold.min_purchase_krw = 500_000;
    let mut vip = set[2].clone();
    vip.min_purchase_krw = 1_000_000;
    let reset = c
        .set_grades(app.req(pb::SetGradesRequest {
            grades: vec![set[0].clone(), gold, vip],
        }))
        .await
        .expect("reset")
        .into_inner()
        .grades;
    assert_eq!(
        reset.iter().map(|g| g.grade_id.clone()).collect::<Vec<_>>(),
        set.iter().map(|g| g.grade_id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(app.get_member(&m.member_id).await.grade_name, "BASIC");

    app.join("임꺽정", "010-2222-2222").await;
    let all = c
        .evaluate_grades(app.req(pb::EvaluateGradesRequest::default()))
        .await
        .expect("evaluate all")
        .into_inner();
    assert_eq!((all.evaluated, all.changed), (2, 0));
    let err = c
        .evaluate_grades(app.req(pb::EvaluateGradesRequest {
            member_id: "x".into(),
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["member_id"]);
    let err = c
        .evaluate_grades(app.req(pb::EvaluateGradesRequest {
            member_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown member");
    assert_eq!(err.code(), Code::NotFound);
}

async fn old_purchases_do_not_count(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_standard_grades().await;
    let m = app
        .join("홍길동", "010-1111-1111")
        .await
        .member
        .expect("member");
    let m2 = app
        .join("임꺽정", "010-2222-2222")
        .await
        .member
        .expect("member");
    let thirteen_months_ago = Utc::now() - chrono::Months::new(13);
    let old = purchase_envelope(
        app.tenant,
        &m.member_id,
        "OLD-1",
        500_000,
        thirteen_months_ago,
    );
    app.platform
        .bus
        .publish_batch(&[old])
        .await
        .expect("published");
    app.publish_purchase(&m2.member_id, "NEW-1", 100_000).await;
    app.wait_for_grade(&m2.member_id, "GOLD", Duration::from_secs(10))
        .await;
    assert_eq!(app.get_member(&m.member_id).await.grade_name, "BASIC");
}

async fn schedule_demotes_when_purchases_age_out(backend: TestBackend) {
    let (mut settings, dir) = testing::settings(backend).await;
    settings.member.grade_evaluation_interval_seconds = 1;
    let app = spawn_app_with(settings, dir).await;
    let tap = app.tap("test-schedule", &["member.grade_changed"]).await;
    app.set_standard_grades().await;
    let m = app
        .join("홍길동", "010-1111-1111")
        .await
        .member
        .expect("member");
    // Inside the 12-month window for four more seconds.
    let almost_old = window_start(Utc::now()) + chrono::Duration::seconds(4);
    let env = purchase_envelope(app.tenant, &m.member_id, "POS-1", 150_000, almost_old);
    app.platform
        .bus
        .publish_batch(&[env])
        .await
        .expect("published");
    app.wait_for_grade(&m.member_id, "GOLD", Duration::from_secs(10))
        .await;
    // No event will announce the ageing: only the schedule can notice it.
    app.wait_for_grade(&m.member_id, "BASIC", Duration::from_secs(15))
        .await;
    let changes = tap
        .wait_for_n("member.grade_changed", &m.member_id, 2)
        .await;
    let last: pb::MemberGradeChanged = changes[1].decode().expect("payload");
    assert_eq!(last.to_grade_name, "BASIC");
    assert_eq!(last.trailing_purchase_krw, 0);
}
