//! Granting and withdrawing consents: version, collection channel, actor and time recorded,
//! the full history kept, `consent.changed` emitted, and every bad input named.
use spharos_kit::testing::TestBackend;
use spharos_proto::{common::JoinChannel, member as mpb, privacy as pb};
use tonic::Code;

use crate::helpers::{STAFF, advertising, assert_invalid, assert_reason, spawn_app};

on_both_backends!(
    grant_and_withdraw_keep_the_full_history,
    bad_consent_requests_are_named,
    a_member_withdrawal_ends_every_consent,
);

async fn grant_and_withdraw_keep_the_full_history(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-consents", &["privacy.consent.changed"]).await;
    app.standard_consent_types().await;
    let id = app.joined("010-1000-2000", &[("A0001", true)]).await;

    let granted = app.grant(&id, "A0009").await;
    assert!(granted.granted);
    assert_eq!(granted.version, 1);
    assert_eq!(granted.actor, STAFF);
    assert_eq!(granted.collection_channel(), JoinChannel::App);
    // Granting again changes nothing (no second history entry).
    let again = app.grant(&id, "A0009").await;
    assert_eq!(again.change_time, granted.change_time);

    let withdrawn = app.withdraw(&id, "A0009").await;
    assert!(!withdrawn.granted);
    assert_eq!(withdrawn.collection_channel(), JoinChannel::Web);
    app.grant(&id, "A0009").await;

    let mut c = app.privacy.clone();
    let state = c
        .get_member_consents(app.req(pb::GetMemberConsentsRequest {
            member_id: id.clone(),
        }))
        .await
        .expect("consents")
        .into_inner()
        .consents;
    let codes: Vec<(&str, bool)> = state
        .iter()
        .map(|s| (s.consent_type_code.as_str(), s.granted))
        .collect();
    assert_eq!(codes, [("A0001", true), ("A0009", true)]);

    // The history pages in order: sign-up, grant, withdraw, grant.
    let first = c
        .list_consent_history(app.req(pb::ListConsentHistoryRequest {
            member_id: id.clone(),
            page_size: 2,
            page_token: String::new(),
        }))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(first.changes.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = c
        .list_consent_history(app.req(pb::ListConsentHistoryRequest {
            member_id: id.clone(),
            page_size: 2,
            page_token: first.next_page_token,
        }))
        .await
        .expect("history")
        .into_inner();
    let all: Vec<(String, bool, pb::ConsentChangeSource)> = first
        .changes
        .iter()
        .chain(second.changes.iter())
        .map(|c| (c.consent_type_code.clone(), c.granted, c.source()))
        .collect();
    assert_eq!(
        all,
        [
            ("A0001".to_string(), true, pb::ConsentChangeSource::Signup),
            ("A0009".to_string(), true, pb::ConsentChangeSource::Request),
            ("A0009".to_string(), false, pb::ConsentChangeSource::Request),
            ("A0009".to_string(), true, pb::ConsentChangeSource::Request),
        ]
    );
    assert!(second.next_page_token.is_empty());

    // Every change was announced; advertising ones say their channel.
    let events = tap.wait_for_n("privacy.consent.changed", &id, 4).await;
    let last: pb::ConsentChanged = events
        .iter()
        .map(|e| e.decode::<pb::ConsentChanged>().expect("payload"))
        .rfind(|e| e.consent_type_code == "A0009")
        .expect("A0009 changes");
    assert!(last.advertising);
    assert_eq!(last.channel(), pb::MarketingChannel::Sms);
    assert!(last.granted);
}

async fn bad_consent_requests_are_named(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let id = app.joined("010-1000-3000", &[("A0001", true)]).await;
    let mut c = app.privacy.clone();
    let grant = |member: &str, code: &str| pb::GrantConsentRequest {
        member_id: member.into(),
        consent_type_code: code.into(),
        collection_channel: JoinChannel::Pos.into(),
    };

    let err = c
        .grant_consent(app.req(grant("nope", "")))
        .await
        .expect_err("bad input");
    assert_invalid(&err, &["member_id", "consent_type_code"]);
    let err = c
        .grant_consent(app.req(grant(&uuid::Uuid::now_v7().to_string(), "A0009")))
        .await
        .expect_err("unknown member");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .grant_consent(app.req(grant(&id, "Z0000")))
        .await
        .expect_err("unknown consent type");
    assert_eq!(err.code(), Code::NotFound);

    // A type whose first version starts tomorrow cannot be granted yet.
    let tomorrow = (app.app.today() + chrono::Days::new(1)).to_string();
    app.consent_type(pb::CreateConsentTypeRequest {
        effective_date: tomorrow,
        ..advertising("A0011", pb::MarketingChannel::AppPush)
    })
    .await;
    let err = c
        .grant_consent(app.req(grant(&id, "A0011")))
        .await
        .expect_err("not in force");
    assert_reason(&err, Code::FailedPrecondition, "CONSENT_TYPE_NOT_IN_FORCE");

    // Another tenant's member is unknown here.
    let other = spharos_kit::TenantId::generate();
    let err = c
        .get_member_consents(app.req_as(
            other,
            &[],
            pb::GetMemberConsentsRequest {
                member_id: id.clone(),
            },
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_member_consents(tonic::Request::new(pb::GetMemberConsentsRequest {
            member_id: id,
        }))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
}

async fn a_member_withdrawal_ends_every_consent(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let id = app
        .joined("010-1000-4000", &[("A0001", true), ("A0009", true)])
        .await;
    app.members
        .clone()
        .withdraw_member(app.req(mpb::WithdrawMemberRequest {
            member_id: id.clone(),
            reason: "이사".into(),
        }))
        .await
        .expect("withdrawn");
    let mut c = app.privacy.clone();
    let states = app
        .eventually("consents withdrawn with the member", || {
            let mut c = c.clone();
            let r = app.req(pb::GetMemberConsentsRequest {
                member_id: id.clone(),
            });
            async move {
                let s = c.get_member_consents(r).await.ok()?.into_inner().consents;
                s.iter().all(|x| !x.granted).then_some(s)
            }
        })
        .await;
    assert_eq!(states.len(), 2);
    let history = c
        .list_consent_history(app.req(pb::ListConsentHistoryRequest {
            member_id: id.clone(),
            ..Default::default()
        }))
        .await
        .expect("history")
        .into_inner()
        .changes;
    assert_eq!(
        history
            .iter()
            .filter(|h| h.source() == pb::ConsentChangeSource::MemberWithdrawn)
            .count(),
        2
    );
    // A withdrawn member cannot grant anything again.
    let err = c
        .grant_consent(app.req(pb::GrantConsentRequest {
            member_id: id,
            consent_type_code: "A0009".into(),
            collection_channel: JoinChannel::App.into(),
        }))
        .await
        .expect_err("withdrawn member");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");
}
