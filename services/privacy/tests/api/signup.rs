//! Sign-up consents: the member service asks the privacy service before creating anything; a
//! missing required consent fails cleanly and creates nothing, declining an optional one never
//! blocks, and the answers given are recorded from `member.joined`.
use spharos_kit::{paging::PageRequest, testing::TestBackend};
use spharos_member::domain::member::MemberFilter;
use spharos_proto::{member as mpb, privacy as pb};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    advertising, assert_invalid, assert_reason, join_request, required, spawn_app,
};

on_both_backends!(
    signup_with_a_missing_required_consent_fails_and_creates_nothing,
    declining_optional_consents_never_blocks_and_answers_are_recorded,
    a_tenant_without_consent_types_needs_none,
    unknown_or_repeated_consent_codes_are_bad_requests,
);

async fn member_count(app: &crate::helpers::TestApp) -> usize {
    let page = PageRequest::parse(1000, "").expect("page");
    app.member_app
        .list_members(app.tenant, MemberFilter::default(), page)
        .await
        .expect("members listed")
        .0
        .len()
}

async fn signup_with_a_missing_required_consent_fails_and_creates_nothing(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-signup", &["member.joined"]).await;
    app.consent_type(required("A0001")).await;
    app.consent_type(required("A0002")).await;
    app.consent_type(advertising("A0009", pb::MarketingChannel::Sms))
        .await;

    // Declined one required item, never answered the other.
    let err = app
        .members
        .clone()
        .join_member(app.req(join_request(
            "010-1111-2222",
            &[("A0001", false), ("A0009", true)],
        )))
        .await
        .expect_err("required consents missing");
    assert_reason(&err, Code::FailedPrecondition, "CONSENT_REQUIRED");
    assert!(err.message().contains("A0001"), "{}", err.message());
    assert!(err.message().contains("A0002"), "{}", err.message());
    assert!(
        err.message().starts_with("필수 동의"),
        "Korean first: {}",
        err.message()
    );
    let info = err.get_error_details().error_info().cloned().expect("info");
    assert_eq!(
        info.metadata
            .get("missing_consent_type_codes")
            .map(String::as_str),
        Some("A0001,A0002")
    );

    // Nothing was created: no member, no event, and the phone is still free.
    assert_eq!(member_count(&app).await, 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(tap.all("member.joined").is_empty(), "no member.joined");
    let id = app
        .join("010-1111-2222", &[("A0001", true), ("A0002", true)])
        .await;
    assert_eq!(member_count(&app).await, 1);
    assert!(!id.is_empty());
}

async fn declining_optional_consents_never_blocks_and_answers_are_recorded(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let id = app
        .join(
            "010-3333-4444",
            &[("A0001", true), ("A0009", false), ("A0010", true)],
        )
        .await;
    let consents = app.wait_for_member(&id).await;
    let by_code = |c: &str| {
        consents
            .iter()
            .find(|x| x.consent_type_code == c)
            .cloned()
            .unwrap_or_else(|| panic!("{c} recorded: {consents:?}"))
    };
    assert!(by_code("A0001").granted);
    assert!(
        !by_code("A0009").granted,
        "a declined optional item is recorded as declined"
    );
    assert!(by_code("A0010").granted);
    let a1 = by_code("A0001");
    assert_eq!(a1.version, 1);
    assert_eq!(
        a1.collection_channel(),
        spharos_proto::common::JoinChannel::App
    );
    assert_eq!(a1.actor, format!("member:{id}"));
    assert!(
        consents.iter().all(|c| c.consent_type_code != "N0001"),
        "unanswered items are absent"
    );

    let history = app
        .privacy
        .clone()
        .list_consent_history(app.req(pb::ListConsentHistoryRequest {
            member_id: id.clone(),
            ..Default::default()
        }))
        .await
        .expect("history")
        .into_inner()
        .changes;
    assert_eq!(history.len(), 3);
    assert!(
        history
            .iter()
            .all(|c| c.source() == pb::ConsentChangeSource::Signup)
    );

    // The same join retried with its idempotency key returns the first member, and the
    // answers are part of what the key protects.
    let mut r = join_request("010-5555-6666", &[("A0001", true)]);
    r.idempotency_key = "join-1".into();
    let first = app
        .members
        .clone()
        .join_member(app.req(r.clone()))
        .await
        .expect("joined")
        .into_inner();
    let again = app
        .members
        .clone()
        .join_member(app.req(r.clone()))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(
        first.member.expect("member").member_id,
        again.member.expect("member").member_id
    );
    r.consents.push(mpb::SignupConsent {
        consent_type_code: "A0009".into(),
        granted: true,
    });
    let err = app
        .members
        .clone()
        .join_member(app.req(r))
        .await
        .expect_err("same key, other answers");
    assert_eq!(err.code(), Code::AlreadyExists);
}

async fn a_tenant_without_consent_types_needs_none(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let id = app.join("010-7777-8888", &[]).await;
    let consents = app.wait_for_member(&id).await;
    assert!(consents.is_empty());
}

async fn unknown_or_repeated_consent_codes_are_bad_requests(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.consent_type(required("A0001")).await;
    let err = app
        .members
        .clone()
        .join_member(app.req(join_request(
            "010-1212-3434",
            &[("A0001", true), ("Z9999", true), ("A0001", true)],
        )))
        .await
        .expect_err("bad consents");
    assert_invalid(
        &err,
        &[
            "consents[1].consent_type_code",
            "consents[2].consent_type_code",
        ],
    );
    // A bad field and an empty code are reported together, before any consent check.
    let mut r = join_request("not a phone", &[("", true)]);
    r.name = String::new();
    let err = app
        .members
        .clone()
        .join_member(app.req(r))
        .await
        .expect_err("bad fields");
    assert_invalid(&err, &["name", "phone", "consents[0].consent_type_code"]);
    assert_eq!(member_count(&app).await, 0);
}
