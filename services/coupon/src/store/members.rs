//! Queries on `coupon_members`, the projection of `member.joined` / `member.withdrawn` /
//! `member.erased`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::{
    corrupt,
    entity::coupon_members::{Column, Entity, Model},
};
use crate::domain::member::MemberState;

/// Records a joined member. A row that exists already (a redelivery, or a withdrawal whose
/// event overtook the join) is left alone: a withdrawn member is never revived.
pub async fn joined(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    birth_month_day: Option<String>,
    join_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        member_id,
        status: MemberState::Active.as_str().into(),
        birth_month_day,
        join_time: Some(join_time),
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

/// Marks a member withdrawn, creating the row if the join was never seen.
pub async fn withdrawn(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        member_id,
        status: MemberState::Withdrawn.as_str().into(),
        birth_month_day: None,
        join_time: None,
        created_time: now,
        updated_time: now,
    };
    Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::MemberId])
                .update_columns([Column::Status, Column::UpdatedTime])
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// Forgets the birth month-day of an erased member (the only PII the projection copies); the
/// row stays so the wallet keeps its pseudonymous owner.
pub async fn erased(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::BirthMonthDay, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedTime, Expr::value(now))
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// The projection row of a member (data-subject access).
pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .one(tx)
        .await
}

pub async fn state(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Option<MemberState>, DbErr> {
    let status: Option<String> = Entity::find()
        .select_only()
        .column(Column::Status)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .into_tuple()
        .one(tx)
        .await?;
    status
        .map(|s| MemberState::parse(&s).ok_or_else(|| corrupt("coupon_members", "status", &s)))
        .transpose()
}

/// ACTIVE members whose birth month-day is one of `month_days`, a page in id order.
pub async fn with_birthday(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    month_days: &[String],
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    let mut q = Entity::find()
        .select_only()
        .column(Column::MemberId)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Status.eq(MemberState::Active.as_str()))
        .filter(Column::BirthMonthDay.is_in(month_days.iter().cloned()));
    if let Some(a) = after {
        q = q.filter(Column::MemberId.gt(a));
    }
    q.order_by_asc(Column::MemberId)
        .limit(limit)
        .into_tuple()
        .all(tx)
        .await
}

/// The projection's state of each of `members` it knows (one query; the batched claims').
pub async fn states(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, MemberState>, DbErr> {
    if members.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, String)> = Entity::find()
        .select_only()
        .column(Column::MemberId)
        .column(Column::Status)
        // A lookup per member (see `coupons::held_counts` on `IN` lists without statistics).
        .filter(members.iter().fold(Condition::any(), |any, m| {
            any.add(
                Condition::all()
                    .add(Column::TenantId.eq(tenant.as_uuid()))
                    .add(Column::MemberId.eq(*m)),
            )
        }))
        .into_tuple()
        .all(tx)
        .await?;
    rows.into_iter()
        .map(|(m, s)| {
            MemberState::parse(&s)
                .map(|state| (m, state))
                .ok_or_else(|| corrupt("coupon_members", "status", &s))
        })
        .collect()
}
