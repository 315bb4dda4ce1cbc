//! Bulk issue: a job over a member list runs in the background, reports progress and one
//! result per listed member (issued, or the precise reason: limit reached for a member listed
//! twice, sold out past the quantity, withdrawn), pages its results, is idempotent, resumes
//! from the database, and refuses bad requests.
use std::time::Duration;

use spharos_kit::testing::TestBackend;
use spharos_proto::coupon as pb;
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, fixed_template, member, spawn_app};

on_both_backends!(bulk_issue_reports_per_member, bulk_validation);

async fn bulk_issue_reports_per_member(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let mut t = fixed_template("대량 발급 250장");
    t.total_quantity = 250;
    t.issue_methods = vec![pb::IssueMethod::Campaign.into()];
    let t = app.create_template(t).await;
    let gone = member();
    app.publish_joined(&gone, "").await;
    app.publish_withdrawn(&gone).await;
    let probe = app.projection_probe().await;
    app.eventually("withdrawal projected", || {
        app.refused_as_withdrawn(&probe, &gone)
    })
    .await;

    // 300 members: #0 twice (positions 0 and 1), the withdrawn one at position 2.
    let mut members: Vec<String> = (0..298).map(|_| member()).collect();
    members.insert(1, members[0].clone());
    members.insert(2, gone.clone());
    assert_eq!(members.len(), 300);
    let start = |key: &str| {
        app.req(pb::StartBulkIssueRequest {
            template_id: t.template_id.clone(),
            member_ids: members.clone(),
            issue_method: pb::IssueMethod::Campaign.into(),
            idempotency_key: key.into(),
        })
    };
    let job = c
        .start_bulk_issue(start("bulk-1"))
        .await
        .expect("started")
        .into_inner()
        .bulk_issue
        .expect("job");
    assert_eq!(job.total, 300);
    assert_eq!(job.issue_method(), pb::IssueMethod::Campaign);
    let replay = c
        .start_bulk_issue(start("bulk-1"))
        .await
        .expect("replay")
        .into_inner()
        .bulk_issue
        .expect("job");
    assert_eq!(replay.bulk_issue_id, job.bulk_issue_id, "idempotent start");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let j = c
            .get_bulk_issue(app.req(pb::GetBulkIssueRequest {
                bulk_issue_id: job.bulk_issue_id.clone(),
            }))
            .await
            .expect("progress")
            .into_inner()
            .bulk_issue
            .expect("job");
        assert!(
            j.processed <= j.total && j.issued + j.failed == j.processed,
            "{j:?}"
        );
        if j.status() == pb::BulkIssueStatus::Completed {
            break j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bulk job not done in 30 s: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((done.processed, done.issued, done.failed), (300, 250, 50));
    assert!(done.complete_time.is_some());

    let mut results = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_bulk_issue_results(app.req(pb::ListBulkIssueResultsRequest {
                bulk_issue_id: job.bulk_issue_id.clone(),
                page_size: 120,
                page_token: token.clone(),
            }))
            .await
            .expect("results")
            .into_inner();
        results.extend(page.results);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(results.len(), 300);
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| r.position == i as i64 && r.member_id == members[i])
    );
    use pb::BulkIssueResultStatus::*;
    assert_eq!(results[0].status(), Issued);
    assert!(!results[0].coupon_id.is_empty());
    assert_eq!(
        (results[1].status(), results[1].failure_reason.as_str()),
        (Failed, "COUPON_LIMIT_REACHED")
    );
    assert_eq!(
        (results[2].status(), results[2].failure_reason.as_str()),
        (Failed, "MEMBER_WITHDRAWN")
    );
    let sold_out = results
        .iter()
        .filter(|r| r.failure_reason == "COUPON_SOLD_OUT")
        .count();
    assert_eq!(
        sold_out, 48,
        "the 250 coupons ran out for the last listed members"
    );
    assert!(
        results[299].failure_message.contains("sold out"),
        "{:?}",
        results[299]
    );
    // The coupons are really there.
    let w = app.wallet(&members[0], pb::WalletView::Usable).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].coupon_id, results[0].coupon_id);
    assert_eq!(w[0].issue_method(), pb::IssueMethod::Campaign);
    // Nothing left to do: a worker round settles nothing.
    assert_eq!(app.app.run_bulk_round().await.expect("round"), 0);
}

async fn bulk_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let t = app.create_template(fixed_template("x")).await;
    let mut bad_ids: Vec<String> = (0..25).map(|i| format!("bad-{i}")).collect();
    bad_ids.push(member());
    let err = c
        .start_bulk_issue(app.req(pb::StartBulkIssueRequest {
            template_id: "x".into(),
            member_ids: bad_ids,
            issue_method: pb::IssueMethod::Claim.into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(
        &err,
        &[
            "template_id",
            "issue_method",
            "member_ids[0]",
            "member_ids[19]",
            "member_ids",
        ],
    );
    let err = c
        .start_bulk_issue(app.req(pb::StartBulkIssueRequest {
            template_id: t.template_id.clone(),
            member_ids: vec![],
            issue_method: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("empty list");
    assert_invalid(&err, &["member_ids"]);
    let mut draft = fixed_template("draft");
    draft.status = pb::TemplateStatus::Draft.into();
    let draft = app.create_template(draft).await;
    let err = c
        .start_bulk_issue(app.req(pb::StartBulkIssueRequest {
            template_id: draft.template_id.clone(),
            member_ids: vec![member()],
            issue_method: 0,
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("draft");
    assert_reason(&err, Code::FailedPrecondition, "TEMPLATE_NOT_ACTIVE");
    let err = c
        .get_bulk_issue(app.req(pb::GetBulkIssueRequest {
            bulk_issue_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .list_bulk_issue_results(app.req(pb::ListBulkIssueResultsRequest {
            bulk_issue_id: "x".into(),
            page_size: -1,
            page_token: String::new(),
        }))
        .await
        .expect_err("bad");
    assert_invalid(&err, &["bulk_issue_id", "page_size"]);
}
