//! Queries on `tenant_members`, `tenant_counters` and `tenant_stores`: what member events told
//! billing about a tenant's size. Each member and store has a row, so events of different
//! topics arriving out of order still give the right count; the member counter changes by
//! conditional updates in the consumer's transaction, never by read-modify-write.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, OnConflict},
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::entity::{tenant_counters, tenant_members, tenant_stores};

async fn ensure_counter(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = tenant_counters::Model {
        tenant_id: tenant.as_uuid(),
        member_count: 0,
        created_time: now,
        updated_time: now,
    };
    tenant_counters::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(tenant_counters::Column::TenantId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

async fn add_members(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    delta: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use tenant_counters::Column as C;
    ensure_counter(tx, tenant, now).await?;
    tenant_counters::Entity::update_many()
        .col_expr(C::MemberCount, Expr::col(C::MemberCount).add(delta))
        .col_expr(C::UpdatedTime, now.into())
        .filter(C::TenantId.eq(tenant.as_uuid()))
        .exec(tx)
        .await?;
    Ok(())
}

/// Inserts the member's row; `false` when it exists.
async fn insert_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    joined: bool,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = tenant_members::Model {
        tenant_id: tenant.as_uuid(),
        member_id: member,
        joined,
        withdrawn: !joined,
        created_time: now,
        updated_time: now,
    };
    let n = tenant_members::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([
                tenant_members::Column::TenantId,
                tenant_members::Column::MemberId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(n == 1)
}

/// A member joined: counted unless its withdrawal arrived first.
pub async fn member_joined(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use tenant_members::Column as M;
    if insert_member(tx, tenant, member, true, now).await? {
        return add_members(tx, tenant, 1, now).await;
    }
    // The row came from an earlier withdrawal: record the join, count nothing.
    tenant_members::Entity::update_many()
        .col_expr(M::Joined, true.into())
        .col_expr(M::UpdatedTime, now.into())
        .filter(M::TenantId.eq(tenant.as_uuid()))
        .filter(M::MemberId.eq(member))
        .exec(tx)
        .await?;
    Ok(())
}

/// A member withdrew: uncounted if its join was counted; otherwise remembered, so the join
/// arriving later is not counted.
pub async fn member_withdrawn(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use tenant_members::Column as M;
    if insert_member(tx, tenant, member, false, now).await? {
        return Ok(());
    }
    let r = tenant_members::Entity::update_many()
        .col_expr(M::Withdrawn, true.into())
        .col_expr(M::UpdatedTime, now.into())
        .filter(M::TenantId.eq(tenant.as_uuid()))
        .filter(M::MemberId.eq(member))
        .filter(M::Joined.eq(true))
        .filter(M::Withdrawn.eq(false))
        .exec(tx)
        .await?;
    if r.rows_affected == 1 {
        add_members(tx, tenant, -1, now).await?;
    }
    Ok(())
}

pub async fn member_count(tx: &DatabaseTransaction, tenant: TenantId) -> Result<i64, DbErr> {
    let n: Option<i64> = tenant_counters::Entity::find()
        .select_only()
        .column(tenant_counters::Column::MemberCount)
        .filter(tenant_counters::Column::TenantId.eq(tenant.as_uuid()))
        .into_tuple()
        .one(tx)
        .await?;
    Ok(n.unwrap_or(0))
}

/// Records whether `store` is open as of `event_time`; an event older than the one already
/// applied changes nothing (events of different topics may arrive out of order).
pub async fn set_store(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    store: Uuid,
    open: bool,
    event_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use tenant_stores::Column as C;
    let row = tenant_stores::Model {
        tenant_id: tenant.as_uuid(),
        store_id: store,
        open,
        event_time,
        created_time: now,
        updated_time: now,
    };
    tenant_stores::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([C::TenantId, C::StoreId])
                .update_columns([C::Open, C::EventTime, C::UpdatedTime])
                .action_and_where(
                    Expr::col((tenant_stores::Entity, C::EventTime))
                        .lte(Expr::col((Alias::new("excluded"), C::EventTime))),
                )
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

pub async fn open_store_count(tx: &DatabaseTransaction, tenant: TenantId) -> Result<i64, DbErr> {
    let n = tenant_stores::Entity::find()
        .filter(tenant_stores::Column::TenantId.eq(tenant.as_uuid()))
        .filter(tenant_stores::Column::Open.eq(true))
        .count(tx)
        .await?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}
