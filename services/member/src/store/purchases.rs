//! Queries on `member_purchases`: the purchase facts grade evaluation sums.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect,
    sea_query::{Expr, OnConflict},
};
use spharos_kit::TenantId;
use uuid::Uuid;

pub use super::entity::member_purchases::Model as PurchaseRow;
use super::entity::member_purchases::{Column, Entity};

/// Records purchases in one statement; returns how many were new. A (store, POS transaction)
/// recorded before is skipped, so a purchase announced twice (even under two event ids)
/// counts once.
pub async fn insert_many(tx: &DatabaseTransaction, rows: &[PurchaseRow]) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let rows = Entity::insert_many(rows.iter().map(|r| r.clone().into_active_model()))
        .on_conflict(
            OnConflict::columns([
                Column::TenantId,
                Column::StoreCode,
                Column::PosTransactionId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows)
}

/// Purchase sums per member since `since` (inclusive), for the tenant or one member. Members
/// without purchases are absent.
pub async fn sums_since(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    since: DateTime<Utc>,
    only: Option<&[Uuid]>,
) -> Result<HashMap<Uuid, i64>, DbErr> {
    let mut q = Entity::find()
        .select_only()
        .column(Column::MemberId)
        // SUM(bigint) is numeric on PostgreSQL; the cast keeps it an i64 on both backends.
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount_krw), 0) AS BIGINT)"),
            "total",
        )
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::OccurredTime.gte(since));
    if let Some(ids) = only {
        q = q.filter(Column::MemberId.is_in(ids.iter().copied()));
    }
    let rows: Vec<(Uuid, i64)> = q.group_by(Column::MemberId).into_tuple().all(tx).await?;
    Ok(rows.into_iter().collect())
}

/// Every purchase recorded for one member, oldest first (for a data-subject access request).
pub async fn for_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<PurchaseRow>, DbErr> {
    use sea_orm::QueryOrder;
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .order_by_asc(Column::OccurredTime)
        .all(tx)
        .await
}
