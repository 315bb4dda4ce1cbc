//! Queries on `invoices` and `invoice_lines`. One invoice per tenant and month is the unique
//! constraint `invoices_tenant_month_key`; [`insert_if_absent`] lets it decide, so two closes
//! of the same month never make two invoices. Status changes are conditional on the status
//! read, so a concurrent change is detected, not overwritten.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{invoice_lines, invoices},
};
use crate::domain::{
    invoice::{Invoice, InvoiceAmounts, InvoiceLine, InvoiceStatus, LineKind},
    month::YearMonth,
};

fn line_to_domain(m: invoice_lines::Model) -> Result<InvoiceLine, DbErr> {
    Ok(InvoiceLine {
        line_no: m.line_no,
        kind: LineKind::parse(&m.kind).ok_or_else(|| corrupt("invoice_lines", "kind", &m.kind))?,
        code: m.code,
        description: m.description,
        quantity: m.quantity,
        unit_price_krw: m.unit_price_krw,
        days_active: m.days_active,
        days_in_month: m.days_in_month,
        amount_krw: m.amount_krw,
    })
}

fn to_domain(m: invoices::Model, lines: Vec<InvoiceLine>) -> Result<Invoice, DbErr> {
    Ok(Invoice {
        id: m.id,
        tenant: TenantId(m.tenant_id),
        month: YearMonth::parse(&m.year_month)
            .ok_or_else(|| corrupt("invoices", "year_month", &m.year_month))?,
        status: InvoiceStatus::parse(&m.status)
            .ok_or_else(|| corrupt("invoices", "status", &m.status))?,
        period_start: m.period_start,
        period_end: m.period_end,
        amounts: InvoiceAmounts {
            lines,
            subtotal_krw: m.subtotal_krw,
            vat_krw: m.vat_krw,
            total_krw: m.total_krw,
        },
        issue_time: m.issue_time,
        paid_time: m.paid_time,
        void_time: m.void_time,
        created_time: m.created_time,
        updated_time: m.updated_time,
    })
}

/// Attaches each invoice's lines (one query for all of them).
async fn with_lines(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    rows: Vec<invoices::Model>,
) -> Result<Vec<Invoice>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut by_invoice: HashMap<Uuid, Vec<InvoiceLine>> = HashMap::new();
    for l in invoice_lines::Entity::find()
        .filter(invoice_lines::Column::TenantId.eq(tenant.as_uuid()))
        .filter(invoice_lines::Column::InvoiceId.is_in(ids))
        .order_by_asc(invoice_lines::Column::InvoiceId)
        .order_by_asc(invoice_lines::Column::LineNo)
        .all(tx)
        .await?
    {
        let id = l.invoice_id;
        by_invoice.entry(id).or_default().push(line_to_domain(l)?);
    }
    rows.into_iter()
        .map(|r| {
            let lines = by_invoice.remove(&r.id).unwrap_or_default();
            to_domain(r, lines)
        })
        .collect()
}

fn by_tenant(tenant: TenantId) -> sea_orm::Select<invoices::Entity> {
    invoices::Entity::find().filter(invoices::Column::TenantId.eq(tenant.as_uuid()))
}

/// Inserts `inv` with its lines; `false` (and nothing written) when the tenant's month already
/// has an invoice.
pub async fn insert_if_absent(tx: &DatabaseTransaction, inv: &Invoice) -> Result<bool, DbErr> {
    let row = invoices::Model {
        tenant_id: inv.tenant.as_uuid(),
        id: inv.id,
        year_month: inv.month.to_string(),
        status: inv.status.as_str().to_string(),
        period_start: inv.period_start,
        period_end: inv.period_end,
        subtotal_krw: inv.amounts.subtotal_krw,
        vat_krw: inv.amounts.vat_krw,
        total_krw: inv.amounts.total_krw,
        issue_time: inv.issue_time,
        paid_time: inv.paid_time,
        void_time: inv.void_time,
        created_time: inv.created_time,
        updated_time: inv.updated_time,
    };
    let n = invoices::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([invoices::Column::TenantId, invoices::Column::YearMonth])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    for l in &inv.amounts.lines {
        let line = invoice_lines::Model {
            tenant_id: inv.tenant.as_uuid(),
            invoice_id: inv.id,
            line_no: l.line_no,
            kind: l.kind.as_str().to_string(),
            code: l.code.clone(),
            description: l.description.clone(),
            quantity: l.quantity,
            unit_price_krw: l.unit_price_krw,
            days_active: l.days_active,
            days_in_month: l.days_in_month,
            amount_krw: l.amount_krw,
            created_time: inv.created_time,
            updated_time: inv.created_time,
        };
        invoice_lines::Entity::insert(line.into_active_model())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(true)
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Invoice>, DbErr> {
    let rows = by_tenant(tenant)
        .filter(invoices::Column::Id.eq(id))
        .all(tx)
        .await?;
    Ok(with_lines(tx, tenant, rows).await?.pop())
}

pub async fn get_by_month(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    month: YearMonth,
) -> Result<Option<Invoice>, DbErr> {
    let rows = by_tenant(tenant)
        .filter(invoices::Column::YearMonth.eq(month.to_string()))
        .all(tx)
        .await?;
    Ok(with_lines(tx, tenant, rows).await?.pop())
}

/// The months that have an invoice.
pub async fn months(tx: &DatabaseTransaction, tenant: TenantId) -> Result<Vec<YearMonth>, DbErr> {
    let ms: Vec<String> = by_tenant(tenant)
        .select_only()
        .column(invoices::Column::YearMonth)
        .into_tuple()
        .all(tx)
        .await?;
    ms.into_iter()
        .map(|m| YearMonth::parse(&m).ok_or_else(|| corrupt("invoices", "year_month", &m)))
        .collect()
}

/// One page in id order, optionally of one status.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    status: Option<InvoiceStatus>,
    page: &PageRequest,
) -> Result<Vec<Invoice>, DbErr> {
    let mut q = by_tenant(tenant);
    if let Some(s) = status {
        q = q.filter(invoices::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = page.after {
        q = q.filter(invoices::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(invoices::Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?;
    with_lines(tx, tenant, rows).await
}

/// Invoices of the months in `[from, to]` (either end open), by month; at most `limit`.
pub async fn in_months(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    from: Option<YearMonth>,
    to: Option<YearMonth>,
    limit: u64,
) -> Result<Vec<Invoice>, DbErr> {
    let mut q = by_tenant(tenant);
    // `YYYY-MM` strings order like the months they name.
    if let Some(f) = from {
        q = q.filter(invoices::Column::YearMonth.gte(f.to_string()));
    }
    if let Some(t) = to {
        q = q.filter(invoices::Column::YearMonth.lte(t.to_string()));
    }
    let rows = q
        .order_by_asc(invoices::Column::YearMonth)
        .limit(limit)
        .all(tx)
        .await?;
    with_lines(tx, tenant, rows).await
}

/// Moves the invoice from `from` to `to`, stamping the matching time; `false` when its status
/// was no longer `from`.
pub async fn set_status(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    from: InvoiceStatus,
    to: InvoiceStatus,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use invoices::Column as C;
    let mut q = invoices::Entity::update_many()
        .col_expr(C::Status, to.as_str().into())
        .col_expr(C::UpdatedTime, at.into());
    q = match to {
        InvoiceStatus::Issued => q.col_expr(C::IssueTime, Some(at).into()),
        InvoiceStatus::Paid => q.col_expr(C::PaidTime, Some(at).into()),
        InvoiceStatus::Void => q.col_expr(C::VoidTime, Some(at).into()),
        InvoiceStatus::Draft => q,
    };
    let r = q
        .filter(C::TenantId.eq(tenant.as_uuid()))
        .filter(C::Id.eq(id))
        .filter(C::Status.eq(from.as_str()))
        .exec(tx)
        .await?;
    Ok(r.rows_affected == 1)
}
