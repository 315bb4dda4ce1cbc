//! Queries on `members`. Rows hold PII only as ciphertext; the application layer encrypts
//! and decrypts with the tenant's data key.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Set, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

pub use super::entity::members::Model as MemberRow;
use super::entity::members::{ActiveModel, Column, Entity};
use crate::domain::member::{MemberFilter, MemberStatus};

/// Inserts a new member; `false` when an ACTIVE member of the tenant already has this phone
/// (the unique `(tenant_id, active_phone_index)` constraint decides, race-free).
pub async fn insert(tx: &DatabaseTransaction, row: &MemberRow) -> Result<bool, DbErr> {
    let rows = Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::ActivePhoneIndex])
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
) -> Result<Option<MemberRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await
}

/// Like [`get`], locking the row until the transaction ends, so concurrent updates and
/// withdrawals of one member serialise (PostgreSQL; SQLite transactions are serial anyway).
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<MemberRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await
}

/// Which of `ids` are members of the tenant (in any status).
pub async fn existing(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, DbErr> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let found: Vec<Uuid> = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(tx)
        .await?;
    Ok(found.into_iter().collect())
}

pub async fn exists(tx: &DatabaseTransaction, tenant: TenantId, id: Uuid) -> Result<bool, DbErr> {
    let found = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .into_tuple::<Uuid>()
        .one(tx)
        .await?;
    Ok(found.is_some())
}

/// The ACTIVE member whose phone has this blind index.
pub async fn find_active_by_phone_index(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    phone_index: &str,
) -> Result<Option<MemberRow>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::ActivePhoneIndex.eq(phone_index))
        .one(tx)
        .await
}

/// Writes every mutable column of `row` (PII ciphertexts, indexes, status, grade, times).
/// A unique violation here means the new phone belongs to another ACTIVE member.
pub async fn update(tx: &DatabaseTransaction, row: &MemberRow) -> Result<(), DbErr> {
    let am = ActiveModel {
        tenant_id: sea_orm::Unchanged(row.tenant_id),
        id: sea_orm::Unchanged(row.id),
        status: Set(row.status.clone()),
        name_enc: Set(row.name_enc.clone()),
        phone_enc: Set(row.phone_enc.clone()),
        email_enc: Set(row.email_enc.clone()),
        birth_date_enc: Set(row.birth_date_enc.clone()),
        phone_index: Set(row.phone_index.clone()),
        active_phone_index: Set(row.active_phone_index.clone()),
        gender: Set(row.gender.clone()),
        grade_id: Set(row.grade_id),
        withdraw_time: Set(row.withdraw_time),
        withdraw_reason: Set(row.withdraw_reason.clone()),
        anonymised_time: Set(row.anonymised_time),
        updated_time: Set(row.updated_time),
        ..Default::default()
    };
    am.update(tx).await?;
    Ok(())
}

/// Moves a member to another grade.
pub async fn set_grade(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    grade_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::GradeId, grade_id.into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// (id, grade) of the tenant's ACTIVE members, or of one member, for grade evaluation.
pub async fn active_grades(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    only: Option<&[Uuid]>,
) -> Result<Vec<(Uuid, Option<Uuid>)>, DbErr> {
    let mut q = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::GradeId)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Status.eq(MemberStatus::Active.as_str()));
    if let Some(ids) = only {
        q = q.filter(Column::Id.is_in(ids.iter().copied()));
    }
    q.into_tuple::<(Uuid, Option<Uuid>)>().all(tx).await
}

/// One page in id order (UUIDv7: join order), after `page.after`.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    filter: &MemberFilter,
    page: &PageRequest,
) -> Result<Vec<MemberRow>, DbErr> {
    let mut q = Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()));
    if let Some(g) = filter.grade_id {
        q = q.filter(Column::GradeId.eq(g));
    }
    if let Some(s) = filter.status {
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(store) = filter.join_store_id {
        q = q.filter(Column::JoinStoreId.eq(store));
    }
    if let Some(t) = filter.joined_after {
        q = q.filter(Column::JoinTime.gte(t));
    }
    if let Some(t) = filter.joined_before {
        q = q.filter(Column::JoinTime.lt(t));
    }
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await
}
