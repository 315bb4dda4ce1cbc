//! Store use cases: create, get, update, list.
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{MemberApp, emit, now};
use crate::{
    domain::store::{NewStore, Store, StoreFilter, StoreKey, StorePatch, StoreStatus},
    events,
    store::stores,
};

fn store_not_found() -> ServiceError {
    ServiceError::not_found("매장을 찾을 수 없습니다 (store not found)")
}

impl MemberApp {
    pub async fn create_store(
        &self,
        tenant: TenantId,
        new: NewStore,
    ) -> Result<Store, ServiceError> {
        let new = new.validate()?;
        let t = now();
        let store = Store {
            id: Uuid::now_v7(),
            code: new.code,
            name: new.name,
            region: new.region,
            trade_area: new.trade_area,
            status: new.status.unwrap_or(StoreStatus::Open),
            created_time: t,
            updated_time: t,
        };
        let tx = self.db.begin(tenant).await?;
        if !stores::insert(&tx, tenant, &store).await? {
            return Err(ServiceError::already_exists(
                "STORE_CODE_TAKEN",
                format!(
                    "이미 사용 중인 매장 코드입니다 (store code {:?} is already taken)",
                    store.code
                ),
            ));
        }
        emit(&tx, events::store_created(tenant, &store)).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, store_id = %store.id, "store created");
        Ok(store)
    }

    pub async fn get_store(&self, tenant: TenantId, key: StoreKey) -> Result<Store, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let found = match &key {
            StoreKey::Id(id) => stores::get(&tx, tenant, *id).await?,
            StoreKey::Code(code) => stores::get_by_code(&tx, tenant, code).await?,
        };
        tx.commit().await?;
        found.ok_or_else(store_not_found)
    }

    /// Applies the fields the mask named; emits `member.store_updated` only when something
    /// changed.
    pub async fn update_store(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: StorePatch,
    ) -> Result<Store, ServiceError> {
        let patch = patch.validate()?;
        let tx = self.db.begin(tenant).await?;
        let mut store = stores::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(store_not_found)?;
        let changed = patch.apply(&mut store);
        if !changed.is_empty() {
            store.updated_time = now();
            stores::update(&tx, tenant, &store).await?;
            emit(&tx, events::store_updated(tenant, &store)).await?;
        }
        tx.commit().await?;
        Ok(store)
    }

    /// One page of stores and the next page token ("" at the end).
    pub async fn list_stores(
        &self,
        tenant: TenantId,
        filter: StoreFilter,
        page: PageRequest,
    ) -> Result<(Vec<Store>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = stores::list(&tx, tenant, &filter, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |s| s.id))
    }
}
