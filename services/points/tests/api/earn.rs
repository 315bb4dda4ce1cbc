//! Earning: the grade rate and policy, lots expiring at the end of the tenant-zone day,
//! pending periods, the events for analytics and grades, and every bad input.
use chrono::{Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Seoul;
use spharos_kit::{grpc::timestamp, testing::TestBackend};
use spharos_proto::{
    common::{MemberRef, member_ref},
    member as mpb,
    points::{self as pb, PointsEarned, PointsExpired, PurchaseRecorded},
};
use tonic::{Code, Request};

use crate::helpers::{assert_invalid, assert_reason, earn_request, spawn_app, spend_request};

on_both_backends!(
    earns_by_id_and_by_card_at_the_grade_rate_and_announces_it,
    bad_earns_name_every_field_and_unknown_members_are_not_found,
    a_purchase_at_23_30_kst_expires_at_the_end_of_the_korean_day,
    pending_points_become_usable_after_the_pending_days,
    a_purchase_below_the_minimum_earns_nothing_but_counts_for_grades,
    one_receipt_earns_once,
    purchases_reach_the_member_service_and_move_the_grade,
);

async fn earns_by_id_and_by_card_at_the_grade_rate_and_announces_it(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("earn-test", &["points.*"]).await;
    // The member service's grade table sets the rate (2 %); the policy keeps the base 1 %.
    app.members
        .clone()
        .set_grades(app.req(mpb::SetGradesRequest {
            grades: vec![mpb::Grade {
                grade_id: String::new(),
                name: "BASIC".into(),
                min_purchase_krw: 0,
                points_rate_bp: 200,
            }],
        }))
        .await
        .expect("grades set");
    let m = app.member().await;
    let first = app.earn(&m, "R-1", 12_345).await;
    let t = first.transaction.expect("transaction");
    assert_eq!(t.points, 246);
    assert_eq!(t.r#type, pb::TransactionType::Earn as i32);
    assert_eq!(t.rate_bp, 200);
    assert_eq!(t.policy_version, 0);
    assert_eq!(t.balance_after, 246);
    assert_eq!(
        (t.store_code.as_str(), t.pos_transaction_id.as_str()),
        ("GN001", "R-1")
    );
    // Five years, to the end of that Korean day.
    let today = spharos_kit::time::local_date(Utc::now(), Seoul);
    let expire = spharos_kit::time::end_of_day(
        today
            .checked_add_months(chrono::Months::new(60))
            .expect("date"),
        Seoul,
    );
    assert_eq!(t.expire_time, Some(timestamp(expire)));

    let mut by_card = earn_request(&m, "R-2", 30_000);
    by_card.member = m.by_card();
    by_card.items = vec![
        pb::LineItem {
            sku: "AMERICANO".into(),
            category: "beverage".into(),
            amount_krw: 20_000,
            quantity: 4,
        },
        pb::LineItem {
            sku: "BAGEL".into(),
            category: "bakery".into(),
            amount_krw: 10_000,
            quantity: 2,
        },
    ];
    let second = app.earn_req(by_card).await;
    assert_eq!(second.transaction.as_ref().expect("t").points, 600);
    assert_eq!(second.transaction.as_ref().expect("t").member_id, m.id);
    let b = second.balance.expect("balance");
    assert_eq!(
        (b.available, b.pending, b.debt, b.balance),
        (846, 0, 0, 846)
    );
    assert_eq!((b.lifetime_earned, b.lifetime_spent), (846, 0));
    assert_eq!(app.balance(&m).await, b);

    let earned = tap.wait_for_n("points.earned", &m.id, 2).await;
    let e: PointsEarned = earned[1].decode().expect("PointsEarned");
    assert_eq!((e.points, e.purchase_amount_krw), (600, 30_000));
    assert_eq!(e.store_code, "GN001");
    assert_eq!(e.pos_transaction_id, "R-2");
    assert_eq!(e.items.len(), 2);
    assert_eq!(e.items[0].sku, "AMERICANO");
    assert_eq!(e.balance_after, 846);
    let purchases = tap.wait_for_n("points.purchase_recorded", &m.id, 2).await;
    let p: PurchaseRecorded = purchases[1].decode().expect("PurchaseRecorded");
    assert_eq!(
        (p.amount_krw, p.pos_transaction_id.as_str()),
        (30_000, "R-2")
    );
    assert_eq!(p.items.len(), 2);
    assert_eq!(earned[0].service, "points");
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn bad_earns_name_every_field_and_unknown_members_are_not_found(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    let mut client = app.points.clone();

    let bad = pb::EarnRequest {
        member: None,
        store_code: String::new(),
        pos_transaction_id: "x".repeat(101),
        amount_krw: -5,
        items: vec![pb::LineItem {
            sku: String::new(),
            category: "c".into(),
            amount_krw: -1,
            quantity: 0,
        }],
        occurred_time: Some(timestamp(Utc::now() + Duration::hours(2))),
        idempotency_key: "k".repeat(201),
    };
    let err = client.earn(app.req(bad)).await.expect_err("invalid");
    assert_invalid(
        &err,
        &[
            "member",
            "store_code",
            "pos_transaction_id",
            "amount_krw",
            "items[0].amount_krw",
            "items[0].quantity",
            "occurred_time",
            "idempotency_key",
        ],
    );
    let mut r = earn_request(&m, "R-1", 10_000);
    r.items = vec![pb::LineItem {
        sku: "A".into(),
        category: "c".into(),
        amount_krw: 9_000,
        quantity: 1,
    }];
    assert_invalid(&client.earn(app.req(r)).await.expect_err("sum"), &["items"]);

    let mut r = earn_request(&m, "R-1", 10_000);
    r.member = Some(MemberRef {
        r#ref: Some(member_ref::Ref::MemberId("not-a-uuid".into())),
    });
    assert_invalid(
        &client.earn(app.req(r)).await.expect_err("id"),
        &["member.member_id"],
    );
    let mut r = earn_request(&m, "R-1", 10_000);
    r.member = Some(MemberRef {
        r#ref: Some(member_ref::Ref::CardNumber("12ab".into())),
    });
    assert_invalid(
        &client.earn(app.req(r)).await.expect_err("card"),
        &["member.card_number"],
    );
    // 16 digits but a wrong check digit: the member service says so, under our field name.
    let mut wrong = m.card.clone();
    let last = wrong.pop().and_then(|c| c.to_digit(10)).expect("digit");
    wrong.push(char::from_digit((last + 1) % 10, 10).expect("digit"));
    let mut r = earn_request(&m, "R-1", 10_000);
    r.member = Some(MemberRef {
        r#ref: Some(member_ref::Ref::CardNumber(wrong)),
    });
    assert_invalid(
        &client.earn(app.req(r)).await.expect_err("luhn"),
        &["member.card_number"],
    );

    // Unknown members, and another tenant's, are NOT_FOUND.
    let mut r = earn_request(&m, "R-1", 10_000);
    r.member = Some(MemberRef {
        r#ref: Some(member_ref::Ref::MemberId(uuid::Uuid::now_v7().to_string())),
    });
    assert_eq!(
        client.earn(app.req(r)).await.expect_err("unknown").code(),
        Code::NotFound
    );
    let other_tenant = spharos_kit::TenantId::generate();
    let stranger = app.member_of(other_tenant).await;
    let r = earn_request(&stranger, "R-1", 10_000);
    assert_eq!(
        client.earn(app.req(r)).await.expect_err("other").code(),
        Code::NotFound
    );
    let mut r = earn_request(&stranger, "R-1", 10_000);
    r.member = stranger.by_card();
    assert_eq!(
        client
            .earn(app.req(r))
            .await
            .expect_err("other card")
            .code(),
        Code::NotFound
    );

    // A withdrawn member earns nothing.
    let gone = app.member().await;
    app.withdraw(&gone).await;
    let err = client
        .earn(app.req(earn_request(&gone, "R-9", 10_000)))
        .await
        .expect_err("withdrawn");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");

    // No token, no ledger.
    let err = client
        .earn(Request::new(earn_request(&m, "R-1", 10_000)))
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(app.history(&m).await.is_empty());
}

async fn a_purchase_at_23_30_kst_expires_at_the_end_of_the_korean_day(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("kst-test", &["points.expired"]).await;
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
    let yesterday = spharos_kit::time::local_date(Utc::now(), Seoul) - Duration::days(1);
    let late = Seoul
        .from_local_datetime(&yesterday.and_time(NaiveTime::from_hms_opt(23, 30, 0).expect("time")))
        .single()
        .expect("KST has no gaps")
        .with_timezone(&Utc);
    let mut r = earn_request(&m, "LATE", 10_000);
    r.occurred_time = Some(timestamp(late));
    let t = app.earn_req(r).await.transaction.expect("t");
    // 23:30 KST is 14:30 UTC the same date; the lot's last day is yesterday + 10 (KST), and
    // it ends at 23:59:59.999999 KST = 14:59:59.999999 UTC, not at the end of the UTC day.
    let last_day = yesterday + Duration::days(10);
    let expected = Utc.from_utc_datetime(
        &last_day.and_time(NaiveTime::from_hms_micro_opt(14, 59, 59, 999_999).expect("time")),
    );
    assert_eq!(t.expire_time, Some(timestamp(expected)));
    assert_eq!(t.occurred_time, Some(timestamp(late)));

    // 00:30 KST is still the previous UTC date: the Korean date counts.
    let early = Seoul
        .from_local_datetime(&yesterday.and_time(NaiveTime::from_hms_opt(0, 30, 0).expect("time")))
        .single()
        .expect("KST has no gaps")
        .with_timezone(&Utc);
    assert_eq!(early.date_naive(), yesterday - Duration::days(1));
    let mut r = earn_request(&m, "EARLY", 20_000);
    r.occurred_time = Some(timestamp(early));
    let early_t = app.earn_req(r).await.transaction.expect("t");
    assert_eq!(early_t.expire_time, Some(timestamp(expected)));

    // The job leaves the lots alone until the last microsecond of the KST day has passed.
    let run = app
        .app
        .run_expiry(app.tenant, expected)
        .await
        .expect("expiry");
    assert_eq!(run.expired_points, 0);
    assert_eq!(app.balance(&m).await.available, 300);
    let run = app
        .app
        .run_expiry(app.tenant, expected + Duration::microseconds(1))
        .await
        .expect("expiry");
    assert_eq!((run.expired_members, run.expired_points), (1, 300));
    let b = app.balance(&m).await;
    assert_eq!((b.available, b.balance), (0, 0));
    let kinds: Vec<i32> = app.history(&m).await.iter().map(|t| t.r#type).collect();
    assert_eq!(kinds.last(), Some(&(pb::TransactionType::Expire as i32)));
    let expired: PointsExpired = tap
        .wait_for("points.expired", &m.id)
        .await
        .decode()
        .expect("decode");
    assert_eq!(
        (expired.points, expired.balance_after, expired.lots.len()),
        (300, 0, 2)
    );
    assert!(
        expired
            .lots
            .iter()
            .all(|l| l.expire_time == Some(timestamp(expected)))
    );
    app.assert_ledger_consistent(m.uuid()).await;

    // A purchase so old that its points would be expired already is refused.
    let mut r = earn_request(&m, "ANCIENT", 10_000);
    r.occurred_time = Some(timestamp(Utc::now() - Duration::days(40)));
    let err = app
        .points
        .clone()
        .earn(app.req(r))
        .await
        .expect_err("too old");
    assert_invalid(&err, &["occurred_time"]);
}

async fn pending_points_become_usable_after_the_pending_days(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.set_policy(
        &["pending_days"],
        pb::PointsPolicy {
            pending_days: 3,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let t = app.earn(&m, "R-1", 50_000).await;
    let available_time = t
        .transaction
        .as_ref()
        .and_then(|t| t.available_time)
        .expect("available_time");
    let b = t.balance.expect("balance");
    assert_eq!((b.available, b.pending, b.balance), (0, 500, 500));
    // Usable from the start of the KST day three days after the purchase.
    let usable_date = spharos_kit::time::local_date(Utc::now(), Seoul) + Duration::days(3);
    assert_eq!(
        available_time,
        timestamp(spharos_points::domain::expiry::start_of_day(
            usable_date,
            Seoul
        ))
    );
    let err = app.spend(&m, "S-1", 100).await.expect_err("pending");
    assert_reason(&err, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    assert!(err.message().contains("available 0 P"), "{}", err.message());

    let at = chrono::DateTime::from_timestamp(available_time.seconds, available_time.nanos as u32)
        .expect("time");
    app.app.run_expiry(app.tenant, at).await.expect("matured");
    let b = app.balance(&m).await;
    assert_eq!((b.available, b.pending), (500, 0));
    app.spend(&m, "S-1", 100).await.expect("usable now");
    app.assert_ledger_consistent(m.uuid()).await;
}

async fn a_purchase_below_the_minimum_earns_nothing_but_counts_for_grades(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("minimum-test", &["points.*"]).await;
    app.set_policy(
        &["min_purchase_krw"],
        pb::PointsPolicy {
            min_purchase_krw: 5_000,
            ..Default::default()
        },
    )
    .await;
    let m = app.member().await;
    let r = app.earn(&m, "SMALL", 4_999).await;
    let q = r.quote.expect("quote");
    assert!(q.below_minimum);
    assert_eq!(q.points, 0);
    assert_eq!(r.transaction.expect("t").points, 0);
    tap.wait_for("points.purchase_recorded", &m.id).await;
    app.earn(&m, "BIG", 5_000).await;
    tap.wait_for_n("points.purchase_recorded", &m.id, 2).await;
    // Only the second earned points; events of one member arrive in order.
    let earned = tap.wait_for("points.earned", &m.id).await;
    let e: PointsEarned = earned.decode().expect("decode");
    assert_eq!((e.points, e.pos_transaction_id.as_str()), (50, "BIG"));
    assert_eq!(tap.all("points.earned").len(), 1);
}

async fn one_receipt_earns_once(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    let first = app.earn(&m, "R-1", 10_000).await.transaction.expect("t");
    // The same receipt under a new idempotency key is a replayed till, not a new purchase.
    let mut again = earn_request(&m, "R-1", 10_000);
    again.idempotency_key = "another-key".into();
    let err = app
        .points
        .clone()
        .earn(app.req(again))
        .await
        .expect_err("duplicate");
    assert_reason(&err, Code::AlreadyExists, "DUPLICATE_POS_TRANSACTION");
    assert!(
        err.message().contains(&first.transaction_id),
        "{}",
        err.message()
    );
    // A spend may use the same receipt id (paying part of the same purchase with points).
    app.points
        .clone()
        .spend(app.req(spend_request(&m, "R-1", 50)))
        .await
        .expect("spend on the same receipt");
    assert_eq!(app.balance(&m).await.available, 50);
}

async fn purchases_reach_the_member_service_and_move_the_grade(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let grade = |name: &str, min: i64, bp: i32| mpb::Grade {
        grade_id: String::new(),
        name: name.into(),
        min_purchase_krw: min,
        points_rate_bp: bp,
    };
    app.members
        .clone()
        .set_grades(app.req(mpb::SetGradesRequest {
            grades: vec![grade("BASIC", 0, 100), grade("GOLD", 100_000, 200)],
        }))
        .await
        .expect("grades set");
    let m = app.member().await;
    app.earn(&m, "BIG", 150_000).await;
    // The member service consumes points.purchase_recorded and re-evaluates the grade.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let member = app
            .members
            .clone()
            .get_member(app.req(mpb::GetMemberRequest {
                member_id: m.id.clone(),
                unmask: None,
            }))
            .await
            .expect("member")
            .into_inner()
            .member
            .expect("member");
        if member.grade_name == "GOLD" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "grade still {:?} 10 s after the purchase",
            member.grade_name
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
