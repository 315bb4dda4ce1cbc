//! Notices (공지사항) and terms and policies (이용약관, 개인정보처리방침).
use spharos_kit::testing::TestBackend;
use spharos_proto::privacy as pb;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason, spawn_app};

on_both_backends!(
    notices_are_edited_published_pinned_ordered_and_soft_deleted,
    policies_have_versions_in_force_by_date,
);

async fn notice(app: &TestApp, title: &str, pinned: bool, sort_order: i32) -> pb::Notice {
    app.privacy
        .clone()
        .create_notice(app.req(pb::CreateNoticeRequest {
            title: title.into(),
            body: format!("{title} 본문"),
            pinned,
            sort_order,
        }))
        .await
        .expect("created")
        .into_inner()
        .notice
        .expect("notice")
}

async fn titles(app: &TestApp, view: pb::NoticeView, page_size: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .privacy
            .clone()
            .list_notices(app.req(pb::ListNoticesRequest {
                page_size,
                page_token: token,
                view: view.into(),
            }))
            .await
            .expect("listed")
            .into_inner();
        out.extend(r.notices.into_iter().map(|n| n.title));
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

async fn notices_are_edited_published_pinned_ordered_and_soft_deleted(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let a = notice(&app, "A", false, 0).await;
    let b = notice(&app, "B", false, 0).await;
    let d = notice(&app, "D", false, -1).await;
    let p = notice(&app, "P", true, 9).await;
    assert!(!a.published, "created unpublished");
    assert!(titles(&app, pb::NoticeView::MemberApp, 0).await.is_empty());

    for n in [&a, &b, &d, &p] {
        let published = c
            .publish_notice(app.req(pb::PublishNoticeRequest {
                notice_id: n.notice_id.clone(),
            }))
            .await
            .expect("published")
            .into_inner()
            .notice
            .expect("notice");
        assert!(published.published);
        assert!(published.publish_time.is_some());
    }
    // Pinned first, then sort order, then newest; the same across pages of 1.
    let expected = ["P", "D", "B", "A"];
    assert_eq!(titles(&app, pb::NoticeView::MemberApp, 0).await, expected);
    assert_eq!(titles(&app, pb::NoticeView::MemberApp, 1).await, expected);

    // Pin A, move D last, edit B's title.
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    c.update_notice(app.req(pb::UpdateNoticeRequest {
        notice_id: a.notice_id.clone(),
        notice: Some(pb::Notice {
            pinned: true,
            ..Default::default()
        }),
        update_mask: mask(&["pinned"]),
    }))
    .await
    .expect("pinned");
    c.update_notice(app.req(pb::UpdateNoticeRequest {
        notice_id: d.notice_id.clone(),
        notice: Some(pb::Notice {
            sort_order: 5,
            ..Default::default()
        }),
        update_mask: mask(&["sort_order"]),
    }))
    .await
    .expect("reordered");
    let edited = c
        .update_notice(app.req(pb::UpdateNoticeRequest {
            notice_id: b.notice_id.clone(),
            notice: Some(pb::Notice {
                title: "B2".into(),
                body: "새 본문".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
        }))
        .await
        .expect("edited")
        .into_inner()
        .notice
        .expect("notice");
    assert_eq!(edited.title, "B2");
    assert_eq!(edited.body, "B 본문", "only masked fields change");
    assert_eq!(
        titles(&app, pb::NoticeView::MemberApp, 2).await,
        ["A", "P", "B2", "D"]
    );

    // Unpublished: gone from the member app, still in the admin view.
    c.unpublish_notice(app.req(pb::UnpublishNoticeRequest {
        notice_id: p.notice_id.clone(),
    }))
    .await
    .expect("unpublished");
    assert_eq!(
        titles(&app, pb::NoticeView::MemberApp, 0).await,
        ["A", "B2", "D"]
    );
    assert_eq!(
        titles(&app, pb::NoticeView::Admin, 0).await,
        ["A", "P", "B2", "D"]
    );

    // Soft delete: gone everywhere, Get is NotFound, deleting again too.
    c.delete_notice(app.req(pb::DeleteNoticeRequest {
        notice_id: a.notice_id.clone(),
    }))
    .await
    .expect("deleted");
    assert_eq!(
        titles(&app, pb::NoticeView::Admin, 0).await,
        ["P", "B2", "D"]
    );
    let err = c
        .get_notice(app.req(pb::GetNoticeRequest {
            notice_id: a.notice_id.clone(),
        }))
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_notice(app.req(pb::DeleteNoticeRequest {
            notice_id: a.notice_id.clone(),
        }))
        .await
        .expect_err("deleted twice");
    assert_eq!(err.code(), Code::NotFound);
    let got = c
        .get_notice(app.req(pb::GetNoticeRequest {
            notice_id: d.notice_id.clone(),
        }))
        .await
        .expect("got")
        .into_inner()
        .notice
        .expect("notice");
    assert_eq!(got.sort_order, 5);

    // Bad input names every field; another tenant sees nothing.
    let err = c
        .create_notice(app.req(pb::CreateNoticeRequest::default()))
        .await
        .expect_err("empty");
    assert_invalid(&err, &["title", "body"]);
    let err = c
        .update_notice(app.req(pb::UpdateNoticeRequest {
            notice_id: "x".into(),
            notice: Some(pb::Notice::default()),
            update_mask: mask(&["title", "published"]),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["notice_id", "update_mask"]);
    let err = c
        .update_notice(app.req(pb::UpdateNoticeRequest {
            notice_id: d.notice_id.clone(),
            notice: Some(pb::Notice::default()),
            update_mask: mask(&["title"]),
        }))
        .await
        .expect_err("empty title");
    assert_invalid(&err, &["notice.title"]);
    let err = c
        .list_notices(app.req(pb::ListNoticesRequest {
            page_token: "nope".into(),
            ..Default::default()
        }))
        .await
        .expect_err("bad token");
    assert_invalid(&err, &["page_token"]);
    let err = c
        .get_notice(app.req_as(
            spharos_kit::TenantId::generate(),
            &[],
            pb::GetNoticeRequest {
                notice_id: d.notice_id,
            },
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
}

async fn policies_have_versions_in_force_by_date(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.privacy.clone();
    let today = app.app.today();
    let version = |label: &str, from: chrono::NaiveDate| pb::CreatePolicyVersionRequest {
        kind: pb::PolicyKind::PrivacyPolicy.into(),
        version: label.into(),
        title: "개인정보처리방침".into(),
        body: format!("{label} 본문"),
        effective_date: from.to_string(),
    };
    let first_day = today - chrono::Days::new(400);
    c.create_policy_version(app.req(version("v1", first_day)))
        .await
        .expect("v1, dated in the past as the first version");
    let next_month = today + chrono::Days::new(30);
    c.create_policy_version(app.req(version("v2", next_month)))
        .await
        .expect("v2 announced ahead");
    let err = c
        .create_policy_version(app.req(version("v0", today - chrono::Days::new(1))))
        .await
        .expect_err("history is not rewritten");
    assert_invalid(&err, &["effective_date"]);
    let err = c
        .create_policy_version(app.req(version("v2", today + chrono::Days::new(60))))
        .await
        .expect_err("duplicate label");
    assert_reason(&err, Code::AlreadyExists, "POLICY_VERSION_EXISTS");
    let err = c
        .create_policy_version(app.req(version("v3", next_month)))
        .await
        .expect_err("duplicate date");
    assert_reason(&err, Code::AlreadyExists, "POLICY_VERSION_EXISTS");

    let in_force = |at: String| pb::GetPolicyInForceRequest {
        kind: pb::PolicyKind::PrivacyPolicy.into(),
        at_date: at,
    };
    let now = c
        .get_policy_in_force(app.req(in_force(String::new())))
        .await
        .expect("in force")
        .into_inner()
        .policy_version
        .expect("version");
    assert_eq!(now.version, "v1");
    let later = c
        .get_policy_in_force(app.req(in_force(next_month.to_string())))
        .await
        .expect("in force")
        .into_inner()
        .policy_version
        .expect("version");
    assert_eq!(later.version, "v2");
    let err = c
        .get_policy_in_force(app.req(in_force((first_day - chrono::Days::new(1)).to_string())))
        .await
        .expect_err("nothing before the first");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_policy_in_force(app.req(pb::GetPolicyInForceRequest {
            kind: pb::PolicyKind::TermsOfService.into(),
            at_date: String::new(),
        }))
        .await
        .expect_err("no terms yet");
    assert_eq!(err.code(), Code::NotFound);

    let history = c
        .list_policy_versions(app.req(pb::ListPolicyVersionsRequest {
            kind: pb::PolicyKind::PrivacyPolicy.into(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(history.policy_versions.len(), 1);
    assert_eq!(history.policy_versions[0].version, "v1");
    let rest = c
        .list_policy_versions(app.req(pb::ListPolicyVersionsRequest {
            kind: pb::PolicyKind::PrivacyPolicy.into(),
            page_size: 1,
            page_token: history.next_page_token,
        }))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(rest.policy_versions[0].version, "v2");

    let err = c
        .create_policy_version(app.req(pb::CreatePolicyVersionRequest::default()))
        .await
        .expect_err("empty");
    assert_invalid(&err, &["kind", "version", "title", "body"]);
    let err = c
        .get_policy_in_force(app.req(pb::GetPolicyInForceRequest {
            kind: 0,
            at_date: "2026-13-01".into(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["kind", "at_date"]);
}
