//! Tenant isolation: another tenant's ids are `NotFound` (existence never leaks) and its
//! lists are empty, on both backends; on PostgreSQL, row-level security alone hides and
//! protects another tenant's rows even from a query without any WHERE.
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use spharos_kit::{TenantId, auth::PERM_PII_UNMASK, testing::TestBackend};
use spharos_proto::member::{self as pb, find_member_request::Key, get_store_request};
use tonic::Code;

use crate::helpers::{TestApp, mask, spawn_app};

on_both_backends!(another_tenant_sees_nothing);

struct Seeded {
    store_id: String,
    member_id: String,
    card_number: String,
}

async fn seed(app: &TestApp) -> Seeded {
    let store = app.create_store("GN001").await;
    app.set_standard_grades().await;
    let mut r = crate::helpers::join_request("홍길동", "010-1234-5678");
    r.join_store_id = store.store_id.clone();
    let joined = app.join_req(r).await;
    app.join("임꺽정", "010-9999-0000").await;
    Seeded {
        store_id: store.store_id,
        member_id: joined.member.expect("member").member_id,
        card_number: joined.card.expect("card").card_number,
    }
}

async fn another_tenant_sees_nothing(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let a = seed(&app).await;
    let b = TenantId::generate();
    let as_b = |msg| app.req_as(b, &[PERM_PII_UNMASK], msg);
    let mut c = app.client.clone();
    macro_rules! assert_not_found {
        ($call:expr, $what:expr) => {{
            let err = $call.await.expect_err($what);
            assert_eq!(err.code(), Code::NotFound, "{}: {err:?}", $what);
        }};
    }
    assert_not_found!(
        c.get_member(app.req_as(
            b,
            &[PERM_PII_UNMASK],
            pb::GetMemberRequest {
                member_id: a.member_id.clone(),
                unmask: Some(pb::Unmask {
                    reason: "probe".into()
                }),
            }
        )),
        "get member"
    );
    assert_not_found!(
        c.find_member(app.req_as(
            b,
            &[],
            pb::FindMemberRequest {
                key: Some(Key::Phone("010-1234-5678".into())),
                unmask: None,
            }
        )),
        "find by phone"
    );
    assert_not_found!(
        c.find_member(app.req_as(
            b,
            &[],
            pb::FindMemberRequest {
                key: Some(Key::CardNumber(a.card_number.clone())),
                unmask: None,
            }
        )),
        "find by card"
    );
    assert_not_found!(
        c.update_member(app.req_as(
            b,
            &[],
            pb::UpdateMemberRequest {
                member_id: a.member_id.clone(),
                member: Some(pb::Member {
                    name: "탈취".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            }
        )),
        "update member"
    );
    assert_not_found!(
        c.withdraw_member(app.req_as(
            b,
            &[],
            pb::WithdrawMemberRequest {
                member_id: a.member_id.clone(),
                reason: String::new(),
            }
        )),
        "withdraw member"
    );
    assert_not_found!(
        c.issue_card(app.req_as(
            b,
            &[],
            pb::IssueCardRequest {
                member_id: a.member_id.clone(),
                ..Default::default()
            }
        )),
        "issue card"
    );
    assert_not_found!(
        c.list_cards(app.req_as(
            b,
            &[],
            pb::ListCardsRequest {
                member_id: a.member_id.clone(),
            }
        )),
        "list cards"
    );
    assert_not_found!(
        c.report_card_lost(app.req_as(
            b,
            &[],
            pb::ReportCardLostRequest {
                card_number: a.card_number.clone(),
            }
        )),
        "report lost"
    );
    assert_not_found!(
        c.replace_card(app.req_as(
            b,
            &[],
            pb::ReplaceCardRequest {
                card_number: a.card_number.clone(),
                ..Default::default()
            }
        )),
        "replace card"
    );
    assert_not_found!(
        c.evaluate_grades(app.req_as(
            b,
            &[],
            pb::EvaluateGradesRequest {
                member_id: a.member_id.clone(),
            }
        )),
        "evaluate member"
    );
    assert_not_found!(
        c.get_store(app.req_as(
            b,
            &[],
            pb::GetStoreRequest {
                key: Some(get_store_request::Key::StoreId(a.store_id.clone())),
            }
        )),
        "get store by id"
    );
    assert_not_found!(
        c.get_store(app.req_as(
            b,
            &[],
            pb::GetStoreRequest {
                key: Some(get_store_request::Key::Code("GN001".into())),
            }
        )),
        "get store by code"
    );
    assert_not_found!(
        c.update_store(app.req_as(
            b,
            &[],
            pb::UpdateStoreRequest {
                store_id: a.store_id.clone(),
                store: Some(pb::Store {
                    name: "탈취".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            }
        )),
        "update store"
    );

    let members = c
        .list_members(as_b(pb::ListMembersRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .members;
    assert!(members.is_empty());
    let stores = c
        .list_stores(app.req_as(b, &[], pb::ListStoresRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .stores;
    assert!(stores.is_empty());
    let grades = c
        .list_grades(app.req_as(b, &[], pb::ListGradesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .grades;
    assert!(grades.is_empty());
    // Tenant A's store cannot be joined at from tenant B.
    let mut r = crate::helpers::join_request("홍길동", "010-1234-5678");
    r.join_store_id = a.store_id.clone();
    let err = c
        .join_member(app.req_as(b, &[], r))
        .await
        .expect_err("A's store");
    crate::helpers::assert_invalid(&err, &["join_store_id"]);

    // Uniqueness is per tenant: B may use A's store code and A's member's phone.
    c.create_store(app.req_as(
        b,
        &[],
        pb::CreateStoreRequest {
            code: "GN001".into(),
            name: "B 매장".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("B's own GN001");
    let b_member = c
        .join_member(app.req_as(
            b,
            &[],
            crate::helpers::join_request("다른사람", "010-1234-5678"),
        ))
        .await
        .expect("B's own member with that phone")
        .into_inner()
        .member
        .expect("member");
    assert_ne!(b_member.member_id, a.member_id);

    // And A still sees its own data, untouched.
    let m = app.get_member(&a.member_id).await;
    assert_eq!(m.name, "홍*동");
    assert_eq!(m.status(), pb::MemberStatus::Active);
    let a_members = c
        .list_members(app.req(pb::ListMembersRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .members;
    assert_eq!(a_members.len(), 2);
}

/// PostgreSQL only: with the application role and a transaction scoped to tenant B, a bare
/// `SELECT count(*)` sees none of tenant A's rows, and writes to them are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_alone_holds_on_postgres() {
    let app = spawn_app(TestBackend::Postgres).await;
    seed(&app).await;
    let url = app
        .platform
        .settings
        .database
        .url
        .as_ref()
        .expect("a PostgreSQL test database")
        .expose_secret()
        .to_string();
    let role = app.platform.settings.database.app_role.clone();
    // As the owner (superuser) connection, then `SET LOCAL ROLE` to the app role: the role
    // the service's pool runs as, which does not own the tables and cannot bypass RLS.
    let conn = Database::connect(&url).await.expect("raw connection");
    let a = app.tenant;
    let b = TenantId::generate();
    let tables = [
        "members",
        "cards",
        "stores",
        "grades",
        "member_tenants",
        "data_keys",
        "outbox_events",
    ];

    let count = |tenant: Option<TenantId>, table: &'static str| {
        let conn = conn.clone();
        let role = role.clone();
        async move {
            let tx = conn.begin().await.expect("begin");
            tx.execute_unprepared(&format!("SET LOCAL ROLE \"{role}\""))
                .await
                .expect("set role");
            if let Some(t) = tenant {
                tx.execute_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT set_config('spharos.tenant_id', $1, true)",
                    [t.to_string().into()],
                ))
                .await
                .expect("tenant setting");
            }
            let row = tx
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT count(*) AS n FROM member.{table}"),
                ))
                .await
                .expect("count")
                .expect("a row");
            let n: i64 = row.try_get("", "n").expect("n");
            tx.rollback().await.expect("rollback");
            n
        }
    };
    assert_eq!(count(Some(a), "members").await, 2, "A sees its own members");
    assert_eq!(count(Some(a), "cards").await, 2);
    assert_eq!(count(Some(a), "stores").await, 1);
    assert_eq!(count(Some(a), "grades").await, 3);
    assert_eq!(count(Some(a), "member_tenants").await, 1);
    for table in tables {
        assert_eq!(
            count(Some(b), table).await,
            0,
            "tenant B sees none of A's {table}"
        );
        assert_eq!(count(None, table).await, 0, "no tenant, no {table}");
    }

    // Writes through RLS: B cannot change A's rows nor plant rows in A's name.
    let tx = conn.begin().await.expect("begin");
    tx.execute_unprepared(&format!("SET LOCAL ROLE \"{role}\""))
        .await
        .expect("set role");
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT set_config('spharos.tenant_id', $1, true)",
        [b.to_string().into()],
    ))
    .await
    .expect("tenant setting");
    let updated = tx
        .execute_unprepared("UPDATE member.members SET status = 'WITHDRAWN'")
        .await
        .expect("update runs")
        .rows_affected();
    assert_eq!(updated, 0);
    let planted = tx
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "INSERT INTO member.stores (tenant_id, id, code, name, region, trade_area, status, created_time, updated_time)
             VALUES ($1, $2, 'EVIL', 'x', '', '', 'OPEN', now(), now())",
            [a.as_uuid().into(), uuid::Uuid::now_v7().into()],
        ))
        .await;
    assert!(
        planted.is_err(),
        "the WITH CHECK policy refuses A's tenant_id"
    );
    drop(tx);
    let members = app
        .client
        .clone()
        .list_members(app.req(pb::ListMembersRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .members;
    assert_eq!(members.len(), 2);
    assert!(
        members
            .iter()
            .all(|m| m.status() == pb::MemberStatus::Active)
    );
}
