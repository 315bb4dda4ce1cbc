//! Members: join (with its card and events), validation of every field, duplicate phones,
//! find by phone or card, update by mask, withdrawal and re-join, paging and filters,
//! idempotent joins.
use std::time::Duration;

use spharos_kit::{grpc::timestamp, testing::TestBackend};
use spharos_proto::member::{self as pb, find_member_request::Key};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, join_request, mask, spawn_app};

on_both_backends!(
    join_and_get,
    join_validation,
    duplicate_phone_is_refused,
    find_by_phone_and_card,
    update_member_by_mask,
    withdraw_and_rejoin,
    member_paging_and_filters,
    idempotent_join,
);

fn is_luhn_16(n: &str) -> bool {
    n.len() == 16
        && n.bytes().all(|b| b.is_ascii_digit())
        && spharos_member::domain::card::is_valid_number(n)
}

async fn join_and_get(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap("test-join", &["member.joined", "member.card_issued"])
        .await;
    let store = app.create_store("GN001").await;
    let mut r = join_request("홍길동", "010-1234-5678");
    r.join_store_id = store.store_id.clone();
    r.join_channel = spharos_proto::common::JoinChannel::Pos.into();
    let joined = app.join_req(r).await;
    let m = joined.member.expect("member");
    let card = joined.card.expect("card");

    assert_eq!(m.status(), pb::MemberStatus::Active);
    assert_eq!(m.name, "홍*동");
    assert_eq!(m.phone, "010-****-5678");
    assert_eq!(m.email, "ho**@example.com");
    assert_eq!(m.birth_date, "1990-**-**");
    assert!(!m.unmasked);
    assert_eq!(m.gender(), pb::Gender::Male);
    assert_eq!(m.join_store_id, store.store_id);
    assert_eq!(m.join_channel(), spharos_proto::common::JoinChannel::Pos);
    assert_eq!(m.grade_id, "", "no grade table yet");
    assert!(is_luhn_16(&card.card_number), "{}", card.card_number);
    assert_eq!(card.card_type(), pb::CardType::Mobile, "mobile by default");
    assert_eq!(card.status(), pb::CardStatus::Active);
    assert_eq!(m.cards, vec![card.clone()]);

    let got = app.get_member(&m.member_id).await;
    assert_eq!(got, m, "what join answered is what get reads back");

    let joined_event = tap.wait_for("member.joined", &m.member_id).await;
    let payload: pb::MemberJoined = joined_event.decode().expect("payload");
    assert_eq!(payload.member_id, m.member_id);
    assert_eq!(payload.join_store_id, store.store_id);
    assert_eq!(payload.birth_month_day, "05-17");
    let issued: pb::CardIssued = tap
        .wait_for("member.card_issued", &m.member_id)
        .await
        .decode()
        .expect("payload");
    assert_eq!(issued.card_id, card.card_id);
    for e in tap
        .all("member.joined")
        .iter()
        .chain(tap.all("member.card_issued").iter())
    {
        let bytes = String::from_utf8_lossy(&e.payload);
        for pii in ["홍길동", "01012345678", "1234-5678", "hong@", "1990"] {
            assert!(
                !bytes.contains(pii),
                "event {} carries PII {pii}",
                e.topic()
            );
        }
    }

    let err = app
        .client
        .clone()
        .get_member(app.req(pb::GetMemberRequest {
            member_id: uuid::Uuid::now_v7().to_string(),
            unmask: None,
        }))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .client
        .clone()
        .get_member(app.req(pb::GetMemberRequest {
            member_id: "nope".into(),
            unmask: None,
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["member_id"]);
}

async fn join_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let err = c
        .join_member(app.req(pb::JoinMemberRequest {
            name: String::new(),
            phone: "02-123-4567".into(),
            email: "not an email".into(),
            birth_date: "1990-13-40".into(),
            join_store_id: "store-1".into(),
            ..Default::default()
        }))
        .await
        .expect_err("invalid");
    assert_invalid(
        &err,
        &["name", "phone", "email", "birth_date", "join_store_id"],
    );

    type Mutation = fn(&mut pb::JoinMemberRequest);
    let cases: Vec<(&str, Mutation)> = vec![
        ("name", |r| r.name = "가".repeat(51)),
        ("phone", |r| r.phone = String::new()),
        ("phone", |r| r.phone = "010-123-456".into()),
        ("phone", |r| r.phone = "012-1234-5678".into()),
        ("email", |r| r.email = "a@b".into()),
        ("birth_date", |r| {
            r.birth_date = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string()
        }),
        ("birth_date", |r| r.birth_date = "1899-12-31".into()),
        ("birth_date", |r| r.birth_date = "19900517".into()),
        ("join_store_id", |r| r.join_store_id = "x".into()),
        ("join_store_id", |r| {
            r.join_store_id = uuid::Uuid::now_v7().to_string()
        }),
    ];
    for (field, mutate) in cases {
        let mut r = join_request("홍길동", "010-1234-5678");
        mutate(&mut r);
        let err = c.join_member(app.req(r)).await.expect_err(field);
        assert_invalid(&err, &[field]);
    }

    // A missing store is reported together with the other bad fields.
    let mut r = join_request("", "010-1234-5678");
    r.join_store_id = uuid::Uuid::now_v7().to_string();
    let err = c.join_member(app.req(r)).await.expect_err("two bad fields");
    assert_invalid(&err, &["name", "join_store_id"]);

    // Optional fields may be empty.
    let mut r = join_request("김", "01098765432");
    r.email = String::new();
    r.birth_date = String::new();
    let m = app.join_req(r).await.member.expect("member");
    assert_eq!(m.email, "");
    assert_eq!(m.birth_date, "");
}

async fn duplicate_phone_is_refused(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.join("홍길동", "010-1234-5678").await;
    for spelling in ["010-1234-5678", "01012345678", "010 1234 5678"] {
        let err = app
            .client
            .clone()
            .join_member(app.req(join_request("임꺽정", spelling)))
            .await
            .expect_err("duplicate phone");
        assert_reason(&err, Code::AlreadyExists, "PHONE_ALREADY_REGISTERED");
    }
}

async fn find_by_phone_and_card(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let joined = app.join("홍길동", "010-1234-5678").await;
    let id = joined.member.expect("member").member_id;
    let card = joined.card.expect("card").card_number;
    app.join("임꺽정", "010-9999-0000").await;

    let find = |key: Key| pb::FindMemberRequest {
        key: Some(key),
        unmask: None,
    };
    for key in [
        Key::Phone("01012345678".into()),
        Key::Phone("010-1234-5678".into()),
        Key::CardNumber(card.clone()),
    ] {
        let m = c
            .find_member(app.req(find(key)))
            .await
            .expect("found")
            .into_inner()
            .member
            .expect("member");
        assert_eq!(m.member_id, id);
        assert_eq!(m.phone, "010-****-5678");
    }
    let err = c
        .find_member(app.req(find(Key::Phone("010-5555-5555".into()))))
        .await
        .expect_err("unknown phone");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .find_member(app.req(find(Key::Phone("12345".into()))))
        .await
        .expect_err("bad phone");
    assert_invalid(&err, &["phone"]);
    let err = c
        .find_member(app.req(find(Key::CardNumber("4111111111111111".into()))))
        .await
        .expect_err("valid but unknown card");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .find_member(app.req(find(Key::CardNumber("4111111111111112".into()))))
        .await
        .expect_err("bad check digit");
    assert_invalid(&err, &["card_number"]);
    let err = c
        .find_member(app.req(pb::FindMemberRequest {
            key: None,
            unmask: None,
        }))
        .await
        .expect_err("no key");
    assert_invalid(&err, &["key"]);
}

async fn update_member_by_mask(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-updates", &["member.updated"]).await;
    let mut c = app.client.clone();
    let id = app
        .join("홍길동", "010-1234-5678")
        .await
        .member
        .expect("member")
        .member_id;
    app.join("임꺽정", "010-9999-0000").await;

    let update = |member: pb::Member, paths: &[&str]| pb::UpdateMemberRequest {
        member_id: id.clone(),
        member: Some(member),
        update_mask: mask(paths),
    };
    let m = c
        .update_member(app.req(update(
            pb::Member {
                name: "홍길순".into(),
                phone: "010-2222-3333".into(),
                email: String::new(),
                gender: pb::Gender::Female.into(),
                birth_date: "2000-01-01".into(),
                ..Default::default()
            },
            &["name", "phone", "email", "gender"],
        )))
        .await
        .expect("updated")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(m.name, "홍*순");
    assert_eq!(m.phone, "010-****-3333");
    assert_eq!(m.email, "", "cleared");
    assert_eq!(m.gender(), pb::Gender::Female);
    assert_eq!(m.birth_date, "1990-**-**", "birth_date was not in the mask");

    let e = tap.wait_for("member.updated", &id).await;
    let payload: pb::MemberUpdated = e.decode().expect("payload");
    assert_eq!(payload.changed_fields, ["name", "phone", "email", "gender"]);
    assert!(!String::from_utf8_lossy(&e.payload).contains("홍길순"));

    // The new phone finds the member; the old one is free.
    let found = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::Phone("01022223333".into())),
            unmask: None,
        }))
        .await
        .expect("new phone")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(found.member_id, id);
    app.join("새회원", "010-1234-5678").await;

    let err = c
        .update_member(app.req(update(
            pb::Member {
                phone: "010-9999-0000".into(),
                ..Default::default()
            },
            &["phone"],
        )))
        .await
        .expect_err("another member's phone");
    assert_reason(&err, Code::AlreadyExists, "PHONE_ALREADY_REGISTERED");

    let err = c
        .update_member(app.req(update(pb::Member::default(), &[])))
        .await
        .expect_err("empty mask");
    assert_invalid(&err, &["update_mask"]);
    let err = c
        .update_member(app.req(update(pb::Member::default(), &["status"])))
        .await
        .expect_err("status is not updatable");
    assert_invalid(&err, &["update_mask"]);
    let err = c
        .update_member(app.req(update(
            pb::Member {
                name: String::new(),
                phone: "123".into(),
                email: "x@".into(),
                birth_date: "3000-01-01".into(),
                ..Default::default()
            },
            &["name", "phone", "email", "birth_date"],
        )))
        .await
        .expect_err("every field bad");
    assert_invalid(
        &err,
        &[
            "member.name",
            "member.phone",
            "member.email",
            "member.birth_date",
        ],
    );
    let err = c
        .update_member(app.req(pb::UpdateMemberRequest {
            member_id: "x".into(),
            member: None,
            update_mask: None,
        }))
        .await
        .expect_err("bad id and no mask");
    assert_invalid(&err, &["member_id", "update_mask"]);

    // Nothing changed: no second event.
    c.update_member(app.req(update(
        pb::Member {
            name: "홍길순".into(),
            ..Default::default()
        },
        &["name"],
    )))
    .await
    .expect("no-op update");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tap.all("member.updated").len(), 1);
}

async fn withdraw_and_rejoin(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-withdraw", &["member.withdrawn"]).await;
    let mut c = app.client.clone();
    let joined = app.join("홍길동", "010-1234-5678").await;
    let id = joined.member.expect("member").member_id;
    let card = joined.card.expect("card").card_number;

    let m = c
        .withdraw_member(app.req(pb::WithdrawMemberRequest {
            member_id: id.clone(),
            reason: "고객 요청".into(),
        }))
        .await
        .expect("withdrawn")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(m.status(), pb::MemberStatus::Withdrawn);
    assert!(m.withdraw_time.is_some());
    assert_eq!(
        app.get_member(&id).await.status(),
        pb::MemberStatus::Withdrawn
    );

    let e: pb::MemberWithdrawn = tap
        .wait_for("member.withdrawn", &id)
        .await
        .decode()
        .expect("payload");
    assert_eq!(e.member_id, id);
    assert_eq!(e.reason, "고객 요청");

    let err = c
        .withdraw_member(app.req(pb::WithdrawMemberRequest {
            member_id: id.clone(),
            reason: String::new(),
        }))
        .await
        .expect_err("twice");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");
    let err = c
        .update_member(app.req(pb::UpdateMemberRequest {
            member_id: id.clone(),
            member: Some(pb::Member {
                name: "x".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        }))
        .await
        .expect_err("withdrawn members do not change");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");

    // A withdrawn member's card and phone find nobody; the phone may join again.
    let err = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::CardNumber(card)),
            unmask: None,
        }))
        .await
        .expect_err("card of a withdrawn member");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::Phone("01012345678".into())),
            unmask: None,
        }))
        .await
        .expect_err("phone of a withdrawn member");
    assert_eq!(err.code(), Code::NotFound);
    let again = app
        .join("홍길동", "010-1234-5678")
        .await
        .member
        .expect("member");
    assert_ne!(again.member_id, id);
    let found = c
        .find_member(app.req(pb::FindMemberRequest {
            key: Some(Key::Phone("01012345678".into())),
            unmask: None,
        }))
        .await
        .expect("the new member")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(found.member_id, again.member_id);

    let err = c
        .withdraw_member(app.req(pb::WithdrawMemberRequest {
            member_id: again.member_id,
            reason: "가".repeat(201),
        }))
        .await
        .expect_err("reason too long");
    assert_invalid(&err, &["reason"]);
}

async fn member_paging_and_filters(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let store = app.create_store("GN001").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut r = join_request(&format!("회원{i}"), &format!("010-1000-000{i}"));
        if i < 2 {
            r.join_store_id = store.store_id.clone();
        }
        ids.push(app.join_req(r).await.member.expect("member").member_id);
        if i == 2 {
            // A gap in join times for the time filter.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let split = app.get_member(&ids[3]).await.join_time;

    let lister = c.clone();
    let list = |r: pb::ListMembersRequest| {
        let mut c = lister.clone();
        let req = app.req(r);
        async move { c.list_members(req).await.expect("list").into_inner() }
    };
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = list(pb::ListMembersRequest {
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        pages += 1;
        assert!(page.members.len() <= 2);
        assert!(
            page.members
                .iter()
                .all(|m| !m.unmasked && m.phone.contains("****"))
        );
        seen.extend(page.members.into_iter().map(|m| m.member_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let ids_of = |r: pb::ListMembersResponse| {
        r.members
            .into_iter()
            .map(|m| m.member_id)
            .collect::<Vec<_>>()
    };
    let at_store = ids_of(
        list(pb::ListMembersRequest {
            join_store_id: store.store_id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(at_store, ids[..2]);

    c.withdraw_member(app.req(pb::WithdrawMemberRequest {
        member_id: ids[4].clone(),
        reason: String::new(),
    }))
    .await
    .expect("withdrawn");
    let withdrawn = ids_of(
        list(pb::ListMembersRequest {
            status: pb::MemberStatus::Withdrawn.into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(withdrawn, ids[4..]);
    let active = ids_of(
        list(pb::ListMembersRequest {
            status: pb::MemberStatus::Active.into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(active, ids[..4]);

    let since = ids_of(
        list(pb::ListMembersRequest {
            joined_after_time: split,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(since, ids[3..], "inclusive start");
    let before = ids_of(
        list(pb::ListMembersRequest {
            joined_before_time: split,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(before, ids[..3], "exclusive end");
    let window = ids_of(
        list(pb::ListMembersRequest {
            joined_after_time: Some(timestamp(chrono::Utc::now() - chrono::Duration::hours(1))),
            joined_before_time: split,
            join_store_id: store.store_id.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(window, ids[..2], "filters combine");

    // Grade filter: everyone gets BASIC, one purchase lifts member 1 to GOLD.
    let grades = app.set_standard_grades().await;
    let gold = grades
        .iter()
        .find(|g| g.name == "GOLD")
        .expect("gold")
        .grade_id
        .clone();
    app.publish_purchase(&ids[1], "POS-1", 150_000).await;
    app.wait_for_grade(&ids[1], "GOLD", Duration::from_secs(10))
        .await;
    let golden = ids_of(
        list(pb::ListMembersRequest {
            grade_id: gold,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(golden, ids[1..2]);

    let err = c
        .list_members(app.req(pb::ListMembersRequest {
            page_size: -5,
            grade_id: "g".into(),
            join_store_id: "s".into(),
            joined_after_time: split,
            joined_before_time: split,
            ..Default::default()
        }))
        .await
        .expect_err("every filter bad");
    assert_invalid(
        &err,
        &[
            "page_size",
            "grade_id",
            "join_store_id",
            "joined_before_time",
        ],
    );
}

async fn idempotent_join(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app.tap("test-idem", &["member.joined"]).await;
    let mut r = join_request("홍길동", "010-1234-5678");
    r.idempotency_key = "pos-7-receipt-42".into();
    let first = app.join_req(r.clone()).await;
    let mut retry = r.clone();
    retry.phone = "01012345678".into(); // the same request, typed differently
    let second = app.join_req(retry).await;
    assert_eq!(first.member, second.member, "the first result, replayed");
    assert_eq!(first.card, second.card);

    let mut other = r.clone();
    other.name = "임꺽정".into();
    let err = app
        .client
        .clone()
        .join_member(app.req(other))
        .await
        .expect_err("same key, other body");
    assert_reason(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    let id = first.member.expect("member").member_id;
    tap.wait_for("member.joined", &id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tap.all("member.joined").len(), 1, "one member, one event");
    let list = app
        .client
        .clone()
        .list_members(app.req(pb::ListMembersRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.members.len(), 1);
}
