//! Queries on `point_lots`. `remaining`, `expired` and `pending` change only under the
//! member's account lock; the notice columns only through the notice job's own update.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, IntoActiveModel, Iterable, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Asterisk, Expr, ExprTrait, Func, OnConflict, Order, Query, WindowStatement},
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

/// [`open_of_member`] for several members at once: their lots that still hold points, and
/// the lots `also` (whatever they hold), by member and expiry.
pub async fn open_of_members(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    also: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<LotRow>>, DbErr> {
    let mut by_member: std::collections::HashMap<Uuid, Vec<LotRow>> = Default::default();
    if members.is_empty() {
        return Ok(by_member);
    }
    let mut holds = Condition::any().add(Column::Remaining.gt(0));
    if !also.is_empty() {
        holds = holds.add(Column::Id.is_in(also.iter().copied()));
    }
    let rows = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.is_in(members.iter().copied()))
        .filter(holds)
        .order_by_asc(Column::MemberId)
        .order_by_asc(Column::ExpireTime)
        .order_by_asc(Column::Id)
        .all(tx)
        .await?;
    for row in rows {
        by_member.entry(row.member_id).or_default().push(row);
    }
    Ok(by_member)
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

/// Writes lots in one statement: new ones whole, and of existing ones the ledger columns an
/// operation changed (`remaining`, `expired`, `pending`, `updated_time`; an upsert).
pub async fn save(tx: &DatabaseTransaction, rows: &[LotRow]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::Id])
                .update_columns([
                    Column::Remaining,
                    Column::Expired,
                    Column::Pending,
                    Column::UpdatedTime,
                ])
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
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

/// Up to `per_member` usable lots (points left, not pending) of each of `members`,
/// soonest-expiring first, in one read; a member with fewer is complete (`true`). Spends take
/// from the front, so a few lots usually cover a till's spend however many a member holds.
pub async fn soonest_usable(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    per_member: usize,
) -> Result<std::collections::HashMap<Uuid, (Vec<LotRow>, bool)>, DbErr> {
    let mut by_member: std::collections::HashMap<Uuid, (Vec<LotRow>, bool)> = Default::default();
    if members.is_empty() {
        return Ok(by_member);
    }
    let mut ranked = Query::select();
    ranked
        .columns(Column::iter())
        .expr_window_as(
            Func::cust("ROW_NUMBER"),
            WindowStatement::partition_by(Column::MemberId)
                .order_by(Column::ExpireTime, Order::Asc)
                .order_by(Column::Id, Order::Asc)
                .to_owned(),
            "lot_rank",
        )
        .from(Entity)
        .and_where(Column::TenantId.eq(tenant.as_uuid()))
        .and_where(Column::MemberId.is_in(members.iter().copied()))
        .and_where(Column::Remaining.gt(0))
        .and_where(Column::Pending.eq(false));
    let mut query = Query::select();
    query
        .column(Asterisk)
        .from_subquery(ranked, "ranked")
        .and_where(Expr::col("lot_rank").lte(per_member as i64))
        .order_by("member_id", Order::Asc)
        .order_by("expire_time", Order::Asc)
        .order_by("id", Order::Asc);
    for row in tx.query_all(&query).await? {
        let lot = LotRow::from_query_result(&row, "")?;
        by_member
            .entry(lot.member_id)
            .or_insert_with(|| (Vec::new(), true))
            .0
            .push(lot);
    }
    for (lots, complete) in by_member.values_mut() {
        *complete = lots.len() < per_member;
    }
    Ok(by_member)
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
