//! Queries on `grades`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use spharos_kit::TenantId;

use super::entity::grades::{Column, Entity, Model};
use crate::domain::grade::Grade;

/// The tenant's grade table, lowest threshold first.
pub async fn list(tx: &DatabaseTransaction, tenant: TenantId) -> Result<Vec<Grade>, DbErr> {
    Ok(Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(Column::MinPurchaseKrw)
        .all(tx)
        .await?
        .into_iter()
        .map(|m| Grade {
            id: m.id,
            name: m.name,
            min_purchase_krw: m.min_purchase_krw,
            points_rate_bp: m.points_rate_bp,
        })
        .collect())
}

/// Replaces the tenant's whole table. Delete-then-insert, because the unique name and
/// threshold constraints would trip over an in-place swap of two rows.
pub async fn replace(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    grades: &[Grade],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .exec(tx)
        .await?;
    let rows = grades.iter().map(|g| {
        Model {
            tenant_id: tenant.as_uuid(),
            id: g.id,
            name: g.name.clone(),
            min_purchase_krw: g.min_purchase_krw,
            points_rate_bp: g.points_rate_bp,
            created_time: now,
            updated_time: now,
        }
        .into_active_model()
    });
    Entity::insert_many(rows).exec_without_returning(tx).await?;
    Ok(())
}
