//! Tenants: the platform registers (with the check digit of the business registration number
//! verified), reads and lists them; every bad field is named; duplicates, missing permission
//! and missing tokens are refused with the right code.
use spharos_kit::testing::TestBackend;
use spharos_proto::billing as pb;
use tonic::{Code, Request};

use crate::helpers::{TestApp, assert_invalid, assert_reason, brn, spawn_app};

on_both_backends!(
    platform_creates_reads_and_lists_tenants,
    bad_tenants_are_refused_field_by_field,
    tenant_operations_need_platform_admin,
    the_catalogue_lists_plans_and_prices,
);

async fn platform_creates_reads_and_lists_tenants(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let chosen = uuid::Uuid::now_v7().to_string();
    let created = c
        .create_tenant(app.admin(pb::CreateTenantRequest {
            tenant_id: chosen.clone(),
            business_registration_number: brn("101860000").replace('-', ""),
            time_zone: "America/New_York".into(),
            ..TestApp::create_request("행복베이커리")
        }))
        .await
        .expect("created")
        .into_inner()
        .tenant
        .expect("tenant");
    assert_eq!(created.tenant_id, chosen);
    assert_eq!(created.name, "행복베이커리");
    // Stored as digits, shown formatted.
    assert_eq!(created.business_registration_number, brn("101860000"));
    assert_eq!(created.time_zone, "America/New_York");

    let second = app.create_tenant("두번째 가맹점").await;
    assert_eq!(second.time_zone, "Asia/Seoul", "the default zone");

    let got = app.get_tenant(&chosen).await;
    assert_eq!(
        got.tenant.as_ref().map(|t| t.name.as_str()),
        Some("행복베이커리")
    );
    assert!(got.subscription.is_none());
    let status = got.status.expect("status");
    assert!(status.plan_compliant);
    assert_eq!(status.plan, i32::from(pb::Plan::Unspecified));

    // The same id again is ALREADY_EXISTS, so the operator's retries are safe.
    let err = c
        .create_tenant(app.admin(pb::CreateTenantRequest {
            tenant_id: chosen.clone(),
            ..TestApp::create_request("다른 이름")
        }))
        .await
        .expect_err("duplicate");
    assert_reason(&err, Code::AlreadyExists, "TENANT_EXISTS");

    // Listing pages across tenants.
    let first = c
        .list_tenants(app.admin(pb::ListTenantsRequest {
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(first.tenants.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let rest = c
        .list_tenants(app.admin(pb::ListTenantsRequest {
            page_size: 10,
            page_token: first.next_page_token,
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(rest.tenants.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let mut ids: Vec<String> = first
        .tenants
        .iter()
        .chain(&rest.tenants)
        .map(|t| t.tenant_id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![chosen.clone(), second.tenant_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    // An unknown tenant is NOT_FOUND.
    let err = c
        .get_tenant(app.admin(pb::GetTenantRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
}

async fn bad_tenants_are_refused_field_by_field(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let err = c
        .create_tenant(app.admin(pb::CreateTenantRequest {
            tenant_id: "not-a-uuid".into(),
            name: "   ".into(),
            // A valid prefix with the wrong check digit.
            business_registration_number: {
                let good = brn("220810123");
                let last = good
                    .chars()
                    .last()
                    .and_then(|c| c.to_digit(10))
                    .expect("digit");
                format!("{}{}", &good[..good.len() - 1], (last + 1) % 10)
            },
            contact_name: String::new(),
            contact_email: "no-at-sign".into(),
            contact_phone: "call me maybe".into(),
            time_zone: "Mars/Olympus_Mons".into(),
        }))
        .await
        .expect_err("invalid");
    assert_invalid(
        &err,
        &[
            "tenant_id",
            "name",
            "business_registration_number",
            "contact_name",
            "contact_email",
            "contact_phone",
            "time_zone",
        ],
    );
    // Malformed numbers are named too.
    for bad in ["12345", "123-456-7890", "abcdefghij"] {
        let err = c
            .create_tenant(app.admin(pb::CreateTenantRequest {
                business_registration_number: bad.into(),
                ..TestApp::create_request("가맹점")
            }))
            .await
            .expect_err("invalid number");
        assert_invalid(&err, &["business_registration_number"]);
    }
    let err = c
        .list_tenants(app.admin(pb::ListTenantsRequest {
            page_size: -1,
            page_token: String::new(),
        }))
        .await
        .expect_err("bad page size");
    assert_invalid(&err, &["page_size"]);
    let err = c
        .get_tenant(app.admin(pb::GetTenantRequest {
            tenant_id: String::new(),
        }))
        .await
        .expect_err("missing id");
    assert_invalid(&err, &["tenant_id"]);
}

async fn tenant_operations_need_platform_admin(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let t = app.create_tenant("가맹점").await;
    let staff = |msg| app.as_tenant(&t.tenant_id, msg);
    let err = c
        .create_tenant(staff(TestApp::create_request("몰래")))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .list_tenants(app.as_tenant(&t.tenant_id, pb::ListTenantsRequest::default()))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .subscribe(app.as_tenant(
            &t.tenant_id,
            pb::SubscribeRequest {
                tenant_id: t.tenant_id.clone(),
                plan: pb::Plan::Basic.into(),
                module_fees: vec![],
            },
        ))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .issue_token(app.as_tenant(
            &t.tenant_id,
            pb::IssueTokenRequest {
                tenant_id: t.tenant_id.clone(),
                subject: "pos".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .close_month(app.as_tenant(
            &t.tenant_id,
            pb::CloseMonthRequest {
                tenant_id: t.tenant_id.clone(),
                year_month: "2026-01".into(),
            },
        ))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    // A tenant naming a tenant in a read is refused, even its own.
    let err = c
        .list_invoices(app.as_tenant(
            &t.tenant_id,
            pb::ListInvoicesRequest {
                tenant_id: t.tenant_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("tenant_id is for platform admins");
    assert_eq!(err.code(), Code::PermissionDenied);
    // Without a token at all: UNAUTHENTICATED.
    let err = c
        .get_subscription(Request::new(pb::GetSubscriptionRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let stranger = spharos_kit::auth::TokenSigner::generate().mint(
        spharos_kit::TenantId::generate(),
        "x",
        &[spharos_billing::PERM_PLATFORM_ADMIN],
        60,
    );
    let err = c
        .list_tenants(crate::helpers::with_token(
            pb::ListTenantsRequest::default(),
            &stranger,
        ))
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Code::Unauthenticated);
}

async fn the_catalogue_lists_plans_and_prices(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let t = app.create_tenant("가맹점").await;
    let cat = app
        .client
        .clone()
        .get_catalogue(app.as_tenant(&t.tenant_id, pb::GetCatalogueRequest {}))
        .await
        .expect("catalogue")
        .into_inner();
    assert_eq!(cat.basic_monthly_fee_krw, 30_000);
    assert_eq!(
        (cat.basic_member_limit, cat.basic_store_limit),
        (300_000, 100)
    );
    assert_eq!(cat.vat_percent, 10);
    assert_eq!(cat.custom_modules.len(), 6);
    use spharos_proto::common::Channel as C;
    let price = |ch: C| {
        cat.message_prices
            .iter()
            .find(|p| p.channel == i32::from(ch))
            .map(|p| p.unit_price_krw)
    };
    assert_eq!(price(C::Sms), Some(20));
    assert_eq!(price(C::Lms), Some(50));
    assert_eq!(price(C::Mms), Some(120));
    assert_eq!(price(C::KakaoAlimtalk), Some(8));
    assert_eq!(price(C::KakaoBrandMessage), Some(15));
    assert_eq!(price(C::Email), Some(1));
    assert_eq!(price(C::AppPush), Some(0));
}
