//! Consent types: code, title, purpose, required or optional, group, versions with effective
//! dates, advertising channel and the night-time consent; one type per advertising slot.
use spharos_kit::testing::TestBackend;
use spharos_proto::privacy as pb;
use tonic::Code;

use crate::helpers::{advertising, assert_invalid, assert_reason, required, spawn_app};

on_both_backends!(
    consent_types_are_versioned_with_effective_dates,
    bad_consent_types_are_named,
);

async fn consent_types_are_versioned_with_effective_dates(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let today = app.app.today();
    let created = app.consent_type(required("A0001")).await;
    assert_eq!(created.version, 1);
    assert_eq!(created.effective_date, today.to_string());
    assert!(created.required);
    assert_eq!(created.group(), pb::ConsentGroup::Signup);
    let night = app
        .consent_type(pb::CreateConsentTypeRequest {
            night_time: true,
            group: pb::ConsentGroup::Later.into(),
            ..advertising("N0001", pb::MarketingChannel::Sms)
        })
        .await;
    assert!(night.advertising && night.night_time);
    assert_eq!(night.channel(), pb::MarketingChannel::Sms);

    // A revision from next month: today the first version is still in force.
    let next_month = today + chrono::Days::new(30);
    let revised = c
        .revise_consent_type(app.req(pb::ReviseConsentTypeRequest {
            code: "A0001".into(),
            title: "개인정보 수집·이용 동의 (필수, 개정)".into(),
            purpose: "회원 관리, 포인트 적립, 고객 상담".into(),
            required: true,
            group: pb::ConsentGroup::Signup.into(),
            effective_date: next_month.to_string(),
        }))
        .await
        .expect("revised")
        .into_inner()
        .consent_type
        .expect("type");
    assert_eq!(revised.version, 2);
    let got = c
        .get_consent_type(app.req(pb::GetConsentTypeRequest {
            code: "A0001".into(),
        }))
        .await
        .expect("got")
        .into_inner();
    assert_eq!(got.in_force.expect("in force").version, 1);
    assert_eq!(
        got.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );

    let list = |group: pb::ConsentGroup, at: String| pb::ListConsentTypesRequest {
        group: group.into(),
        at_date: at,
    };
    let now = c
        .list_consent_types(app.req(list(pb::ConsentGroup::Unspecified, String::new())))
        .await
        .expect("listed")
        .into_inner()
        .consent_types;
    assert_eq!(
        now.iter()
            .map(|t| (t.code.as_str(), t.version))
            .collect::<Vec<_>>(),
        [("A0001", 1), ("N0001", 1)]
    );
    let later = c
        .list_consent_types(app.req(list(pb::ConsentGroup::Signup, next_month.to_string())))
        .await
        .expect("listed")
        .into_inner()
        .consent_types;
    assert_eq!(later.len(), 1, "the SIGNUP group only");
    assert_eq!(later[0].version, 2);
    let before = c
        .list_consent_types(app.req(list(
            pb::ConsentGroup::Unspecified,
            (today - chrono::Days::new(1)).to_string(),
        )))
        .await
        .expect("listed")
        .into_inner()
        .consent_types;
    assert!(before.is_empty(), "nothing was in force yesterday");

    // A required item that only becomes required later does not block today's sign-up.
    app.consent_type(pb::CreateConsentTypeRequest {
        required: false,
        ..required("A0002")
    })
    .await;
    c.revise_consent_type(app.req(pb::ReviseConsentTypeRequest {
        code: "A0002".into(),
        title: "위치정보 이용 동의".into(),
        purpose: "매장 안내".into(),
        required: true,
        group: pb::ConsentGroup::Signup.into(),
        effective_date: next_month.to_string(),
    }))
    .await
    .expect("revised");
    let check = c
        .validate_signup_consents(app.req(pb::ValidateSignupConsentsRequest {
            consents: vec![pb::ConsentAnswer {
                consent_type_code: "A0001".into(),
                granted: true,
            }],
        }))
        .await
        .expect("validated")
        .into_inner();
    assert!(check.missing_required_codes.is_empty(), "{check:?}");
}

async fn bad_consent_types_are_named(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let err = c
        .create_consent_type(app.req(pb::CreateConsentTypeRequest {
            code: "A 1".into(),
            required: true,
            advertising: true,
            effective_date: "2026-02-30".into(),
            ..Default::default()
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["effective_date"]);
    let err = c
        .create_consent_type(app.req(pb::CreateConsentTypeRequest {
            code: "A 1".into(),
            required: true,
            advertising: true,
            ..Default::default()
        }))
        .await
        .expect_err("bad");
    assert_invalid(
        &err,
        &["code", "title", "purpose", "group", "channel", "required"],
    );

    app.consent_type(advertising("A0009", pb::MarketingChannel::Sms))
        .await;
    let err = c
        .create_consent_type(app.req(advertising("A0009", pb::MarketingChannel::Email)))
        .await
        .expect_err("code taken");
    assert_reason(&err, Code::AlreadyExists, "CONSENT_TYPE_EXISTS");
    let err = c
        .create_consent_type(app.req(advertising("A0099", pb::MarketingChannel::Sms)))
        .await
        .expect_err("the SMS slot is taken");
    assert_reason(&err, Code::AlreadyExists, "AD_CONSENT_TYPE_EXISTS");

    let revise = |code: &str, date: String, required: bool| pb::ReviseConsentTypeRequest {
        code: code.into(),
        title: "t".into(),
        purpose: "p".into(),
        required,
        group: pb::ConsentGroup::Signup.into(),
        effective_date: date,
    };
    let err = c
        .revise_consent_type(app.req(revise("Z0000", String::new(), false)))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .revise_consent_type(app.req(revise(
            "A0009",
            (app.app.today() - chrono::Days::new(1)).to_string(),
            true,
        )))
        .await
        .expect_err("past date, required advertising");
    assert_invalid(&err, &["effective_date", "required"]);
    let err = c
        .get_consent_type(app.req_as(
            spharos_kit::TenantId::generate(),
            &[],
            pb::GetConsentTypeRequest {
                code: "A0009".into(),
            },
        ))
        .await
        .expect_err("another tenant's type");
    assert_eq!(err.code(), Code::NotFound);
}
