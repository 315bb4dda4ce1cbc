//! The PII access log: `privacy.pii_accessed` events and direct writes land in one
//! hash-chained log per tenant, queryable by member, actor and time; verification catches an
//! edited and a deleted row (changed behind the service's back, as the tables' owner).
use sea_orm::{ConnectionTrait, Database};
use spharos_kit::testing::TestBackend;
use spharos_proto::{member as mpb, privacy as pb};
use tonic::Code;

use crate::helpers::{STAFF, TestApp, assert_invalid, spawn_app};

on_both_backends!(
    accesses_from_events_and_direct_writes_form_one_chain,
    verification_catches_an_edited_row,
    verification_catches_a_deleted_row,
    concurrent_appends_keep_the_chain_linear,
    bad_access_log_requests_are_named,
);

fn record(member: &str, actor: &str, reason: &str) -> pb::RecordPiiAccessRequest {
    pb::RecordPiiAccessRequest {
        member_id: member.into(),
        actor: actor.into(),
        fields: vec!["phone".into()],
        reason: reason.into(),
        client_address: "10.1.2.3".into(),
        operation: "cs-console/ticket".into(),
        access_time: None,
    }
}

async fn verify(app: &TestApp) -> pb::VerifyAccessLogResponse {
    app.privacy
        .clone()
        .verify_access_log(app.req(pb::VerifyAccessLogRequest {}))
        .await
        .expect("verified")
        .into_inner()
}

/// Runs `sql` on the privacy database as its owner, with the append-only guard out of the
/// way: what an attacker with database access could do.
async fn tamper(app: &TestApp, sql: &str) {
    match app.backend {
        TestBackend::Postgres => {
            let url = app
                .platform
                .settings
                .database
                .url
                .as_ref()
                .map(|u| secrecy::ExposeSecret::expose_secret(u).to_string())
                .expect("postgres url");
            let owner = Database::connect(url).await.expect("owner connects");
            owner
                .execute_unprepared(&format!(
                    "SET search_path TO privacy; SET session_replication_role = replica; {sql}"
                ))
                .await
                .expect("tampered");
            owner.close().await.expect("closed");
        }
        TestBackend::Sqlite => {
            let path = app.dir.path().join("privacy.db");
            let owner = Database::connect(format!("sqlite://{}", path.display()))
                .await
                .expect("file opens");
            owner
                .execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS access_log_no_update; DROP TRIGGER IF EXISTS access_log_no_delete; {sql}"
                ))
                .await
                .expect("tampered");
            owner.close().await.expect("closed");
        }
    }
}

/// Three entries: one from an unmask in the member service, two direct writes.
async fn three_entries(app: &TestApp) -> String {
    let id = app.joined("010-4000-0001", &[]).await;
    app.member_unmasked(&id).await;
    let mut c = app.privacy.clone();
    app.eventually("the unmask reaches the access log", || {
        let mut c = c.clone();
        let r = app.req(pb::ListPiiAccessesRequest {
            member_id: id.clone(),
            ..Default::default()
        });
        async move {
            let e = c.list_pii_accesses(r).await.ok()?.into_inner().entries;
            (!e.is_empty()).then_some(())
        }
    })
    .await;
    c.record_pii_access(app.req(record(&id, "cs-7", "배송 문의 #1")))
        .await
        .expect("recorded");
    c.record_pii_access(app.req(record(&id, "", "배송 문의 #2")))
        .await
        .expect("recorded");
    id
}

async fn accesses_from_events_and_direct_writes_form_one_chain(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let id = three_entries(&app).await;
    let other = app.joined("010-4000-0002", &[]).await;
    let mut c = app.privacy.clone();
    c.record_pii_access(app.req(record(&other, "cs-8", "본인 확인")))
        .await
        .expect("recorded");

    let of_member = c
        .list_pii_accesses(app.req(pb::ListPiiAccessesRequest {
            member_id: id.clone(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .entries;
    assert_eq!(of_member.len(), 3);
    let from_event = &of_member[0];
    assert_eq!(from_event.source(), pb::PiiAccessSource::Event);
    assert_eq!(from_event.actor, STAFF);
    assert_eq!(
        from_event.operation,
        "spharos.member.v1.MemberService/GetMember"
    );
    assert_eq!(from_event.fields, ["name", "phone", "email", "birth_date"]);
    assert_eq!(from_event.seq, 1);
    let direct = &of_member[2];
    assert_eq!(direct.source(), pb::PiiAccessSource::Direct);
    assert_eq!(direct.actor, STAFF, "defaults to the caller");
    assert_eq!(direct.recorded_by, STAFF);
    assert_eq!(direct.seq, 3);
    assert_eq!(direct.entry_hash.len(), 64);

    let by_actor = c
        .list_pii_accesses(app.req(pb::ListPiiAccessesRequest {
            actor: "cs-7".into(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .entries;
    assert_eq!(by_actor.len(), 1);
    assert_eq!(by_actor[0].reason, "배송 문의 #1");

    let in_range = c
        .list_pii_accesses(app.req(pb::ListPiiAccessesRequest {
            from_time: Some(spharos_kit::grpc::timestamp(before)),
            to_time: Some(spharos_kit::grpc::timestamp(
                chrono::Utc::now() + chrono::Duration::seconds(1),
            )),
            page_size: 3,
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(in_range.entries.len(), 3);
    assert!(!in_range.next_page_token.is_empty());
    let none = c
        .list_pii_accesses(app.req(pb::ListPiiAccessesRequest {
            to_time: Some(spharos_kit::grpc::timestamp(before)),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner();
    assert!(none.entries.is_empty());

    let v = verify(&app).await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.entries_checked, 4);
    assert_eq!(v.first_broken_seq, 0);

    // Another tenant has its own (empty) chain and sees none of these.
    let err_free = c
        .list_pii_accesses(app.req_as(
            spharos_kit::TenantId::generate(),
            &[],
            pb::ListPiiAccessesRequest::default(),
        ))
        .await
        .expect("listed")
        .into_inner();
    assert!(err_free.entries.is_empty());
}

async fn verification_catches_an_edited_row(backend: TestBackend) {
    let app = spawn_app(backend).await;
    three_entries(&app).await;
    assert!(verify(&app).await.intact);

    // The application cannot change the log at all.
    let tx = app
        .app
        .db()
        .begin(app.tenant)
        .await
        .expect("tenant transaction");
    let attempt = tx
        .execute_unprepared("UPDATE access_log SET reason = 'x'")
        .await;
    assert!(attempt.is_err(), "the log is append-only for the service");
    tx.rollback().await.expect("rolled back");

    tamper(
        &app,
        "UPDATE access_log SET reason = '정상 업무' WHERE seq = 2",
    )
    .await;
    let v = verify(&app).await;
    assert!(!v.intact);
    assert_eq!(v.first_broken_seq, 2);
    assert!(v.problem.contains("edited"), "{}", v.problem);
    assert_eq!(v.entries_checked, 1);
}

async fn verification_catches_a_deleted_row(backend: TestBackend) {
    let app = spawn_app(backend).await;
    three_entries(&app).await;
    tamper(&app, "DELETE FROM access_log WHERE seq = 2").await;
    let v = verify(&app).await;
    assert!(!v.intact);
    assert_eq!(v.first_broken_seq, 2);
    assert!(v.problem.contains("missing"), "{}", v.problem);

    // Deleting the newest entry instead is caught by the chain head.
    let app = spawn_app(backend).await;
    three_entries(&app).await;
    tamper(&app, "DELETE FROM access_log WHERE seq = 3").await;
    let v = verify(&app).await;
    assert!(!v.intact);
    assert_eq!(v.first_broken_seq, 3);
}

async fn concurrent_appends_keep_the_chain_linear(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let id = app.joined("010-4000-0003", &[]).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut c = app.privacy.clone();
        let r = app.req(record(&id, &format!("cs-{i}"), "동시 기록"));
        tasks.push(tokio::spawn(async move { c.record_pii_access(r).await }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(
            t.await
                .expect("task")
                .expect("recorded")
                .into_inner()
                .entry
                .expect("entry")
                .seq,
        );
    }
    seqs.sort();
    assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
    let v = verify(&app).await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.entries_checked, 20);
}

async fn bad_access_log_requests_are_named(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let err = c
        .record_pii_access(app.req(pb::RecordPiiAccessRequest {
            member_id: "x".into(),
            access_time: Some(spharos_kit::grpc::timestamp(
                chrono::Utc::now() + chrono::Duration::hours(2),
            )),
            ..Default::default()
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["member_id", "fields", "reason", "access_time"]);
    let err = c
        .list_pii_accesses(app.req(pb::ListPiiAccessesRequest {
            member_id: "x".into(),
            from_time: Some(spharos_kit::grpc::timestamp(chrono::Utc::now())),
            to_time: Some(spharos_kit::grpc::timestamp(
                chrono::Utc::now() - chrono::Duration::hours(1),
            )),
            page_token: "garbage".into(),
            ..Default::default()
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["member_id", "to_time", "page_token"]);
    let err = c
        .verify_access_log(tonic::Request::new(pb::VerifyAccessLogRequest {}))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    // A masked read logs nothing.
    let id = app.joined("010-4000-0004", &[]).await;
    app.members
        .clone()
        .get_member(app.req(mpb::GetMemberRequest {
            member_id: id,
            unmask: None,
        }))
        .await
        .expect("masked read");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(verify(&app).await.entries_checked, 0);
}
