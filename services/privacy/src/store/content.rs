//! Queries on `notices` and `policy_versions`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{notices, policy_versions as policies},
};
use crate::domain::{
    notice::{Notice, NoticeCursor},
    policy::{PolicyKind, PolicyVersion},
};

fn notice_to_domain(n: notices::Model) -> Notice {
    Notice {
        id: n.id,
        title: n.title,
        body: n.body,
        pinned: n.pinned,
        sort_order: n.sort_order,
        published: n.published,
        publish_time: n.publish_time,
        created_time: n.created_time,
        updated_time: n.updated_time,
    }
}

pub async fn insert_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    n: &Notice,
) -> Result<(), DbErr> {
    let row = notices::Model {
        tenant_id: tenant.as_uuid(),
        id: n.id,
        title: n.title.clone(),
        body: n.body.clone(),
        pinned: n.pinned,
        sort_order: n.sort_order,
        published: n.published,
        publish_time: n.publish_time,
        delete_time: None,
        created_time: n.created_time,
        updated_time: n.updated_time,
    };
    notices::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// A notice that is not deleted, locked until the transaction ends.
pub async fn notice_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Notice>, DbErr> {
    Ok(notices::Entity::find()
        .filter(notices::Column::TenantId.eq(tenant.as_uuid()))
        .filter(notices::Column::Id.eq(id))
        .filter(notices::Column::DeleteTime.is_null())
        .lock_exclusive()
        .one(tx)
        .await?
        .map(notice_to_domain))
}

pub async fn get_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Notice>, DbErr> {
    Ok(notices::Entity::find()
        .filter(notices::Column::TenantId.eq(tenant.as_uuid()))
        .filter(notices::Column::Id.eq(id))
        .filter(notices::Column::DeleteTime.is_null())
        .one(tx)
        .await?
        .map(notice_to_domain))
}

/// Writes every mutable column of `n`.
pub async fn update_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    n: &Notice,
) -> Result<(), DbErr> {
    notices::ActiveModel {
        tenant_id: sea_orm::Unchanged(tenant.as_uuid()),
        id: sea_orm::Unchanged(n.id),
        title: Set(n.title.clone()),
        body: Set(n.body.clone()),
        pinned: Set(n.pinned),
        sort_order: Set(n.sort_order),
        published: Set(n.published),
        publish_time: Set(n.publish_time),
        updated_time: Set(n.updated_time),
        ..Default::default()
    }
    .update(tx)
    .await?;
    Ok(())
}

/// Soft-deletes a notice; `false` when there was none (or it was deleted already).
pub async fn delete_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let r = notices::Entity::update_many()
        .col_expr(notices::Column::DeleteTime, Some(at).into())
        .col_expr(notices::Column::UpdatedTime, at.into())
        .filter(notices::Column::TenantId.eq(tenant.as_uuid()))
        .filter(notices::Column::Id.eq(id))
        .filter(notices::Column::DeleteTime.is_null())
        .exec(tx)
        .await?;
    Ok(r.rows_affected == 1)
}

/// One page in list order (pinned first, ascending sort order, newest first), resuming after
/// `after`; `published_only` for the member app.
pub async fn list_notices(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    published_only: bool,
    after: Option<NoticeCursor>,
    limit: u64,
) -> Result<Vec<Notice>, DbErr> {
    use notices::Column as C;
    let mut q = notices::Entity::find()
        .filter(C::TenantId.eq(tenant.as_uuid()))
        .filter(C::DeleteTime.is_null());
    if published_only {
        q = q.filter(C::Published.eq(true));
    }
    if let Some(c) = after {
        // Rows strictly after the cursor in (pinned DESC, sort_order ASC, id DESC) order.
        let mut after_cursor = Condition::any()
            .add(
                Condition::all()
                    .add(C::Pinned.eq(c.pinned))
                    .add(C::SortOrder.gt(c.sort_order)),
            )
            .add(
                Condition::all()
                    .add(C::Pinned.eq(c.pinned))
                    .add(C::SortOrder.eq(c.sort_order))
                    .add(C::Id.lt(c.id)),
            );
        if c.pinned {
            after_cursor = after_cursor.add(C::Pinned.eq(false));
        }
        q = q.filter(after_cursor);
    }
    Ok(q.order_by_desc(C::Pinned)
        .order_by_asc(C::SortOrder)
        .order_by_desc(C::Id)
        .limit(limit)
        .all(tx)
        .await?
        .into_iter()
        .map(notice_to_domain)
        .collect())
}

fn policy_to_domain(p: policies::Model) -> Result<PolicyVersion, DbErr> {
    Ok(PolicyVersion {
        kind: PolicyKind::parse(&p.kind)
            .ok_or_else(|| corrupt("policy_versions", "kind", &p.kind))?,
        id: p.id,
        version: p.version,
        title: p.title,
        body: p.body,
        effective_date: p.effective_date,
        created_time: p.created_time,
    })
}

/// Inserts a version; a duplicate label or effective date of the kind is a unique violation.
pub async fn insert_policy(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    p: &PolicyVersion,
) -> Result<(), DbErr> {
    let row = policies::Model {
        tenant_id: tenant.as_uuid(),
        id: p.id,
        kind: p.kind.as_str().to_string(),
        version: p.version.clone(),
        title: p.title.clone(),
        body: p.body.clone(),
        effective_date: p.effective_date,
        created_time: p.created_time,
        updated_time: p.created_time,
    };
    policies::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

pub async fn has_policy(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    kind: PolicyKind,
) -> Result<bool, DbErr> {
    Ok(policies::Entity::find()
        .select_only()
        .column(policies::Column::Id)
        .filter(policies::Column::TenantId.eq(tenant.as_uuid()))
        .filter(policies::Column::Kind.eq(kind.as_str()))
        .into_tuple::<Uuid>()
        .one(tx)
        .await?
        .is_some())
}

/// The version of `kind` in force on `date` (latest effective date not after it).
pub async fn policy_in_force(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    kind: PolicyKind,
    date: chrono::NaiveDate,
) -> Result<Option<PolicyVersion>, DbErr> {
    policies::Entity::find()
        .filter(policies::Column::TenantId.eq(tenant.as_uuid()))
        .filter(policies::Column::Kind.eq(kind.as_str()))
        .filter(policies::Column::EffectiveDate.lte(date))
        .order_by_desc(policies::Column::EffectiveDate)
        .one(tx)
        .await?
        .map(policy_to_domain)
        .transpose()
}

/// One page of a kind's versions in creation order.
pub async fn list_policies(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    kind: PolicyKind,
    page: &PageRequest,
) -> Result<Vec<PolicyVersion>, DbErr> {
    let mut q = policies::Entity::find()
        .filter(policies::Column::TenantId.eq(tenant.as_uuid()))
        .filter(policies::Column::Kind.eq(kind.as_str()));
    if let Some(after) = page.after {
        q = q.filter(policies::Column::Id.gt(after));
    }
    q.order_by_asc(policies::Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(policy_to_domain)
        .collect()
}
