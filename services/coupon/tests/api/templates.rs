//! Templates: create (both discount kinds and validities), get, idempotent create, update by
//! mask with status transitions and quantity rules, list with paging and a status filter, and
//! every validated field.
use spharos_kit::testing::TestBackend;
use spharos_proto::coupon::{self as pb, discount, validity};
use tonic::Code;

use crate::helpers::{
    assert_invalid, assert_reason, dates, fixed_template, mask, percent, spawn_app,
};

on_both_backends!(
    template_lifecycle,
    template_validation,
    template_status_and_quantity_rules,
    template_listing
);

async fn template_lifecycle(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();

    let mut t = fixed_template(" 신규 5,000원 ");
    t.store_codes = vec!["GN001".into(), "GN001".into(), "HD002".into()];
    t.status = 0;
    let created = app.create_template(t).await;
    assert_eq!(created.name, "신규 5,000원", "trimmed");
    assert_eq!(
        created.status(),
        pb::TemplateStatus::Draft,
        "DRAFT by default"
    );
    assert_eq!(created.store_codes, ["GN001", "HD002"], "de-duplicated");
    assert_eq!(created.issued_count, 0);
    assert_eq!(created.per_member_limit, 1);
    assert_eq!(
        created.discount.as_ref().and_then(|d| d.kind),
        Some(discount::Kind::AmountKrw(5_000))
    );
    assert!(uuid::Uuid::parse_str(&created.template_id).is_ok());

    let got = c
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: created.template_id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(got, created);

    let mut p = fixed_template("10% (최대 3,000원)");
    p.discount = percent(1_000, 3_000);
    p.validity = Some(dates(0, 10));
    p.categories = vec!["BAKERY".into()];
    p.total_quantity = 500;
    p.stackable = true;
    let pct = app.create_template(p).await;
    assert_eq!(
        pct.discount.and_then(|d| d.kind),
        Some(discount::Kind::Percent(pb::PercentOff {
            rate_bp: 1_000,
            max_discount_krw: 3_000
        }))
    );
    assert!(matches!(
        pct.validity.and_then(|v| v.kind),
        Some(validity::Kind::Fixed(_))
    ));
    assert_eq!(pct.total_quantity, 500);
    assert!(pct.stackable);

    // The same idempotency key and body answer with the first template; another body is refused.
    let req = |name: &str| pb::CreateTemplateRequest {
        template: Some(fixed_template(name)),
        idempotency_key: "tmpl-1".into(),
    };
    let first = c
        .create_template(app.req(req("A")))
        .await
        .expect("first")
        .into_inner()
        .template;
    let again = c
        .create_template(app.req(req("A")))
        .await
        .expect("replay")
        .into_inner()
        .template;
    assert_eq!(first, again);
    let other = c
        .create_template(app.req(req("B")))
        .await
        .expect_err("reused key");
    assert_reason(&other, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    let missing = c
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    let bad = c
        .get_template(app.req(pb::GetTemplateRequest {
            template_id: "nope".into(),
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&bad, &["template_id"]);
}

async fn template_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let create = |t: pb::CouponTemplate| {
        app.req(pb::CreateTemplateRequest {
            template: Some(t),
            idempotency_key: String::new(),
        })
    };

    let bad = pb::CouponTemplate {
        name: " ".into(),
        description: "x".repeat(1001),
        discount: None,
        min_purchase_krw: -1,
        store_codes: vec!["".into()],
        categories: vec!["x".repeat(51)],
        validity: None,
        total_quantity: -1,
        per_member_limit: -1,
        issue_methods: vec![],
        status: pb::TemplateStatus::Ended.into(),
        ..Default::default()
    };
    let err = c.create_template(create(bad)).await.expect_err("all bad");
    assert_invalid(
        &err,
        &[
            "template.name",
            "template.description",
            "template.discount",
            "template.min_purchase_krw",
            "template.store_codes[0]",
            "template.categories[0]",
            "template.validity",
            "template.total_quantity",
            "template.per_member_limit",
            "template.issue_methods",
            "template.status",
        ],
    );

    let mut t = fixed_template("x");
    t.discount = percent(10_001, -5);
    t.validity = Some(pb::Validity {
        kind: Some(validity::Kind::DaysFromIssue(0)),
    });
    t.issue_methods = vec![0, 99];
    let err = c
        .create_template(create(t))
        .await
        .expect_err("bad numbers and enums");
    assert_invalid(
        &err,
        &[
            "template.discount.percent.rate_bp",
            "template.discount.percent.max_discount_krw",
            "template.validity.days_from_issue",
            "template.issue_methods[0]",
            "template.issue_methods[1]",
        ],
    );

    let mut t = fixed_template("x");
    t.discount = Some(pb::Discount {
        kind: Some(discount::Kind::AmountKrw(0)),
    });
    t.validity = Some(dates(-10, -1));
    let err = c
        .create_template(create(t))
        .await
        .expect_err("past range, zero amount");
    assert_invalid(
        &err,
        &[
            "template.discount.amount_krw",
            "template.validity.fixed.end_date",
        ],
    );

    let mut t = fixed_template("x");
    t.validity = Some(pb::Validity {
        kind: Some(validity::Kind::Fixed(pb::DateRange {
            start_date: "2026/01/01".into(),
            end_date: "".into(),
        })),
    });
    let err = c.create_template(create(t)).await.expect_err("bad dates");
    assert_invalid(
        &err,
        &[
            "template.validity.fixed.start_date",
            "template.validity.fixed.end_date",
        ],
    );

    let err = c
        .create_template(app.req(pb::CreateTemplateRequest {
            template: None,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("no template");
    assert_invalid(&err, &["template"]);
}

async fn template_status_and_quantity_rules(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let mut t = fixed_template("한정 3장");
    t.total_quantity = 3;
    t.status = pb::TemplateStatus::Draft.into();
    let t = app.create_template(t).await;
    let update = |status: Option<pb::TemplateStatus>, total: Option<i64>, name: Option<&str>| {
        let mut paths = Vec::new();
        let mut body = pb::CouponTemplate::default();
        if let Some(s) = status {
            paths.push("status");
            body.status = s.into();
        }
        if let Some(q) = total {
            paths.push("total_quantity");
            body.total_quantity = q;
        }
        if let Some(n) = name {
            paths.push("name");
            body.name = n.into();
        }
        app.req(pb::UpdateTemplateRequest {
            template_id: t.template_id.clone(),
            template: Some(body),
            update_mask: mask(&paths),
        })
    };

    // A DRAFT issues nothing.
    let err = c
        .issue_coupon(app.req(pb::IssueCouponRequest {
            template_id: t.template_id.clone(),
            member_id: crate::helpers::member(),
            issue_method: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("draft");
    assert_reason(&err, Code::FailedPrecondition, "TEMPLATE_NOT_ACTIVE");
    let err = c
        .update_template(update(Some(pb::TemplateStatus::Paused), None, None))
        .await
        .expect_err("draft→paused");
    assert_reason(&err, Code::FailedPrecondition, "INVALID_STATUS_TRANSITION");

    let live = c
        .update_template(update(
            Some(pb::TemplateStatus::Active),
            None,
            Some("한정 3장!"),
        ))
        .await
        .expect("activate")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(live.status(), pb::TemplateStatus::Active);
    assert_eq!(live.name, "한정 3장!");
    for _ in 0..2 {
        app.issue(&t.template_id, &crate::helpers::member()).await;
    }
    let err = c
        .update_template(update(None, Some(1), None))
        .await
        .expect_err("below issued");
    assert_reason(&err, Code::FailedPrecondition, "QUANTITY_BELOW_ISSUED");
    let raised = c
        .update_template(update(None, Some(2), None))
        .await
        .expect("equal to issued is fine")
        .into_inner()
        .template
        .expect("template");
    assert_eq!((raised.total_quantity, raised.issued_count), (2, 2));
    let err = app
        .claim(&t.template_id, &crate::helpers::member())
        .await
        .expect_err("no CLAIM left");
    assert_reason(&err, Code::ResourceExhausted, "COUPON_SOLD_OUT");
    let unlimited = c
        .update_template(update(Some(pb::TemplateStatus::Paused), Some(0), None))
        .await
        .expect("pause and lift the limit")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(
        (unlimited.status(), unlimited.total_quantity),
        (pb::TemplateStatus::Paused, 0)
    );
    let err = app
        .claim(&t.template_id, &crate::helpers::member())
        .await
        .expect_err("paused");
    assert_reason(&err, Code::FailedPrecondition, "TEMPLATE_NOT_ACTIVE");
    c.update_template(update(Some(pb::TemplateStatus::Ended), None, None))
        .await
        .expect("end");
    let err = c
        .update_template(update(Some(pb::TemplateStatus::Active), None, None))
        .await
        .expect_err("ended is final");
    assert_reason(&err, Code::FailedPrecondition, "INVALID_STATUS_TRANSITION");

    let err = c
        .update_template(app.req(pb::UpdateTemplateRequest {
            template_id: "x".into(),
            template: None,
            update_mask: mask(&["issued_count"]),
        }))
        .await
        .expect_err("bad id and path");
    assert_invalid(&err, &["template_id", "update_mask"]);
    let err = c
        .update_template(app.req(pb::UpdateTemplateRequest {
            template_id: t.template_id.clone(),
            template: Some(pb::CouponTemplate {
                name: "".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "status"]),
        }))
        .await
        .expect_err("empty name, unspecified status");
    assert_invalid(&err, &["template.status"]);
}

async fn template_listing(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut t = fixed_template(&format!("T{i}"));
        if i % 2 == 0 {
            t.status = pb::TemplateStatus::Draft.into();
        }
        ids.push(app.create_template(t).await.template_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_templates(app.req(pb::ListTemplatesRequest {
                page_size: 2,
                page_token: token.clone(),
                status: 0,
            }))
            .await
            .expect("list")
            .into_inner();
        assert!(page.templates.len() <= 2);
        seen.extend(page.templates.into_iter().map(|t| t.template_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "every template once, in creation order");
    let drafts = c
        .list_templates(app.req(pb::ListTemplatesRequest {
            page_size: 0,
            page_token: String::new(),
            status: pb::TemplateStatus::Draft.into(),
        }))
        .await
        .expect("filtered")
        .into_inner()
        .templates;
    assert_eq!(drafts.len(), 3);
    let err = c
        .list_templates(app.req(pb::ListTemplatesRequest {
            page_size: -1,
            page_token: String::new(),
            status: 0,
        }))
        .await
        .expect_err("negative size");
    assert_invalid(&err, &["page_size"]);
    let err = c
        .list_templates(app.req(pb::ListTemplatesRequest {
            page_size: 10,
            page_token: "forged".into(),
            status: 0,
        }))
        .await
        .expect_err("forged token");
    assert_invalid(&err, &["page_token"]);
}
