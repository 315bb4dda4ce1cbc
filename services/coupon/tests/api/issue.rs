//! Issuing to one member and looking coupons up: codes (well-formed, unique, typed forgivingly,
//! a wrong check character refused), `coupon.issued` without the code in it, idempotent issue,
//! every rule that refuses an issue, and the wallet's views.
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb, CouponIssued};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, fixed_template, member, spawn_app};

on_both_backends!(
    admin_issue_and_lookup,
    issue_rules,
    issue_validation,
    wallet_views
);

async fn admin_issue_and_lookup(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-issued", &["coupon.issued"]).await;
    let mut c = app.client.clone();
    let mut t = fixed_template("웰컴 5,000원");
    t.per_member_limit = 3;
    t.issue_methods.push(pb::IssueMethod::Campaign.into());
    let t = app.create_template(t).await;
    let m = member();

    let coupon = app.issue(&t.template_id, &m).await;
    assert_eq!(coupon.member_id, m);
    assert_eq!(coupon.template_name, "웰컴 5,000원");
    assert_eq!(coupon.status(), pb::CouponStatus::Issued);
    assert_eq!(coupon.issue_method(), pb::IssueMethod::Admin);
    assert_eq!(coupon.code.len(), 14);
    assert!(
        coupon
            .code
            .chars()
            .all(|ch| "0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U".contains(ch))
    );
    assert_eq!(coupon.display_code.replace('-', ""), coupon.code);
    assert_eq!(
        coupon.display_code.len(),
        17,
        "grouped like K7QH-3MZ2-PXAV-9D"
    );
    let window = coupon.expire_time.as_ref().expect("expiry").seconds
        - coupon.issue_time.as_ref().expect("issue").seconds;
    assert!(
        (28 * 86_400..=30 * 86_400).contains(&window),
        "30 days ending at midnight: {window}"
    );

    let by_id = c
        .get_coupon(app.req(pb::GetCouponRequest {
            key: Some(pb::get_coupon_request::Key::CouponId(
                coupon.coupon_id.clone(),
            )),
        }))
        .await
        .expect("by id")
        .into_inner()
        .coupon
        .expect("coupon");
    assert_eq!(by_id, coupon);
    let typed = coupon
        .display_code
        .to_lowercase()
        .replace('0', "o")
        .replace('1', "l");
    assert_eq!(
        app.get_coupon_by_code(&typed)
            .await
            .expect("typed forgivingly"),
        coupon
    );

    // One wrong character is caught by the check character before any lookup.
    let mut chars: Vec<char> = coupon.code.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let wrong: String = chars.into_iter().collect();
    let err = app.get_coupon_by_code(&wrong).await.expect_err("mistyped");
    assert_invalid(&err, &["code"]);
    assert!(
        err.message().contains("check character"),
        "{}",
        err.message()
    );
    let err = app.get_coupon_by_code("ABC").await.expect_err("too short");
    assert_invalid(&err, &["code"]);
    let unknown = spharos_coupon::domain::code::Code::from_value(42).into_string();
    let err = app
        .get_coupon_by_code(&unknown)
        .await
        .expect_err("well-formed, unknown");
    assert_eq!(err.code(), Code::NotFound);

    // Codes are distinct.
    let second = app.issue(&t.template_id, &m).await;
    assert_ne!(second.code, coupon.code);

    // Idempotent issue: same key and body → same coupon; another body → refused.
    let req = |member_id: &str| pb::IssueCouponRequest {
        template_id: t.template_id.clone(),
        member_id: member_id.into(),
        issue_method: pb::IssueMethod::Campaign.into(),
        idempotency_key: "campaign-42".into(),
    };
    let a = c
        .issue_coupon(app.req(req(&m)))
        .await
        .expect("first")
        .into_inner()
        .coupon
        .expect("coupon");
    let b = c
        .issue_coupon(app.req(req(&m)))
        .await
        .expect("replay")
        .into_inner()
        .coupon
        .expect("coupon");
    assert_eq!(a, b);
    assert_eq!(a.issue_method(), pb::IssueMethod::Campaign);
    let err = c
        .issue_coupon(app.req(req(&member())))
        .await
        .expect_err("key reused");
    assert_reason(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    let e = tap.wait_for("coupon.issued", &coupon.coupon_id).await;
    let msg: CouponIssued = e.decode().expect("payload");
    assert_eq!(msg.member_id, m);
    assert_eq!(msg.template_id, t.template_id);
    assert_eq!(msg.issue_method(), pb::IssueMethod::Admin);
    assert!(
        !String::from_utf8_lossy(&e.payload).contains(&coupon.code),
        "codes never travel in events"
    );

    let template = c
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: t.template_id.clone(),
        }))
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(template.issued_count, 3);
}

async fn issue_rules(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let issue = |template_id: &str, member_id: &str, method: pb::IssueMethod| {
        app.req(pb::IssueCouponRequest {
            template_id: template_id.into(),
            member_id: member_id.into(),
            issue_method: method.into(),
            idempotency_key: String::new(),
        })
    };

    let mut claim_only = fixed_template("선착순 전용");
    claim_only.issue_methods = vec![pb::IssueMethod::Claim.into()];
    let claim_only = app.create_template(claim_only).await;
    let err = c
        .issue_coupon(issue(
            &claim_only.template_id,
            &member(),
            pb::IssueMethod::Admin,
        ))
        .await
        .expect_err("admin not allowed");
    assert_reason(&err, Code::FailedPrecondition, "ISSUE_METHOD_NOT_ALLOWED");
    let err = c
        .issue_coupon(issue(
            &claim_only.template_id,
            &member(),
            pb::IssueMethod::Claim,
        ))
        .await
        .expect_err("CLAIM is not a manual method");
    assert_invalid(&err, &["issue_method"]);
    let mut admin_only = fixed_template("관리자 전용");
    admin_only.issue_methods = vec![pb::IssueMethod::Admin.into()];
    let admin_only = app.create_template(admin_only).await;
    let err = app
        .claim(&admin_only.template_id, &member())
        .await
        .expect_err("claim not allowed");
    assert_reason(&err, Code::FailedPrecondition, "ISSUE_METHOD_NOT_ALLOWED");

    let mut two = fixed_template("1인 2장, 총 3장");
    two.per_member_limit = 2;
    two.total_quantity = 3;
    let two = app.create_template(two).await;
    let m = member();
    app.issue(&two.template_id, &m).await;
    app.issue(&two.template_id, &m).await;
    let err = c
        .issue_coupon(issue(&two.template_id, &m, pb::IssueMethod::Admin))
        .await
        .expect_err("third for the same member");
    assert_reason(&err, Code::AlreadyExists, "COUPON_LIMIT_REACHED");
    assert!(err.message().contains("limit of 2"), "{}", err.message());
    app.issue(&two.template_id, &member()).await;
    let err = c
        .issue_coupon(issue(&two.template_id, &member(), pb::IssueMethod::Admin))
        .await
        .expect_err("sold out");
    assert_reason(&err, Code::ResourceExhausted, "COUPON_SOLD_OUT");
    assert!(err.message().contains("all 3 issued"), "{}", err.message());

    let err = c
        .issue_coupon(issue(
            &uuid::Uuid::now_v7().to_string(),
            &m,
            pb::IssueMethod::Admin,
        ))
        .await
        .expect_err("unknown template");
    assert_eq!(err.code(), Code::NotFound);

    // Unlimited per member: every issue takes a NULL slot, none collides.
    let mut unlimited = fixed_template("무제한");
    unlimited.per_member_limit = 0;
    let unlimited = app.create_template(unlimited).await;
    for _ in 0..3 {
        app.issue(&unlimited.template_id, &m).await;
    }
}

async fn issue_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let err = c
        .issue_coupon(app.req(pb::IssueCouponRequest {
            template_id: "".into(),
            member_id: "not-a-uuid".into(),
            issue_method: 77,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["template_id", "member_id", "issue_method"]);
    let err = c
        .claim_coupon(app.req(pb::ClaimCouponRequest {
            template_id: "x".into(),
            member_id: "".into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["template_id", "member_id"]);
    let err = c
        .get_coupon(app.req(pb::GetCouponRequest { key: None }))
        .await
        .expect_err("no key");
    assert_invalid(&err, &["key"]);
    let err = c
        .list_member_coupons(app.req(pb::ListMemberCouponsRequest {
            member_id: "x".into(),
            view: 9,
            page_size: -2,
            page_token: String::new(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["member_id", "view", "page_size"]);
}

async fn wallet_views(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("지갑");
    t.per_member_limit = 0;
    let t = app.create_template(t).await;
    let m = member();
    let mut issued = Vec::new();
    for _ in 0..3 {
        issued.push(app.issue(&t.template_id, &m).await);
    }
    app.issue(&t.template_id, &member()).await;
    let used = app
        .redeem(
            &issued[0].code,
            "POS-W-1",
            crate::helpers::basket(40_000, "GN001"),
        )
        .await
        .expect("redeemed");
    assert!(!used.replayed);

    let all = app.wallet(&m, pb::WalletView::Unspecified).await;
    assert_eq!(all.len(), 3, "only this member's coupons");
    let usable = app.wallet(&m, pb::WalletView::Usable).await;
    assert_eq!(
        usable
            .iter()
            .map(|c| c.coupon_id.as_str())
            .collect::<Vec<_>>(),
        [issued[1].coupon_id.as_str(), issued[2].coupon_id.as_str()]
    );
    let used = app.wallet(&m, pb::WalletView::Used).await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].status(), pb::CouponStatus::Redeemed);
    assert!(used[0].redeem_time.is_some());
    assert!(app.wallet(&m, pb::WalletView::Expired).await.is_empty());

    // Paging through the wallet.
    let mut c = app.client.clone();
    let first = c
        .list_member_coupons(app.req(pb::ListMemberCouponsRequest {
            member_id: m.clone(),
            view: 0,
            page_size: 2,
            page_token: String::new(),
        }))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.coupons.len(), 2);
    let second = c
        .list_member_coupons(app.req(pb::ListMemberCouponsRequest {
            member_id: m.clone(),
            view: 0,
            page_size: 2,
            page_token: first.next_page_token,
        }))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.coupons.len(), 1);
    assert!(second.next_page_token.is_empty());
}
