//! The scheduled jobs, run for a chosen instant: expiry notices a few days ahead (once),
//! expiry of coupons and vouchers with their events, the wallet's expired view, cancelling a
//! redemption after expiry (the coupon stays expired), and birthday coupons once a year.
use chrono::{Datelike, Duration, Utc};
use spharos_kit::{testing::TestBackend, time::DEFAULT_TIME_ZONE};
use spharos_proto::coupon::{self as pb, CouponExpired, CouponExpiring, VoucherExpired};
use tonic::Code;

use crate::helpers::{assert_reason, basket, days, fixed_template, member, spawn_app};

on_both_backends!(expiry_and_notices, birthday_coupons_once_a_year);

async fn expiry_and_notices(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap(
            "test-expiry",
            &["coupon.expiring", "coupon.expired", "voucher.expired"],
        )
        .await;
    let mut t = fixed_template("3일짜리");
    t.validity = Some(days(3));
    t.per_member_limit = 0;
    let t = app.create_template(t).await;
    let m = member();
    let a = app.issue(&t.template_id, &m).await;
    let b = app.issue(&t.template_id, &m).await;
    let used = app.issue(&t.template_id, &m).await;
    app.redeem(&used.code, "POS-E", basket(50_000, "GN001"))
        .await
        .expect("used before expiry");
    let mut long = fixed_template("1년짜리");
    long.validity = Some(days(365));
    let long = app.create_template(long).await;
    let keep = app.issue(&long.template_id, &m).await;
    let voucher = app
        .client
        .clone()
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: 20_000,
            member_id: m.clone(),
            validity: Some(days(3)),
            idempotency_key: String::new(),
        }))
        .await
        .expect("voucher")
        .into_inner()
        .voucher
        .expect("voucher");

    // Today: the 3-day coupons expire within 3 days → one notice each, and only once.
    let now = Utc::now();
    assert_eq!(
        app.app
            .send_expiry_notices(app.tenant, now)
            .await
            .expect("notices"),
        2
    );
    assert_eq!(
        app.app
            .send_expiry_notices(app.tenant, now)
            .await
            .expect("again"),
        0
    );
    let e = tap.wait_for("coupon.expiring", &a.coupon_id).await;
    let msg: CouponExpiring = e.decode().expect("payload");
    assert_eq!(msg.member_id, m);
    tap.wait_for("coupon.expiring", &b.coupon_id).await;
    assert!(
        tap.all("coupon.expiring")
            .iter()
            .all(|e| e.subject_id != keep.coupon_id)
    );

    // Nothing is due yet.
    assert_eq!(
        app.app.expire_due(app.tenant, now).await.expect("expiry"),
        0
    );
    // Four days later: both unused coupons and the voucher expire; the used and the long ones do not.
    let later = now + Duration::days(4);
    assert_eq!(
        app.app.expire_due(app.tenant, later).await.expect("expiry"),
        3
    );
    assert_eq!(
        app.app.expire_due(app.tenant, later).await.expect("again"),
        0
    );
    let e = tap.wait_for("coupon.expired", &a.coupon_id).await;
    let msg: CouponExpired = e.decode().expect("payload");
    assert_eq!(msg.template_id, t.template_id);
    tap.wait_for("coupon.expired", &b.coupon_id).await;
    let e = tap.wait_for("voucher.expired", &voucher.voucher_id).await;
    let msg: VoucherExpired = e.decode().expect("payload");
    assert_eq!(msg.forfeited_krw, 20_000);

    let expired = app.wallet(&m, pb::WalletView::Expired).await;
    let mut ids: Vec<_> = expired.iter().map(|c| c.coupon_id.clone()).collect();
    ids.sort();
    let mut want = vec![a.coupon_id.clone(), b.coupon_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(
        expired
            .iter()
            .all(|c| c.status() == pb::CouponStatus::Expired)
    );
    assert_eq!(
        app.wallet(&m, pb::WalletView::Usable).await.len(),
        1,
        "the one-year coupon"
    );
    assert_eq!(app.wallet(&m, pb::WalletView::Used).await.len(), 1);
    let err = app
        .redeem(&a.code, "POS-LATE", basket(50_000, "GN001"))
        .await
        .expect_err("expired");
    assert_reason(&err, Code::FailedPrecondition, "COUPON_EXPIRED");
    assert_eq!(
        app.validate(&b.code, basket(50_000, "GN001")).await.reason,
        "COUPON_EXPIRED"
    );
    let err = app
        .client
        .clone()
        .use_voucher(app.req(pb::UseVoucherRequest {
            code: voucher.code.clone(),
            amount_krw: 1_000,
            pos_transaction_id: "POS-V".into(),
            store_code: "GN001".into(),
        }))
        .await
        .expect_err("expired voucher");
    assert_reason(&err, Code::FailedPrecondition, "VOUCHER_EXPIRED");
    let history = app
        .client
        .clone()
        .list_voucher_transactions(app.req(pb::ListVoucherTransactionsRequest {
            code: voucher.code.clone(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("history")
        .into_inner()
        .transactions;
    let last = history.last().expect("rows");
    assert_eq!(
        (last.kind(), last.amount_krw, last.balance_after_krw),
        (pb::VoucherTransactionKind::Expire, 20_000, 0)
    );

    // A coupon whose validity ended is restored as EXPIRED when its redemption is cancelled.
    let mut short = fixed_template("당일");
    short.validity = Some(days(1));
    let short = app.create_template(short).await;
    let s = app.issue(&short.template_id, &m).await;
    app.redeem(&s.code, "POS-D", basket(50_000, "GN001"))
        .await
        .expect("redeemed");
    // Move its validity into the past the way time would (the row as the clock sees it).
    {
        use sea_orm::{ConnectionTrait, Statement};
        let db = app.app.db();
        let tx = db.begin(app.tenant).await.expect("tx");
        let past = Utc::now() - Duration::hours(1);
        let sql = if db.backend() == spharos_kit::db::Backend::Postgres {
            "UPDATE issued_coupons SET expire_time = $1 WHERE tenant_id = $2 AND id = $3"
        } else {
            "UPDATE issued_coupons SET expire_time = ? WHERE tenant_id = ? AND id = ?"
        };
        tx.execute_raw(Statement::from_sql_and_values(
            db.db_backend(),
            sql,
            [
                past.into(),
                app.tenant.as_uuid().into(),
                uuid::Uuid::parse_str(&s.coupon_id).expect("uuid").into(),
            ],
        ))
        .await
        .expect("aged");
        tx.commit().await.expect("commit");
    }
    let cancelled = app
        .client
        .clone()
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "POS-D".into(),
            code: String::new(),
            reason: "환불".into(),
        }))
        .await
        .expect("cancelled")
        .into_inner();
    assert_eq!(
        cancelled.coupons[0].status(),
        pb::CouponStatus::Expired,
        "past its validity: not restored"
    );
    tap.wait_for("coupon.expired", &s.coupon_id).await;
}

async fn birthday_coupons_once_a_year(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("생일 축하 쿠폰");
    t.issue_methods = vec![pb::IssueMethod::Birthday.into()];
    t.per_member_limit = 0;
    let t = app.create_template(t).await;
    let today = spharos_kit::time::local_date(Utc::now(), DEFAULT_TIME_ZONE);
    let mmdd = format!("{:02}-{:02}", today.month(), today.day());
    let other_day = if today.day() == 1 { "12-31" } else { "01-01" };
    let (born_today, born_today_2, born_other, gone) = (member(), member(), member(), member());
    app.publish_joined(&born_today, &mmdd).await;
    app.publish_joined(&born_today_2, &mmdd).await;
    app.publish_joined(&born_other, other_day).await;
    app.publish_joined(&gone, &mmdd).await;
    app.publish_withdrawn(&gone).await;
    // Wait until the projection saw all of it (the withdrawal came last).
    let probe = app.projection_probe().await;
    app.eventually("the projection sees the withdrawal", || {
        app.refused_as_withdrawn(&probe, &gone)
    })
    .await;

    let run = app
        .app
        .issue_birthday_coupons(app.tenant, today)
        .await
        .expect("birthday run");
    assert_eq!((run.issued, run.failed), (2, 0));
    for m in [&born_today, &born_today_2] {
        let w = app.wallet(m, pb::WalletView::Usable).await;
        assert_eq!(w.len(), 1, "one birthday coupon");
        assert_eq!(w[0].issue_method(), pb::IssueMethod::Birthday);
        assert_eq!(w[0].template_id, t.template_id);
    }
    assert!(
        app.wallet(&born_other, pb::WalletView::Unspecified)
            .await
            .is_empty()
    );
    assert!(
        app.wallet(&gone, pb::WalletView::Unspecified)
            .await
            .is_empty()
    );
    let again = app
        .app
        .issue_birthday_coupons(app.tenant, today)
        .await
        .expect("rerun");
    assert_eq!(
        (again.issued, again.failed),
        (0, 0),
        "once per member and year"
    );
    let schedule = app
        .app
        .run_schedule(Utc::now())
        .await
        .expect("the whole schedule");
    assert_eq!(schedule.birthday.issued, 0);
    assert!(schedule.tenants >= 1);
}

impl crate::helpers::TestApp {
    /// A DRAFT template to probe the projection with: issuing it to a withdrawn member says
    /// MEMBER_WITHDRAWN (checked first), to anyone else TEMPLATE_NOT_ACTIVE, and never issues.
    pub async fn projection_probe(&self) -> String {
        let mut t = fixed_template("probe");
        t.status = pb::TemplateStatus::Draft.into();
        self.create_template(t).await.template_id
    }

    /// True once issuing to this member is refused as withdrawn (the projection caught up).
    pub async fn refused_as_withdrawn(&self, probe: &str, member_id: &str) -> bool {
        let r = self
            .client
            .clone()
            .issue_coupon(self.req(pb::IssueCouponRequest {
                template_id: probe.into(),
                member_id: member_id.into(),
                issue_method: 0,
                idempotency_key: String::new(),
            }))
            .await;
        matches!(&r, Err(s) if crate::helpers::reason(s) == "MEMBER_WITHDRAWN")
    }
}
