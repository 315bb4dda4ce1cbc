//! Queries on `dsr_requests`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::dsr_requests::{ActiveModel, Column, Entity},
};
use crate::domain::{
    consent::CollectionChannel,
    dsr::{Kind, Request, Status},
};

pub use super::entity::dsr_requests::Model as DsrRow;

pub fn to_domain(r: &DsrRow) -> Result<Request, DbErr> {
    Ok(Request {
        id: r.id,
        member_id: r.member_id,
        kind: Kind::parse(&r.kind).ok_or_else(|| corrupt("dsr_requests", "kind", &r.kind))?,
        status: Status::parse(&r.status)
            .ok_or_else(|| corrupt("dsr_requests", "status", &r.status))?,
        collection_channel: CollectionChannel::parse(&r.collection_channel),
        note: r.note.clone(),
        actor: r.actor.clone(),
        receive_time: r.receive_time,
        due_date: r.due_date,
        complete_time: r.complete_time,
        reject_reason: r.reject_reason.clone(),
        last_error: r.last_error.clone(),
        services: serde_json::from_str(&r.services)
            .map_err(|_| corrupt("dsr_requests", "services", &r.services))?,
    })
}

pub async fn insert(tx: &DatabaseTransaction, row: &DsrRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<DsrRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await
}

/// Like [`get`], locked until the transaction ends (one processing attempt at a time).
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<DsrRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await
}

/// Writes the mutable columns of `row` (status, times, reasons, services, document).
pub async fn update(tx: &DatabaseTransaction, row: &DsrRow) -> Result<(), DbErr> {
    ActiveModel {
        tenant_id: sea_orm::Unchanged(row.tenant_id),
        id: sea_orm::Unchanged(row.id),
        status: Set(row.status.clone()),
        complete_time: Set(row.complete_time),
        reject_reason: Set(row.reject_reason.clone()),
        last_error: Set(row.last_error.clone()),
        services: Set(row.services.clone()),
        document_enc: Set(row.document_enc.clone()),
        updated_time: Set(row.updated_time),
        ..Default::default()
    }
    .update(tx)
    .await?;
    Ok(())
}

/// Drops the stored access documents of a member (they hold the PII an erasure removes).
pub async fn drop_documents_of(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let r = Entity::update_many()
        .col_expr(Column::DocumentEnc, Option::<Vec<u8>>::None.into())
        .col_expr(Column::UpdatedTime, at.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .filter(Column::DocumentEnc.is_not_null())
        .exec(tx)
        .await?;
    Ok(r.rows_affected)
}

/// One page in id (receipt) order.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    status: Option<Status>,
    member_id: Option<Uuid>,
    page: &PageRequest,
) -> Result<Vec<DsrRow>, DbErr> {
    let mut q = Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()));
    if let Some(s) = status {
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(m) = member_id {
        q = q.filter(Column::MemberId.eq(m));
    }
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await
}
