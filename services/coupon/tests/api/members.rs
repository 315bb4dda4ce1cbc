//! The member projection fed by the member service's events: `member.joined` issues every
//! ACTIVE welcome coupon once (a redelivered event issues nothing more; a sold-out welcome
//! template is skipped), `member.withdrawn` makes issuing refuse the member, and members the
//! projection has not seen yet are accepted.
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon as pb;
use tonic::Code;

use crate::helpers::{assert_reason, fixed_template, joined_envelope, member, spawn_app};

on_both_backends!(welcome_coupons_on_join, withdrawn_members_are_refused);

async fn welcome_coupons_on_join(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-welcome", &["coupon.issued"]).await;
    let mut welcome = fixed_template("신규 가입 웰컴");
    welcome.issue_methods = vec![pb::IssueMethod::OnJoin.into()];
    let welcome = app.create_template(welcome).await;
    let mut scarce = fixed_template("웰컴 한정 1장");
    scarce.issue_methods = vec![pb::IssueMethod::OnJoin.into()];
    scarce.total_quantity = 1;
    let scarce = app.create_template(scarce).await;
    let mut paused = fixed_template("중지된 웰컴");
    paused.issue_methods = vec![pb::IssueMethod::OnJoin.into()];
    paused.status = pb::TemplateStatus::Draft.into();
    app.create_template(paused).await;

    let (first, second) = (member(), member());
    let env = joined_envelope(app.tenant, &first, "05-17");
    app.platform
        .bus
        .publish_batch(std::slice::from_ref(&env))
        .await
        .expect("published");
    app.publish_joined(&second, "").await;
    app.eventually("both welcomed", || async {
        app.wallet(&second, pb::WalletView::Usable).await.len() == 1
    })
    .await;
    let w = app.wallet(&first, pb::WalletView::Usable).await;
    let mut names: Vec<_> = w.iter().map(|c| c.template_name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        ["신규 가입 웰컴", "웰컴 한정 1장"],
        "both active welcome templates"
    );
    assert!(
        w.iter()
            .all(|c| c.issue_method() == pb::IssueMethod::OnJoin)
    );
    let w2 = app.wallet(&second, pb::WalletView::Usable).await;
    assert_eq!(
        w2[0].template_id, welcome.template_id,
        "the scarce one was gone: skipped, not retried"
    );

    // A redelivered join (same event id) changes nothing; a new event for the same member
    // neither (the projection row exists already).
    app.platform
        .bus
        .publish_batch(std::slice::from_ref(&env))
        .await
        .expect("redelivered");
    app.publish_joined(&first, "05-17").await;
    let third = member();
    app.publish_joined(&third, "").await;
    app.eventually("the third welcomed", || async {
        !app.wallet(&third, pb::WalletView::Usable).await.is_empty()
    })
    .await;
    assert_eq!(
        app.wallet(&first, pb::WalletView::Unspecified).await.len(),
        2
    );
    let t = app
        .client
        .clone()
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: scarce.template_id.clone(),
        }))
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(t.issued_count, 1);
    let coupon_id = w
        .iter()
        .find(|c| c.template_id == welcome.template_id)
        .expect("welcome")
        .coupon_id
        .clone();
    let e = tap.wait_for("coupon.issued", &coupon_id).await;
    let msg: pb::CouponIssued = e.decode().expect("payload");
    assert_eq!(msg.issue_method(), pb::IssueMethod::OnJoin);
}

async fn withdrawn_members_are_refused(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut t = fixed_template("누구나");
    t.per_member_limit = 0;
    let t = app.create_template(t).await;
    let (stays, leaves) = (member(), member());
    app.publish_joined(&stays, "").await;
    app.publish_joined(&leaves, "").await;
    app.publish_withdrawn(&leaves).await;
    let probe = app.projection_probe().await;
    app.eventually("the projection sees the withdrawal", || {
        app.refused_as_withdrawn(&probe, &leaves)
    })
    .await;

    let err = app
        .claim(&t.template_id, &leaves)
        .await
        .expect_err("withdrawn");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");
    let err = app
        .client
        .clone()
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: 10_000,
            member_id: leaves.clone(),
            validity: Some(crate::helpers::days(30)),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("withdrawn");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");
    app.claim(&t.template_id, &stays)
        .await
        .expect("active member");
    // Not (yet) in the projection: accepted by design.
    app.claim(&t.template_id, &member())
        .await
        .expect("unknown member");
    // A withdrawal whose join was never seen still counts.
    let ghost = member();
    app.publish_withdrawn(&ghost).await;
    app.eventually("the ghost is withdrawn", || {
        app.refused_as_withdrawn(&probe, &ghost)
    })
    .await;
}
