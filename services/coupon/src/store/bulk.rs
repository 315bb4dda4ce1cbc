//! Queries on `bulk_issues` and `bulk_issue_items`: the job, its per-member items, and the
//! conditional updates that let any worker (or replica) pick up where another stopped.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::{
    corrupt,
    entity::{bulk_issue_items as items, bulk_issues as jobs},
};
use crate::domain::{
    bulk::{BulkIssue, BulkItem, BulkItemStatus, BulkStatus},
    template::IssueMethod,
};

/// Rows per insert statement: well below SQLite's bound-variable limit.
const INSERT_CHUNK: usize = 500;

fn job_to_domain(m: jobs::Model) -> Result<BulkIssue, DbErr> {
    Ok(BulkIssue {
        issue_method: IssueMethod::parse(&m.issue_method)
            .ok_or_else(|| corrupt("bulk_issues", "issue_method", &m.issue_method))?,
        status: BulkStatus::parse(&m.status)
            .ok_or_else(|| corrupt("bulk_issues", "status", &m.status))?,
        id: m.id,
        template_id: m.template_id,
        total: m.total,
        processed: m.processed,
        issued: m.issued,
        failed: m.failed,
        created_time: m.created_time,
        complete_time: m.complete_time,
    })
}

fn item_to_domain(m: items::Model) -> Result<BulkItem, DbErr> {
    Ok(BulkItem {
        status: BulkItemStatus::parse(&m.status)
            .ok_or_else(|| corrupt("bulk_issue_items", "status", &m.status))?,
        position: m.position,
        member_id: m.member_id,
        coupon_id: m.coupon_id,
        failure_reason: m.failure_reason,
        failure_message: m.failure_message,
    })
}

/// Stores a new job with one PENDING item per listed member.
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: &BulkIssue,
    members: &[Uuid],
) -> Result<(), DbErr> {
    let row = jobs::Model {
        tenant_id: tenant.as_uuid(),
        id: job.id,
        template_id: job.template_id,
        issue_method: job.issue_method.as_str().into(),
        status: job.status.as_str().into(),
        total: job.total,
        processed: 0,
        issued: 0,
        failed: 0,
        created_time: job.created_time,
        updated_time: job.created_time,
        complete_time: None,
    };
    jobs::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    for (chunk_no, chunk) in members.chunks(INSERT_CHUNK).enumerate() {
        let rows = chunk.iter().enumerate().map(|(i, m)| {
            items::Model {
                tenant_id: tenant.as_uuid(),
                bulk_issue_id: job.id,
                position: (chunk_no * INSERT_CHUNK + i) as i64,
                member_id: *m,
                status: BulkItemStatus::Pending.as_str().into(),
                coupon_id: None,
                failure_reason: None,
                failure_message: None,
                updated_time: job.created_time,
            }
            .into_active_model()
        });
        items::Entity::insert_many(rows)
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<BulkIssue>, DbErr> {
    jobs::Entity::find()
        .filter(jobs::Column::TenantId.eq(tenant.as_uuid()))
        .filter(jobs::Column::Id.eq(id))
        .one(tx)
        .await?
        .map(job_to_domain)
        .transpose()
}

/// RUNNING jobs of every tenant, oldest first. Needs `Db::begin_system` on PostgreSQL.
pub async fn running(
    system_tx: &DatabaseTransaction,
    limit: u64,
) -> Result<Vec<(TenantId, Uuid)>, DbErr> {
    let rows: Vec<(Uuid, Uuid)> = jobs::Entity::find()
        .select_only()
        .column(jobs::Column::TenantId)
        .column(jobs::Column::Id)
        .filter(jobs::Column::Status.eq(BulkStatus::Running.as_str()))
        .order_by_asc(jobs::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(system_tx)
        .await?;
    Ok(rows.into_iter().map(|(t, id)| (TenantId(t), id)).collect())
}

/// The next PENDING positions of a job.
pub async fn pending(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: Uuid,
    limit: u64,
) -> Result<Vec<BulkItem>, DbErr> {
    items::Entity::find()
        .filter(items::Column::TenantId.eq(tenant.as_uuid()))
        .filter(items::Column::BulkIssueId.eq(job))
        .filter(items::Column::Status.eq(BulkItemStatus::Pending.as_str()))
        .order_by_asc(items::Column::Position)
        .limit(limit)
        .all(tx)
        .await?
        .into_iter()
        .map(item_to_domain)
        .collect()
}

/// Locks the item if it is still PENDING (another worker may have settled it meanwhile).
pub async fn lock_pending(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: Uuid,
    position: i64,
) -> Result<Option<BulkItem>, DbErr> {
    items::Entity::find()
        .filter(items::Column::TenantId.eq(tenant.as_uuid()))
        .filter(items::Column::BulkIssueId.eq(job))
        .filter(items::Column::Position.eq(position))
        .filter(items::Column::Status.eq(BulkItemStatus::Pending.as_str()))
        .lock_exclusive()
        .one(tx)
        .await?
        .map(item_to_domain)
        .transpose()
}

/// Records an item's result and counts it in the job, in the caller's transaction.
pub async fn settle(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: Uuid,
    item: &BulkItem,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    items::Entity::update_many()
        .col_expr(items::Column::Status, item.status.as_str().into())
        .col_expr(items::Column::CouponId, item.coupon_id.into())
        .col_expr(
            items::Column::FailureReason,
            item.failure_reason.clone().into(),
        )
        .col_expr(
            items::Column::FailureMessage,
            item.failure_message.clone().into(),
        )
        .col_expr(items::Column::UpdatedTime, now.into())
        .filter(items::Column::TenantId.eq(tenant.as_uuid()))
        .filter(items::Column::BulkIssueId.eq(job))
        .filter(items::Column::Position.eq(item.position))
        .exec(tx)
        .await?;
    let issued = i64::from(item.status == BulkItemStatus::Issued);
    let failed = i64::from(item.status == BulkItemStatus::Failed);
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::Processed,
            Expr::col(jobs::Column::Processed).add(1),
        )
        .col_expr(
            jobs::Column::Issued,
            Expr::col(jobs::Column::Issued).add(issued),
        )
        .col_expr(
            jobs::Column::Failed,
            Expr::col(jobs::Column::Failed).add(failed),
        )
        .col_expr(jobs::Column::UpdatedTime, now.into())
        .filter(jobs::Column::TenantId.eq(tenant.as_uuid()))
        .filter(jobs::Column::Id.eq(job))
        .exec(tx)
        .await?;
    Ok(())
}

/// RUNNING → COMPLETED once no item is PENDING; `false` if it was completed already.
pub async fn complete(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, BulkStatus::Completed.as_str().into())
        .col_expr(jobs::Column::CompleteTime, Some(now).into())
        .col_expr(jobs::Column::UpdatedTime, now.into())
        .filter(jobs::Column::TenantId.eq(tenant.as_uuid()))
        .filter(jobs::Column::Id.eq(job))
        .filter(jobs::Column::Status.eq(BulkStatus::Running.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// One page of a job's items in position order, after position `after`.
pub async fn list_items(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    job: Uuid,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<BulkItem>, DbErr> {
    let mut q = items::Entity::find()
        .filter(items::Column::TenantId.eq(tenant.as_uuid()))
        .filter(items::Column::BulkIssueId.eq(job));
    if let Some(a) = after {
        q = q.filter(items::Column::Position.gt(a));
    }
    q.order_by_asc(items::Column::Position)
        .limit(limit)
        .all(tx)
        .await?
        .into_iter()
        .map(item_to_domain)
        .collect()
}
