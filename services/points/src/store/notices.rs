//! Queries on `point_expiry_notices`.
use sea_orm::{DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, sea_query::OnConflict};

pub use super::entity::point_expiry_notices::Model as NoticeRow;
use super::entity::point_expiry_notices::{Column, Entity};

/// Records a notice; `false` when this lot already had one for this horizon, so the caller
/// emits the event only once whatever else runs concurrently.
pub async fn insert(tx: &DatabaseTransaction, row: &NoticeRow) -> Result<bool, DbErr> {
    let n = Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::LotId, Column::Horizon])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(n == 1)
}
