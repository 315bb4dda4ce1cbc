//! Bulk issue: a job stores the member list as PENDING items; a background worker issues them
//! page by page, one transaction per member that writes the coupon and the item's result
//! together, so a crash or restart resumes exactly where it stopped and nobody gets two.
use serde::Serialize;
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId, Violations,
    idempotency::{self, Claim, fingerprint},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{
    CouponApp, from_json, is_business, issue::IssueOrder, json, now, reason_of, template_not_found,
};
use crate::{
    domain::{
        bulk::{BulkIssue, BulkItem, BulkItemStatus, BulkStatus, MAX_MEMBERS},
        template::IssueMethod,
    },
    store::{bulk, templates},
};

const START_SCOPE: &str = "coupon.start_bulk_issue";
/// Items per worker page.
const PAGE: u64 = 100;
/// Jobs looked at per worker round.
const JOBS_PER_ROUND: u64 = 20;

/// A page of a job's per-member results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkPage {
    pub results: Vec<BulkItem>,
    pub next_page_token: String,
}

#[derive(Serialize)]
struct StartRequest<'a> {
    template_id: Uuid,
    member_ids: &'a [Uuid],
    method: IssueMethod,
}

fn bulk_not_found() -> ServiceError {
    ServiceError::not_found("대량 발급 작업을 찾을 수 없습니다 (bulk issue not found)")
}

impl CouponApp {
    /// Starts issuing `template_id` to every listed member (ADMIN or CAMPAIGN); the template
    /// must be able to issue now. The job runs in the background; follow it with
    /// [`CouponApp::get_bulk_issue`] and [`CouponApp::list_bulk_results`].
    pub async fn start_bulk_issue(
        &self,
        tenant: TenantId,
        template_id: Uuid,
        member_ids: Vec<Uuid>,
        method: IssueMethod,
        idempotency_key: &str,
    ) -> Result<BulkIssue, ServiceError> {
        let mut v = Violations::new();
        v.check(
            method.is_manual(),
            "issue_method",
            "ADMIN 또는 CAMPAIGN만 지정할 수 있습니다 (must be ADMIN or CAMPAIGN)",
        );
        v.check(
            !member_ids.is_empty() && member_ids.len() <= MAX_MEMBERS,
            "member_ids",
            "회원은 1~10000명입니다 (list 1..=10000 members; split bigger lists into several jobs)",
        );
        v.finish()?;
        let fp = fingerprint(&json(&StartRequest {
            template_id,
            member_ids: &member_ids,
            method,
        })?);
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, START_SCOPE, idempotency_key, &fp).await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let template = templates::get(&tx, tenant, template_id)
            .await?
            .ok_or_else(template_not_found)?;
        let at = now();
        template.check_issuable(method, at, self.zone)?;
        let job = BulkIssue {
            id: Uuid::now_v7(),
            template_id,
            issue_method: method,
            status: BulkStatus::Running,
            total: member_ids.len() as i64,
            processed: 0,
            issued: 0,
            failed: 0,
            created_time: at,
            complete_time: None,
        };
        bulk::insert(&tx, tenant, &job, &member_ids).await?;
        idempotency::complete(&tx, tenant, START_SCOPE, idempotency_key, &json(&job)?).await?;
        tx.commit().await?;
        self.bulk_wake.notify_one();
        tracing::info!(tenant_id = %tenant, bulk_issue_id = %job.id, total = job.total, "bulk issue started");
        Ok(job)
    }

    pub async fn get_bulk_issue(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<BulkIssue, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let job = bulk::get(&tx, tenant, id)
            .await?
            .ok_or_else(bulk_not_found)?;
        tx.commit().await?;
        Ok(job)
    }

    /// Per-member results in list order. The page token carries the last position seen.
    pub async fn list_bulk_results(
        &self,
        tenant: TenantId,
        id: Uuid,
        page: PageRequest,
    ) -> Result<BulkPage, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        bulk::get(&tx, tenant, id)
            .await?
            .ok_or_else(bulk_not_found)?;
        // Positions travel in the kit's opaque UUID page token as the UUID's integer value.
        let after = page.after.map(|u| u.as_u128() as i64);
        let rows = bulk::list_items(&tx, tenant, id, after, page.fetch_limit()).await?;
        tx.commit().await?;
        let (results, next_page_token) = page.finish(rows, |i| Uuid::from_u128(i.position as u128));
        Ok(BulkPage {
            results,
            next_page_token,
        })
    }

    /// One worker round over RUNNING jobs of every tenant: at most a page of items per job.
    /// Returns how many items it settled (0 = nothing to do).
    pub async fn run_bulk_round(&self) -> Result<usize, ServiceError> {
        let tx = self.db.begin_system().await?;
        let jobs = bulk::running(&tx, JOBS_PER_ROUND).await?;
        tx.commit().await?;
        let mut settled = 0;
        for (tenant, job) in jobs {
            settled += self.run_bulk_page(tenant, job).await?;
        }
        Ok(settled)
    }

    async fn run_bulk_page(&self, tenant: TenantId, job_id: Uuid) -> Result<usize, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let Some(job) = bulk::get(&tx, tenant, job_id).await? else {
            return Ok(0);
        };
        let items = bulk::pending(&tx, tenant, job_id, PAGE).await?;
        if items.is_empty() {
            if bulk::complete(&tx, tenant, job_id, now()).await? {
                tracing::info!(tenant_id = %tenant, bulk_issue_id = %job_id, "bulk issue completed");
            }
            tx.commit().await?;
            return Ok(0);
        }
        tx.commit().await?;
        let mut settled = 0;
        for item in items {
            if self.settle_item(tenant, &job, item.position).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Issues to one item's member and records the result, in one transaction; `false` when
    /// another worker settled the item first.
    async fn settle_item(
        &self,
        tenant: TenantId,
        job: &BulkIssue,
        position: i64,
    ) -> Result<bool, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let Some(mut item) = bulk::lock_pending(&tx, tenant, job.id, position).await? else {
            return Ok(false);
        };
        let order = IssueOrder {
            template_id: job.template_id,
            member_id: item.member_id,
            method: job.issue_method,
            bulk_issue_id: Some(job.id),
        };
        match self.issue_in_savepoint(&tx, tenant, order).await? {
            Ok(coupon_id) => {
                item.status = BulkItemStatus::Issued;
                item.coupon_id = Some(coupon_id);
            }
            Err(e) => {
                let (reason, message) = reason_of(&e);
                item.status = BulkItemStatus::Failed;
                item.failure_reason = Some(reason);
                item.failure_message = Some(message);
            }
        }
        bulk::settle(&tx, tenant, job.id, &item, now()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Issues inside a savepoint of `tx`: `Ok(Ok(id))` issued, `Ok(Err(e))` refused for a
    /// business reason (the savepoint is rolled back, `tx` stays usable), `Err` an outage.
    pub(crate) async fn issue_in_savepoint(
        &self,
        tx: &Tx,
        tenant: TenantId,
        order: IssueOrder,
    ) -> Result<Result<Uuid, ServiceError>, ServiceError> {
        let sp = tx.savepoint().await?;
        match self.issue_in(&sp, tenant, order, now()).await {
            Ok(view) => {
                sp.commit().await?;
                Ok(Ok(view.coupon.id))
            }
            Err(e) if is_business(&e) => {
                sp.rollback().await?;
                Ok(Err(e))
            }
            Err(e) => Err(e),
        }
    }
}
