//! Invoices: the prorated month of a mid-month plan change (worked example), the 1,000 SMS +
//! 5,000 Alimtalk month against a hand computation, closing twice, next-cycle changes, the
//! month-close job in each tenant's zone, status changes, tenant isolation and the CSV export.
use spharos_kit::testing::TestBackend;
use spharos_proto::{billing as pb, common::Channel};
use tonic::Code;

use crate::helpers::{
    Spawn, assert_invalid, assert_reason, kst, message_sent, module_fees, spawn_app_with,
};

on_both_backends!(
    a_mid_month_plan_change_is_prorated_by_days,
    sms_and_alimtalk_usage_matches_a_hand_computation,
    a_next_cycle_change_bills_whole_months,
    the_month_close_job_follows_each_tenant_zone,
    invoice_statuses_isolation_and_bad_input,
);

fn codes(inv: &pb::Invoice) -> Vec<(&str, i64, i64, i64)> {
    inv.lines
        .iter()
        .map(|l| (l.code.as_str(), l.quantity, l.unit_price_krw, l.amount_krw))
        .collect()
}

async fn a_mid_month_plan_change_is_prorated_by_days(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 3, 1, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let id = app.create_tenant("행복베이커리").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;

    // On 16 March (Seoul) the tenant moves to Custom at once.
    app.clock.set(kst(2026, 3, 16, 10));
    let changed = c
        .change_plan(app.admin(pb::ChangePlanRequest {
            tenant_id: id.clone(),
            plan: pb::Plan::Custom.into(),
            module_fees: module_fees(&[
                (pb::Module::Membership, 500_000),
                (pb::Module::Campaign, 300_000),
            ]),
            timing: pb::ChangeTiming::Immediate.into(),
        }))
        .await
        .expect("changed")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(changed.plan, i32::from(pb::Plan::Custom));

    // March is not over yet.
    let err = c
        .close_month(app.admin(pb::CloseMonthRequest {
            tenant_id: id.clone(),
            year_month: "2026-03".into(),
        }))
        .await
        .expect_err("not ended");
    assert_reason(&err, Code::FailedPrecondition, "MONTH_NOT_ENDED");

    // Worked example, March 2026 (31 days), each line rounded down on its own:
    //   Basic, 1–15 March = 15 days:       30,000 × 15 / 31 =   450,000 / 31 =  14,516.12… →  14,516
    //   Membership, 16–31 March = 16 days: 500,000 × 16 / 31 = 8,000,000 / 31 = 258,064.51… → 258,064
    //   Campaign, 16–31 March = 16 days:   300,000 × 16 / 31 = 4,800,000 / 31 = 154,838.70… → 154,838
    //   subtotal = 14,516 + 258,064 + 154,838 = 427,418
    //   VAT      = floor(427,418 × 10 / 100) = floor(42,741.8) = 42,741
    //   total    = 427,418 + 42,741 = 470,159
    app.clock.set(kst(2026, 4, 1, 0));
    let closed = app.close_month(&id, "2026-03").await;
    assert!(closed.created);
    let inv = closed.invoice.expect("invoice");
    assert_eq!(
        codes(&inv),
        [
            ("BASIC", 15, 30_000, 14_516),
            ("MODULE_MEMBERSHIP", 16, 500_000, 258_064),
            ("MODULE_CAMPAIGN", 16, 300_000, 154_838),
        ]
    );
    assert!(inv.lines.iter().all(|l| l.days_in_month == 31));
    assert_eq!(inv.lines[0].kind, i32::from(pb::InvoiceLineKind::BaseFee));
    assert_eq!(inv.lines[1].kind, i32::from(pb::InvoiceLineKind::ModuleFee));
    assert_eq!(inv.subtotal_krw, 427_418);
    assert_eq!(inv.vat_krw, 42_741);
    assert_eq!(inv.total_krw, 470_159);
    assert_eq!(inv.status, i32::from(pb::InvoiceStatus::Draft));
    assert_eq!(
        (inv.period_start_date.as_str(), inv.period_end_date.as_str()),
        ("2026-03-01", "2026-03-31")
    );

    // Closing the same month again returns the same invoice; nothing is duplicated.
    let again = app.close_month(&id, "2026-03").await;
    assert!(!again.created);
    assert_eq!(
        again.invoice.map(|i| i.invoice_id),
        Some(inv.invoice_id.clone())
    );
    let all = c
        .list_invoices(app.as_tenant(&id, pb::ListInvoicesRequest::default()))
        .await
        .expect("listed")
        .into_inner()
        .invoices;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].total_krw, 470_159);

    // Concurrent closes of the next month still make one invoice.
    app.clock.set(kst(2026, 5, 1, 0));
    let (a, b) = tokio::join!(
        app.close_month(&id, "2026-04"),
        app.close_month(&id, "2026-04")
    );
    let (a, b) = (a.invoice.expect("a"), b.invoice.expect("b"));
    assert_eq!(a.invoice_id, b.invoice_id);
    // April: Custom all 30 days = 800,000; VAT 80,000.
    assert_eq!((a.subtotal_krw, a.total_krw), (800_000, 880_000));
}

async fn sms_and_alimtalk_usage_matches_a_hand_computation(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 2, 10, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let id = app.create_tenant("행복베이커리").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;

    // 1,000 SMS in four sends and 5,000 Alimtalk in five, all in March (Seoul), plus sends
    // just outside March that must not count: 28 Feb 23:30 and 1 April 00:10 in Seoul.
    let mut events = Vec::new();
    for day in [2, 9, 16, 23] {
        events.push(message_sent(&id, Channel::Sms, 250, kst(2026, 3, day, 11)));
    }
    for day in [3, 10, 17, 24, 31] {
        events.push(message_sent(
            &id,
            Channel::KakaoAlimtalk,
            1_000,
            kst(2026, 3, day, 20),
        ));
    }
    let feb = chrono::TimeZone::with_ymd_and_hms(&chrono_tz::Asia::Seoul, 2026, 2, 28, 23, 30, 0)
        .single()
        .expect("valid")
        .with_timezone(&chrono::Utc);
    let apr = chrono::TimeZone::with_ymd_and_hms(&chrono_tz::Asia::Seoul, 2026, 4, 1, 0, 10, 0)
        .single()
        .expect("valid")
        .with_timezone(&chrono::Utc);
    events.push(message_sent(&id, Channel::Sms, 7, feb));
    events.push(message_sent(&id, Channel::Sms, 9, apr));
    app.publish(&events).await;
    app.wait_for_usage(
        &id,
        "2026-03-01",
        "2026-03-31",
        Channel::KakaoAlimtalk,
        5_000,
    )
    .await;
    let march = app
        .wait_for_usage(&id, "2026-03-01", "2026-03-31", Channel::Sms, 1_000)
        .await;
    assert_eq!(crate::helpers::total(&march, Channel::Sms), 1_000);
    app.wait_for_usage(&id, "2026-04-01", "2026-04-01", Channel::Sms, 9)
        .await;
    app.wait_for_usage(&id, "2026-02-28", "2026-02-28", Channel::Sms, 7)
        .await;

    // By hand, March 2026 on Basic all month:
    //   base fee           30,000            (31/31 days)
    //   SMS       1,000 ×  20 =   20,000
    //   Alimtalk  5,000 ×   8 =   40,000
    //   subtotal                  90,000
    //   VAT  floor(90,000 × 10 / 100) = 9,000
    //   total                     99,000
    app.clock.set(kst(2026, 4, 1, 3));
    let inv = app
        .close_month(&id, "2026-03")
        .await
        .invoice
        .expect("invoice");
    assert_eq!(
        codes(&inv),
        [
            ("BASIC", 31, 30_000, 30_000),
            ("CHANNEL_SMS", 1_000, 20, 20_000),
            ("CHANNEL_KAKAO_ALIMTALK", 5_000, 8, 40_000),
        ]
    );
    assert_eq!(
        (inv.subtotal_krw, inv.vat_krw, inv.total_krw),
        (90_000, 9_000, 99_000)
    );

    // The tenant exports it: RFC 4180, UTF-8 with BOM, a header, plain integer amounts.
    let csv = c
        .export_invoices_csv(app.as_tenant(
            &id,
            pb::ExportInvoicesCsvRequest {
                tenant_id: String::new(),
                from_month: "2026-01".into(),
                to_month: "2026-12".into(),
            },
        ))
        .await
        .expect("exported")
        .into_inner();
    assert!(csv.invoices_csv.starts_with(b"\xEF\xBB\xBF"));
    let head = std::str::from_utf8(&csv.invoices_csv[3..]).expect("utf-8");
    let rows: Vec<&str> = head.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(
        rows[0],
        "invoice_id,year_month,status,period_start_date,period_end_date,subtotal_krw,vat_krw,total_krw,issue_time,paid_time,void_time"
    );
    assert_eq!(
        rows[1],
        format!(
            "{},2026-03,DRAFT,2026-03-01,2026-03-31,90000,9000,99000,,,",
            inv.invoice_id
        )
    );
    assert_eq!(rows.len(), 2);
    assert!(csv.lines_csv.starts_with(b"\xEF\xBB\xBF"));
    let lines = std::str::from_utf8(&csv.lines_csv[3..]).expect("utf-8");
    let rows: Vec<&str> = lines.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(
        rows[0],
        "invoice_id,year_month,line_no,kind,code,description,quantity,unit_price_krw,days_active,days_in_month,amount_krw"
    );
    assert_eq!(rows.len(), 4);
    // The description holds a comma, so it is quoted.
    assert_eq!(
        rows[1],
        format!(
            "{},2026-03,1,BASE_FEE,BASIC,\"Basic 요금제 기본료 (Basic plan fee) 2026-03-01~2026-03-31, 31/31일\",31,30000,31,31,30000",
            inv.invoice_id
        )
    );
    assert!(
        rows[2].ends_with(",CHANNEL_SMS,SMS 발송 (SMS),1000,20,,,20000"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3]
            .ends_with(",CHANNEL_KAKAO_ALIMTALK,카카오 알림톡 (KakaoTalk Alimtalk),5000,8,,,40000"),
        "{}",
        rows[3]
    );

    // A range without invoices exports only the headers.
    let empty = c
        .export_invoices_csv(app.as_tenant(
            &id,
            pb::ExportInvoicesCsvRequest {
                tenant_id: String::new(),
                from_month: "2027-01".into(),
                to_month: String::new(),
            },
        ))
        .await
        .expect("exported")
        .into_inner();
    assert_eq!(
        std::str::from_utf8(&empty.invoices_csv[3..])
            .expect("utf-8")
            .matches("\r\n")
            .count(),
        1
    );
    let err = c
        .export_invoices_csv(app.as_tenant(
            &id,
            pb::ExportInvoicesCsvRequest {
                tenant_id: String::new(),
                from_month: "2026-13".into(),
                to_month: "March".into(),
            },
        ))
        .await
        .expect_err("bad months");
    assert_invalid(&err, &["from_month", "to_month"]);
}

async fn a_next_cycle_change_bills_whole_months(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 3, 1, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let id = app.create_tenant("가맹점").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;
    app.clock.set(kst(2026, 3, 20, 9));
    c.change_plan(app.admin(pb::ChangePlanRequest {
        tenant_id: id.clone(),
        plan: pb::Plan::Custom.into(),
        module_fees: module_fees(&[(pb::Module::Membership, 200_000)]),
        timing: pb::ChangeTiming::NextCycle.into(),
    }))
    .await
    .expect("scheduled");

    // From 1 April the Custom plan is in force without anything else happening.
    app.clock.set(kst(2026, 4, 2, 9));
    let sub = c
        .get_subscription(app.as_tenant(&id, pb::GetSubscriptionRequest::default()))
        .await
        .expect("read")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(sub.plan, i32::from(pb::Plan::Custom));
    assert!(sub.scheduled_change.is_none());

    app.clock.set(kst(2026, 5, 1, 9));
    // March: Basic for all 31 days = 30,000; VAT 3,000.
    let march = app
        .close_month(&id, "2026-03")
        .await
        .invoice
        .expect("invoice");
    assert_eq!(codes(&march), [("BASIC", 31, 30_000, 30_000)]);
    assert_eq!(march.total_krw, 33_000);
    // April: Custom for all 30 days = 200,000; VAT 20,000.
    let april = app
        .close_month(&id, "2026-04")
        .await
        .invoice
        .expect("invoice");
    assert_eq!(codes(&april), [("MODULE_MEMBERSHIP", 30, 200_000, 200_000)]);
    assert_eq!(april.total_krw, 220_000);
}

async fn the_month_close_job_follows_each_tenant_zone(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            // 2 March 09:00 in Seoul is 1 March 19:00 in New York: both start in March.
            now: kst(2026, 3, 2, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let seoul = app.create_tenant("서울 가맹점").await.tenant_id;
    let ny = c
        .create_tenant(app.admin(pb::CreateTenantRequest {
            time_zone: "America/New_York".into(),
            ..crate::helpers::TestApp::create_request("뉴욕 가맹점")
        }))
        .await
        .expect("created")
        .into_inner()
        .tenant
        .expect("tenant")
        .tenant_id;
    let idle = app.create_tenant("구독 없는 가맹점").await.tenant_id;
    app.subscribe(&seoul, pb::Plan::Basic, &[]).await;
    app.subscribe(&ny, pb::Plan::Basic, &[]).await;

    // 1 April 02:00 in Seoul (past the hour of grace) is still 31 March in New York.
    app.clock.set(kst(2026, 4, 1, 2));
    let run = app.app.close_due_months().await.expect("job ran");
    assert_eq!((run.tenants, run.created, run.failed), (3, 1, 0));
    let invoices = |tenant: String| {
        let mut c = c.clone();
        let req = app.admin(pb::ListInvoicesRequest {
            tenant_id: tenant,
            ..Default::default()
        });
        async move {
            c.list_invoices(req)
                .await
                .expect("listed")
                .into_inner()
                .invoices
        }
    };
    let seoul_invoices = invoices(seoul.clone()).await;
    assert_eq!(seoul_invoices.len(), 1);
    assert_eq!(seoul_invoices[0].year_month, "2026-03");
    // Seoul started 2 March: 30,000 × 30 / 31 = 900,000 / 31 = 29,032.25… → 29,032.
    assert_eq!(seoul_invoices[0].subtotal_krw, 29_032);
    assert!(invoices(ny.clone()).await.is_empty());

    // 1 April 15:00 in Seoul is 02:00 in New York: its March has ended too.
    app.clock.set(kst(2026, 4, 1, 15));
    let run = app.app.close_due_months().await.expect("job ran");
    assert_eq!((run.created, run.failed), (1, 0));
    let ny_invoices = invoices(ny.clone()).await;
    assert_eq!(ny_invoices.len(), 1);
    // New York started 1 March (its own date): the whole month.
    assert_eq!(ny_invoices[0].subtotal_krw, 30_000);
    assert!(invoices(idle).await.is_empty());

    // Running again creates nothing.
    let run = app.app.close_due_months().await.expect("job ran");
    assert_eq!((run.created, run.failed), (0, 0));
    assert_eq!(invoices(seoul).await.len(), 1);
}

async fn invoice_statuses_isolation_and_bad_input(backend: TestBackend) {
    let app = spawn_app_with(
        backend,
        Spawn {
            now: kst(2026, 3, 1, 9),
            ..Spawn::default()
        },
    )
    .await;
    let mut c = app.client.clone();
    let id = app.create_tenant("가맹점").await.tenant_id;
    let other = app.create_tenant("다른 가맹점").await.tenant_id;
    app.subscribe(&id, pb::Plan::Basic, &[]).await;
    app.clock.set(kst(2026, 4, 1, 9));

    // Nothing to bill for a tenant without plan or usage.
    let err = c
        .close_month(app.admin(pb::CloseMonthRequest {
            tenant_id: other.clone(),
            year_month: "2026-03".into(),
        }))
        .await
        .expect_err("nothing to bill");
    assert_reason(&err, Code::FailedPrecondition, "NOTHING_TO_BILL");
    let err = c
        .close_month(app.admin(pb::CloseMonthRequest {
            tenant_id: "nope".into(),
            year_month: "2026-3".into(),
        }))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["tenant_id", "year_month"]);
    let err = c
        .close_month(app.admin(pb::CloseMonthRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            year_month: "2026-03".into(),
        }))
        .await
        .expect_err("unknown tenant");
    assert_eq!(err.code(), Code::NotFound);

    let inv = app
        .close_month(&id, "2026-03")
        .await
        .invoice
        .expect("invoice");
    let inv_id = inv.invoice_id.clone();

    // Another tenant cannot see it: NOT_FOUND, never PERMISSION_DENIED.
    let err = c
        .get_invoice(app.as_tenant(
            &other,
            pb::GetInvoiceRequest {
                tenant_id: String::new(),
                invoice_id: inv_id.clone(),
            },
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        c.list_invoices(app.as_tenant(&other, pb::ListInvoicesRequest::default()))
            .await
            .expect("listed")
            .into_inner()
            .invoices
            .is_empty()
    );
    // A platform admin naming the wrong tenant does not find it either.
    let err = c
        .issue_invoice(app.admin(pb::IssueInvoiceRequest {
            tenant_id: other.clone(),
            invoice_id: inv_id.clone(),
        }))
        .await
        .expect_err("wrong tenant");
    assert_eq!(err.code(), Code::NotFound);

    // draft → paid is not allowed; draft → issued → paid is; paid → void is not.
    let err = c
        .mark_invoice_paid(app.admin(pb::MarkInvoicePaidRequest {
            tenant_id: id.clone(),
            invoice_id: inv_id.clone(),
        }))
        .await
        .expect_err("draft cannot be paid");
    assert_reason(&err, Code::FailedPrecondition, "INVOICE_STATUS_CONFLICT");
    let issued = c
        .issue_invoice(app.admin(pb::IssueInvoiceRequest {
            tenant_id: id.clone(),
            invoice_id: inv_id.clone(),
        }))
        .await
        .expect("issued")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(issued.status, i32::from(pb::InvoiceStatus::Issued));
    assert!(issued.issue_time.is_some());
    let paid = c
        .mark_invoice_paid(app.admin(pb::MarkInvoicePaidRequest {
            tenant_id: id.clone(),
            invoice_id: inv_id.clone(),
        }))
        .await
        .expect("paid")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(paid.status, i32::from(pb::InvoiceStatus::Paid));
    assert!(paid.paid_time.is_some());
    assert_eq!(paid.lines.len(), inv.lines.len());
    let err = c
        .void_invoice(app.admin(pb::VoidInvoiceRequest {
            tenant_id: id.clone(),
            invoice_id: inv_id.clone(),
        }))
        .await
        .expect_err("paid cannot be voided");
    assert_reason(&err, Code::FailedPrecondition, "INVOICE_STATUS_CONFLICT");

    // Status filter and the tenant's own read.
    let paid_list = c
        .list_invoices(app.as_tenant(
            &id,
            pb::ListInvoicesRequest {
                status: pb::InvoiceStatus::Paid.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("listed")
        .into_inner()
        .invoices;
    assert_eq!(paid_list.len(), 1);
    let drafts = c
        .list_invoices(app.as_tenant(
            &id,
            pb::ListInvoicesRequest {
                status: pb::InvoiceStatus::Draft.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("listed")
        .into_inner()
        .invoices;
    assert!(drafts.is_empty());
    let own = c
        .get_invoice(app.as_tenant(
            &id,
            pb::GetInvoiceRequest {
                tenant_id: String::new(),
                invoice_id: inv_id.clone(),
            },
        ))
        .await
        .expect("own invoice")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(own.total_krw, 33_000);

    // April: draft → void.
    app.clock.set(kst(2026, 5, 1, 9));
    let april = app
        .close_month(&id, "2026-04")
        .await
        .invoice
        .expect("invoice");
    let void = c
        .void_invoice(app.admin(pb::VoidInvoiceRequest {
            tenant_id: id.clone(),
            invoice_id: april.invoice_id.clone(),
        }))
        .await
        .expect("voided")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(void.status, i32::from(pb::InvoiceStatus::Void));
    let err = c
        .issue_invoice(app.admin(pb::IssueInvoiceRequest {
            tenant_id: id.clone(),
            invoice_id: april.invoice_id.clone(),
        }))
        .await
        .expect_err("void cannot be issued");
    assert_reason(&err, Code::FailedPrecondition, "INVOICE_STATUS_CONFLICT");

    let err = c
        .get_invoice(app.as_tenant(
            &id,
            pb::GetInvoiceRequest {
                tenant_id: String::new(),
                invoice_id: "x".into(),
            },
        ))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["invoice_id"]);
    let err = c
        .list_invoices(app.as_tenant(
            &id,
            pb::ListInvoicesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad token");
    assert_invalid(&err, &["page_token"]);
}
