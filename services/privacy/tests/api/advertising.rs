//! The campaign service's bulk question: who may receive an advertisement on channel C at
//! time T. The channel's consent is needed, and between 21:00 and 08:00 tenant time the
//! night-time consent too; a withdrawal shows at once.
use spharos_kit::testing::TestBackend;
use spharos_proto::{common::Channel, privacy as pb};

use crate::helpers::{assert_invalid, kst, spawn_app};

on_both_backends!(
    the_bulk_query_applies_channel_and_night_rules,
    a_withdrawal_is_reflected_in_the_bulk_query_immediately,
    a_large_list_is_answered_like_a_small_one,
    bad_bulk_queries_are_named,
);

async fn the_bulk_query_applies_channel_and_night_rules(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let sms_only = app
        .joined("010-2000-0001", &[("A0001", true), ("A0009", true)])
        .await;
    let sms_night = app
        .joined(
            "010-2000-0002",
            &[("A0001", true), ("A0009", true), ("N0001", true)],
        )
        .await;
    let mail_only = app
        .joined("010-2000-0003", &[("A0001", true), ("A0010", true)])
        .await;
    let none = app
        .joined("010-2000-0004", &[("A0001", true), ("A0009", false)])
        .await;
    let stranger = uuid::Uuid::now_v7().to_string();
    let all = [
        sms_only.as_str(),
        sms_night.as_str(),
        mail_only.as_str(),
        none.as_str(),
        stranger.as_str(),
    ];

    assert_eq!(
        app.may_receive(Channel::Sms, kst(14, 0), &all).await,
        [true, true, false, false, false]
    );
    // LMS and MMS are the SMS family: the same consent.
    assert_eq!(
        app.may_receive(Channel::Lms, kst(8, 0), &all).await,
        [true, true, false, false, false]
    );
    // 21:00 Seoul: only the member with the night-time consent.
    assert_eq!(
        app.may_receive(Channel::Mms, kst(21, 0), &all).await,
        [false, true, false, false, false]
    );
    assert_eq!(
        app.may_receive(Channel::Sms, kst(7, 59), &all).await,
        [false, true, false, false, false]
    );
    assert_eq!(
        app.may_receive(Channel::Email, kst(12, 0), &all).await,
        [false, false, true, false, false]
    );
    // Nobody consented to app push advertising (no such consent type even).
    assert_eq!(
        app.may_receive(Channel::AppPush, kst(12, 0), &all).await,
        [false; 5]
    );
    // The same member twice is answered twice; an empty list is fine.
    assert_eq!(
        app.may_receive(Channel::Sms, kst(12, 0), &[&sms_only, &sms_only])
            .await,
        [true, true]
    );
    assert!(
        app.may_receive(Channel::Sms, kst(12, 0), &[])
            .await
            .is_empty()
    );

    // The response says whether the time was night-time in the tenant zone.
    let r = app
        .privacy
        .clone()
        .filter_advertising_recipients(app.req(pb::FilterAdvertisingRecipientsRequest {
            channel: Channel::Sms.into(),
            send_time: Some(spharos_kit::grpc::timestamp(kst(23, 0))),
            member_ids_packed: Vec::new(),
        }))
        .await
        .expect("bulk")
        .into_inner();
    assert!(r.night_time);
}

async fn a_withdrawal_is_reflected_in_the_bulk_query_immediately(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let a = app
        .joined("010-2100-0001", &[("A0001", true), ("A0009", true)])
        .await;
    let b = app
        .joined("010-2100-0002", &[("A0001", true), ("A0009", true)])
        .await;
    assert_eq!(
        app.may_receive(Channel::Sms, kst(12, 0), &[&a, &b]).await,
        [true, true]
    );
    app.withdraw(&a, "A0009").await;
    // No waiting: the state table is written in the withdrawal's transaction.
    assert_eq!(
        app.may_receive(Channel::Sms, kst(12, 0), &[&a, &b]).await,
        [false, true]
    );
    app.grant(&a, "A0009").await;
    assert_eq!(
        app.may_receive(Channel::Sms, kst(12, 0), &[&a, &b]).await,
        [true, true]
    );
}

/// 30,000 candidates take the large-list path on PostgreSQL (granted ids read and judged in
/// memory) and chunked `IN` lists on SQLite; the answer must be the one the small-list path
/// gives, position for position, by day and at night.
async fn a_large_list_is_answered_like_a_small_one(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let sms_only = app
        .joined("010-2200-0001", &[("A0001", true), ("A0009", true)])
        .await;
    let sms_night = app
        .joined(
            "010-2200-0002",
            &[("A0001", true), ("A0009", true), ("N0001", true)],
        )
        .await;
    let none = app
        .joined("010-2200-0003", &[("A0001", true), ("A0009", false)])
        .await;
    let mut ids: Vec<String> = (0..30_000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    // The members at scattered positions, one of them twice.
    for (pos, id) in [
        (17, &sms_only),
        (12_345, &sms_night),
        (20_000, &none),
        (29_999, &sms_only),
    ] {
        ids[pos] = id.clone();
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let positions = |answer: Vec<bool>| -> Vec<usize> {
        answer
            .iter()
            .enumerate()
            .filter(|(_, ok)| **ok)
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(
        positions(app.may_receive(Channel::Sms, kst(14, 0), &refs).await),
        [17, 12_345, 29_999]
    );
    assert_eq!(
        positions(app.may_receive(Channel::Sms, kst(22, 0), &refs).await),
        [12_345],
        "at night only the night-time consent counts"
    );
    assert!(
        positions(app.may_receive(Channel::Email, kst(14, 0), &refs).await).is_empty(),
        "nobody consented to e-mail"
    );
    // A withdrawal shows on the large path at once too.
    app.withdraw(&sms_only, "A0009").await;
    assert_eq!(
        positions(app.may_receive(Channel::Sms, kst(14, 0), &refs).await),
        [12_345]
    );
}

async fn bad_bulk_queries_are_named(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.standard_consent_types().await;
    let mut c = app.privacy.clone();
    let err = c
        .filter_advertising_recipients(app.req(pb::FilterAdvertisingRecipientsRequest {
            channel: Channel::Unspecified.into(),
            send_time: None,
            member_ids_packed: vec![0; 15],
        }))
        .await
        .expect_err("bad channel");
    assert_invalid(&err, &["channel"]);
    let err = c
        .filter_advertising_recipients(app.req(pb::FilterAdvertisingRecipientsRequest {
            channel: Channel::Sms.into(),
            send_time: None,
            member_ids_packed: vec![0; 17],
        }))
        .await
        .expect_err("bad packing");
    assert_invalid(&err, &["member_ids_packed"]);
    let err = c
        .filter_advertising_recipients(app.req(pb::FilterAdvertisingRecipientsRequest {
            channel: Channel::KakaoAlimtalk.into(),
            send_time: None,
            member_ids_packed: Vec::new(),
        }))
        .await
        .expect_err("alimtalk carries no ads");
    assert_invalid(&err, &["channel"]);
    let err = c
        .filter_advertising_recipients(app.req(pb::FilterAdvertisingRecipientsRequest {
            channel: Channel::Sms.into(),
            send_time: None,
            member_ids_packed: vec![0; 16 * 1_000_001],
        }))
        .await
        .expect_err("too many");
    assert_invalid(&err, &["member_ids_packed"]);
}
