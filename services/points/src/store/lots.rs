//! Queries on `point_lots`. `remaining`, `expired` and `pending` change only under the
//! member's account lock; the notice columns only through the notice job's own update.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, Value},
};
use spharos_kit::TenantId;
use uuid::Uuid;

pub use super::entity::point_lots::Model as LotRow;
use super::entity::point_lots::{Column, Entity};

pub async fn insert(tx: &DatabaseTransaction, row: &LotRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// [`insert`] for many rows in one statement.
pub async fn insert_many(tx: &DatabaseTransaction, rows: &[LotRow]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

fn of_member(tenant: TenantId, member: Uuid) -> Condition {
    Condition::all()
        .add(Column::TenantId.eq(tenant.as_uuid()))
        .add(Column::MemberId.eq(member))
}

/// Lots that still hold points, or the listed ones (an earn's lot that is empty now), by
/// expiry.
pub async fn open_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    also: &[Uuid],
) -> Result<Vec<LotRow>, DbErr> {
    let mut holds = Condition::any().add(Column::Remaining.gt(0));
    if !also.is_empty() {
        holds = holds.add(Column::Id.is_in(also.iter().copied()));
    }
    Entity::find()
        .filter(of_member(tenant, member).add(holds))
        .order_by_asc(Column::ExpireTime)
        .order_by_asc(Column::Id)
        .all(tx)
        .await
}

/// What settling at `at` would touch: lots whose last valid instant passed with points left,
/// and pending lots whose time came.
fn due(at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(Column::Remaining.gt(0))
                .add(Column::ExpireTime.lt(at)),
        )
        .add(
            Condition::all()
                .add(Column::Pending.eq(true))
                .add(Column::AvailableTime.lte(at)),
        )
}

pub async fn due_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<LotRow>, DbErr> {
    Entity::find()
        .filter(of_member(tenant, member).add(due(at)))
        .order_by_asc(Column::ExpireTime)
        .order_by_asc(Column::Id)
        .all(tx)
        .await
}

/// Members of the tenant with lots to settle at `at` (the expiry job's work list).
pub async fn members_due(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    at: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::MemberId)
        .distinct()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(due(at))
        .limit(limit)
        .into_tuple()
        .all(tx)
        .await
}

/// Writes the ledger columns of lots an operation changed.
pub async fn save(tx: &DatabaseTransaction, rows: &[LotRow]) -> Result<(), DbErr> {
    for r in rows {
        Entity::update_many()
            .col_expr(Column::Remaining, r.remaining.into())
            .col_expr(Column::Expired, r.expired.into())
            .col_expr(Column::Pending, r.pending.into())
            .col_expr(Column::UpdatedTime, r.updated_time.into())
            .filter(Column::TenantId.eq(r.tenant_id))
            .filter(Column::Id.eq(r.id))
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// Σ remaining of the member's lots expiring at or before `until`.
pub async fn expiring_sum(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    until: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let sum: Option<i64> = Entity::find()
        .select_only()
        // SUM(bigint) is numeric on PostgreSQL; the cast keeps it an i64 on both backends.
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(remaining), 0) AS BIGINT)"),
            "total",
        )
        .filter(of_member(tenant, member))
        .filter(Column::Remaining.gt(0))
        .filter(Column::ExpireTime.lte(until))
        .into_tuple()
        .one(tx)
        .await?;
    Ok(sum.unwrap_or(0))
}

/// What an earn batch needs of its members' open lots, in one read: per member with open
/// lots, whether any is due to settle at `at` (see `due`) and the points expiring by `until`.
pub async fn open_summaries(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<std::collections::HashMap<Uuid, OpenSummary>, DbErr> {
    let rows: Vec<(Uuid, i32, i64)> = Entity::find()
        .select_only()
        .column(Column::MemberId)
        .column_as(
            Expr::cust_with_values(
                "MAX(CASE WHEN (remaining > 0 AND expire_time < $1) \
                 OR (pending = $2 AND available_time <= $3) THEN 1 ELSE 0 END)",
                [Value::from(at), Value::from(true), Value::from(at)],
            ),
            "due",
        )
        .column_as(
            Expr::cust_with_values(
                "CAST(COALESCE(SUM(CASE WHEN remaining > 0 AND expire_time <= $1 \
                 THEN remaining ELSE 0 END), 0) AS BIGINT)",
                [Value::from(until)],
            ),
            "expiring",
        )
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.is_in(members.iter().copied()))
        .filter(
            Condition::any()
                .add(Column::Remaining.gt(0))
                .add(Column::Pending.eq(true)),
        )
        .group_by(Column::MemberId)
        .into_tuple()
        .all(tx)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(member, due, expiring)| {
            (
                member,
                OpenSummary {
                    due: due > 0,
                    expiring,
                },
            )
        })
        .collect())
}

/// A member's open lots as an earn batch sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenSummary {
    /// Some lot is due to settle (expiry or maturation).
    pub due: bool,
    /// Points expiring by the window's end.
    pub expiring: i64,
}

/// Lots due for an expiry notice at `at`: points left, not expired, next notice time come.
pub async fn due_for_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    at: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<LotRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::NextNoticeTime.lte(at))
        .filter(Column::Remaining.gt(0))
        .filter(Column::ExpireTime.gte(at))
        .order_by_asc(Column::NextNoticeTime)
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(tx)
        .await
}

/// Records the notice horizon handled and when the next one is due (`None`: no more).
pub async fn set_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    lot: Uuid,
    stage: &str,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::NoticeStage, Some(stage.to_string()).into())
        .col_expr(Column::NextNoticeTime, next.into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(lot))
        .exec(tx)
        .await?;
    Ok(())
}

/// Every lot of a member (tests and audits).
pub async fn all_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
) -> Result<Vec<LotRow>, DbErr> {
    Entity::find()
        .filter(of_member(tenant, member))
        .order_by_asc(Column::Id)
        .all(tx)
        .await
}
