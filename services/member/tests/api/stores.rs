//! Stores: create, get (id and code), update by mask, list with paging and filters, codes
//! unique per tenant, and every validated field.
use spharos_kit::testing::TestBackend;
use spharos_proto::member::{self as pb, get_store_request::Key};
use tonic::Code;

use crate::helpers::{assert_invalid, assert_reason, mask, spawn_app};

on_both_backends!(
    store_lifecycle,
    store_validation,
    store_code_is_unique,
    store_paging_and_filters
);

async fn store_lifecycle(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let tap = app
        .tap(
            "test-stores",
            &["member.store_created", "member.store_updated"],
        )
        .await;
    let mut c = app.client.clone();

    let created = app.create_store("GN001").await;
    assert_eq!(created.code, "GN001");
    assert_eq!(created.status(), pb::StoreStatus::Open, "open by default");
    assert!(uuid::Uuid::parse_str(&created.store_id).is_ok());

    let by_id = c
        .get_store(app.req(pb::GetStoreRequest {
            key: Some(Key::StoreId(created.store_id.clone())),
        }))
        .await
        .expect("get by id")
        .into_inner()
        .store
        .expect("store");
    assert_eq!(by_id, created);
    let by_code = c
        .get_store(app.req(pb::GetStoreRequest {
            key: Some(Key::Code("GN001".into())),
        }))
        .await
        .expect("get by code")
        .into_inner()
        .store
        .expect("store");
    assert_eq!(by_code, created);

    let updated = c
        .update_store(app.req(pb::UpdateStoreRequest {
            store_id: created.store_id.clone(),
            store: Some(pb::Store {
                name: "강남 본점".into(),
                status: pb::StoreStatus::Closed.into(),
                region: "ignored: not in the mask".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "status"]),
        }))
        .await
        .expect("update")
        .into_inner()
        .store
        .expect("store");
    assert_eq!(updated.name, "강남 본점");
    assert_eq!(updated.status(), pb::StoreStatus::Closed);
    assert_eq!(updated.region, "서울", "fields outside the mask stay");
    assert_eq!(updated.code, "GN001");

    let e = tap
        .wait_for("member.store_created", &created.store_id)
        .await;
    let msg: pb::StoreChanged = e.decode().expect("payload");
    assert!(msg.open);
    let e = tap
        .wait_for("member.store_updated", &created.store_id)
        .await;
    let msg: pb::StoreChanged = e.decode().expect("payload");
    assert!(!msg.open);
    assert_eq!(msg.code, "GN001");

    let missing = c
        .get_store(app.req(pb::GetStoreRequest {
            key: Some(Key::StoreId(uuid::Uuid::now_v7().to_string())),
        }))
        .await
        .expect_err("unknown store");
    assert_eq!(missing.code(), Code::NotFound);
}

async fn store_validation(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();

    let err = c
        .create_store(app.req(pb::CreateStoreRequest {
            code: "GN 001!".into(),
            name: " ".into(),
            region: "서".repeat(51),
            trade_area: "역".repeat(51),
            status: 0,
        }))
        .await
        .expect_err("invalid");
    assert_invalid(&err, &["code", "name", "region", "trade_area"]);
    let err = c
        .create_store(app.req(pb::CreateStoreRequest {
            code: "A".repeat(21),
            name: "x".into(),
            ..Default::default()
        }))
        .await
        .expect_err("code too long");
    assert_invalid(&err, &["code"]);

    let store = app.create_store("GN001").await;
    let update =
        |store_id: String, store: pb::Store, paths: Option<&[&str]>| pb::UpdateStoreRequest {
            store_id,
            store: Some(store),
            update_mask: paths.and_then(mask),
        };
    let err = c
        .update_store(app.req(update(store.store_id.clone(), pb::Store::default(), None)))
        .await
        .expect_err("no mask");
    assert_invalid(&err, &["update_mask"]);
    let err = c
        .update_store(app.req(update(
            store.store_id.clone(),
            pb::Store::default(),
            Some(&["code"]),
        )))
        .await
        .expect_err("code is not updatable");
    assert_invalid(&err, &["update_mask"]);
    let err = c
        .update_store(app.req(update(
            "not-a-uuid".into(),
            pb::Store::default(),
            Some(&["name", "status"]),
        )))
        .await
        .expect_err("bad id, empty name, unspecified status");
    assert_invalid(&err, &["store_id", "store.name", "store.status"]);

    let err = c
        .get_store(app.req(pb::GetStoreRequest { key: None }))
        .await
        .expect_err("no key");
    assert_invalid(&err, &["key"]);
    let err = c
        .get_store(app.req(pb::GetStoreRequest {
            key: Some(Key::StoreId("x".into())),
        }))
        .await
        .expect_err("bad id");
    assert_invalid(&err, &["store_id"]);
    let err = c
        .list_stores(app.req(pb::ListStoresRequest {
            page_size: -1,
            ..Default::default()
        }))
        .await
        .expect_err("negative page");
    assert_invalid(&err, &["page_size"]);
    let err = c
        .list_stores(app.req(pb::ListStoresRequest {
            page_token: "garbage".into(),
            ..Default::default()
        }))
        .await
        .expect_err("bad token");
    assert_invalid(&err, &["page_token"]);
}

async fn store_code_is_unique(backend: TestBackend) {
    let app = spawn_app(backend).await;
    app.create_store("GN001").await;
    let err = app
        .client
        .clone()
        .create_store(app.req(pb::CreateStoreRequest {
            code: "GN001".into(),
            name: "다른 매장".into(),
            ..Default::default()
        }))
        .await
        .expect_err("duplicate code");
    assert_reason(&err, Code::AlreadyExists, "STORE_CODE_TAKEN");
}

async fn store_paging_and_filters(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_store(&format!("S{i}")).await.store_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_stores(app.req(pb::ListStoresRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.stores.len() <= 2);
        seen.extend(page.stores.into_iter().map(|s| s.store_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every store once, in creation order");

    // S0 closed, S1 in 부산.
    c.update_store(app.req(pb::UpdateStoreRequest {
        store_id: ids[0].clone(),
        store: Some(pb::Store {
            status: pb::StoreStatus::Closed.into(),
            ..Default::default()
        }),
        update_mask: crate::helpers::mask(&["status"]),
    }))
    .await
    .expect("close");
    c.update_store(app.req(pb::UpdateStoreRequest {
        store_id: ids[1].clone(),
        store: Some(pb::Store {
            region: "부산".into(),
            ..Default::default()
        }),
        update_mask: crate::helpers::mask(&["region"]),
    }))
    .await
    .expect("move");
    let closed = c
        .list_stores(app.req(pb::ListStoresRequest {
            status: pb::StoreStatus::Closed.into(),
            ..Default::default()
        }))
        .await
        .expect("closed")
        .into_inner()
        .stores;
    assert_eq!(
        closed
            .iter()
            .map(|s| s.store_id.as_str())
            .collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    let open = c
        .list_stores(app.req(pb::ListStoresRequest {
            status: pb::StoreStatus::Open.into(),
            ..Default::default()
        }))
        .await
        .expect("open")
        .into_inner()
        .stores;
    assert_eq!(open.len(), 4);
    let busan = c
        .list_stores(app.req(pb::ListStoresRequest {
            region: "부산".into(),
            ..Default::default()
        }))
        .await
        .expect("busan")
        .into_inner()
        .stores;
    assert_eq!(
        busan
            .iter()
            .map(|s| s.store_id.as_str())
            .collect::<Vec<_>>(),
        [ids[1].as_str()]
    );
}
