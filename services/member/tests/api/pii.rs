//! PII: masked by default; unmask needs `pii:unmask` and a reason; every unmask emits
//! `privacy.pii_accessed` naming who, what, why, from where and through which RPC.
use spharos_kit::testing::TestBackend;
use spharos_proto::{
    member::{self as pb, find_member_request::Key},
    privacy::PiiAccessed,
};
use tonic::Code;

use crate::helpers::{STAFF, assert_invalid, spawn_app};

on_both_backends!(masked_unless_unmasked_with_permission_and_reason);

async fn masked_unless_unmasked_with_permission_and_reason(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-pii", &["privacy.pii_accessed"]).await;
    let mut c = app.client.clone();
    let id = app
        .join("홍길동", "010-1234-5678")
        .await
        .member
        .expect("member")
        .member_id;
    let get = |reason: Option<&str>| pb::GetMemberRequest {
        member_id: id.clone(),
        unmask: reason.map(|r| pb::Unmask { reason: r.into() }),
    };

    // Default: masked, even for a caller who may unmask.
    let m = c
        .get_member(app.req_unmask(get(None)))
        .await
        .expect("get")
        .into_inner()
        .member
        .expect("member");
    assert!(!m.unmasked);
    assert_eq!(m.name, "홍*동");

    let err = c
        .get_member(app.req(get(Some("문의 응대"))))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .get_member(app.req_unmask(get(Some("  "))))
        .await
        .expect_err("no reason");
    assert_invalid(&err, &["unmask.reason"]);
    assert!(
        tap.all("privacy.pii_accessed").is_empty(),
        "refused unmasks show nothing, log nothing"
    );

    let m = c
        .get_member(app.req_unmask(get(Some("고객 문의 응대 #1234"))))
        .await
        .expect("unmasked")
        .into_inner()
        .member
        .expect("member");
    assert!(m.unmasked);
    assert_eq!(m.name, "홍길동");
    assert_eq!(m.phone, "010-1234-5678");
    assert_eq!(m.email, "hong@example.com");
    assert_eq!(m.birth_date, "1990-05-17");

    let e = tap.wait_for("privacy.pii_accessed", &id).await;
    assert_eq!(e.service, "privacy");
    assert_eq!(e.tenant, app.tenant);
    let log: PiiAccessed = e.decode().expect("payload");
    assert_eq!(log.member_id, id);
    assert_eq!(log.actor, STAFF);
    assert_eq!(log.reason, "고객 문의 응대 #1234");
    assert_eq!(log.fields, ["name", "phone", "email", "birth_date"]);
    assert_eq!(log.operation, "spharos.member.v1.MemberService/GetMember");
    assert!(
        log.client_address.starts_with("127.0.0.1:"),
        "{}",
        log.client_address
    );
    assert!(log.access_time.is_some());

    // FindMember unmasks the same way, and is logged as itself.
    let err = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::Phone("01012345678".into())),
            unmask: Some(pb::Unmask {
                reason: "확인".into(),
            }),
        }))
        .await
        .expect_err("no permission");
    assert_eq!(err.code(), Code::PermissionDenied);
    let m = c
        .find_member(app.req_unmask(pb::FindMemberRequest {
            key: Some(Key::Phone("01012345678".into())),
            unmask: Some(pb::Unmask {
                reason: "본인 확인".into(),
            }),
        }))
        .await
        .expect("unmasked find")
        .into_inner()
        .member
        .expect("member");
    assert!(m.unmasked);
    assert_eq!(m.phone, "010-1234-5678");
    let logs = tap.wait_for_n("privacy.pii_accessed", &id, 2).await;
    let find_log = logs
        .iter()
        .map(|e| e.decode::<PiiAccessed>().expect("payload"))
        .find(|l| l.operation == "spharos.member.v1.MemberService/FindMember")
        .expect("the FindMember access is logged");
    assert_eq!(find_log.reason, "본인 확인");

    // Exactly the two clear views were logged: refusals and masked reads log nothing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(tap.all("privacy.pii_accessed").len(), 2);
}
