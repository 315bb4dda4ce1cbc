//! Data-subject requests served by the member service: ExportMemberData returns everything in
//! clear (needs `pii:unmask`, logged as "DSR access"), EraseMember overwrites the PII for good
//! (needs `pii:erase`) while the id and cards stay as the pseudonymous reference.
use spharos_kit::{auth::PERM_PII_UNMASK, testing::TestBackend};
use spharos_member::grpc::PERM_PII_ERASE;
use spharos_proto::{
    member::{self as pb, find_member_request::Key},
    privacy::PiiAccessed,
};
use tonic::Code;

use crate::helpers::{assert_invalid, spawn_app};

on_both_backends!(
    export_member_data_is_complete_and_logged,
    erase_member_leaves_no_pii,
);

async fn export_member_data_is_complete_and_logged(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-export", &["privacy.pii_accessed"]).await;
    let mut c = app.client.clone();
    let id = app
        .join("홍길동", "010-8080-9090")
        .await
        .member
        .expect("member")
        .member_id;
    let export = |member_id: &str| pb::ExportMemberDataRequest {
        member_id: member_id.into(),
    };
    let err = c
        .export_member_data(app.req(export(&id)))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .export_member_data(app.req_unmask(export("x")))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["member_id"]);
    let err = c
        .export_member_data(app.req_unmask(export(&uuid::Uuid::now_v7().to_string())))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    let doc = c
        .export_member_data(app.req_unmask(export(&id)))
        .await
        .expect("exported")
        .into_inner()
        .document_json;
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
    assert_eq!(doc["member_id"], id.as_str());
    assert_eq!(doc["name"], "홍길동");
    assert_eq!(doc["phone"], "010-8080-9090");
    assert_eq!(doc["email"], "hong@example.com");
    assert_eq!(doc["birth_date"], "1990-05-17");
    assert_eq!(doc["status"], "ACTIVE");
    assert_eq!(doc["cards"].as_array().map(Vec::len), Some(1));

    let logged = tap.wait_for_n("privacy.pii_accessed", &id, 1).await;
    let log: PiiAccessed = logged[0].decode().expect("payload");
    assert_eq!(log.reason, "DSR access");
    assert_eq!(
        log.operation,
        "spharos.member.v1.MemberService/ExportMemberData"
    );
    assert_eq!(log.fields, ["name", "phone", "email", "birth_date"]);
}

async fn erase_member_leaves_no_pii(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap("test-erase", &["member.erased", "member.withdrawn"])
        .await;
    let mut c = app.client.clone();
    let joined = app.join("홍길동", "010-7070-6060").await;
    let id = joined.member.expect("member").member_id;
    let card = joined.card.expect("card").card_number;
    let erase = |member_id: &str| pb::EraseMemberRequest {
        member_id: member_id.into(),
        reason: "DSR".into(),
    };
    let err = c
        .erase_member(app.req_unmask(erase(&id)))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let as_eraser = |msg| app.req_as(app.tenant, &[PERM_PII_ERASE], msg);
    let err = c
        .erase_member(as_eraser(erase(&uuid::Uuid::now_v7().to_string())))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    let erased = c
        .erase_member(as_eraser(erase(&id)))
        .await
        .expect("erased")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(erased.status(), pb::MemberStatus::Withdrawn);
    assert!(erased.anonymised_time.is_some());
    assert_eq!(erased.name, "");
    // An active member is withdrawn first, and both facts are announced.
    tap.wait_for_n("member.withdrawn", &id, 1).await;
    tap.wait_for_n("member.erased", &id, 1).await;

    let m = c
        .get_member(app.req_as(
            app.tenant,
            &[PERM_PII_UNMASK],
            pb::GetMemberRequest {
                member_id: id.clone(),
                unmask: Some(pb::Unmask {
                    reason: "확인".into(),
                }),
            },
        ))
        .await
        .expect("still readable by id")
        .into_inner()
        .member
        .expect("member");
    assert!(m.unmasked);
    assert_eq!(
        (m.name, m.phone, m.email, m.birth_date),
        (String::new(), String::new(), String::new(), String::new())
    );
    // The card stays (ledgers refer to it) but finds no active member; the phone is free.
    let cards = c
        .list_cards(app.req(pb::ListCardsRequest {
            member_id: id.clone(),
        }))
        .await
        .expect("cards")
        .into_inner()
        .cards;
    assert_eq!(cards[0].card_number, card);
    let err = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::Phone("01070706060".into())),
            unmask: None,
        }))
        .await
        .expect_err("erased");
    assert_eq!(err.code(), Code::NotFound);
    app.join("홍길순", "010-7070-6060").await;

    // Erasing again changes nothing and announces nothing more.
    let again = c
        .erase_member(as_eraser(erase(&id)))
        .await
        .expect("idempotent")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(again.anonymised_time, erased.anonymised_time);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        tap.all("member.erased")
            .iter()
            .filter(|e| e.subject_id == id)
            .count(),
        1
    );
    // An erased member cannot be changed back.
    let err = c
        .update_member(app.req(pb::UpdateMemberRequest {
            member_id: id,
            member: Some(pb::Member {
                name: "복구".into(),
                ..Default::default()
            }),
            update_mask: crate::helpers::mask(&["name"]),
        }))
        .await
        .expect_err("withdrawn");
    assert_eq!(err.code(), Code::FailedPrecondition);
}
