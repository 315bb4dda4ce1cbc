//! Authentication: no token, a garbage token and a token signed by an unknown key are all
//! `Unauthenticated`, on every RPC family. (Expiry is unit-tested in the kit.)
use spharos_kit::{
    TenantId,
    auth::{PERM_PII_UNMASK, TokenSigner},
    testing::TestBackend,
};
use spharos_proto::member as pb;
use tonic::{Code, Request};

use crate::helpers::{spawn_app, with_token};

on_both_backends!(bad_tokens_are_unauthenticated);

async fn bad_tokens_are_unauthenticated(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let stranger = TokenSigner::generate().mint(app.tenant, "intruder", &[PERM_PII_UNMASK], 600);
    let tokens: [Option<&str>; 4] = [
        None,
        Some("garbage"),
        Some("a.b.c"),
        Some(stranger.as_str()),
    ];
    for token in tokens {
        let err = c
            .list_members(request(pb::ListMembersRequest::default(), token))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err:?}");
        let err = c
            .join_member(request(
                crate::helpers::join_request("홍길동", "010-1234-5678"),
                token,
            ))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        let err = c
            .get_member(request(
                pb::GetMemberRequest {
                    member_id: uuid::Uuid::now_v7().to_string(),
                    unmask: Some(pb::Unmask { reason: "x".into() }),
                },
                token,
            ))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        let err = c
            .list_stores(request(pb::ListStoresRequest::default(), token))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let mut r = Request::new(pb::ListGradesRequest {});
    r.metadata_mut().insert(
        "authorization",
        format!(
            "Basic {}",
            app.signer.mint(TenantId::generate(), "x", &[], 60)
        )
        .parse()
        .expect("ascii"),
    );
    let err = c.list_grades(r).await.expect_err("not a bearer token");
    assert_eq!(err.code(), Code::Unauthenticated);

    // Nothing was written by the refused calls.
    let members = c
        .list_members(app.req(pb::ListMembersRequest::default()))
        .await
        .expect("a valid token works")
        .into_inner()
        .members;
    assert!(members.is_empty());
}

fn request<T>(msg: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(t) => with_token(msg, t),
        None => Request::new(msg),
    }
}
