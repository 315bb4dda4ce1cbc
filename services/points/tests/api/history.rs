//! Balance and history reads: paging newest first, filters by type and date, the expiring
//! soon figure, and members the tenant does not have.
use chrono::{Duration, Utc};
use chrono_tz::Asia::Seoul;
use spharos_kit::testing::TestBackend;
use spharos_proto::points as pb;
use tonic::Code;

use crate::helpers::{assert_invalid, spawn_app};

on_both_backends!(
    history_pages_newest_first_with_type_and_date_filters,
    balances_show_what_expires_soon_and_unknown_members_are_not_found,
);

async fn history_pages_newest_first_with_type_and_date_filters(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    app.earn(&m, "R-1", 10_000).await;
    app.earn(&m, "R-2", 20_000).await;
    app.spend(&m, "S-1", 50).await.expect("spent");
    app.earn(&m, "R-3", 30_000).await;
    app.spend(&m, "S-2", 70).await.expect("spent");
    let mut client = app.points.clone();
    let list = |page_size: i32, page_token: String, types: Vec<i32>, start: &str, end: &str| {
        pb::ListTransactionsRequest {
            member: m.by_id(),
            page_size,
            page_token,
            types,
            start_date: start.into(),
            end_date: end.into(),
        }
    };
    let first = client
        .list_transactions(app.req(list(2, String::new(), vec![], "", "")))
        .await
        .expect("page 1")
        .into_inner();
    let pos: Vec<&str> = first
        .transactions
        .iter()
        .map(|t| t.pos_transaction_id.as_str())
        .collect();
    assert_eq!(pos, ["S-2", "R-3"]);
    assert_eq!(first.transactions[0].balance_after, 480);
    assert_eq!(first.transactions[0].store_code, "GN001");
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_transactions(app.req(list(2, first.next_page_token, vec![], "", "")))
        .await
        .expect("page 2")
        .into_inner();
    let pos: Vec<&str> = second
        .transactions
        .iter()
        .map(|t| t.pos_transaction_id.as_str())
        .collect();
    assert_eq!(pos, ["S-1", "R-2"]);
    let third = client
        .list_transactions(app.req(list(2, second.next_page_token, vec![], "", "")))
        .await
        .expect("page 3")
        .into_inner();
    assert_eq!(third.transactions.len(), 1);
    assert!(third.next_page_token.is_empty());

    let spends = client
        .list_transactions(app.req(list(
            0,
            String::new(),
            vec![pb::TransactionType::Spend as i32],
            "",
            "",
        )))
        .await
        .expect("spends")
        .into_inner();
    let points: Vec<i64> = spends.transactions.iter().map(|t| t.points).collect();
    assert_eq!(points, [-70, -50]);
    let today = spharos_kit::time::local_date(Utc::now(), Seoul);
    let yesterday = (today - Duration::days(1)).to_string();
    let today = today.to_string();
    let todays = client
        .list_transactions(app.req(list(0, String::new(), vec![], &today, &today)))
        .await
        .expect("today")
        .into_inner();
    assert_eq!(todays.transactions.len(), 5);
    let none = client
        .list_transactions(app.req(list(0, String::new(), vec![], &yesterday, &yesterday)))
        .await
        .expect("yesterday")
        .into_inner();
    assert!(none.transactions.is_empty());

    let err = client
        .list_transactions(app.req(pb::ListTransactionsRequest {
            member: None,
            page_size: -1,
            page_token: "garbage".into(),
            types: vec![99],
            start_date: "2026-02-30".into(),
            end_date: today.clone(),
        }))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["member", "page_size", "types[0]", "start_date"]);
    let err = client
        .list_transactions(app.req(list(0, String::new(), vec![], &today, &yesterday)))
        .await
        .expect_err("reversed range");
    assert_invalid(&err, &["end_date"]);
}

async fn balances_show_what_expires_soon_and_unknown_members_are_not_found(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let m = app.member().await;
    // A member without any points has a zero balance.
    let b = app.balance(&m).await;
    assert_eq!(
        (b.available, b.balance, b.member_id.as_str()),
        (0, 0, m.id.as_str())
    );
    app.earn(&m, "LONG", 10_000).await;
    app.set_policy(
        &["validity_months", "validity_days"],
        pb::PointsPolicy {
            validity_months: 0,
            validity_days: 20,
            ..Default::default()
        },
    )
    .await;
    app.earn(&m, "SHORT", 30_000).await;
    let by_card = app
        .points
        .clone()
        .get_balance(app.req(pb::GetBalanceRequest {
            member: m.by_card(),
        }))
        .await
        .expect("by card")
        .into_inner()
        .balance
        .expect("balance");
    assert_eq!(
        (by_card.available, by_card.expiring_within_30_days),
        (400, 300)
    );
    let until = spharos_kit::time::local_date(Utc::now(), Seoul) + Duration::days(30);
    assert_eq!(by_card.expiring_until_date, until.to_string());
    assert_eq!(by_card, app.balance(&m).await);

    let mut client = app.points.clone();
    let unknown = pb::GetBalanceRequest {
        member: Some(spharos_proto::common::MemberRef {
            r#ref: Some(spharos_proto::common::member_ref::Ref::MemberId(
                uuid::Uuid::now_v7().to_string(),
            )),
        }),
    };
    assert_eq!(
        client
            .get_balance(app.req(unknown))
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );
    // Another tenant's member, even one with points there, is NOT_FOUND here.
    let other = spharos_kit::TenantId::generate();
    let stranger = app.member_of(other).await;
    let err = client
        .get_balance(app.req(pb::GetBalanceRequest {
            member: stranger.by_id(),
        }))
        .await
        .expect_err("foreign");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_balance(app.req_as(other, &[], pb::GetBalanceRequest { member: m.by_id() }))
        .await
        .expect_err("foreign caller");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .list_transactions(app.req_as(
            other,
            &[],
            pb::ListTransactionsRequest {
                member: m.by_id(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("foreign history");
    assert_eq!(err.code(), Code::NotFound);
}
