//! Reads and policy: balance, history, the points policy (get / versioned update) and the
//! earn preview that computes without writing.
use spharos_kit::{
    ServiceError, TenantId,
    paging::PageRequest,
    time::{end_of_day, local_date},
};
use uuid::Uuid;

use super::{BalanceView, PointsApp, QuoteView, Session, TransactionView, now, view};
use crate::{
    domain::{
        expiry::start_of_day,
        forms::{HistoryForm, MemberKey, PreviewForm},
        policy::{Policy, Purchase, VersionedPolicy},
    },
    members::Caller,
    store::{
        accounts,
        policies::{self, PolicyRow},
        tenants, transactions,
    },
};

impl PointsApp {
    /// The member's id: the given one when the points service knows it (an account exists in
    /// this tenant), else as the member service says (NOT_FOUND for an unknown member or
    /// another tenant's).
    async fn member_of(
        &self,
        tenant: TenantId,
        key: &MemberKey,
        caller: &Caller,
    ) -> Result<Uuid, ServiceError> {
        if let MemberKey::Id(id) = key {
            let tx = self.db.begin(tenant).await?;
            let known = accounts::get(&tx, tenant, *id).await?.is_some();
            tx.commit().await?;
            if known {
                return Ok(*id);
            }
        }
        Ok(self.members.resolve(tenant, key, caller).await?.id)
    }

    /// The balance: available, pending, debt, expiring within 30 days, lifetime sums. Due
    /// lots are settled first, so the answer never includes points that should be gone.
    pub async fn balance(
        &self,
        tenant: TenantId,
        caller: &Caller,
        key: &MemberKey,
    ) -> Result<BalanceView, ServiceError> {
        let at = now();
        // The hot path (a known member id) is one transaction and no call to the member service.
        if let MemberKey::Id(id) = key
            && let Some(b) = self.balance_of_account(tenant, *id, at).await?
        {
            return Ok(b);
        }
        let member = self.members.resolve(tenant, key, caller).await?.id;
        Ok(match self.balance_of_account(tenant, member, at).await? {
            Some(b) => b,
            None => self.empty_balance(member, at),
        })
    }

    /// The balance of an existing account (settled at `at`), `None` when there is none.
    async fn balance_of_account(
        &self,
        tenant: TenantId,
        member: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<BalanceView>, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let Some(mut s) = Session::open_existing(&tx, tenant, self.zone, member, at).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        s.settle().await?;
        let account = s.finish().await?;
        let result = self.balance_view(&tx, tenant, &account, at).await?;
        tx.commit().await?;
        Ok(Some(result))
    }

    /// One page of the member's ledger, newest first, filtered by type and by creation date
    /// (tenant zone, inclusive).
    pub async fn history(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: HistoryForm,
        page: PageRequest,
    ) -> Result<(Vec<TransactionView>, String), ServiceError> {
        let (key, filter) = form.validate()?;
        let member = self.member_of(tenant, &key, caller).await?;
        let from = filter.start_date.map(|d| start_of_day(d, self.zone));
        let until = filter
            .end_date
            .and_then(|d| d.succ_opt())
            .map(|d| start_of_day(d, self.zone));
        let tx = self.db.begin(tenant).await?;
        let rows =
            transactions::list(&tx, tenant, member, &filter.types, from, until, &page).await?;
        tx.commit().await?;
        let (rows, next) = page.finish(rows, |r| r.id);
        let views = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok((views, next))
    }

    /// The tenant's current policy (the built-in default, version 0, until one is set).
    pub async fn get_policy(&self, tenant: TenantId) -> Result<VersionedPolicy, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let p = self.policy(&tx, tenant).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// Stores `edit(current)` as the next version. With `expected_version`, fails with
    /// `POLICY_VERSION_CONFLICT` unless the current version is that one; two concurrent
    /// updates never both win (the version is part of the primary key).
    pub async fn update_policy<F>(
        &self,
        tenant: TenantId,
        actor: &str,
        expected_version: Option<i32>,
        edit: F,
    ) -> Result<VersionedPolicy, ServiceError>
    where
        F: FnOnce(&Policy) -> Result<Policy, ServiceError>,
    {
        let tx = self.db.begin(tenant).await?;
        let current = self.policy(&tx, tenant).await?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(version_conflict(current.version));
        }
        let policy = edit(&current.policy)?;
        let t = now();
        let row = PolicyRow {
            tenant_id: tenant.as_uuid(),
            version: current.version + 1,
            body: serde_json::to_string(&policy).map_err(ServiceError::internal)?,
            updated_by: actor.to_string(),
            created_time: t,
            updated_time: t,
        };
        if !policies::insert(&tx, &row).await? {
            return Err(version_conflict(current.version + 1));
        }
        tenants::register(&tx, tenant, t).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, version = row.version, actor, "points policy updated");
        Ok(VersionedPolicy {
            version: row.version,
            policy,
            updated_time: Some(t),
            updated_by: row.updated_by,
        })
    }

    /// What an earn of this purchase would credit now, without writing anything.
    pub async fn preview_earn(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: PreviewForm,
    ) -> Result<QuoteView, ServiceError> {
        let at = now();
        let key = form.validate(at)?;
        let member = self.members.resolve(tenant, &key, caller).await?;
        let grade_rate = match member.grade_id {
            Some(g) => self.members.grade_rate(tenant, g, caller).await?,
            None => None,
        };
        let tx = self.db.begin(tenant).await?;
        let policy = self.policy(&tx, tenant).await?;
        tx.commit().await?;
        let occurred = form.occurred_time.map(|t| t.min(at)).unwrap_or(at);
        let date = local_date(occurred, self.zone);
        let rate = policy.policy.rate_for(member.grade_id, grade_rate);
        let quote = policy.policy.quote(
            rate,
            &Purchase {
                store_code: &form.store_code,
                amount_krw: form.amount_krw,
                items: &form.items,
                date,
            },
        );
        Ok(QuoteView {
            quote,
            policy_version: policy.version,
            expire_time: end_of_day(policy.policy.expire_date(date), self.zone),
            available_time: policy
                .policy
                .available_date(date)
                .map(|d| start_of_day(d, self.zone))
                .unwrap_or(at),
        })
    }
}

fn version_conflict(current: i32) -> ServiceError {
    let mut e = ServiceError::precondition(
        "POLICY_VERSION_CONFLICT",
        format!(
            "다른 사용자가 정책을 먼저 변경했습니다 (the policy changed meanwhile; current version is {current}): reload and retry"
        ),
    );
    if let ServiceError::FailedPrecondition { metadata, .. } = &mut e {
        metadata.insert("current_version".into(), current.to_string());
    }
    e
}
