//! Queries on `subscriptions`: one row per tenant, locked while its plan periods change.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect, Set, sea_query::OnConflict,
};
use spharos_kit::TenantId;

use super::{
    corrupt,
    entity::subscriptions::{ActiveModel, Column, Entity, Model},
};
use crate::domain::subscription::{Subscription, SubscriptionStatus};

fn to_domain(m: Model) -> Result<Subscription, DbErr> {
    Ok(Subscription {
        status: SubscriptionStatus::parse(&m.status)
            .ok_or_else(|| corrupt("subscriptions", "status", &m.status))?,
        id: m.id,
        start_date: m.start_date,
        end_date: m.end_date,
        suspend_reason: m.suspend_reason,
        created_time: m.created_time,
        updated_time: m.updated_time,
    })
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<Subscription>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Like [`get`], locking the row until the transaction ends (PostgreSQL; SQLite is serial),
/// so concurrent plan changes of one tenant apply one after the other.
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<Subscription>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .lock_exclusive()
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts the tenant's first subscription; `false` when one exists (two concurrent
/// subscribes: the primary key lets one win).
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    s: &Subscription,
) -> Result<bool, DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        id: s.id,
        status: s.status.as_str().to_string(),
        start_date: s.start_date,
        end_date: s.end_date,
        suspend_reason: s.suspend_reason.clone(),
        created_time: s.created_time,
        updated_time: s.updated_time,
    };
    let n = Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::column(Column::TenantId).do_nothing().to_owned())
        .exec_without_returning(tx)
        .await?;
    Ok(n == 1)
}

/// Writes every mutable field of `s` (the row was locked by [`get_for_update`]).
pub async fn update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    s: &Subscription,
) -> Result<(), DbErr> {
    let am = ActiveModel {
        tenant_id: sea_orm::Unchanged(tenant.as_uuid()),
        id: Set(s.id),
        status: Set(s.status.as_str().to_string()),
        start_date: Set(s.start_date),
        end_date: Set(s.end_date),
        suspend_reason: Set(s.suspend_reason.clone()),
        created_time: Set(s.created_time),
        updated_time: Set(s.updated_time),
    };
    am.update(tx).await?;
    Ok(())
}
