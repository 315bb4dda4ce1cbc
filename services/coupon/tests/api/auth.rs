//! Authentication: no token, a garbage token and a token signed by an unknown key are all
//! `Unauthenticated`, on every RPC family.
use spharos_kit::{auth::TokenSigner, testing::TestBackend};
use spharos_proto::coupon as pb;
use tonic::{Code, Request};

use crate::helpers::{fixed_template, spawn_app, with_token};

on_both_backends!(bad_tokens_are_unauthenticated);

fn request<T>(msg: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(t) => with_token(msg, t),
        None => Request::new(msg),
    }
}

async fn bad_tokens_are_unauthenticated(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let stranger = TokenSigner::generate().mint(app.tenant, "intruder", &[], 600);
    let tokens: [Option<&str>; 4] = [
        None,
        Some("garbage"),
        Some("a.b.c"),
        Some(stranger.as_str()),
    ];
    for token in tokens {
        let errs = [
            c.create_template(request(
                pb::CreateTemplateRequest {
                    template: Some(fixed_template("x")),
                    idempotency_key: String::new(),
                },
                token,
            ))
            .await
            .expect_err("refused"),
            c.claim_coupon(request(pb::ClaimCouponRequest::default(), token))
                .await
                .expect_err("refused"),
            c.redeem_coupon(request(pb::RedeemCouponRequest::default(), token))
                .await
                .expect_err("refused"),
            c.use_voucher(request(pb::UseVoucherRequest::default(), token))
                .await
                .expect_err("refused"),
            c.start_bulk_issue(request(pb::StartBulkIssueRequest::default(), token))
                .await
                .expect_err("refused"),
        ];
        for e in errs {
            assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
        }
    }
}
