//! Queries on `coupon_tenants`, the registry the expiry and birthday schedules walk.
use chrono::{DateTime, Utc};
use sea_orm::{
    DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QuerySelect, sea_query::OnConflict,
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::entity::coupon_tenants::{Column, Entity, Model};

/// Registers the tenant (idempotent), inside its own tenant transaction.
pub async fn register(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        created_time: now,
    };
    Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::column(Column::TenantId).do_nothing().to_owned())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// Every registered tenant. Needs a `Db::begin_system` transaction on PostgreSQL.
pub async fn all(system_tx: &DatabaseTransaction) -> Result<Vec<TenantId>, DbErr> {
    let ids: Vec<Uuid> = Entity::find()
        .select_only()
        .column(Column::TenantId)
        .into_tuple()
        .all(system_tx)
        .await?;
    Ok(ids.into_iter().map(TenantId).collect())
}
