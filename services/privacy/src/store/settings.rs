//! Queries on `privacy_settings` and `privacy_tenants` (the registry the schedules walk).
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::entity::{privacy_settings as settings, privacy_tenants as tenants};
use crate::domain::lifecycle::DEFAULT_RETENTION_DAYS;

/// The tenant's retention period in days (the default when never set).
pub async fn retention_days(tx: &DatabaseTransaction, tenant: TenantId) -> Result<i32, DbErr> {
    Ok(settings::Entity::find()
        .filter(settings::Column::TenantId.eq(tenant.as_uuid()))
        .one(tx)
        .await?
        .map(|s| s.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS))
}

pub async fn set_retention_days(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    days: i32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = settings::Model {
        tenant_id: tenant.as_uuid(),
        retention_days: days,
        created_time: now,
        updated_time: now,
    };
    settings::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(settings::Column::TenantId)
                .update_columns([
                    settings::Column::RetentionDays,
                    settings::Column::UpdatedTime,
                ])
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// Registers the tenant (idempotent), inside its own tenant transaction.
pub async fn register_tenant(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = tenants::Model {
        tenant_id: tenant.as_uuid(),
        created_time: now,
        updated_time: now,
    };
    tenants::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(tenants::Column::TenantId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// Every registered tenant. Needs a `Db::begin_system` transaction on PostgreSQL.
pub async fn all_tenants(system_tx: &DatabaseTransaction) -> Result<Vec<TenantId>, DbErr> {
    let ids: Vec<Uuid> = tenants::Entity::find()
        .select_only()
        .column(tenants::Column::TenantId)
        .into_tuple()
        .all(system_tx)
        .await?;
    Ok(ids.into_iter().map(TenantId).collect())
}
