//! Queries on `point_policies`.
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::OnConflict,
};
use spharos_kit::TenantId;

pub use super::entity::point_policies::Model as PolicyRow;
use super::entity::point_policies::{Column, Entity};

/// The tenant's newest policy version, if it ever set one.
pub async fn current(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<PolicyRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .order_by_desc(Column::Version)
        .one(tx)
        .await
}

/// Stores a new version; `false` when that version exists already (a concurrent edit won).
pub async fn insert(tx: &DatabaseTransaction, row: &PolicyRow) -> Result<bool, DbErr> {
    let n = Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::Version])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(n == 1)
}
