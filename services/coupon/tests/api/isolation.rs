//! Tenant isolation: another tenant's templates, coupons, codes, redemptions, vouchers and
//! jobs are `NotFound` (existence never leaks) and its lists are empty; on PostgreSQL,
//! row-level security alone hides another tenant's rows even from a query without a WHERE.
use sea_orm::{ConnectionTrait, Statement};
use spharos_kit::{TenantId, testing::TestBackend};
use spharos_proto::coupon as pb;
use tonic::Code;

use crate::helpers::{basket, days, fixed_template, member, spawn_app};

on_both_backends!(another_tenant_sees_nothing);

async fn another_tenant_sees_nothing(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let t = app.create_template(fixed_template("A사 쿠폰")).await;
    let m = member();
    let coupon = app.issue(&t.template_id, &m).await;
    app.redeem(&coupon.code, "POS-A", basket(50_000, "GN001"))
        .await
        .expect("redeemed");
    let voucher = app
        .client
        .clone()
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: 10_000,
            member_id: String::new(),
            validity: Some(days(30)),
            idempotency_key: String::new(),
        }))
        .await
        .expect("voucher")
        .into_inner()
        .voucher
        .expect("voucher");
    let job = app
        .client
        .clone()
        .start_bulk_issue(app.req(pb::StartBulkIssueRequest {
            template_id: t.template_id.clone(),
            member_ids: vec![member()],
            issue_method: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect("job")
        .into_inner()
        .bulk_issue
        .expect("job");

    let b = TenantId::generate();
    let mut c = app.client.clone();
    macro_rules! assert_not_found {
        ($call:expr, $what:expr) => {{
            let err = $call.await.expect_err($what);
            assert_eq!(err.code(), Code::NotFound, "{}: {err:?}", $what);
        }};
    }
    assert_not_found!(
        c.get_template(app.req_as(
            b,
            pb::GetTemplateRequest {
                template_id: t.template_id.clone()
            }
        )),
        "get template"
    );
    assert_not_found!(
        c.claim_coupon(app.req_as(
            b,
            pb::ClaimCouponRequest {
                template_id: t.template_id.clone(),
                member_id: m.clone(),
                idempotency_key: String::new(),
            }
        )),
        "claim"
    );
    assert_not_found!(
        c.get_coupon(app.req_as(
            b,
            pb::GetCouponRequest {
                key: Some(pb::get_coupon_request::Key::Code(coupon.code.clone()))
            }
        )),
        "coupon by code"
    );
    assert_not_found!(
        c.get_coupon(app.req_as(
            b,
            pb::GetCouponRequest {
                key: Some(pb::get_coupon_request::Key::CouponId(
                    coupon.coupon_id.clone()
                ))
            }
        )),
        "coupon by id"
    );
    assert_not_found!(
        c.redeem_coupon(app.req_as(
            b,
            pb::RedeemCouponRequest {
                code: coupon.code.clone(),
                basket: Some(basket(50_000, "GN001")),
                pos_transaction_id: "POS-B".into(),
                member_id: String::new(),
            }
        )),
        "redeem"
    );
    assert_not_found!(
        c.cancel_redemption(app.req_as(
            b,
            pb::CancelRedemptionRequest {
                pos_transaction_id: "POS-A".into(),
                code: String::new(),
                reason: String::new(),
            }
        )),
        "cancel"
    );
    assert_not_found!(
        c.use_voucher(app.req_as(
            b,
            pb::UseVoucherRequest {
                code: voucher.code.clone(),
                amount_krw: 1_000,
                pos_transaction_id: "POS-B".into(),
                store_code: String::new(),
            }
        )),
        "use voucher"
    );
    assert_not_found!(
        c.get_bulk_issue(app.req_as(
            b,
            pb::GetBulkIssueRequest {
                bulk_issue_id: job.bulk_issue_id.clone()
            }
        )),
        "bulk job"
    );
    let wallet = c
        .list_member_coupons(app.req_as(
            b,
            pb::ListMemberCouponsRequest {
                member_id: m.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .coupons;
    assert!(wallet.is_empty());
    let templates = c
        .list_templates(app.req_as(b, pb::ListTemplatesRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .templates;
    assert!(templates.is_empty());

    // PostgreSQL: RLS alone hides tenant A's rows from a tenant-B transaction.
    if app.backend == TestBackend::Postgres {
        let db = app.app.db();
        let tx = db.begin(b).await.expect("tx");
        for table in [
            "coupon_templates",
            "issued_coupons",
            "coupon_redemptions",
            "vouchers",
            "voucher_transactions",
            "bulk_issue_items",
        ] {
            let row = tx
                .query_one_raw(Statement::from_string(
                    db.db_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .expect("count")
                .expect("row");
            let n: i64 = row.try_get("", "n").expect("n");
            assert_eq!(n, 0, "{table} leaks across tenants");
        }
        tx.commit().await.expect("commit");
    }
}
