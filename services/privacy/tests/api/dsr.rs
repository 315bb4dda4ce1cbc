//! Data-subject requests: an access request collects the member's data from every service
//! into one JSON document (10-day deadline shown), an erasure request leaves no readable PII,
//! the retention job erases withdrawn members, and every bad input is named.
use spharos_kit::testing::TestBackend;
use spharos_proto::{
    common::{JoinChannel, MemberRef, member_ref},
    coupon as cpb, member as mpb, points as ppb, privacy as pb,
};
use tonic::Code;

use crate::helpers::{STAFF, TestApp, assert_invalid, assert_reason, spawn_app};

on_both_backends!(
    an_access_request_collects_every_service,
    an_erasure_request_leaves_no_readable_pii,
    withdrawn_members_are_erased_after_the_retention_period,
    requests_can_be_rejected_and_bad_input_is_named,
);

async fn create(
    app: &TestApp,
    member: &str,
    kind: pb::DataSubjectRequestKind,
) -> pb::DataSubjectRequest {
    app.privacy
        .clone()
        .create_data_subject_request(app.req(pb::CreateDataSubjectRequestRequest {
            member_id: member.into(),
            kind: kind.into(),
            collection_channel: JoinChannel::CallCenter.into(),
            note: "전화 접수".into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect("request created")
        .into_inner()
        .request
        .expect("request")
}

async fn process(app: &TestApp, id: &str) -> pb::DataSubjectRequest {
    app.privacy
        .clone()
        .process_data_subject_request(app.req_officer(pb::ProcessDataSubjectRequestRequest {
            request_id: id.into(),
        }))
        .await
        .expect("processed")
        .into_inner()
        .request
        .expect("request")
}

async fn document(app: &TestApp, id: &str) -> Result<serde_json::Value, tonic::Status> {
    let r = app
        .privacy
        .clone()
        .get_data_subject_export(app.req_officer(pb::GetDataSubjectExportRequest {
            request_id: id.into(),
            reason: "열람 요구 회신".into(),
        }))
        .await?;
    Ok(serde_json::from_str(&r.into_inner().document_json).expect("JSON"))
}

/// Gives the member a points entry and a coupon, so every service holds something of theirs.
async fn earn_and_issue(app: &TestApp, member_id: &str) -> String {
    app.points
        .clone()
        .earn(app.req(ppb::EarnRequest {
            member: Some(MemberRef {
                r#ref: Some(member_ref::Ref::MemberId(member_id.into())),
            }),
            store_code: "GN001".into(),
            pos_transaction_id: "POS-DSR-1".into(),
            amount_krw: 12_000,
            idempotency_key: "dsr-earn-1".into(),
            ..Default::default()
        }))
        .await
        .expect("earned");
    let template = app
        .coupons
        .clone()
        .create_template(app.req(cpb::CreateTemplateRequest {
            template: Some(cpb::CouponTemplate {
                name: "열람 테스트 쿠폰".into(),
                discount: Some(cpb::Discount {
                    kind: Some(cpb::discount::Kind::AmountKrw(3_000)),
                }),
                validity: Some(cpb::Validity {
                    kind: Some(cpb::validity::Kind::DaysFromIssue(30)),
                }),
                per_member_limit: 1,
                issue_methods: vec![cpb::IssueMethod::Admin.into()],
                status: cpb::TemplateStatus::Active.into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .expect("template created")
        .into_inner()
        .template
        .expect("template");
    app.coupons
        .clone()
        .issue_coupon(app.req(cpb::IssueCouponRequest {
            template_id: template.template_id,
            member_id: member_id.into(),
            ..Default::default()
        }))
        .await
        .expect("coupon issued")
        .into_inner()
        .coupon
        .expect("coupon")
        .code
}

async fn an_access_request_collects_every_service(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let id = app
        .joined("010-5000-0001", &[("A0001", true), ("A0009", true)])
        .await;
    let coupon_code = earn_and_issue(&app, &id).await;

    // The points and coupon exports need pii:unmask and a member id, as the member one does.
    let err = app
        .points
        .clone()
        .export_member_data(app.req(ppb::ExportMemberDataRequest {
            member_id: id.clone(),
        }))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = app
        .coupons
        .clone()
        .export_member_data(app.req_officer(cpb::ExportMemberDataRequest {
            member_id: "nope".into(),
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["member_id"]);

    let r = create(&app, &id, pb::DataSubjectRequestKind::Access).await;
    assert_eq!(r.status(), pb::DataSubjectRequestStatus::Received);
    assert_eq!(
        r.due_date,
        (app.app.today() + chrono::Days::new(10)).to_string(),
        "the legal deadline: 10 days"
    );
    assert_eq!(r.days_left, 10);
    assert!(!r.overdue);
    assert_eq!(r.actor, STAFF);

    // Without pii:unmask the request cannot be processed (nor its document opened).
    let err = app
        .privacy
        .clone()
        .process_data_subject_request(app.req(pb::ProcessDataSubjectRequestRequest {
            request_id: r.request_id.clone(),
        }))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);

    let done = process(&app, &r.request_id).await;
    assert_eq!(done.status(), pb::DataSubjectRequestStatus::Completed);
    assert!(done.complete_time.is_some());
    assert_eq!(
        done.services,
        ["member", "points", "coupon", "privacy"],
        "every service that holds member data"
    );

    let err = app
        .privacy
        .clone()
        .get_data_subject_export(app.req(pb::GetDataSubjectExportRequest {
            request_id: r.request_id.clone(),
            reason: "확인".into(),
        }))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let doc = document(&app, &r.request_id).await.expect("document");
    assert_eq!(doc["member_id"], id.as_str());
    let member = &doc["services"]["member"];
    assert_eq!(member["name"], "홍길동");
    assert_eq!(member["phone"], "010-5000-0001");
    assert_eq!(member["email"], "hong@example.com");
    assert_eq!(member["birth_date"], "1990-05-17");
    assert_eq!(member["cards"].as_array().map(Vec::len), Some(1));
    let points = &doc["services"]["points"];
    assert_eq!(points["member_id"], id.as_str());
    let entries = points["transactions"].as_array().expect("ledger entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["pos_transaction_id"], "POS-DSR-1");
    assert_eq!(entries[0]["amount_krw"], 12_000);
    assert_eq!(points["lots"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        points["balance"]["lifetime_earned"], entries[0]["points"],
        "the balance comes with the ledger"
    );
    let coupon = &doc["services"]["coupon"];
    let wallet = coupon["coupons"].as_array().expect("coupons");
    assert_eq!(wallet.len(), 1);
    assert_eq!(wallet[0]["coupon"]["code"], coupon_code.as_str());
    assert_eq!(wallet[0]["template_name"], "열람 테스트 쿠폰");
    let privacy = &doc["services"]["privacy"];
    assert_eq!(privacy["consents"].as_array().map(Vec::len), Some(2));
    assert_eq!(privacy["consent_history"].as_array().map(Vec::len), Some(2));

    // The member service logged its disclosure ("DSR access") and opening the document was
    // logged here: both in the access log.
    let mut c = app.privacy.clone();
    let entries = app
        .eventually("both disclosures logged", || {
            let mut c = c.clone();
            let r = app.req(pb::ListPiiAccessesRequest {
                member_id: id.clone(),
                ..Default::default()
            });
            async move {
                let e = c.list_pii_accesses(r).await.ok()?.into_inner().entries;
                (e.len() >= 2).then_some(e)
            }
        })
        .await;
    assert!(entries.iter().any(|e| e.reason == "DSR access"
        && e.operation == "spharos.member.v1.MemberService/ExportMemberData"));
    assert!(entries.iter().any(|e| e.fields == ["dsr_document"]));

    // Processing a completed request again is refused.
    let err = c
        .process_data_subject_request(app.req_officer(pb::ProcessDataSubjectRequestRequest {
            request_id: r.request_id.clone(),
        }))
        .await
        .expect_err("closed");
    assert_reason(&err, Code::FailedPrecondition, "DSR_CLOSED");

    // Listed by member and by status.
    let listed = c
        .list_data_subject_requests(app.req(pb::ListDataSubjectRequestsRequest {
            member_id: id.clone(),
            status: pb::DataSubjectRequestStatus::Completed.into(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .requests;
    assert_eq!(listed.len(), 1);
}

async fn an_erasure_request_leaves_no_readable_pii(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-erasure", &["member.erased"]).await;
    let id = app.joined("010-5000-0002", &[]).await;
    // The coupon projection learnt the birth month-day from `member.joined`.
    let coupons = app.coupons.clone();
    app.eventually("the coupon projection knows the birthday", || {
        let mut c = coupons.clone();
        let r = app.req_officer(cpb::ExportMemberDataRequest {
            member_id: id.clone(),
        });
        async move {
            let doc = c
                .export_member_data(r)
                .await
                .ok()?
                .into_inner()
                .document_json;
            let doc: serde_json::Value = serde_json::from_str(&doc).ok()?;
            (doc["member"]["birth_month_day"] == "05-17").then_some(())
        }
    })
    .await;
    let access = create(&app, &id, pb::DataSubjectRequestKind::Access).await;
    process(&app, &access.request_id).await;
    assert!(document(&app, &access.request_id).await.is_ok());

    let erasure = create(&app, &id, pb::DataSubjectRequestKind::Erasure).await;
    // Erasure needs pii:erase.
    let err = app
        .privacy
        .clone()
        .process_data_subject_request(app.req_as(
            app.tenant,
            &[spharos_kit::auth::PERM_PII_UNMASK],
            pb::ProcessDataSubjectRequestRequest {
                request_id: erasure.request_id.clone(),
            },
        ))
        .await
        .expect_err("no erase permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let done = process(&app, &erasure.request_id).await;
    assert_eq!(done.status(), pb::DataSubjectRequestStatus::Completed);
    assert_eq!(done.services, ["member", "privacy"]);

    // The member service shows nothing, unmasked or not, and exports nothing.
    let m = app.member_unmasked(&id).await;
    assert_eq!(
        (
            m.name.as_str(),
            m.phone.as_str(),
            m.email.as_str(),
            m.birth_date.as_str()
        ),
        ("", "", "", "")
    );
    assert!(m.unmasked);
    assert!(m.anonymised_time.is_some());
    assert_eq!(m.status(), mpb::MemberStatus::Withdrawn);
    assert_eq!(m.cards.len(), 1, "cards stay: ledgers refer to them");
    let export = app
        .members
        .clone()
        .export_member_data(app.req_officer(mpb::ExportMemberDataRequest {
            member_id: id.clone(),
        }))
        .await
        .expect("export")
        .into_inner()
        .document_json;
    let export: serde_json::Value = serde_json::from_str(&export).expect("JSON");
    assert_eq!(export["name"], "");
    assert_eq!(export["phone"], "");
    assert!(!export.to_string().contains("홍길동"));
    assert!(!export.to_string().contains("5000"));
    // The phone is free and no longer finds anyone.
    let err = app
        .members
        .clone()
        .find_member(app.req(mpb::FindMemberRequest {
            key: Some(mpb::find_member_request::Key::Phone("010-5000-0002".into())),
            unmask: None,
        }))
        .await
        .expect_err("erased");
    assert_eq!(err.code(), Code::NotFound);
    // The access document stored earlier went with the PII.
    let err = document(&app, &access.request_id)
        .await
        .expect_err("dropped");
    assert_reason(&err, Code::FailedPrecondition, "NO_DOCUMENT");
    tap.wait_for_n("member.erased", &id, 1).await;
    // The coupon service forgets the birth month-day it copied from `member.joined`.
    let coupons = app.coupons.clone();
    app.eventually("the coupon projection forgets the birthday", || {
        let mut c = coupons.clone();
        let r = app.req_officer(cpb::ExportMemberDataRequest {
            member_id: id.clone(),
        });
        async move {
            let doc = c
                .export_member_data(r)
                .await
                .ok()?
                .into_inner()
                .document_json;
            let doc: serde_json::Value = serde_json::from_str(&doc).ok()?;
            doc["member"]["birth_month_day"].is_null().then_some(())
        }
    })
    .await;

    // Erasing again is harmless.
    let again = create(&app, &id, pb::DataSubjectRequestKind::Erasure).await;
    assert_eq!(
        process(&app, &again.request_id).await.status(),
        pb::DataSubjectRequestStatus::Completed
    );
}

async fn withdrawn_members_are_erased_after_the_retention_period(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let settings = c
        .get_privacy_settings(app.req(pb::GetPrivacySettingsRequest {}))
        .await
        .expect("settings")
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(settings.retention_days, 30, "the default");
    let err = c
        .update_privacy_settings(app.req(pb::UpdatePrivacySettingsRequest {
            settings: Some(pb::PrivacySettings { retention_days: -1 }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["retention_days".into()],
            }),
        }))
        .await
        .expect_err("negative");
    assert_invalid(&err, &["settings.retention_days"]);
    let updated = c
        .update_privacy_settings(app.req(pb::UpdatePrivacySettingsRequest {
            settings: Some(pb::PrivacySettings { retention_days: 7 }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["retention_days".into()],
            }),
        }))
        .await
        .expect("updated")
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(updated.retention_days, 7);

    app.consent_type(crate::helpers::required("A0001")).await;
    let leaving = app.joined("010-5000-0003", &[("A0001", true)]).await;
    let staying = app.joined("010-5000-0004", &[("A0001", true)]).await;
    app.members
        .clone()
        .withdraw_member(app.req(mpb::WithdrawMemberRequest {
            member_id: leaving.clone(),
            reason: "탈퇴".into(),
        }))
        .await
        .expect("withdrawn");
    // The withdrawal reached the privacy service once the member's consents ended.
    app.eventually("the withdrawal is known", || {
        let mut c = c.clone();
        let r = app.req(pb::GetMemberConsentsRequest {
            member_id: leaving.clone(),
        });
        async move {
            let s = c.get_member_consents(r).await.ok()?.into_inner().consents;
            s.iter().all(|x| !x.granted).then_some(())
        }
    })
    .await;
    let within = app
        .app
        .run_retention_erasure(chrono::Utc::now() + chrono::Duration::days(6))
        .await
        .expect("ran");
    assert_eq!(within.done, 0, "still within the retention period");
    assert_eq!(app.member_unmasked(&leaving).await.name, "홍길동");
    let after = app
        .app
        .run_retention_erasure(chrono::Utc::now() + chrono::Duration::days(8))
        .await
        .expect("ran");
    assert_eq!(after.done, 1);
    assert_eq!(after.failed, 0);
    // Within the retention period nothing happens; after it, the member is erased, the
    // active member is untouched, and the erasure is on record.
    let m = app.member_unmasked(&leaving).await;
    assert_eq!(m.name, "");
    assert!(m.anonymised_time.is_some());
    assert_eq!(app.member_unmasked(&staying).await.name, "홍길동");
    let again = app
        .app
        .run_retention_erasure(chrono::Utc::now() + chrono::Duration::days(8))
        .await
        .expect("ran");
    assert_eq!(again.done, 0, "erased once");
    let on_record = c
        .list_data_subject_requests(app.req(pb::ListDataSubjectRequestsRequest {
            member_id: leaving.clone(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .requests;
    assert_eq!(on_record.len(), 1);
    assert_eq!(on_record[0].kind(), pb::DataSubjectRequestKind::Erasure);
    assert_eq!(on_record[0].actor, "privacy-retention");
    assert_eq!(
        on_record[0].status(),
        pb::DataSubjectRequestStatus::Completed
    );
}

async fn requests_can_be_rejected_and_bad_input_is_named(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let id = app.joined("010-5000-0005", &[]).await;
    let mut c = app.privacy.clone();
    let err = c
        .create_data_subject_request(app.req(pb::CreateDataSubjectRequestRequest {
            member_id: "nope".into(),
            kind: 0,
            note: "가".repeat(1001),
            ..Default::default()
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["member_id", "kind", "note"]);
    let err = c
        .create_data_subject_request(app.req(pb::CreateDataSubjectRequestRequest {
            member_id: uuid::Uuid::now_v7().to_string(),
            kind: pb::DataSubjectRequestKind::Access.into(),
            ..Default::default()
        }))
        .await
        .expect_err("unknown member");
    assert_eq!(err.code(), Code::NotFound);

    // The idempotency key returns the first request.
    let with_key = |key: &str| pb::CreateDataSubjectRequestRequest {
        member_id: id.clone(),
        kind: pb::DataSubjectRequestKind::Erasure.into(),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let first = c
        .create_data_subject_request(app.req(with_key("dsr-1")))
        .await
        .expect("created")
        .into_inner()
        .request
        .expect("request");
    let replay = c
        .create_data_subject_request(app.req(with_key("dsr-1")))
        .await
        .expect("replayed")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(first.request_id, replay.request_id);

    let err = c
        .reject_data_subject_request(app.req(pb::RejectDataSubjectRequestRequest {
            request_id: first.request_id.clone(),
            reason: " ".into(),
        }))
        .await
        .expect_err("no reason");
    assert_invalid(&err, &["reason"]);
    let rejected = c
        .reject_data_subject_request(app.req(pb::RejectDataSubjectRequestRequest {
            request_id: first.request_id.clone(),
            reason: "본인 확인 불가".into(),
        }))
        .await
        .expect("rejected")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(rejected.status(), pb::DataSubjectRequestStatus::Rejected);
    assert_eq!(rejected.reject_reason, "본인 확인 불가");
    let err = c
        .process_data_subject_request(app.req_officer(pb::ProcessDataSubjectRequestRequest {
            request_id: first.request_id.clone(),
        }))
        .await
        .expect_err("rejected requests stay rejected");
    assert_reason(&err, Code::FailedPrecondition, "DSR_CLOSED");
    // The member was not erased.
    assert_eq!(app.member_unmasked(&id).await.name, "홍길동");

    let err = c
        .get_data_subject_request(app.req_as(
            spharos_kit::TenantId::generate(),
            &[],
            pb::GetDataSubjectRequestRequest {
                request_id: first.request_id.clone(),
            },
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
    let got = c
        .get_data_subject_request(app.req(pb::GetDataSubjectRequestRequest {
            request_id: first.request_id,
        }))
        .await
        .expect("got")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(got.status(), pb::DataSubjectRequestStatus::Rejected);
    let err = document(&app, &got.request_id)
        .await
        .expect_err("no document");
    assert_reason(&err, Code::FailedPrecondition, "NO_DOCUMENT");
}
