//! The scheduled jobs: expiry of issued coupons and vouchers (with `coupon.expired` /
//! `voucher.expired`), the notice a few days before a coupon expires, and birthday coupons
//! (once per member and year, on the birthday in the tenant zone). Each takes its clock as an
//! argument, so tests and operators can run it for any instant.
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{CouponApp, emit, issue::IssueOrder, reason_of};
use crate::{
    domain::{
        member::birthdays_on,
        template::IssueMethod,
        voucher::{VoucherTransaction, VoucherTransactionKind},
    },
    events,
    store::{birthdays, coupons, members, templates, tenants, vouchers},
};

/// How long before expiry a holder is told.
pub const EXPIRY_NOTICE_DAYS: i64 = 3;
/// Rows per expiry transaction.
const BATCH: u64 = 500;
/// Members per birthday page.
const BIRTHDAY_PAGE: u64 = 200;

/// What one birthday run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BirthdayRun {
    pub issued: u64,
    pub failed: u64,
}

/// What one schedule pass over every tenant did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleRun {
    pub tenants: u64,
    pub expired: u64,
    pub noticed: u64,
    pub birthday: BirthdayRun,
}

impl CouponApp {
    /// Marks every ISSUED coupon and ACTIVE voucher of the tenant whose validity ended before
    /// `now` as EXPIRED, with its event. Returns how many coupons and vouchers expired.
    pub async fn expire_due(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<u64, ServiceError> {
        let mut total = 0;
        loop {
            let tx = self.db.begin(tenant).await?;
            let due = coupons::due_for_expiry(&tx, tenant, now, BATCH).await?;
            if due.is_empty() {
                tx.commit().await?;
                break;
            }
            let ids: Vec<Uuid> = due.iter().map(|c| c.id).collect();
            coupons::mark_expired(&tx, tenant, &ids, now).await?;
            for c in &due {
                emit(&tx, events::coupon_expired(tenant, c)).await?;
            }
            tx.commit().await?;
            total += due.len() as u64;
        }
        loop {
            let tx = self.db.begin(tenant).await?;
            let due = vouchers::due_for_expiry(&tx, tenant, now, BATCH).await?;
            if due.is_empty() {
                tx.commit().await?;
                break;
            }
            for v in &due {
                if vouchers::expire(&tx, tenant, v.id, now).await? {
                    let entry = VoucherTransaction {
                        id: Uuid::now_v7(),
                        voucher_id: v.id,
                        kind: VoucherTransactionKind::Expire,
                        amount_krw: v.balance_krw,
                        balance_after_krw: 0,
                        pos_transaction_id: None,
                        store_code: None,
                        refund_of: None,
                        occurred_time: now,
                    };
                    vouchers::append(&tx, tenant, &entry).await?;
                    emit(&tx, events::voucher_expired(tenant, v)).await?;
                }
            }
            tx.commit().await?;
            total += due.len() as u64;
        }
        Ok(total)
    }

    /// Emits `coupon.expiring` once for every ISSUED coupon expiring within
    /// [`EXPIRY_NOTICE_DAYS`] of `now`. Returns how many notices went out.
    pub async fn send_expiry_notices(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<u64, ServiceError> {
        let until = now + Duration::days(EXPIRY_NOTICE_DAYS);
        let mut total = 0;
        loop {
            let tx = self.db.begin(tenant).await?;
            let due = coupons::due_for_notice(&tx, tenant, now, until, BATCH).await?;
            if due.is_empty() {
                tx.commit().await?;
                break;
            }
            let ids: Vec<Uuid> = due.iter().map(|c| c.id).collect();
            coupons::mark_noticed(&tx, tenant, &ids, now).await?;
            for c in &due {
                emit(&tx, events::coupon_expiring(tenant, c)).await?;
            }
            tx.commit().await?;
            total += due.len() as u64;
        }
        Ok(total)
    }

    /// Issues every ACTIVE birthday template to every ACTIVE member whose birthday is `today`
    /// (a date in the tenant zone; 29 February birthdays on the 28th in common years), at
    /// most once per member, template and year: the `birthday_issues` key decides, so a rerun
    /// or a concurrent run issues nothing twice. Failures (sold out, limit) are recorded and
    /// not retried that year.
    pub async fn issue_birthday_coupons(
        &self,
        tenant: TenantId,
        today: NaiveDate,
    ) -> Result<BirthdayRun, ServiceError> {
        let mut run = BirthdayRun::default();
        let tx = self.db.begin(tenant).await?;
        let templates = templates::active_with_method(&tx, tenant, IssueMethod::Birthday).await?;
        tx.commit().await?;
        if templates.is_empty() {
            return Ok(run);
        }
        let month_days = birthdays_on(today);
        let year = today.year();
        let mut after = None;
        loop {
            let tx = self.db.begin(tenant).await?;
            let page =
                members::with_birthday(&tx, tenant, &month_days, after, BIRTHDAY_PAGE).await?;
            tx.commit().await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            after = Some(last);
            for member_id in page {
                for t in &templates {
                    let tx = self.db.begin(tenant).await?;
                    let at = super::now();
                    if !birthdays::claim(&tx, tenant, t.id, member_id, year, at).await? {
                        tx.commit().await?;
                        continue;
                    }
                    let order = IssueOrder {
                        template_id: t.id,
                        member_id,
                        method: IssueMethod::Birthday,
                        bulk_issue_id: None,
                    };
                    let key = (t.id, member_id, year);
                    match self.issue_in_savepoint(&tx, tenant, order).await? {
                        Ok(coupon_id) => {
                            birthdays::settle(&tx, tenant, key, Some(coupon_id), None).await?;
                            run.issued += 1;
                        }
                        Err(e) => {
                            let (reason, _) = reason_of(&e);
                            birthdays::settle(&tx, tenant, key, None, Some(&reason)).await?;
                            run.failed += 1;
                        }
                    }
                    tx.commit().await?;
                }
            }
        }
        Ok(run)
    }

    /// One pass of every schedule over every registered tenant at `now`.
    pub async fn run_schedule(&self, now: DateTime<Utc>) -> Result<ScheduleRun, ServiceError> {
        let tx = self.db.begin_system().await?;
        let all = tenants::all(&tx).await?;
        tx.commit().await?;
        let today = spharos_kit::time::local_date(now, self.zone);
        let mut run = ScheduleRun::default();
        for tenant in all {
            run.tenants += 1;
            run.expired += self.expire_due(tenant, now).await?;
            run.noticed += self.send_expiry_notices(tenant, now).await?;
            let b = self.issue_birthday_coupons(tenant, today).await?;
            run.birthday.issued += b.issued;
            run.birthday.failed += b.failed;
        }
        Ok(run)
    }
}
