//! Queries on `point_lot_movements`.
use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use spharos_kit::TenantId;
use uuid::Uuid;

pub use super::entity::point_lot_movements::Model as MovementRow;
use super::entity::point_lot_movements::{Column, Entity};
use crate::domain::ledger::MovementKind;

pub async fn insert_many(tx: &DatabaseTransaction, rows: Vec<MovementRow>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    Entity::insert_many(rows.into_iter().map(IntoActiveModel::into_active_model))
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// The movements of one transaction, in the order they were made.
pub async fn of_transaction(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    transaction: Uuid,
) -> Result<Vec<MovementRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::TransactionId.eq(transaction))
        .order_by_asc(Column::Id)
        .all(tx)
        .await
}

/// Points of `kind` per lot over several transactions (what the cancels of one spend restored).
pub async fn sum_per_lot(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    transactions: &[Uuid],
    kind: MovementKind,
) -> Result<HashMap<Uuid, i64>, DbErr> {
    let mut out = HashMap::new();
    if transactions.is_empty() {
        return Ok(out);
    }
    let rows = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::TransactionId.is_in(transactions.iter().copied()))
        .filter(Column::Kind.eq(kind.as_str()))
        .all(tx)
        .await?;
    for r in rows {
        *out.entry(r.lot_id).or_insert(0) += r.points;
    }
    Ok(out)
}
