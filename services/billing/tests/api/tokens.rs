//! API tokens: issued, listed, rotated and revoked by the platform; a revoked or rotated-out
//! token is refused within seconds, by billing itself and by another service (the member
//! module on the same server), on both backends. Bad requests name their fields.
use std::time::Duration;

use spharos_kit::testing::TestBackend;
use spharos_proto::{billing as pb, member as mpb};
use tonic::Code;

use crate::helpers::{
    Spawn, TestApp, assert_invalid, assert_reason, spawn_app, spawn_app_with, with_token,
};

on_both_backends!(
    tokens_are_issued_listed_rotated_and_revoked,
    a_revoked_token_is_refused_by_the_member_service,
    bad_token_requests_are_refused,
);

/// GetSubscription with `token` until it is refused as UNAUTHENTICATED (5 s).
async fn wait_refused_by_billing(app: &TestApp, token: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match app
            .client
            .clone()
            .get_subscription(with_token(pb::GetSubscriptionRequest::default(), token))
            .await
        {
            Err(e) if e.code() == Code::Unauthenticated => return,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the token is still accepted after 5 s: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn issue(app: &TestApp, tenant: &str, subject: &str) -> pb::IssueTokenResponse {
    app.client
        .clone()
        .issue_token(app.admin(pb::IssueTokenRequest {
            tenant_id: tenant.into(),
            subject: subject.into(),
            permissions: vec!["pii:unmask".into()],
            ttl_seconds: 3600,
        }))
        .await
        .expect("issued")
        .into_inner()
}

async fn tokens_are_issued_listed_rotated_and_revoked(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("token-tap", &["billing.token_revoked"]).await;
    let mut c = app.client.clone();
    let id = app.create_tenant("가맹점").await.tenant_id;
    let first = issue(&app, &id, "pos-gangnam-1").await;
    let token = first.token.clone().expect("token");
    assert_eq!(token.tenant_id, id);
    assert_eq!(token.permissions, ["pii:unmask"]);
    assert!(token.revoke_time.is_none());
    let lifetime = token.expire_time.as_ref().map(|t| t.seconds).unwrap_or(0)
        - token.issue_time.as_ref().map(|t| t.seconds).unwrap_or(0);
    assert_eq!(lifetime, 3600);

    // The token speaks for the tenant.
    let own = c
        .get_subscription(with_token(
            pb::GetSubscriptionRequest::default(),
            &first.secret,
        ))
        .await
        .expect("the issued token works")
        .into_inner();
    assert!(own.subscription.is_none());

    let second = issue(&app, &id, "integration-crm").await;
    let listed = c
        .list_tokens(app.admin(pb::ListTokensRequest {
            tenant_id: id.clone(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);
    assert_eq!(listed.tokens[0].token_id, token.token_id);
    let rest = c
        .list_tokens(app.admin(pb::ListTokensRequest {
            tenant_id: id.clone(),
            page_size: 10,
            page_token: listed.next_page_token,
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(
        rest.tokens
            .iter()
            .map(|t| t.subject.as_str())
            .collect::<Vec<_>>(),
        ["integration-crm"]
    );

    // Rotation: a successor with the same subject and permissions; the old one is refused.
    let rotated = c
        .rotate_token(app.admin(pb::RotateTokenRequest {
            tenant_id: id.clone(),
            token_id: token.token_id.clone(),
        }))
        .await
        .expect("rotated")
        .into_inner();
    let successor = rotated.token.expect("new token");
    assert_ne!(successor.token_id, token.token_id);
    assert_eq!(successor.subject, "pos-gangnam-1");
    assert_eq!(successor.permissions, ["pii:unmask"]);
    let old = rotated.rotated.expect("old token");
    assert!(old.revoke_time.is_some());
    assert_eq!(old.replaced_by_token_id, successor.token_id);
    wait_refused_by_billing(&app, &first.secret).await;
    c.get_subscription(with_token(
        pb::GetSubscriptionRequest::default(),
        &rotated.secret,
    ))
    .await
    .expect("the successor works");
    let err = c
        .rotate_token(app.admin(pb::RotateTokenRequest {
            tenant_id: id.clone(),
            token_id: token.token_id.clone(),
        }))
        .await
        .expect_err("rotated out");
    assert_reason(&err, Code::FailedPrecondition, "TOKEN_REVOKED");

    // Revocation, twice: the same answer, one event.
    let second_id = second.token.expect("token").token_id;
    let revoked = c
        .revoke_token(app.admin(pb::RevokeTokenRequest {
            tenant_id: id.clone(),
            token_id: second_id.clone(),
        }))
        .await
        .expect("revoked")
        .into_inner()
        .token
        .expect("token");
    assert!(revoked.revoke_time.is_some());
    let again = c
        .revoke_token(app.admin(pb::RevokeTokenRequest {
            tenant_id: id.clone(),
            token_id: second_id.clone(),
        }))
        .await
        .expect("revoked again")
        .into_inner()
        .token
        .expect("token");
    assert_eq!(again.revoke_time, revoked.revoke_time);
    wait_refused_by_billing(&app, &second.secret).await;
    tap.wait_for_n("billing.token_revoked", &token.token_id, 1)
        .await;
    tap.wait_for_n("billing.token_revoked", &second_id, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tap.all("billing.token_revoked").len(), 2);
    let payload: pb::TokenRevoked = tap.all("billing.token_revoked")[0]
        .decode()
        .expect("payload");
    assert_eq!(payload.tenant_id, id);
    assert!(payload.expire_unix > 0);

    // Another tenant's token id is NOT_FOUND.
    let other = app.create_tenant("다른 가맹점").await.tenant_id;
    let err = c
        .revoke_token(app.admin(pb::RevokeTokenRequest {
            tenant_id: other,
            token_id: successor.token_id.clone(),
        }))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
}

async fn a_revoked_token_is_refused_by_the_member_service(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            with_member: true,
            ..Spawn::default()
        },
    )
    .await;
    let id = app.create_tenant("가맹점").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;
    let issued = issue(&app, &id, "pos-1").await;
    let mut member = app.member.clone();

    // Billing's token works on the member service, whose events billing meters.
    member
        .create_store(with_token(
            mpb::CreateStoreRequest {
                code: "GN001".into(),
                name: "강남점".into(),
                region: "서울".into(),
                trade_area: "강남역".into(),
                status: 0,
            },
            &issued.secret,
        ))
        .await
        .expect("the member service accepts the billing token");
    member
        .join_member(with_token(
            mpb::JoinMemberRequest {
                name: "홍길동".into(),
                phone: "010-1234-5678".into(),
                join_channel: spharos_proto::common::JoinChannel::Pos.into(),
                ..Default::default()
            },
            &issued.secret,
        ))
        .await
        .expect("joined");
    let s = app
        .wait_for_status(&id, "one member and one store", |s| {
            s.member_count == 1 && s.store_count == 1
        })
        .await;
    assert!(s.plan_compliant);

    let token_id = issued.token.expect("token").token_id;
    app.client
        .clone()
        .revoke_token(app.admin(pb::RevokeTokenRequest {
            tenant_id: id.clone(),
            token_id,
        }))
        .await
        .expect("revoked");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match member
            .list_stores(with_token(
                mpb::ListStoresRequest::default(),
                &issued.secret,
            ))
            .await
        {
            Err(e) if e.code() == Code::Unauthenticated => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the member service still accepts the revoked token after 5 s: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // A token that was never revoked keeps working.
    member
        .list_stores(app.as_tenant(&id, mpb::ListStoresRequest::default()))
        .await
        .expect("other tokens are unaffected");
}

async fn bad_token_requests_are_refused(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let id = app.create_tenant("가맹점").await.tenant_id;
    let err = c
        .issue_token(app.admin(pb::IssueTokenRequest {
            tenant_id: "bad".into(),
            subject: " ".into(),
            permissions: vec!["platform:admin".into(), "*".into(), "Bad Perm".into()],
            ttl_seconds: -5,
        }))
        .await
        .expect_err("invalid");
    assert_invalid(
        &err,
        &[
            "tenant_id",
            "subject",
            "permissions[0]",
            "permissions[1]",
            "permissions[2]",
            "ttl_seconds",
        ],
    );
    let err = c
        .issue_token(app.admin(pb::IssueTokenRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            subject: "pos".into(),
            ..Default::default()
        }))
        .await
        .expect_err("unknown tenant");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .revoke_token(app.admin(pb::RevokeTokenRequest {
            tenant_id: id.clone(),
            token_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .rotate_token(app.admin(pb::RotateTokenRequest {
            tenant_id: id.clone(),
            token_id: "nope".into(),
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["token_id"]);
    // The default lifetime applies when none is given.
    let issued = c
        .issue_token(app.admin(pb::IssueTokenRequest {
            tenant_id: id.clone(),
            subject: "pos".into(),
            ..Default::default()
        }))
        .await
        .expect("issued")
        .into_inner()
        .token
        .expect("token");
    let lifetime = issued.expire_time.map(|t| t.seconds).unwrap_or(0)
        - issued.issue_time.map(|t| t.seconds).unwrap_or(0);
    assert_eq!(
        lifetime,
        i64::try_from(app.platform.settings.auth.token_ttl_seconds).expect("fits")
    );
}
