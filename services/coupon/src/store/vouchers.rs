//! Queries on `vouchers` and `voucher_transactions`: the balance moves only by conditional
//! updates in the same transaction as its ledger row; uses and refunds are unique by their
//! till transaction and by the use they refund.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict},
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{voucher_transactions as ledger, vouchers},
};
use crate::domain::voucher::{Voucher, VoucherStatus, VoucherTransaction, VoucherTransactionKind};

fn to_domain(m: vouchers::Model) -> Result<Voucher, DbErr> {
    Ok(Voucher {
        status: VoucherStatus::parse(&m.status)
            .ok_or_else(|| corrupt("vouchers", "status", &m.status))?,
        id: m.id,
        code: m.code,
        member_id: m.member_id,
        face_value_krw: m.face_value_krw,
        balance_krw: m.balance_krw,
        issue_time: m.issue_time,
        valid_from_time: m.valid_from_time,
        expire_time: m.expire_time,
    })
}

fn tx_to_domain(m: ledger::Model) -> Result<VoucherTransaction, DbErr> {
    Ok(VoucherTransaction {
        kind: VoucherTransactionKind::parse(&m.kind)
            .ok_or_else(|| corrupt("voucher_transactions", "kind", &m.kind))?,
        id: m.id,
        voucher_id: m.voucher_id,
        amount_krw: m.amount_krw,
        balance_after_krw: m.balance_after_krw,
        pos_transaction_id: m.pos_transaction_id,
        store_code: m.store_code,
        refund_of: m.refund_of,
        occurred_time: m.occurred_time,
    })
}

/// Inserts `v`; `false` when its code is already taken in the tenant.
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    v: &Voucher,
) -> Result<bool, DbErr> {
    let row = vouchers::Model {
        tenant_id: tenant.as_uuid(),
        id: v.id,
        code: v.code.clone(),
        member_id: v.member_id,
        face_value_krw: v.face_value_krw,
        balance_krw: v.balance_krw,
        status: v.status.as_str().into(),
        issue_time: v.issue_time,
        valid_from_time: v.valid_from_time,
        expire_time: v.expire_time,
        created_time: v.issue_time,
        updated_time: v.issue_time,
    };
    let rows = vouchers::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([vouchers::Column::TenantId, vouchers::Column::Code])
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
    id: Uuid,
) -> Result<Option<Voucher>, DbErr> {
    vouchers::Entity::find()
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Id.eq(id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

pub async fn get_by_code(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
) -> Result<Option<Voucher>, DbErr> {
    vouchers::Entity::find()
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Code.eq(code))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Takes `amount` from the balance if the voucher is ACTIVE, within its window and holds
/// enough: `true` when it did. Concurrent uses serialise on the row and each re-checks
/// `balance_krw >= amount`, so the balance never goes below zero.
pub async fn debit(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = vouchers::Entity::update_many()
        .col_expr(
            vouchers::Column::BalanceKrw,
            Expr::col(vouchers::Column::BalanceKrw).sub(amount),
        )
        .col_expr(vouchers::Column::UpdatedTime, now.into())
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Id.eq(id))
        .filter(vouchers::Column::Status.eq(VoucherStatus::Active.as_str()))
        .filter(vouchers::Column::BalanceKrw.gte(amount))
        .filter(vouchers::Column::ValidFromTime.lte(now))
        .filter(vouchers::Column::ExpireTime.gte(now))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Gives `amount` back to the balance (a refund of a use).
pub async fn credit(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    vouchers::Entity::update_many()
        .col_expr(
            vouchers::Column::BalanceKrw,
            Expr::col(vouchers::Column::BalanceKrw).add(amount),
        )
        .col_expr(vouchers::Column::UpdatedTime, now.into())
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// The balance as this transaction sees it (after its own update, which holds the row lock).
pub async fn balance(tx: &DatabaseTransaction, tenant: TenantId, id: Uuid) -> Result<i64, DbErr> {
    vouchers::Entity::find()
        .select_only()
        .column(vouchers::Column::BalanceKrw)
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Id.eq(id))
        .into_tuple::<i64>()
        .one(tx)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("voucher {id}")))
}

/// Appends a ledger row. A unique violation means the same use or refund was recorded by a
/// concurrent request (the caller answers with that one).
pub async fn append(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    t: &VoucherTransaction,
) -> Result<(), DbErr> {
    let row = ledger::Model {
        tenant_id: tenant.as_uuid(),
        id: t.id,
        voucher_id: t.voucher_id,
        kind: t.kind.as_str().into(),
        amount_krw: t.amount_krw,
        balance_after_krw: t.balance_after_krw,
        pos_transaction_id: t.pos_transaction_id.clone(),
        use_key: (t.kind == VoucherTransactionKind::Use)
            .then(|| t.pos_transaction_id.clone())
            .flatten(),
        store_code: t.store_code.clone(),
        refund_of: t.refund_of,
        occurred_time: t.occurred_time,
        created_time: t.occurred_time,
    };
    ledger::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// The use of voucher `voucher_id` in till transaction `pos`, if any.
pub async fn find_use(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    voucher_id: Uuid,
    pos: &str,
) -> Result<Option<VoucherTransaction>, DbErr> {
    ledger::Entity::find()
        .filter(ledger::Column::TenantId.eq(tenant.as_uuid()))
        .filter(ledger::Column::VoucherId.eq(voucher_id))
        .filter(ledger::Column::UseKey.eq(pos))
        .one(tx)
        .await?
        .map(tx_to_domain)
        .transpose()
}

/// The refund of use `use_id`, if any.
pub async fn find_refund(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    use_id: Uuid,
) -> Result<Option<VoucherTransaction>, DbErr> {
    ledger::Entity::find()
        .filter(ledger::Column::TenantId.eq(tenant.as_uuid()))
        .filter(ledger::Column::RefundOf.eq(use_id))
        .one(tx)
        .await?
        .map(tx_to_domain)
        .transpose()
}

/// One page of a voucher's ledger in id order (UUIDv7: time order).
pub async fn history(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    voucher_id: Uuid,
    page: &PageRequest,
) -> Result<Vec<VoucherTransaction>, DbErr> {
    let mut q = ledger::Entity::find()
        .filter(ledger::Column::TenantId.eq(tenant.as_uuid()))
        .filter(ledger::Column::VoucherId.eq(voucher_id));
    if let Some(after) = page.after {
        q = q.filter(ledger::Column::Id.gt(after));
    }
    q.order_by_asc(ledger::Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(tx_to_domain)
        .collect()
}

/// ACTIVE vouchers past their validity, locked (PostgreSQL skips rows another run holds).
pub async fn due_for_expiry(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Voucher>, DbErr> {
    let mut q = vouchers::Entity::find()
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Status.eq(VoucherStatus::Active.as_str()))
        .filter(vouchers::Column::ExpireTime.lt(now))
        .order_by_asc(vouchers::Column::ExpireTime)
        .limit(limit);
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    q.all(tx).await?.into_iter().map(to_domain).collect()
}

/// ACTIVE → EXPIRED with the balance forfeited (the EXPIRE ledger row records how much).
pub async fn expire(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = vouchers::Entity::update_many()
        .col_expr(
            vouchers::Column::Status,
            VoucherStatus::Expired.as_str().into(),
        )
        .col_expr(vouchers::Column::BalanceKrw, 0i64.into())
        .col_expr(vouchers::Column::UpdatedTime, now.into())
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::Id.eq(id))
        .filter(vouchers::Column::Status.eq(VoucherStatus::Active.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every voucher registered to a member, in issue order (data-subject access).
pub async fn of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<Voucher>, DbErr> {
    vouchers::Entity::find()
        .filter(vouchers::Column::TenantId.eq(tenant.as_uuid()))
        .filter(vouchers::Column::MemberId.eq(member_id))
        .order_by_asc(vouchers::Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// A voucher's whole ledger in time order (data-subject access).
pub async fn all_moves(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    voucher_id: Uuid,
) -> Result<Vec<VoucherTransaction>, DbErr> {
    ledger::Entity::find()
        .filter(ledger::Column::TenantId.eq(tenant.as_uuid()))
        .filter(ledger::Column::VoucherId.eq(voucher_id))
        .order_by_asc(ledger::Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(tx_to_domain)
        .collect()
}
