//! Queries on `coupon_redemptions`: one row per (till transaction, coupon), cancelled in place.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::{
    corrupt,
    entity::coupon_redemptions::{Column, Entity, Model},
};
use crate::domain::coupon::{Redemption, RedemptionStatus};

fn to_domain(m: Model) -> Result<Redemption, DbErr> {
    Ok(Redemption {
        status: RedemptionStatus::parse(&m.status)
            .ok_or_else(|| corrupt("coupon_redemptions", "status", &m.status))?,
        id: m.id,
        coupon_id: m.coupon_id,
        template_id: m.template_id,
        member_id: m.member_id,
        pos_transaction_id: m.pos_transaction_id,
        store_code: m.store_code,
        amount_krw: m.amount_krw,
        discount_krw: m.discount_krw,
        stackable: m.stackable,
        redeem_time: m.redeem_time,
        cancel_time: m.cancel_time,
    })
}

/// Inserts `r`; a unique violation means the same till transaction redeemed this coupon
/// concurrently (the caller answers with that redemption).
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    r: &Redemption,
) -> Result<(), DbErr> {
    let model = Model {
        tenant_id: tenant.as_uuid(),
        id: r.id,
        coupon_id: r.coupon_id,
        template_id: r.template_id,
        member_id: r.member_id,
        pos_transaction_id: r.pos_transaction_id.clone(),
        store_code: r.store_code.clone(),
        amount_krw: r.amount_krw,
        discount_krw: r.discount_krw,
        stackable: r.stackable,
        status: r.status.as_str().into(),
        redeem_time: r.redeem_time,
        cancel_time: r.cancel_time,
        cancel_reason: None,
        created_time: r.redeem_time,
        updated_time: r.redeem_time,
    };
    Entity::insert(model.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// The redemption of `coupon_id` in till transaction `pos`, if any.
pub async fn find(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    pos: &str,
    coupon_id: Uuid,
) -> Result<Option<Redemption>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::PosTransactionId.eq(pos))
        .filter(Column::CouponId.eq(coupon_id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Every redemption of till transaction `pos` (optionally of one coupon), oldest first,
/// locked until the transaction ends.
pub async fn in_transaction_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    pos: &str,
    coupon_id: Option<Uuid>,
) -> Result<Vec<Redemption>, DbErr> {
    let mut q = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::PosTransactionId.eq(pos));
    if let Some(c) = coupon_id {
        q = q.filter(Column::CouponId.eq(c));
    }
    q.order_by_asc(Column::Id)
        .lock_exclusive()
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Every redemption of till transaction `pos` (any status), oldest first: one read answers
/// both "was this coupon already redeemed here?" and "what else is in this transaction?".
pub async fn in_transaction(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    pos: &str,
) -> Result<Vec<Redemption>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::PosTransactionId.eq(pos))
        .order_by_asc(Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// REDEEMED → CANCELLED; `false` if it was cancelled already.
pub async fn cancel(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, RedemptionStatus::Cancelled.as_str().into())
        .col_expr(Column::CancelTime, Some(now).into())
        .col_expr(Column::CancelReason, Some(reason.to_string()).into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(RedemptionStatus::Redeemed.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every redemption of a member's coupons, oldest first (data-subject access).
pub async fn of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<Redemption>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .order_by_asc(Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}
