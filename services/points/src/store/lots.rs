//! Queries on `point_lots`. `remaining`, `expired` and `pending` change only under the
//! member's account lock; the notice columns only through the notice job's own update.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, IntoActiveModel, Iterable, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{
        Asterisk, Expr, ExprTrait, Func, OnConflict, Order, Query, UnionType, WindowStatement,
    },
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

/// Writes the ledger columns of lots an operation changed, in one statement (an upsert on rows
/// known to exist: only `remaining`, `expired`, `pending` and `updated_time` change).
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

/// What a ledger batch needs of its members' lots, in one read: per member, whether a lot is
/// due to settle at `at` (see `due`) and the points expiring by `until` (after `at`). Both
/// come from index ranges, whatever the number of lots a member holds: the lots expiring by
/// `until` (the `(tenant, member, expire_time)` index) and the pending lots whose time came.
pub async fn open_summaries(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<std::collections::HashMap<Uuid, OpenSummary>, DbErr> {
    let mut summaries = std::collections::HashMap::new();
    if members.is_empty() {
        return Ok(summaries);
    }
    let mut soon = Query::select();
    soon.column(Column::MemberId)
        .expr_as(Expr::case(Column::ExpireTime.lt(at), 1).finally(0), "due")
        .expr_as(Expr::col(Column::Remaining), "expiring")
        .from(Entity)
        .and_where(Column::TenantId.eq(tenant.as_uuid()))
        .and_where(Column::MemberId.is_in(members.iter().copied()))
        .and_where(Column::Remaining.gt(0))
        .and_where(Column::ExpireTime.lte(until));
    let mut maturing = Query::select();
    maturing
        .column(Column::MemberId)
        .expr_as(Expr::val(1), "due")
        .expr_as(Expr::val(0i64), "expiring")
        .from(Entity)
        .and_where(Column::TenantId.eq(tenant.as_uuid()))
        .and_where(Column::Pending.eq(true))
        .and_where(Column::AvailableTime.lte(at))
        .and_where(Column::MemberId.is_in(members.iter().copied()));
    soon.union(UnionType::All, maturing);
    let mut query = Query::select();
    query
        .column("member_id")
        .expr_as(Func::max(Expr::col("due")), "due")
        // SUM(bigint) is numeric on PostgreSQL; the cast keeps it an i64 on both backends.
        .expr_as(
            Func::cast_as(
                Func::coalesce([Expr::from(Func::sum(Expr::col("expiring"))), Expr::val(0)]),
                "BIGINT",
            ),
            "expiring",
        )
        .from_subquery(soon, "lots")
        .group_by_col("member_id");
    for row in tx.query_all(&query).await? {
        summaries.insert(
            row.try_get::<Uuid>("", "member_id")?,
            OpenSummary {
                due: row.try_get::<i32>("", "due")? > 0,
                expiring: row.try_get::<i64>("", "expiring")?,
            },
        );
    }
    Ok(summaries)
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
