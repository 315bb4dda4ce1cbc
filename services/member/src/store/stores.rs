//! Queries on `stores`.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Set, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::stores::{ActiveModel, Column, Entity, Model},
};
use crate::domain::store::{Store, StoreFilter, StoreStatus};

fn to_domain(m: Model) -> Result<Store, DbErr> {
    Ok(Store {
        status: StoreStatus::parse(&m.status)
            .ok_or_else(|| corrupt("stores", "status", &m.status))?,
        id: m.id,
        code: m.code,
        name: m.name,
        region: m.region,
        trade_area: m.trade_area,
        created_time: m.created_time,
        updated_time: m.updated_time,
    })
}

fn to_model(tenant: TenantId, s: &Store) -> Model {
    Model {
        tenant_id: tenant.as_uuid(),
        id: s.id,
        code: s.code.clone(),
        name: s.name.clone(),
        region: s.region.clone(),
        trade_area: s.trade_area.clone(),
        status: s.status.as_str().to_string(),
        created_time: s.created_time,
        updated_time: s.updated_time,
    }
}

/// Inserts `store`; `false` when its code is already taken in the tenant (the unique
/// constraint decides, so two concurrent creates cannot both win).
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    store: &Store,
) -> Result<bool, DbErr> {
    let rows = Entity::insert(to_model(tenant, store).into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::Code])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Store>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Like [`get`], locking the row until the transaction ends (PostgreSQL; SQLite is serial).
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Store>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

pub async fn get_by_code(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
) -> Result<Option<Store>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Code.eq(code))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

pub async fn exists(tx: &DatabaseTransaction, tenant: TenantId, id: Uuid) -> Result<bool, DbErr> {
    let found = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .into_tuple::<Uuid>()
        .one(tx)
        .await?;
    Ok(found.is_some())
}

/// Writes the mutable fields of `store`.
pub async fn update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    store: &Store,
) -> Result<(), DbErr> {
    let am = ActiveModel {
        tenant_id: sea_orm::Unchanged(tenant.as_uuid()),
        id: sea_orm::Unchanged(store.id),
        name: Set(store.name.clone()),
        region: Set(store.region.clone()),
        trade_area: Set(store.trade_area.clone()),
        status: Set(store.status.as_str().to_string()),
        updated_time: Set(store.updated_time),
        ..Default::default()
    };
    am.update(tx).await?;
    Ok(())
}

/// One page in id order (UUIDv7: creation order), after `page.after`.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    filter: &StoreFilter,
    page: &PageRequest,
) -> Result<Vec<Store>, DbErr> {
    let mut q = Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()));
    if let Some(s) = filter.status {
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(r) = &filter.region {
        q = q.filter(Column::Region.eq(r.as_str()));
    }
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}
