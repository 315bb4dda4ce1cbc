//! Queries on `privacy_members`: members as the member service's events described them.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::TenantId;
use uuid::Uuid;

pub use super::entity::privacy_members::Model as MemberRow;
use super::entity::privacy_members::{Column, Entity};

pub const ACTIVE: &str = "ACTIVE";
pub const WITHDRAWN: &str = "WITHDRAWN";
pub const ERASED: &str = "ERASED";

/// Records a member who joined; `false` when already known (a redelivered event).
pub async fn insert_joined(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    join_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = MemberRow {
        tenant_id: tenant.as_uuid(),
        member_id,
        status: ACTIVE.into(),
        join_time,
        withdraw_time: None,
        erase_time: None,
        created_time: now,
        updated_time: now,
    };
    let rows = Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::MemberId])
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
    member_id: Uuid,
) -> Result<Option<MemberRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .one(tx)
        .await
}

/// Like [`get`], locked until the transaction ends: consent changes of one member serialise
/// with its withdrawal.
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Option<MemberRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .lock_exclusive()
        .one(tx)
        .await
}

/// Marks a member withdrawn at `at` (inserting them when the join was never seen, e.g. they
/// joined before the privacy module was deployed).
pub async fn mark_withdrawn(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = MemberRow {
        tenant_id: tenant.as_uuid(),
        member_id,
        status: WITHDRAWN.into(),
        join_time: at,
        withdraw_time: Some(at),
        erase_time: None,
        created_time: now,
        updated_time: now,
    };
    Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::MemberId])
                .update_columns([Column::Status, Column::WithdrawTime, Column::UpdatedTime])
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// Marks a member's PII erased everywhere.
pub async fn mark_erased(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, ERASED.into())
        .col_expr(Column::EraseTime, Some(at).into())
        .col_expr(Column::UpdatedTime, at.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Withdrawn members not yet erased who withdrew at or before `cutoff`, oldest first.
pub async fn due_for_erasure(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::MemberId)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Status.eq(WITHDRAWN))
        .filter(Column::WithdrawTime.lte(cutoff))
        .order_by_asc(Column::WithdrawTime)
        .limit(limit)
        .into_tuple()
        .all(tx)
        .await
}
