//! At the till: Validate answers the discount or the precise reason; Redeem is atomic, once,
//! idempotent by till transaction (20 concurrent tills → exactly one wins); CancelRedemption
//! gives the coupon back; stacking rules; every bad input named.
use futures::{StreamExt, stream};
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb, CouponRedeemed, CouponRedemptionCancelled};
use tonic::Code;

use crate::helpers::{
    assert_invalid, assert_reason, basket, dates, fixed_template, item, member, percent, spawn_app,
    with_token,
};

on_both_backends!(
    validate_reasons,
    redeem_once_and_replay,
    concurrent_double_redeem,
    cancel_redemption_restores,
    stacking_rules,
    till_validation
);

async fn validate_reasons(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("강남점 10% (최대 3,000원)");
    t.discount = percent(1_000, 3_000);
    t.min_purchase_krw = 10_000;
    t.store_codes = vec!["GN001".into()];
    t.categories = vec!["BAKERY".into()];
    let t = app.create_template(t).await;
    let m = member();
    let c = app.issue(&t.template_id, &m).await;

    let mut b = basket(50_000, "GN001");
    b.items = vec![item("BAKERY", 12_345), item("DRINK", 30_000)];
    let ok = app.validate(&c.display_code, b.clone()).await;
    assert!(ok.applicable, "{ok:?}");
    assert_eq!(
        ok.discount_krw, 1_234,
        "10% of the bakery items, rounded down"
    );
    assert_eq!(ok.coupon.expect("coupon").coupon_id, c.coupon_id);

    let mut big = basket(500_000, "GN001");
    big.items = vec![item("BAKERY", 400_000)];
    assert_eq!(
        app.validate(&c.code, big).await.discount_krw,
        3_000,
        "capped"
    );

    let no = app
        .validate(&c.code, {
            let mut x = b.clone();
            x.store_code = "HD002".into();
            x
        })
        .await;
    assert!(!no.applicable);
    assert_eq!(no.reason, "STORE_NOT_APPLICABLE");
    assert!(no.message.contains("HD002"), "{}", no.message);

    let no = app
        .validate(&c.code, {
            let mut x = b.clone();
            x.items = vec![item("DRINK", 30_000)];
            x
        })
        .await;
    assert_eq!(no.reason, "CATEGORY_NOT_APPLICABLE");

    let no = app
        .validate(&c.code, {
            let mut x = b.clone();
            x.items = vec![item("BAKERY", 9_999)];
            x
        })
        .await;
    assert_eq!(no.reason, "MIN_PURCHASE_NOT_MET");
    assert!(
        no.message.contains("10,000원") && no.message.contains("9,999원"),
        "{}",
        no.message
    );

    let not_yours = app
        .client
        .clone()
        .validate_coupon(app.req(pb::ValidateCouponRequest {
            code: c.code.clone(),
            basket: Some(b.clone()),
            member_id: member(),
            pos_transaction_id: String::new(),
        }))
        .await
        .expect("validated")
        .into_inner();
    assert_eq!(not_yours.reason, "COUPON_NOT_OWNED");

    // Not yet valid: a fixed range starting tomorrow.
    let mut later = fixed_template("내일부터");
    later.validity = Some(dates(1, 5));
    let later = app.create_template(later).await;
    let lc = app.issue(&later.template_id, &m).await;
    let no = app.validate(&lc.code, basket(50_000, "GN001")).await;
    assert_eq!(no.reason, "COUPON_NOT_YET_VALID");
    let err = app
        .redeem(&lc.code, "POS-EARLY", basket(50_000, "GN001"))
        .await
        .expect_err("too early");
    assert_reason(&err, Code::FailedPrecondition, "COUPON_NOT_YET_VALID");

    // Validation changes nothing.
    assert_eq!(
        app.get_coupon_by_code(&c.code)
            .await
            .expect("coupon")
            .status(),
        pb::CouponStatus::Issued
    );
}

async fn redeem_once_and_replay(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-redeemed", &["coupon.redeemed"]).await;
    let t = app.create_template(fixed_template("5,000원")).await;
    let c = app.issue(&t.template_id, &member()).await;

    let first = app
        .redeem(&c.display_code, "POS-1", basket(42_000, "GN001"))
        .await
        .expect("redeemed");
    assert!(!first.replayed);
    let r = first.redemption.clone().expect("redemption");
    assert_eq!(
        (r.discount_krw, r.amount_krw, r.store_code.as_str()),
        (5_000, 42_000, "GN001")
    );
    assert_eq!(r.status(), pb::RedemptionStatus::Redeemed);
    let coupon = first.coupon.clone().expect("coupon");
    assert_eq!(coupon.status(), pb::CouponStatus::Redeemed);
    assert!(coupon.redeem_time.is_some());

    // The till retries (even with a different basket): the first result comes back.
    let retry = app
        .redeem(&c.code, "POS-1", basket(99_000, "GN001"))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.redemption, first.redemption);

    // Another till transaction cannot use it again; validation says why.
    let err = app
        .redeem(&c.code, "POS-2", basket(42_000, "GN001"))
        .await
        .expect_err("used");
    assert_reason(&err, Code::FailedPrecondition, "COUPON_ALREADY_REDEEMED");
    assert_eq!(
        app.validate(&c.code, basket(42_000, "GN001")).await.reason,
        "COUPON_ALREADY_REDEEMED"
    );

    let e = tap.wait_for("coupon.redeemed", &c.coupon_id).await;
    let msg: CouponRedeemed = e.decode().expect("payload");
    assert_eq!(
        (msg.discount_krw, msg.pos_transaction_id.as_str()),
        (5_000, "POS-1")
    );
    assert!(!String::from_utf8_lossy(&e.payload).contains(&c.code));
    assert_eq!(
        tap.all("coupon.redeemed").len(),
        1,
        "one event for one redemption"
    );
}

/// One coupon, 20 tills at once with different till transactions: exactly one wins, every
/// other gets COUPON_ALREADY_REDEEMED, one redemption exists.
async fn concurrent_double_redeem(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let t = app.create_template(fixed_template("한 번만")).await;
    let c = app.issue(&t.template_id, &member()).await;
    let token = app.token();
    let client = app.client.clone();
    let results: Vec<Result<pb::RedeemCouponResponse, tonic::Status>> = stream::iter(0..20)
        .map(|i| {
            let mut cl = client.clone();
            let req = with_token(
                pb::RedeemCouponRequest {
                    code: c.code.clone(),
                    basket: Some(basket(50_000, "GN001")),
                    pos_transaction_id: format!("POS-RACE-{i}"),
                    member_id: String::new(),
                },
                &token,
            );
            async move { cl.redeem_coupon(req).await.map(|r| r.into_inner()) }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one redemption succeeds");
    assert!(!winners[0].replayed);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_reason(err, Code::FailedPrecondition, "COUPON_ALREADY_REDEEMED");
    }
    // Only the winner's till transaction can cancel.
    let winner_pos = winners[0]
        .redemption
        .as_ref()
        .expect("redemption")
        .pos_transaction_id
        .clone();
    for i in 0..20 {
        let pos = format!("POS-RACE-{i}");
        let res = app
            .client
            .clone()
            .cancel_redemption(app.req(pb::CancelRedemptionRequest {
                pos_transaction_id: pos.clone(),
                code: String::new(),
                reason: String::new(),
            }))
            .await;
        if pos == winner_pos {
            assert_eq!(
                res.expect("winner cancels").into_inner().redemptions.len(),
                1
            );
        } else {
            assert_eq!(res.expect_err("loser has nothing").code(), Code::NotFound);
        }
    }
}

async fn cancel_redemption_restores(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap("test-cancelled", &["coupon.redemption_cancelled"])
        .await;
    let mut t = fixed_template("중복 가능");
    t.stackable = true;
    t.per_member_limit = 0;
    let t = app.create_template(t).await;
    let m = member();
    let a = app.issue(&t.template_id, &m).await;
    let b = app.issue(&t.template_id, &m).await;
    app.redeem(&a.code, "POS-R", basket(80_000, "GN001"))
        .await
        .expect("a");
    app.redeem(&b.code, "POS-R", basket(80_000, "GN001"))
        .await
        .expect("b stacks");
    let mut c = app.client.clone();

    // Refund of one line: only that coupon.
    let one = c
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "POS-R".into(),
            code: a.display_code.clone(),
            reason: "부분 환불".into(),
        }))
        .await
        .expect("cancel a")
        .into_inner();
    assert_eq!(one.redemptions.len(), 1);
    assert_eq!(one.redemptions[0].status(), pb::RedemptionStatus::Cancelled);
    assert!(one.redemptions[0].cancel_time.is_some());
    assert_eq!(
        one.coupons[0].status(),
        pb::CouponStatus::Issued,
        "usable again"
    );
    assert!(one.coupons[0].redeem_time.is_none());

    // Refund of the whole transaction: the rest; cancelling again changes nothing.
    let all = c
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "POS-R".into(),
            code: String::new(),
            reason: "전체 환불".into(),
        }))
        .await
        .expect("cancel all")
        .into_inner();
    assert_eq!(all.redemptions.len(), 2);
    assert!(
        all.redemptions
            .iter()
            .all(|r| r.status() == pb::RedemptionStatus::Cancelled)
    );
    assert!(
        all.coupons
            .iter()
            .all(|c| c.status() == pb::CouponStatus::Issued)
    );
    let again = c
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "POS-R".into(),
            code: String::new(),
            reason: String::new(),
        }))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(again.redemptions, all.redemptions);

    // The coupon that came back is redeemable in a new till transaction.
    let re = app
        .redeem(&a.code, "POS-S", basket(80_000, "GN001"))
        .await
        .expect("again");
    assert!(!re.replayed);

    let e = tap
        .wait_for("coupon.redemption_cancelled", &a.coupon_id)
        .await;
    let msg: CouponRedemptionCancelled = e.decode().expect("payload");
    assert!(msg.restored);
    assert_eq!(msg.pos_transaction_id, "POS-R");
    tap.wait_for("coupon.redemption_cancelled", &b.coupon_id)
        .await;
    assert_eq!(
        tap.all("coupon.redemption_cancelled").len(),
        2,
        "one event per cancelled redemption"
    );

    let err = c
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "POS-NONE".into(),
            code: String::new(),
            reason: String::new(),
        }))
        .await
        .expect_err("nothing redeemed there");
    assert_eq!(err.code(), Code::NotFound);
}

async fn stacking_rules(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut s = fixed_template("중복 가능");
    s.stackable = true;
    let s = app.create_template(s).await;
    let mut s2 = fixed_template("중복 가능 2");
    s2.stackable = true;
    let s2 = app.create_template(s2).await;
    let solo = app.create_template(fixed_template("단독 사용")).await;
    let m = member();
    let (cs, cs2, csolo) = (
        app.issue(&s.template_id, &m).await,
        app.issue(&s2.template_id, &m).await,
        app.issue(&solo.template_id, &m).await,
    );
    app.redeem(&cs.code, "POS-STACK", basket(90_000, "GN001"))
        .await
        .expect("first stackable");
    let err = app
        .redeem(&csolo.code, "POS-STACK", basket(90_000, "GN001"))
        .await
        .expect_err("solo after another");
    assert_reason(&err, Code::FailedPrecondition, "COUPON_NOT_STACKABLE");
    let v = app
        .client
        .clone()
        .validate_coupon(app.req(pb::ValidateCouponRequest {
            code: csolo.code.clone(),
            basket: Some(basket(90_000, "GN001")),
            member_id: m.clone(),
            pos_transaction_id: "POS-STACK".into(),
        }))
        .await
        .expect("validated")
        .into_inner();
    assert_eq!(v.reason, "COUPON_NOT_STACKABLE");
    app.redeem(&cs2.code, "POS-STACK", basket(90_000, "GN001"))
        .await
        .expect("two stackables combine");
    // The solo coupon alone in another transaction is fine; nothing stacks on it.
    app.redeem(&csolo.code, "POS-SOLO", basket(90_000, "GN001"))
        .await
        .expect("alone");
    let other = app.issue(&s.template_id, &member()).await;
    let err = app
        .redeem(&other.code, "POS-SOLO", basket(90_000, "GN001"))
        .await
        .expect_err("on a solo");
    assert_reason(&err, Code::FailedPrecondition, "COUPON_NOT_STACKABLE");
}

async fn till_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let err = c
        .redeem_coupon(app.req(pb::RedeemCouponRequest {
            code: "K7QH-3MZ2".into(),
            basket: Some(pb::Basket {
                amount_krw: 0,
                store_code: "".into(),
                items: vec![item("X", -5)],
            }),
            pos_transaction_id: " ".into(),
            member_id: "nope".into(),
        }))
        .await
        .expect_err("everything bad");
    assert_invalid(
        &err,
        &[
            "code",
            "basket.amount_krw",
            "basket.store_code",
            "basket.items[0].amount_krw",
            "member_id",
        ],
    );
    let err = c
        .redeem_coupon(app.req(pb::RedeemCouponRequest {
            code: spharos_coupon::domain::code::Code::from_value(7).into_string(),
            basket: None,
            pos_transaction_id: "".into(),
            member_id: String::new(),
        }))
        .await
        .expect_err("no basket");
    assert_invalid(&err, &["basket"]);
    let err = c
        .redeem_coupon(app.req(pb::RedeemCouponRequest {
            code: spharos_coupon::domain::code::Code::from_value(7).into_string(),
            basket: Some(basket(10_000, "GN001")),
            pos_transaction_id: "".into(),
            member_id: String::new(),
        }))
        .await
        .expect_err("no till transaction");
    assert_invalid(&err, &["pos_transaction_id"]);
    let mut over = basket(10_000, "GN001");
    over.items = vec![item("A", 6_000), item("B", 6_000)];
    let err = c
        .validate_coupon(app.req(pb::ValidateCouponRequest {
            code: spharos_coupon::domain::code::Code::from_value(7).into_string(),
            basket: Some(over),
            member_id: String::new(),
            pos_transaction_id: String::new(),
        }))
        .await
        .expect_err("items over the amount");
    assert_invalid(&err, &["basket.items"]);
    let err = app
        .redeem(
            &spharos_coupon::domain::code::Code::from_value(7).into_string(),
            "POS-X",
            basket(10_000, "GN001"),
        )
        .await
        .expect_err("unknown coupon");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .cancel_redemption(app.req(pb::CancelRedemptionRequest {
            pos_transaction_id: "".into(),
            code: "bad".into(),
            reason: "x".repeat(201),
        }))
        .await
        .expect_err("bad cancel");
    assert_invalid(&err, &["pos_transaction_id", "code", "reason"]);
}
