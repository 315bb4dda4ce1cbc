//! Queries on `point_transactions`, the ledger.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

pub use super::entity::point_transactions::Model as TransactionRow;
use super::entity::point_transactions::{Column, Entity};
use crate::domain::forms::TxKind;

/// The unique key of an earn or a spend by its till receipt.
pub fn pos_key(kind: TxKind, store_code: &str, pos_transaction_id: &str) -> String {
    format!("{}|{store_code}|{pos_transaction_id}", kind.as_str())
}

/// Inserts a ledger row. A unique violation means the till receipt (`pos_key`) or the
/// idempotency key was used already; the caller maps it.
pub async fn insert(tx: &DatabaseTransaction, row: &TransactionRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// [`insert`] for many rows in one statement, skipping those whose till receipt (or
/// idempotency key) the ledger holds already; returns the ids of the rows it inserted. The
/// insert is the check: nothing is looked up beforehand.
pub async fn insert_new(
    tx: &DatabaseTransaction,
    rows: &[TransactionRow],
) -> Result<std::collections::HashSet<Uuid>, DbErr> {
    if rows.is_empty() {
        return Ok(Default::default());
    }
    let mut insert =
        Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .into_query();
    insert.returning_col(Column::Id);
    tx.query_all(&insert)
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect()
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<TransactionRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await
}

/// Ledger rows by id, in one read.
pub async fn get_many(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<TransactionRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .all(tx)
        .await
}

/// Ledger rows with one of `ids` or one of the receipts `pos_keys`, in one read.
pub async fn find_by_ids_or_pos_keys(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
    pos_keys: &[String],
) -> Result<Vec<TransactionRow>, DbErr> {
    let mut any = sea_orm::Condition::any();
    if !ids.is_empty() {
        any = any.add(Column::Id.is_in(ids.iter().copied()));
    }
    if !pos_keys.is_empty() {
        any = any.add(Column::PosKey.is_in(pos_keys.iter().cloned()));
    }
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(any)
        .all(tx)
        .await
}

pub async fn find_by_pos_key(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    key: &str,
) -> Result<Option<TransactionRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::PosKey.eq(key))
        .one(tx)
        .await
}

/// The cancels of one earn or spend.
pub async fn cancels_of(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    original: Uuid,
) -> Result<Vec<Uuid>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::OriginalTransactionId.eq(original))
        .into_tuple()
        .all(tx)
        .await
}

/// Records how much of an earn (refund, points) or a spend (points) is cancelled so far.
pub async fn set_cancelled(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    refunded_amount_krw: i64,
    reversed_points: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::RefundedAmountKrw, refunded_amount_krw.into())
        .col_expr(Column::ReversedPoints, reversed_points.into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// [`set_cancelled`] for several entries in one statement: `(id, refunded_amount_krw,
/// reversed_points)` each.
pub async fn set_cancelled_many(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    rows: &[(Uuid, i64, i64)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let by_id = |value: fn(&(Uuid, i64, i64)) -> i64| {
        let mut case = sea_orm::sea_query::CaseStatement::new();
        for r in rows {
            case = case.case(Column::Id.eq(r.0), value(r));
        }
        sea_orm::sea_query::Expr::Case(Box::new(case))
    };
    Entity::update_many()
        .col_expr(Column::RefundedAmountKrw, by_id(|r| r.1))
        .col_expr(Column::ReversedPoints, by_id(|r| r.2))
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(rows.iter().map(|r| r.0)))
        .exec(tx)
        .await?;
    Ok(())
}

/// One page of a member's ledger, newest first, resuming before `page.after`.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    kinds: &[TxKind],
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    page: &PageRequest,
) -> Result<Vec<TransactionRow>, DbErr> {
    let mut q = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member));
    if !kinds.is_empty() {
        q = q.filter(Column::Kind.is_in(kinds.iter().map(|k| k.as_str())));
    }
    if let Some(t) = from {
        q = q.filter(Column::CreatedTime.gte(t));
    }
    if let Some(t) = until {
        q = q.filter(Column::CreatedTime.lt(t));
    }
    if let Some(after) = page.after {
        q = q.filter(Column::Id.lt(after));
    }
    q.order_by_desc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await
}

/// Every ledger row of a member, oldest first (tests and audits).
pub async fn all_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
) -> Result<Vec<TransactionRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member))
        .order_by_asc(Column::Id)
        .all(tx)
        .await
}
