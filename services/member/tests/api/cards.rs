//! Cards: issue (idempotent), several per member, report lost (stops finding the member),
//! replace (old card REPLACED or still LOST, new card pointing at it), list.
use spharos_kit::testing::TestBackend;
use spharos_member::domain::card::is_valid_number;
use spharos_proto::member::{self as pb, find_member_request::Key};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, spawn_app};

on_both_backends!(card_lifecycle, idempotent_card_issue);

async fn card_lifecycle(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap("test-cards", &["member.card_issued", "member.card_lost"])
        .await;
    let mut c = app.client.clone();
    let joined = app.join("홍길동", "010-1234-5678").await;
    let id = joined.member.expect("member").member_id;
    let first = joined.card.expect("card");

    let physical = c
        .issue_card(app.req(pb::IssueCardRequest {
            member_id: id.clone(),
            card_type: pb::CardType::Physical.into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect("issued")
        .into_inner()
        .card
        .expect("card");
    assert_eq!(physical.card_type(), pb::CardType::Physical);
    assert!(is_valid_number(&physical.card_number));
    assert_ne!(physical.card_number, first.card_number);
    assert_eq!(
        app.get_member(&id).await.cards.len(),
        2,
        "a member holds several cards"
    );

    let find_by = |number: &str| pb::FindMemberRequest {
        key: Some(Key::CardNumber(number.into())),
        unmask: None,
    };
    c.find_member(app.req(find_by(&first.card_number)))
        .await
        .expect("active card finds");

    let lost = c
        .report_card_lost(app.req(pb::ReportCardLostRequest {
            card_number: first.card_number.clone(),
        }))
        .await
        .expect("lost")
        .into_inner()
        .card
        .expect("card");
    assert_eq!(lost.status(), pb::CardStatus::Lost);
    let err = c
        .find_member(app.req(find_by(&first.card_number)))
        .await
        .expect_err("lost card");
    assert_eq!(err.code(), Code::NotFound);
    let again = c
        .report_card_lost(app.req(pb::ReportCardLostRequest {
            card_number: first.card_number.clone(),
        }))
        .await
        .expect("reporting twice is harmless")
        .into_inner()
        .card
        .expect("card");
    assert_eq!(again.status(), pb::CardStatus::Lost);
    let lost_event: pb::CardLost = tap
        .wait_for("member.card_lost", &id)
        .await
        .decode()
        .expect("payload");
    assert_eq!(lost_event.card_id, first.card_id);

    // Replacing a lost card: it stays LOST, the new one points at it.
    let replaced = c
        .replace_card(app.req(pb::ReplaceCardRequest {
            card_number: first.card_number.clone(),
            card_type: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect("replaced")
        .into_inner();
    let old = replaced.old_card.expect("old");
    let new = replaced.new_card.expect("new");
    assert_eq!(old.status(), pb::CardStatus::Lost);
    assert_eq!(new.status(), pb::CardStatus::Active);
    assert_eq!(new.replaces_card_id, first.card_id);
    assert_eq!(
        new.card_type(),
        pb::CardType::Mobile,
        "the type of the card it replaces"
    );
    assert!(is_valid_number(&new.card_number));
    let m = c
        .find_member(app.req(find_by(&new.card_number)))
        .await
        .expect("new card finds")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(m.member_id, id);

    // Replacing an active card: it becomes REPLACED and stops finding the member.
    let replaced = c
        .replace_card(app.req(pb::ReplaceCardRequest {
            card_number: physical.card_number.clone(),
            card_type: pb::CardType::Mobile.into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect("replaced")
        .into_inner();
    assert_eq!(
        replaced.old_card.expect("old").status(),
        pb::CardStatus::Replaced
    );
    let newest = replaced.new_card.expect("new");
    assert_eq!(newest.card_type(), pb::CardType::Mobile);
    let err = c
        .find_member(app.req(find_by(&physical.card_number)))
        .await
        .expect_err("replaced card");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .replace_card(app.req(pb::ReplaceCardRequest {
            card_number: physical.card_number.clone(),
            card_type: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("replaced twice");
    assert_reason(&err, Code::FailedPrecondition, "CARD_REPLACED");

    let cards = c
        .list_cards(app.req(pb::ListCardsRequest {
            member_id: id.clone(),
        }))
        .await
        .expect("list")
        .into_inner()
        .cards;
    let statuses: Vec<_> = cards
        .iter()
        .map(|c| (c.card_id.clone(), c.status()))
        .collect();
    assert_eq!(
        statuses,
        [
            (first.card_id.clone(), pb::CardStatus::Lost),
            (physical.card_id.clone(), pb::CardStatus::Replaced),
            (new.card_id.clone(), pb::CardStatus::Active),
            (newest.card_id.clone(), pb::CardStatus::Active),
        ]
    );
    let member_cards: Vec<_> = app
        .get_member(&id)
        .await
        .cards
        .into_iter()
        .map(|c| c.card_id)
        .collect();
    assert_eq!(
        member_cards,
        [new.card_id.clone(), newest.card_id.clone()],
        "only active cards"
    );
    // join + physical + two replacements
    tap.wait_for_n("member.card_issued", &id, 4).await;

    let err = c
        .report_card_lost(app.req(pb::ReportCardLostRequest {
            card_number: "1234".into(),
        }))
        .await
        .expect_err("bad number");
    assert_invalid(&err, &["card_number"]);
    let err = c
        .report_card_lost(app.req(pb::ReportCardLostRequest {
            card_number: "4111111111111111".into(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .issue_card(app.req(pb::IssueCardRequest {
            member_id: "x".into(),
            ..Default::default()
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["member_id"]);
    let err = c
        .list_cards(app.req(pb::ListCardsRequest {
            member_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown member");
    assert_eq!(err.code(), Code::NotFound);

    c.withdraw_member(app.req(pb::WithdrawMemberRequest {
        member_id: id.clone(),
        reason: String::new(),
    }))
    .await
    .expect("withdrawn");
    let err = c
        .issue_card(app.req(pb::IssueCardRequest {
            member_id: id,
            ..Default::default()
        }))
        .await
        .expect_err("withdrawn members get no cards");
    assert_reason(&err, Code::FailedPrecondition, "MEMBER_WITHDRAWN");
}

async fn idempotent_card_issue(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let joined = app.join("홍길동", "010-1234-5678").await;
    let id = joined.member.expect("member").member_id;
    let issue = |t: pb::CardType| pb::IssueCardRequest {
        member_id: id.clone(),
        card_type: t.into(),
        idempotency_key: "issue-1".into(),
    };
    let a = c
        .issue_card(app.req(issue(pb::CardType::Physical)))
        .await
        .expect("first")
        .into_inner()
        .card;
    let b = c
        .issue_card(app.req(issue(pb::CardType::Physical)))
        .await
        .expect("retry")
        .into_inner()
        .card;
    assert_eq!(a, b);
    let err = c
        .issue_card(app.req(issue(pb::CardType::Mobile)))
        .await
        .expect_err("other body");
    assert_reason(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    let card = joined.card.expect("card").card_number;
    let replace = pb::ReplaceCardRequest {
        card_number: card,
        card_type: 0,
        idempotency_key: "replace-1".into(),
    };
    let r1 = c
        .replace_card(app.req(replace.clone()))
        .await
        .expect("first")
        .into_inner();
    let r2 = c
        .replace_card(app.req(replace))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(r1, r2, "the retry does not issue a third card");
    let cards = c
        .list_cards(app.req(pb::ListCardsRequest { member_id: id }))
        .await
        .expect("list")
        .into_inner()
        .cards;
    assert_eq!(cards.len(), 3, "join + one issue + one replacement");
}
