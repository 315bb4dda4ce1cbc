//! Grade use cases: set and list the grade table, record purchases, and re-evaluate members
//! (on a purchase event, on request, after a table change and on the schedule).
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{MemberApp, emit, member_not_found, now};
use crate::{
    domain::grade::{self, Grade, GradeForm, Purchase},
    events,
    store::{grades, members, purchases, tenants},
};

/// How many members an evaluation looked at and how many changed grade.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub evaluated: i64,
    pub changed: i64,
}

impl std::ops::AddAssign for Evaluation {
    fn add_assign(&mut self, o: Self) {
        self.evaluated += o.evaluated;
        self.changed += o.changed;
    }
}

impl MemberApp {
    /// Replaces the tenant's grade table (a grade keeps its id when the request names an
    /// existing one), then re-evaluates every member against it in the same transaction, so
    /// no member is left holding a grade that no longer exists.
    pub async fn set_grades(
        &self,
        tenant: TenantId,
        forms: Vec<GradeForm>,
    ) -> Result<Vec<Grade>, ServiceError> {
        let drafts = grade::validate_table(&forms)?;
        let tx = self.db.begin(tenant).await?;
        let existing = grades::list(&tx, tenant).await?;
        let mut table: Vec<Grade> = drafts
            .into_iter()
            .map(|d| Grade {
                id: d
                    .id
                    .filter(|id| existing.iter().any(|g| g.id == *id))
                    .unwrap_or_else(Uuid::now_v7),
                name: d.name,
                min_purchase_krw: d.min_purchase_krw,
                points_rate_bp: d.points_rate_bp,
            })
            .collect();
        grade::sort(&mut table);
        let t = now();
        grades::replace(&tx, tenant, &table, t).await?;
        tenants::register(&tx, tenant, t).await?;
        let e = self.evaluate_in(&tx, tenant, None, t).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, grades = table.len(), changed = e.changed, "grade table replaced");
        Ok(table)
    }

    pub async fn list_grades(&self, tenant: TenantId) -> Result<Vec<Grade>, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let table = grades::list(&tx, tenant).await?;
        tx.commit().await?;
        Ok(table)
    }

    /// Re-evaluates one member (who must exist) or, with `None`, every ACTIVE member.
    pub async fn evaluate_grades(
        &self,
        tenant: TenantId,
        member: Option<Uuid>,
    ) -> Result<Evaluation, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if let Some(id) = member
            && !members::exists(&tx, tenant, id).await?
        {
            return Err(member_not_found());
        }
        let e = self
            .evaluate_in(
                &tx,
                tenant,
                member.as_ref().map(std::slice::from_ref),
                now(),
            )
            .await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Records purchases from `points.purchase_recorded` events and re-evaluates their
    /// members, in the consumer's transaction: one statement per table for the lot, and each
    /// member evaluated once against the sum of all of them. A purchase of an unknown member
    /// (or another tenant's) is skipped, not retried: no redelivery would make it known.
    pub(crate) async fn record_purchases(
        &self,
        tx: &Tx,
        tenant: TenantId,
        purchases: Vec<Purchase>,
    ) -> Result<(), ServiceError> {
        let mut ids: Vec<Uuid> = purchases.iter().map(|p| p.member_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let known = members::existing(tx, tenant, &ids).await?;
        let t = now();
        let rows: Vec<purchases::PurchaseRow> = purchases
            .into_iter()
            .filter(|p| {
                let known = known.contains(&p.member_id);
                if !known {
                    tracing::warn!(tenant_id = %tenant, member_id = %p.member_id, "purchase of an unknown member skipped");
                }
                known
            })
            .map(|p| purchases::PurchaseRow {
                tenant_id: tenant.as_uuid(),
                id: Uuid::now_v7(),
                member_id: p.member_id,
                store_code: p.store_code,
                pos_transaction_id: p.pos_transaction_id,
                amount_krw: p.amount_krw,
                occurred_time: p.occurred_time,
                created_time: t,
                updated_time: t,
            })
            .collect();
        let new = purchases::insert_many(tx, &rows).await?;
        if new < rows.len() as u64 {
            tracing::debug!(tenant_id = %tenant, purchases = rows.len(), new, "purchases already recorded skipped");
        }
        ids.retain(|id| known.contains(id));
        if !ids.is_empty() {
            self.evaluate_in(tx, tenant, Some(&ids), t).await?;
        }
        Ok(())
    }

    /// The schedule's pass: every registered tenant, each in its own tenant transaction. One
    /// tenant's failure is logged and does not stop the others.
    pub(crate) async fn evaluate_all_tenants(&self) -> Result<Evaluation, ServiceError> {
        let tx = self.db.begin_system().await?;
        let all = tenants::all(&tx).await?;
        // Committed before the per-tenant work: one transaction at a time (SQLite has one
        // connection).
        tx.commit().await?;
        let mut total = Evaluation::default();
        for tenant in all {
            match self.evaluate_grades(tenant, None).await {
                Ok(e) => total += e,
                Err(e) => {
                    tracing::warn!(tenant_id = %tenant, error = %e, "grade evaluation failed")
                }
            }
        }
        Ok(total)
    }

    /// Moves members (`only` these, or all) whose trailing-12-month purchases now select
    /// another grade, emitting `member.grade_changed` for each. Members of a tenant without a
    /// grade table stay as they are.
    async fn evaluate_in(
        &self,
        tx: &Tx,
        tenant: TenantId,
        only: Option<&[Uuid]>,
        at: DateTime<Utc>,
    ) -> Result<Evaluation, ServiceError> {
        let table = grades::list(tx, tenant).await?;
        let mut e = Evaluation::default();
        if table.is_empty() {
            return Ok(e);
        }
        let current = members::active_grades(tx, tenant, only).await?;
        let sums = purchases::sums_since(tx, tenant, grade::window_start(at), only).await?;
        for (member_id, held) in current {
            e.evaluated += 1;
            let trailing = sums.get(&member_id).copied().unwrap_or(0);
            let Some(target) = grade::select(&table, trailing).or_else(|| grade::base(&table))
            else {
                continue;
            };
            if held == Some(target.id) {
                continue;
            }
            members::set_grade(tx, tenant, member_id, Some(target.id), at).await?;
            emit(
                tx,
                events::grade_changed(tenant, member_id, held, target, trailing),
            )
            .await?;
            e.changed += 1;
        }
        Ok(e)
    }
}
