//! Gift vouchers: issue, partial uses down to zero, insufficient balance with the amount left,
//! idempotent use per till transaction, concurrent uses never overdraw, refund of a use once,
//! the ledger history with paging, and bad inputs.
use futures::{StreamExt, stream};
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb, VoucherUsed};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, days, member, spawn_app, with_token};

on_both_backends!(
    voucher_lifecycle,
    concurrent_uses_never_overdraw,
    voucher_validation
);

async fn issue_voucher(app: &crate::helpers::TestApp, face: i64, key: &str) -> pb::Voucher {
    app.client
        .clone()
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: face,
            member_id: String::new(),
            validity: Some(days(365)),
            idempotency_key: key.into(),
        }))
        .await
        .expect("voucher issued")
        .into_inner()
        .voucher
        .expect("voucher")
}

fn use_req(code: &str, amount: i64, pos: &str) -> pb::UseVoucherRequest {
    pb::UseVoucherRequest {
        code: code.into(),
        amount_krw: amount,
        pos_transaction_id: pos.into(),
        store_code: "GN001".into(),
    }
}

async fn voucher_lifecycle(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-vouchers", &["voucher.>"]).await;
    let mut c = app.client.clone();
    let v = issue_voucher(&app, 50_000, "gift-1").await;
    assert_eq!((v.face_value_krw, v.balance_krw), (50_000, 50_000));
    assert_eq!(v.status(), pb::VoucherStatus::Active);
    assert_eq!(v.display_code.replace('-', ""), v.code);
    assert_eq!(
        issue_voucher(&app, 50_000, "gift-1").await,
        v,
        "idempotent issue"
    );

    let used = c
        .use_voucher(app.req(use_req(&v.display_code, 30_000, "POS-1")))
        .await
        .expect("use")
        .into_inner();
    assert!(!used.replayed);
    let t1 = used.transaction.clone().expect("transaction");
    assert_eq!(
        (t1.kind(), t1.amount_krw, t1.balance_after_krw),
        (pb::VoucherTransactionKind::Use, 30_000, 20_000)
    );
    assert_eq!(used.voucher.as_ref().expect("voucher").balance_krw, 20_000);
    let retry = c
        .use_voucher(app.req(use_req(&v.code, 30_000, "POS-1")))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.transaction, used.transaction);

    let err = c
        .use_voucher(app.req(use_req(&v.code, 20_001, "POS-2")))
        .await
        .expect_err("too much");
    assert_reason(
        &err,
        Code::FailedPrecondition,
        "INSUFFICIENT_VOUCHER_BALANCE",
    );
    assert!(err.message().contains("20,000원"), "{}", err.message());
    let rest = c
        .use_voucher(app.req(use_req(&v.code, 20_000, "POS-2")))
        .await
        .expect("the rest")
        .into_inner();
    assert_eq!(rest.voucher.expect("voucher").balance_krw, 0);
    let err = c
        .use_voucher(app.req(use_req(&v.code, 1, "POS-3")))
        .await
        .expect_err("empty");
    assert_reason(
        &err,
        Code::FailedPrecondition,
        "INSUFFICIENT_VOUCHER_BALANCE",
    );

    // Refund of the first use: once.
    let refund = c
        .refund_voucher_use(app.req(pb::RefundVoucherUseRequest {
            code: v.code.clone(),
            pos_transaction_id: "POS-1".into(),
        }))
        .await
        .expect("refund")
        .into_inner();
    assert!(!refund.replayed);
    let rt = refund.transaction.clone().expect("transaction");
    assert_eq!(
        (rt.kind(), rt.amount_krw, rt.balance_after_krw),
        (pb::VoucherTransactionKind::Refund, 30_000, 30_000)
    );
    assert_eq!(rt.refund_of_transaction_id, t1.transaction_id);
    let again = c
        .refund_voucher_use(app.req(pb::RefundVoucherUseRequest {
            code: v.code.clone(),
            pos_transaction_id: "POS-1".into(),
        }))
        .await
        .expect("refund again")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.transaction, refund.transaction);
    assert_eq!(
        again.voucher.expect("voucher").balance_krw,
        30_000,
        "restored once only"
    );
    let err = c
        .refund_voucher_use(app.req(pb::RefundVoucherUseRequest {
            code: v.code.clone(),
            pos_transaction_id: "POS-404".into(),
        }))
        .await
        .expect_err("no such use");
    assert_eq!(err.code(), Code::NotFound);

    let got = c
        .get_voucher(app.req(pb::GetVoucherRequest {
            key: Some(pb::get_voucher_request::Key::VoucherId(
                v.voucher_id.clone(),
            )),
        }))
        .await
        .expect("get")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(got.balance_krw, 30_000);

    // History: issue, use, use, refund, in order, over two pages.
    let p1 = c
        .list_voucher_transactions(app.req(pb::ListVoucherTransactionsRequest {
            code: v.code.clone(),
            page_size: 3,
            page_token: String::new(),
        }))
        .await
        .expect("history")
        .into_inner();
    let p2 = c
        .list_voucher_transactions(app.req(pb::ListVoucherTransactionsRequest {
            code: v.code.clone(),
            page_size: 3,
            page_token: p1.next_page_token.clone(),
        }))
        .await
        .expect("history 2")
        .into_inner();
    let kinds: Vec<_> = p1
        .transactions
        .iter()
        .chain(&p2.transactions)
        .map(|t| t.kind())
        .collect();
    use pb::VoucherTransactionKind::*;
    assert_eq!(kinds, [Issue, Use, Use, Refund]);
    assert!(p2.next_page_token.is_empty());

    let e = tap.wait_for("voucher.used", &v.voucher_id).await;
    let msg: VoucherUsed = e.decode().expect("payload");
    assert_eq!(msg.amount_krw, 30_000);
    assert!(!String::from_utf8_lossy(&e.payload).contains(&v.code));
    tap.wait_for("voucher.issued", &v.voucher_id).await;
    tap.wait_for("voucher.refunded", &v.voucher_id).await;
}

/// 30 concurrent uses of 10,000원 on a 100,000원 voucher: exactly 10 succeed, the balance ends
/// at 0 and the ledger sums up.
async fn concurrent_uses_never_overdraw(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let v = issue_voucher(&app, 100_000, "").await;
    let token = app.token();
    let client = app.client.clone();
    let results: Vec<Result<pb::UseVoucherResponse, tonic::Status>> = stream::iter(0..30)
        .map(|i| {
            let mut c = client.clone();
            let req = with_token(use_req(&v.code, 10_000, &format!("POS-C-{i}")), &token);
            async move { c.use_voucher(req).await.map(|r| r.into_inner()) }
        })
        .buffer_unordered(30)
        .collect()
        .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_reason(
            err,
            Code::FailedPrecondition,
            "INSUFFICIENT_VOUCHER_BALANCE",
        );
    }
    let mut balances: Vec<i64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| {
            r.transaction
                .as_ref()
                .expect("transaction")
                .balance_after_krw
        })
        .collect();
    balances.sort();
    assert_eq!(
        balances,
        (0..10).map(|i| i * 10_000).collect::<Vec<_>>(),
        "each use saw its own balance"
    );
}

async fn voucher_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let err = c
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: 0,
            member_id: "x".into(),
            validity: None,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("bad member");
    assert_invalid(&err, &["member_id"]);
    let err = c
        .issue_voucher(app.req(pb::IssueVoucherRequest {
            face_value_krw: 10_000_001,
            member_id: member(),
            validity: None,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("bad value and validity");
    assert_invalid(&err, &["face_value_krw", "validity"]);
    let err = c
        .use_voucher(app.req(use_req("nope", 0, "")))
        .await
        .expect_err("bad use");
    assert_invalid(&err, &["code", "amount_krw", "pos_transaction_id"]);
    let unknown = spharos_coupon::domain::code::Code::from_value(99).into_string();
    let err = c
        .use_voucher(app.req(use_req(&unknown, 1_000, "POS-1")))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_voucher(app.req(pb::GetVoucherRequest { key: None }))
        .await
        .expect_err("no key");
    assert_invalid(&err, &["key"]);
    let err = c
        .list_voucher_transactions(app.req(pb::ListVoucherTransactionsRequest {
            code: "".into(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect_err("no code");
    assert_invalid(&err, &["code"]);
}
