//! The biennial re-confirmation: the scan emits `consent.reconfirmation_due` for advertising
//! consents whose notice is owed (once per consent and cycle), and the campaign service's
//! report of the sending starts the next cycle.
use chrono::{Months, Utc};
use spharos_kit::testing::TestBackend;
use spharos_proto::{common::Channel, privacy as pb};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, spawn_app};

on_both_backends!(advertising_consents_are_reconfirmed_every_two_years);

async fn advertising_consents_are_reconfirmed_every_two_years(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap(
            "test-reconfirmation",
            &["privacy.consent.reconfirmation_due"],
        )
        .await;
    app.standard_consent_types().await;
    let ads = app
        .joined("010-6000-0001", &[("A0001", true), ("A0009", true)])
        .await;
    let declined = app
        .joined("010-6000-0002", &[("A0001", true), ("A0009", false)])
        .await;

    // A year in: nothing is due.
    let year = Utc::now() + Months::new(12);
    assert_eq!(
        app.app
            .run_reconfirmation_scan(year)
            .await
            .expect("scan")
            .done,
        0
    );

    // Two years in: the granted advertising consent (not the required item, not the declined
    // one) is due, once however often the scan runs.
    let two_years = Utc::now() + Months::new(24);
    assert_eq!(
        app.app
            .run_reconfirmation_scan(two_years)
            .await
            .expect("scan")
            .done,
        1
    );
    assert_eq!(
        app.app
            .run_reconfirmation_scan(two_years)
            .await
            .expect("scan")
            .done,
        0
    );
    let due = tap
        .wait_for_n("privacy.consent.reconfirmation_due", &ads, 1)
        .await;
    let msg: pb::ConsentReconfirmationDue = due[0].decode().expect("payload");
    assert_eq!(msg.consent_type_code, "A0009");
    assert_eq!(msg.channel(), pb::MarketingChannel::Sms);
    assert_eq!(msg.version, 1);
    let expected_due = (app.app.today() + Months::new(24)).to_string();
    assert_eq!(msg.due_date, expected_due);
    assert!(
        tap.all("privacy.consent.reconfirmation_due")
            .iter()
            .all(|e| e.subject_id != declined)
    );

    let mut c = app.privacy.clone();
    let err = c
        .record_reconfirmation_notice_sent(app.req(pb::RecordReconfirmationNoticeSentRequest {
            notice_id: "x".into(),
            sent_time: None,
            channel: 0,
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["notice_id", "channel"]);
    let sent_at = two_years;
    let notice = c
        .record_reconfirmation_notice_sent(app.req(pb::RecordReconfirmationNoticeSentRequest {
            notice_id: msg.notice_id.clone(),
            sent_time: Some(spharos_kit::grpc::timestamp(sent_at)),
            channel: Channel::Sms.into(),
        }))
        .await
        .expect("recorded")
        .into_inner()
        .notice
        .expect("notice");
    assert!(notice.sent_time.is_some());
    assert_eq!(notice.sent_channel(), Channel::Sms);
    let err = c
        .record_reconfirmation_notice_sent(app.req(pb::RecordReconfirmationNoticeSentRequest {
            notice_id: msg.notice_id.clone(),
            sent_time: None,
            channel: Channel::Sms.into(),
        }))
        .await
        .expect_err("twice");
    assert_reason(&err, Code::FailedPrecondition, "NOTICE_ALREADY_SENT");
    let err = c
        .record_reconfirmation_notice_sent(app.req(pb::RecordReconfirmationNoticeSentRequest {
            notice_id: uuid::Uuid::now_v7().to_string(),
            sent_time: None,
            channel: Channel::Sms.into(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    // The next cycle counts from the notice: nothing due a year later, due again two years
    // after the notice.
    let after_notice = sent_at + Months::new(12);
    assert_eq!(
        app.app
            .run_reconfirmation_scan(after_notice)
            .await
            .expect("scan")
            .done,
        0
    );
    let next_cycle = sent_at + Months::new(24);
    assert_eq!(
        app.app
            .run_reconfirmation_scan(next_cycle)
            .await
            .expect("scan")
            .done,
        1
    );
    tap.wait_for_n("privacy.consent.reconfirmation_due", &ads, 2)
        .await;
}
