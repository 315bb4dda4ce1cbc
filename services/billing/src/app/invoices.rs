//! Invoice use cases: close a month (the unique constraint on tenant and month makes a second
//! close return the first invoice), the month-close job over every tenant whose month ended in
//! its own zone, reads, status changes and the CSV export.
use chrono::{DateTime, TimeDelta, Utc};
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};
use uuid::Uuid;

use super::BillingApp;
use crate::{
    domain::{
        csv::CsvWriter,
        invoice::{self, Invoice, InvoiceAction, InvoiceStatus},
        month::{self, YearMonth},
    },
    store::{invoices, periods, tenants, usage},
};

/// Usage events still in flight when a month ends get this long to land before the job
/// closes the month.
pub const CLOSE_GRACE: TimeDelta = TimeDelta::hours(1);
/// How many past months the job looks back for months left open.
pub const CATCH_UP_MONTHS: usize = 12;
/// The most invoices one CSV export holds (80 years of months).
pub const MAX_EXPORT_INVOICES: u64 = 1000;

/// What one run of the month-close job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseSummary {
    pub tenants: usize,
    pub created: usize,
    pub failed: usize,
}

fn invoice_not_found() -> ServiceError {
    ServiceError::not_found("청구서를 찾을 수 없습니다 (invoice not found)")
}

fn nothing_to_bill(month: YearMonth) -> ServiceError {
    ServiceError::precondition(
        "NOTHING_TO_BILL",
        format!(
            "{month}에 청구할 요금제나 사용량이 없습니다 (no plan or usage to bill in {month})"
        ),
    )
}

impl BillingApp {
    /// Closes `month` for the tenant: computes and stores its invoice as a draft. Returns the
    /// invoice and whether this call created it (`false`: it existed, nothing changed).
    pub async fn close_month(
        &self,
        tenant: TenantId,
        month: YearMonth,
    ) -> Result<(Invoice, bool), ServiceError> {
        let (tx, t) = self.begin_known(tenant).await?;
        let today = self.today(t.time_zone);
        if today < month.end_exclusive() {
            return Err(ServiceError::precondition(
                "MONTH_NOT_ENDED",
                format!(
                    "{month}은(는) 아직 끝나지 않았습니다 (the month has not ended in {}; today is {today})",
                    t.time_zone.name()
                ),
            ));
        }
        if let Some(existing) = invoices::get_by_month(&tx, tenant, month).await? {
            tx.commit().await?;
            return Ok((existing, false));
        }
        let plan_periods =
            periods::overlapping(&tx, tenant, month.first_day(), month.end_exclusive()).await?;
        let used = usage::totals(&tx, tenant, month.first_day(), month.last_day()).await?;
        let amounts = invoice::compute(month, &plan_periods, &used, &self.catalogue);
        if amounts.lines.is_empty() {
            return Err(nothing_to_bill(month));
        }
        let now = self.now();
        let inv = Invoice {
            id: Uuid::now_v7(),
            tenant,
            month,
            status: InvoiceStatus::Draft,
            period_start: month.first_day(),
            period_end: month.last_day(),
            amounts,
            issue_time: None,
            paid_time: None,
            void_time: None,
            created_time: now,
            updated_time: now,
        };
        if !invoices::insert_if_absent(&tx, &inv).await? {
            // A concurrent close won the constraint; its invoice is committed and visible to
            // this statement (READ COMMITTED), and it is the one answer.
            let existing = invoices::get_by_month(&tx, tenant, month)
                .await?
                .ok_or_else(|| ServiceError::internal("an invoice vanished after a conflict"))?;
            tx.commit().await?;
            return Ok((existing, false));
        }
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, invoice_id = %inv.id, month = %month, total_krw = inv.amounts.total_krw, "month closed");
        Ok((inv, true))
    }

    /// The month-close job: for every tenant, closes each month that ended (in the tenant's
    /// zone, [`CLOSE_GRACE`] ago) since its first plan, within [`CATCH_UP_MONTHS`], and has no
    /// invoice. A failure for one tenant is logged and retried at the next run.
    pub async fn close_due_months(&self) -> Result<CloseSummary, ServiceError> {
        let tx = self.db.begin_system().await?;
        let all = tenants::all(&tx).await?;
        tx.commit().await?;
        let mut summary = CloseSummary {
            tenants: all.len(),
            ..CloseSummary::default()
        };
        let settled: DateTime<Utc> = self.now() - CLOSE_GRACE;
        for (tenant, zone) in all {
            let last_ended = YearMonth::of(spharos_kit::time::local_date(settled, zone)).prev();
            let tx = self.db.begin(tenant).await?;
            let first = periods::first_start(&tx, tenant).await?;
            let invoiced = invoices::months(&tx, tenant).await?;
            tx.commit().await?;
            let Some(first) = first else { continue };
            for m in month::due_months(YearMonth::of(first), last_ended, &invoiced, CATCH_UP_MONTHS)
            {
                match self.close_month(tenant, m).await {
                    Ok((_, true)) => summary.created += 1,
                    Ok((_, false)) => {}
                    Err(ServiceError::FailedPrecondition {
                        reason: "NOTHING_TO_BILL",
                        ..
                    }) => {}
                    Err(e) => {
                        summary.failed += 1;
                        tracing::warn!(tenant_id = %tenant, month = %m, error = %e, "closing a month failed; retrying next run");
                    }
                }
            }
        }
        Ok(summary)
    }

    pub async fn get_invoice(&self, tenant: TenantId, id: Uuid) -> Result<Invoice, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let inv = invoices::get(&tx, tenant, id).await?;
        tx.commit().await?;
        inv.ok_or_else(invoice_not_found)
    }

    /// One page of invoices (oldest first), optionally of one status.
    pub async fn list_invoices(
        &self,
        tenant: TenantId,
        status: Option<InvoiceStatus>,
        page: PageRequest,
    ) -> Result<(Vec<Invoice>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = invoices::list(&tx, tenant, status, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |i| i.id))
    }

    /// Issues, marks paid or voids an invoice (draft → issued → paid; draft or issued → void).
    pub async fn change_invoice(
        &self,
        tenant: TenantId,
        id: Uuid,
        action: InvoiceAction,
    ) -> Result<Invoice, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let inv = invoices::get(&tx, tenant, id)
            .await?
            .ok_or_else(invoice_not_found)?;
        let to = invoice::transition(inv.status, action)?;
        if !invoices::set_status(&tx, tenant, id, inv.status, to, self.now()).await? {
            return Err(ServiceError::precondition(
                "INVOICE_STATUS_CONFLICT",
                "청구서 상태가 방금 바뀌었습니다. 다시 조회하세요 (the invoice changed meanwhile; read it again)",
            ));
        }
        let updated = invoices::get(&tx, tenant, id)
            .await?
            .ok_or_else(invoice_not_found)?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, invoice_id = %id, status = to.as_str(), "invoice status changed");
        Ok(updated)
    }

    /// Two CSV documents (RFC 4180, UTF-8 with BOM): invoices, and their lines, of the months
    /// in `[from, to]`.
    pub async fn export_invoices_csv(
        &self,
        tenant: TenantId,
        from: Option<YearMonth>,
        to: Option<YearMonth>,
    ) -> Result<(Vec<u8>, Vec<u8>), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = invoices::in_months(&tx, tenant, from, to, MAX_EXPORT_INVOICES).await?;
        tx.commit().await?;
        Ok(invoices_csv(&rows))
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The export's two documents.
fn invoices_csv(rows: &[Invoice]) -> (Vec<u8>, Vec<u8>) {
    let mut head = CsvWriter::new();
    head.row(&[
        "invoice_id",
        "year_month",
        "status",
        "period_start_date",
        "period_end_date",
        "subtotal_krw",
        "vat_krw",
        "total_krw",
        "issue_time",
        "paid_time",
        "void_time",
    ]);
    let mut lines = CsvWriter::new();
    lines.row(&[
        "invoice_id",
        "year_month",
        "line_no",
        "kind",
        "code",
        "description",
        "quantity",
        "unit_price_krw",
        "days_active",
        "days_in_month",
        "amount_krw",
    ]);
    for inv in rows {
        let id = inv.id.to_string();
        let month = inv.month.to_string();
        head.row(&[
            id.clone(),
            month.clone(),
            inv.status.as_str().to_string(),
            inv.period_start.to_string(),
            inv.period_end.to_string(),
            inv.amounts.subtotal_krw.to_string(),
            inv.amounts.vat_krw.to_string(),
            inv.amounts.total_krw.to_string(),
            time(inv.issue_time),
            time(inv.paid_time),
            time(inv.void_time),
        ]);
        for l in &inv.amounts.lines {
            lines.row(&[
                id.clone(),
                month.clone(),
                l.line_no.to_string(),
                l.kind.as_str().to_string(),
                l.code.clone(),
                l.description.clone(),
                l.quantity.to_string(),
                l.unit_price_krw.to_string(),
                l.days_active.map(|d| d.to_string()).unwrap_or_default(),
                l.days_in_month.map(|d| d.to_string()).unwrap_or_default(),
                l.amount_krw.to_string(),
            ]);
        }
    }
    (head.finish(), lines.finish())
}
