//! Queries on `api_tokens`: records of issued tokens, revoked by a conditional update so a
//! revocation (and its event) happens once.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::api_tokens::{Column, Entity, Model},
};
use crate::domain::token::ApiToken;

fn to_domain(m: Model) -> Result<ApiToken, DbErr> {
    let permissions: Vec<String> = serde_json::from_str(&m.permissions)
        .map_err(|_| corrupt("api_tokens", "permissions", &m.permissions))?;
    Ok(ApiToken {
        id: m.id,
        tenant: TenantId(m.tenant_id),
        subject: m.subject,
        permissions,
        issue_time: m.issue_time,
        expire_time: m.expire_time,
        revoke_time: m.revoke_time,
        replaced_by: m.replaced_by,
    })
}

pub async fn insert(tx: &DatabaseTransaction, t: &ApiToken) -> Result<(), DbErr> {
    let row = Model {
        tenant_id: t.tenant.as_uuid(),
        id: t.id,
        subject: t.subject.clone(),
        permissions: serde_json::to_string(&t.permissions)
            .map_err(|e| DbErr::Custom(format!("permissions: {e}")))?,
        issue_time: t.issue_time,
        expire_time: t.expire_time,
        revoke_time: t.revoke_time,
        replaced_by: t.replaced_by,
        created_time: t.issue_time,
        updated_time: t.issue_time,
    };
    Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<ApiToken>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Like [`get`], locking the row (a rotation must not race another rotation of the token).
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<ApiToken>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Marks the token revoked (and replaced, for a rotation); `false` when it already was.
pub async fn revoke(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    replaced_by: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let r = Entity::update_many()
        .col_expr(Column::RevokeTime, Some(at).into())
        .col_expr(Column::ReplacedBy, replaced_by.into())
        .col_expr(Column::UpdatedTime, at.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .filter(Column::RevokeTime.is_null())
        .exec(tx)
        .await?;
    Ok(r.rows_affected == 1)
}

/// One page in id order (UUIDv7: issue order).
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    page: &PageRequest,
) -> Result<Vec<ApiToken>, DbErr> {
    let mut q = Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()));
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}
