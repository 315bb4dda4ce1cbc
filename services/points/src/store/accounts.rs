//! Queries on `point_accounts`. A member's operations lock the row ([`lock`]) before anything
//! else about that member is read, and write it back with [`save`], conditional on the version
//! read, in the same transaction as the ledger rows.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, IntoActiveModel, Iterable, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Func, LockType, OnConflict, Order, Query},
};
use spharos_kit::TenantId;
use uuid::Uuid;

pub use super::entity::point_accounts::Model as AccountRow;
use super::entity::point_accounts::{Column, Entity};

/// The member's account, locked until the transaction ends (`SELECT ... FOR UPDATE` on
/// PostgreSQL; SQLite transactions are serial anyway).
pub async fn lock(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
) -> Result<Option<AccountRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member))
        .lock_exclusive()
        .one(tx)
        .await
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
) -> Result<Option<AccountRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member))
        .one(tx)
        .await
}

/// Creates an empty account; `false` when it exists (a concurrent first operation made it).
pub async fn create(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    Ok(create_many(tx, tenant, &[member], now).await? == 1)
}

/// Writes the new sums of `row`, if its version is still `row.version`, and bumps the version.
/// Under the row lock the condition always holds; if it ever does not, the transaction fails
/// instead of overwriting another's write.
pub async fn save(tx: &DatabaseTransaction, row: &AccountRow) -> Result<(), DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Available, row.available.into())
        .col_expr(Column::Pending, row.pending.into())
        .col_expr(Column::Debt, row.debt.into())
        .col_expr(Column::LifetimeEarned, row.lifetime_earned.into())
        .col_expr(Column::LifetimeSpent, row.lifetime_spent.into())
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedTime, row.updated_time.into())
        .filter(Column::TenantId.eq(row.tenant_id))
        .filter(Column::MemberId.eq(row.member_id))
        .filter(Column::Version.eq(row.version))
        .exec(tx)
        .await?;
    if result.rows_affected != 1 {
        return Err(DbErr::Custom(format!(
            "point account {} changed under its lock (version {})",
            row.member_id, row.version
        )));
    }
    Ok(())
}

/// The member ids of a tenant's accounts (tests and audits).
pub async fn members(tx: &DatabaseTransaction, tenant: TenantId) -> Result<Vec<Uuid>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::MemberId)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .into_tuple()
        .all(tx)
        .await
}

/// The accounts of `members` that exist, locked until the transaction ends and locked in
/// member order (so two batches, or a batch and a single operation, never wait on each other
/// in a circle), each with what a ledger batch needs of the member's lots, in the
/// same read: whether a lot is due to settle at `at` (points left past their last day, or a
/// pending lot whose time came) and the points expiring by `until` (after `at`). The lots are
/// reached through index ranges (the member's lots expiring by `until`; the member's pending
/// lots), whatever the number of lots a member holds.
pub async fn lock_many_summarised(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(AccountRow, OpenSummary)>, DbErr> {
    use super::entity::point_lots::{Column as Lot, Entity as Lots};
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let of_account = || {
        Condition::all()
            .add(Expr::col((Lots, Lot::TenantId)).equals((Entity, Column::TenantId)))
            .add(Expr::col((Lots, Lot::MemberId)).equals((Entity, Column::MemberId)))
    };
    let expired = Query::select()
        .expr(Expr::val(1))
        .from(Lots)
        .cond_where(of_account())
        .and_where(Expr::col((Lots, Lot::ExpireTime)).lt(at))
        .and_where(Expr::col((Lots, Lot::Remaining)).gt(0))
        .to_owned();
    let maturing = Query::select()
        .expr(Expr::val(1))
        .from(Lots)
        .cond_where(of_account())
        .and_where(Expr::col((Lots, Lot::Pending)).eq(true))
        .and_where(Expr::col((Lots, Lot::AvailableTime)).lte(at))
        .to_owned();
    let expiring = Query::select()
        .expr(Func::sum(Expr::col((Lots, Lot::Remaining))))
        .from(Lots)
        .cond_where(of_account())
        .and_where(Expr::col((Lots, Lot::ExpireTime)).lte(until))
        .and_where(Expr::col((Lots, Lot::Remaining)).gt(0))
        .to_owned();
    let mut query = Query::select();
    query
        .columns(Column::iter().map(|c| (Entity, c)))
        .expr_as(
            Expr::case(Expr::exists(expired).or(Expr::exists(maturing)), 1).finally(0),
            "due",
        )
        // SUM(bigint) is numeric on PostgreSQL; the cast keeps it an i64 on both backends.
        .expr_as(
            Func::cast_as(
                Func::coalesce([
                    Expr::SubQuery(None, Box::new(expiring.into())),
                    Expr::val(0),
                ]),
                "BIGINT",
            ),
            "expiring",
        )
        .from(Entity)
        .and_where(Expr::col((Entity, Column::TenantId)).eq(tenant.as_uuid()))
        .and_where(Expr::col((Entity, Column::MemberId)).is_in(members.iter().copied()))
        .order_by((Entity, Column::MemberId), Order::Asc)
        .lock_with_tables(LockType::Update, [Entity]);
    tx.query_all(&query)
        .await?
        .iter()
        .map(|row| {
            Ok((
                AccountRow::from_query_result(row, "")?,
                OpenSummary {
                    due: row.try_get::<i32>("", "due")? > 0,
                    expiring: row.try_get::<i64>("", "expiring")?,
                },
            ))
        })
        .collect()
}

/// A member's lots as a ledger batch sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenSummary {
    /// Some lot is due to settle (expiry or maturation).
    pub due: bool,
    /// Points expiring by the window's end.
    pub expiring: i64,
}

/// Creates empty accounts for `members`; returns how many were new.
pub async fn create_many(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if members.is_empty() {
        return Ok(0);
    }
    let rows = members.iter().map(|m| {
        AccountRow {
            tenant_id: tenant.as_uuid(),
            member_id: *m,
            available: 0,
            pending: 0,
            debt: 0,
            lifetime_earned: 0,
            lifetime_spent: 0,
            version: 0,
            created_time: now,
            updated_time: now,
        }
        .into_active_model()
    });
    Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::MemberId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await
}

/// Writes the new sums of accounts locked by [`lock_many_summarised`] in one statement (an upsert on
/// rows known to exist), each with its version bumped once.
pub async fn save_many(tx: &DatabaseTransaction, rows: &[AccountRow]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    Entity::insert_many(rows.iter().map(|r| {
        let mut r = r.clone();
        r.version += 1;
        r.into_active_model()
    }))
    .on_conflict(
        OnConflict::columns([Column::TenantId, Column::MemberId])
            .update_columns([
                Column::Available,
                Column::Pending,
                Column::Debt,
                Column::LifetimeEarned,
                Column::LifetimeSpent,
                Column::Version,
                Column::UpdatedTime,
            ])
            .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    Ok(())
}
