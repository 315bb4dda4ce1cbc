//! The gRPC boundary of `spharos.billing.v1.BillingService`: the only file that knows the API's
//! prost types. Platform operations check `platform:admin` and act on the request's
//! `tenant_id`; tenant reads use the token's tenant (a platform admin may name another).
//! Requests become domain inputs (every bad field collected), answers are converted back.
use spharos_kit::{
    ServiceError, TenantId,
    auth::{Principal, principal},
    error::FieldViolation,
    grpc::{parse_optional_date, parse_uuid, timestamp},
    paging::PageRequest,
};
use spharos_proto::billing::{self as pb, billing_service_server::BillingService};
use tonic::{Request, Response, Status};

use crate::{
    app::{BillingApp, SubscriptionView, TenantStatus},
    domain::{
        catalogue::{Channel, Module, ModuleFee, Plan, PlanChoiceForm, VAT_PERCENT},
        invoice::{Invoice, InvoiceAction, InvoiceLine, InvoiceStatus, LineKind},
        month::YearMonth,
        subscription::{ChangeTiming, SubscriptionStatus},
        tenant::{NewTenantForm, Tenant},
        token::{ApiToken, PERM_PLATFORM_ADMIN, TokenForm},
        usage,
    },
    events::pb_channel,
};

/// The service implementation tonic serves (wrapped in the kit's `AuthInterceptor`).
#[derive(Clone, Debug)]
pub struct BillingGrpc {
    pub app: BillingApp,
}

type Rpc<T> = Result<Response<T>, Status>;

/// Collects field violations across several checks, so one answer names every bad field.
#[derive(Default)]
struct Fields(Vec<FieldViolation>);

impl Fields {
    fn take<T>(&mut self, r: Result<T, ServiceError>) -> Result<Option<T>, ServiceError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ServiceError::InvalidArgument(v)) => {
                self.0.extend(v);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::InvalidArgument(self.0))
        }
    }
}

/// A value that `Fields::finish` proved present.
fn proven<T>(v: Option<T>) -> Result<T, ServiceError> {
    v.ok_or_else(|| ServiceError::internal("a checked field went missing"))
}

fn permission_denied() -> Status {
    ServiceError::PermissionDenied(format!(
        "플랫폼 관리자 권한이 필요합니다 (this operation needs the {PERM_PLATFORM_ADMIN} permission)"
    ))
    .into()
}

/// The caller, who must be a platform admin.
fn admin<T>(request: &Request<T>) -> Result<Principal, Status> {
    let p = principal(request)?;
    if p.has(PERM_PLATFORM_ADMIN) {
        Ok(p)
    } else {
        Err(permission_denied())
    }
}

/// The tenant a platform operation acts on.
fn target(tenant_id: &str) -> Result<TenantId, ServiceError> {
    parse_uuid(tenant_id, "tenant_id").map(TenantId)
}

/// The tenant of a tenant read: the token's, or the one a platform admin names.
fn reader(p: &Principal, tenant_id: &str) -> Result<TenantId, Status> {
    if tenant_id.is_empty() {
        return Ok(p.tenant);
    }
    if !p.has(PERM_PLATFORM_ADMIN) {
        return Err(permission_denied());
    }
    Ok(target(tenant_id)?)
}

fn optional_month(value: &str, field: &str) -> Result<Option<YearMonth>, ServiceError> {
    if value.is_empty() {
        return Ok(None);
    }
    YearMonth::parse(value).map(Some).ok_or_else(|| {
        ServiceError::invalid(
            field,
            "YYYY-MM 형식의 월이 아닙니다 (must be a month YYYY-MM)",
        )
    })
}

// ---- conversions: domain → wire -------------------------------------------------------

fn pb_plan(p: Plan) -> pb::Plan {
    match p {
        Plan::Basic => pb::Plan::Basic,
        Plan::Custom => pb::Plan::Custom,
    }
}

fn pb_module(m: Module) -> pb::Module {
    match m {
        Module::Membership => pb::Module::Membership,
        Module::AppWeb => pb::Module::AppWeb,
        Module::Campaign => pb::Module::Campaign,
        Module::Analytics => pb::Module::Analytics,
        Module::CustomerCentre => pb::Module::CustomerCentre,
        Module::Privacy => pb::Module::Privacy,
    }
}

fn pb_fees(fees: &[ModuleFee]) -> Vec<pb::ModuleFee> {
    fees.iter()
        .map(|f| pb::ModuleFee {
            module: pb_module(f.module).into(),
            monthly_fee_krw: f.monthly_fee_krw,
        })
        .collect()
}

fn pb_subscription_status(s: SubscriptionStatus) -> pb::SubscriptionStatus {
    match s {
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::Suspended => pb::SubscriptionStatus::Suspended,
        SubscriptionStatus::Cancelled => pb::SubscriptionStatus::Cancelled,
    }
}

fn pb_tenant(t: Tenant) -> pb::Tenant {
    pb::Tenant {
        tenant_id: t.id.to_string(),
        name: t.name,
        business_registration_number: t.business_number.formatted(),
        contact_name: t.contact_name,
        contact_email: t.contact_email,
        contact_phone: t.contact_phone,
        time_zone: t.time_zone.name().to_string(),
        create_time: Some(timestamp(t.created_time)),
        update_time: Some(timestamp(t.updated_time)),
    }
}

fn pb_status(s: TenantStatus) -> pb::TenantStatus {
    pb::TenantStatus {
        plan: s.plan.map_or(pb::Plan::Unspecified, pb_plan).into(),
        subscription_status: s
            .subscription_status
            .map_or(pb::SubscriptionStatus::Unspecified, pb_subscription_status)
            .into(),
        member_count: s.member_count,
        store_count: s.store_count,
        member_limit: s.compliance.member_limit,
        store_limit: s.compliance.store_limit,
        plan_compliant: s.compliance.compliant(),
        plan_compliance_reason: s
            .compliance
            .violation
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
        plan_compliance_message: s.compliance.message,
        plan_limit_exceeded_time: s.plan_limit_exceeded_time.map(timestamp),
    }
}

fn pb_subscription(tenant: TenantId, v: SubscriptionView) -> pb::Subscription {
    let s = v.subscription;
    pb::Subscription {
        subscription_id: s.id.to_string(),
        tenant_id: tenant.to_string(),
        plan: pb_plan(v.plan).into(),
        status: pb_subscription_status(s.status).into(),
        module_fees: pb_fees(&v.module_fees),
        start_date: s.start_date.to_string(),
        end_date: s.end_date.map(|d| d.to_string()).unwrap_or_default(),
        scheduled_change: v.scheduled.map(|p| pb::ScheduledPlanChange {
            plan: pb_plan(p.plan).into(),
            module_fees: pb_fees(&p.module_fees),
            effective_date: p.start.to_string(),
        }),
        create_time: Some(timestamp(s.created_time)),
        update_time: Some(timestamp(s.updated_time)),
    }
}

fn pb_token(t: ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        token_id: t.id.to_string(),
        tenant_id: t.tenant.to_string(),
        subject: t.subject,
        permissions: t.permissions,
        issue_time: Some(timestamp(t.issue_time)),
        expire_time: Some(timestamp(t.expire_time)),
        revoke_time: t.revoke_time.map(timestamp),
        replaced_by_token_id: t.replaced_by.map(|i| i.to_string()).unwrap_or_default(),
    }
}

fn pb_invoice_status(s: InvoiceStatus) -> pb::InvoiceStatus {
    match s {
        InvoiceStatus::Draft => pb::InvoiceStatus::Draft,
        InvoiceStatus::Issued => pb::InvoiceStatus::Issued,
        InvoiceStatus::Paid => pb::InvoiceStatus::Paid,
        InvoiceStatus::Void => pb::InvoiceStatus::Void,
    }
}

fn pb_line(l: InvoiceLine) -> pb::InvoiceLine {
    pb::InvoiceLine {
        line_no: l.line_no,
        kind: match l.kind {
            LineKind::BaseFee => pb::InvoiceLineKind::BaseFee,
            LineKind::ModuleFee => pb::InvoiceLineKind::ModuleFee,
            LineKind::Usage => pb::InvoiceLineKind::Usage,
        }
        .into(),
        code: l.code,
        description: l.description,
        quantity: l.quantity,
        unit_price_krw: l.unit_price_krw,
        days_active: l.days_active.unwrap_or(0),
        days_in_month: l.days_in_month.unwrap_or(0),
        amount_krw: l.amount_krw,
    }
}

fn pb_invoice(i: Invoice) -> pb::Invoice {
    pb::Invoice {
        invoice_id: i.id.to_string(),
        tenant_id: i.tenant.to_string(),
        year_month: i.month.to_string(),
        status: pb_invoice_status(i.status).into(),
        period_start_date: i.period_start.to_string(),
        period_end_date: i.period_end.to_string(),
        subtotal_krw: i.amounts.subtotal_krw,
        vat_krw: i.amounts.vat_krw,
        total_krw: i.amounts.total_krw,
        lines: i.amounts.lines.into_iter().map(pb_line).collect(),
        create_time: Some(timestamp(i.created_time)),
        issue_time: i.issue_time.map(timestamp),
        paid_time: i.paid_time.map(timestamp),
        void_time: i.void_time.map(timestamp),
    }
}

// ---- conversions: wire → domain -------------------------------------------------------

fn plan(p: pb::Plan) -> Option<Plan> {
    match p {
        pb::Plan::Unspecified => None,
        pb::Plan::Basic => Some(Plan::Basic),
        pb::Plan::Custom => Some(Plan::Custom),
    }
}

fn module(m: pb::Module) -> Option<Module> {
    match m {
        pb::Module::Unspecified => None,
        pb::Module::Membership => Some(Module::Membership),
        pb::Module::AppWeb => Some(Module::AppWeb),
        pb::Module::Campaign => Some(Module::Campaign),
        pb::Module::Analytics => Some(Module::Analytics),
        pb::Module::CustomerCentre => Some(Module::CustomerCentre),
        pb::Module::Privacy => Some(Module::Privacy),
    }
}

fn plan_form(p: pb::Plan, fees: &[pb::ModuleFee]) -> PlanChoiceForm {
    PlanChoiceForm {
        plan: plan(p),
        module_fees: fees
            .iter()
            .map(|f| (module(f.module()), f.monthly_fee_krw))
            .collect(),
    }
}

fn invoice_status(s: pb::InvoiceStatus) -> Option<InvoiceStatus> {
    match s {
        pb::InvoiceStatus::Unspecified => None,
        pb::InvoiceStatus::Draft => Some(InvoiceStatus::Draft),
        pb::InvoiceStatus::Issued => Some(InvoiceStatus::Issued),
        pb::InvoiceStatus::Paid => Some(InvoiceStatus::Paid),
        pb::InvoiceStatus::Void => Some(InvoiceStatus::Void),
    }
}

impl BillingGrpc {
    /// A platform admin's status change of one invoice.
    async fn invoice_action(
        &self,
        tenant_id: &str,
        invoice_id: &str,
        action: InvoiceAction,
    ) -> Result<pb::Invoice, Status> {
        let mut f = Fields::default();
        let tenant = f.take(target(tenant_id))?;
        let id = f.take(parse_uuid(invoice_id, "invoice_id"))?;
        f.finish()?;
        let inv = self
            .app
            .change_invoice(proven(tenant)?, proven(id)?, action)
            .await?;
        Ok(pb_invoice(inv))
    }
}

#[tonic::async_trait]
impl BillingService for BillingGrpc {
    async fn get_catalogue(
        &self,
        request: Request<pb::GetCatalogueRequest>,
    ) -> Rpc<pb::GetCatalogueResponse> {
        principal(&request)?;
        let c = self.app.catalogue();
        Ok(Response::new(pb::GetCatalogueResponse {
            basic_monthly_fee_krw: c.basic_monthly_fee_krw,
            basic_member_limit: c.basic_member_limit,
            basic_store_limit: c.basic_store_limit,
            custom_modules: Module::ALL.iter().map(|m| pb_module(*m).into()).collect(),
            message_prices: Channel::ALL
                .iter()
                .map(|ch| pb::MessagePrice {
                    channel: pb_channel(*ch).into(),
                    unit_price_krw: c.unit_price(*ch),
                })
                .collect(),
            vat_percent: i32::try_from(VAT_PERCENT).unwrap_or(0),
        }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Rpc<pb::CreateTenantResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = if r.tenant_id.is_empty() {
            Some(None)
        } else {
            f.take(target(&r.tenant_id).map(Some))?
        };
        let form = NewTenantForm {
            id: id.flatten(),
            name: r.name,
            business_registration_number: r.business_registration_number,
            contact_name: r.contact_name,
            contact_email: r.contact_email,
            contact_phone: r.contact_phone,
            time_zone: r.time_zone,
        };
        let new = f.take(form.validate(self.app.default_zone()))?;
        f.finish()?;
        let tenant = self.app.create_tenant(proven(new)?).await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(pb_tenant(tenant)),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Rpc<pb::GetTenantResponse> {
        admin(&request)?;
        let tenant = target(&request.get_ref().tenant_id)?;
        let o = self.app.get_tenant(tenant).await?;
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(pb_tenant(o.tenant)),
            status: Some(pb_status(o.status)),
            subscription: o.subscription.map(|s| pb_subscription(tenant, s)),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Rpc<pb::ListTenantsResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (tenants, next) = self.app.list_tenants(page).await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(pb_tenant).collect(),
            next_page_token: next,
        }))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Rpc<pb::SubscribeResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let choice = f.take(plan_form(r.plan(), &r.module_fees).validate())?;
        f.finish()?;
        let tenant = proven(tenant)?;
        let v = self.app.subscribe(tenant, proven(choice)?).await?;
        Ok(Response::new(pb::SubscribeResponse {
            subscription: Some(pb_subscription(tenant, v)),
        }))
    }

    async fn change_plan(
        &self,
        request: Request<pb::ChangePlanRequest>,
    ) -> Rpc<pb::ChangePlanResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let choice = f.take(plan_form(r.plan(), &r.module_fees).validate())?;
        let timing = f.take(match r.timing() {
            pb::ChangeTiming::Immediate => Ok(ChangeTiming::Immediate),
            pb::ChangeTiming::NextCycle => Ok(ChangeTiming::NextCycle),
            pb::ChangeTiming::Unspecified => Err(ServiceError::invalid(
                "timing",
                "적용 시점을 지정하세요 (timing is required: CHANGE_TIMING_IMMEDIATE or CHANGE_TIMING_NEXT_CYCLE)",
            )),
        })?;
        f.finish()?;
        let tenant = proven(tenant)?;
        let v = self
            .app
            .change_plan(tenant, proven(choice)?, proven(timing)?)
            .await?;
        Ok(Response::new(pb::ChangePlanResponse {
            subscription: Some(pb_subscription(tenant, v)),
        }))
    }

    async fn suspend_subscription(
        &self,
        request: Request<pb::SuspendSubscriptionRequest>,
    ) -> Rpc<pb::SuspendSubscriptionResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let tenant = target(&r.tenant_id)?;
        let v = self.app.suspend(tenant, &r.reason).await?;
        Ok(Response::new(pb::SuspendSubscriptionResponse {
            subscription: Some(pb_subscription(tenant, v)),
        }))
    }

    async fn resume_subscription(
        &self,
        request: Request<pb::ResumeSubscriptionRequest>,
    ) -> Rpc<pb::ResumeSubscriptionResponse> {
        admin(&request)?;
        let tenant = target(&request.get_ref().tenant_id)?;
        let v = self.app.resume(tenant).await?;
        Ok(Response::new(pb::ResumeSubscriptionResponse {
            subscription: Some(pb_subscription(tenant, v)),
        }))
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Rpc<pb::CancelSubscriptionResponse> {
        admin(&request)?;
        let tenant = target(&request.get_ref().tenant_id)?;
        let v = self.app.cancel(tenant).await?;
        Ok(Response::new(pb::CancelSubscriptionResponse {
            subscription: Some(pb_subscription(tenant, v)),
        }))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Rpc<pb::GetSubscriptionResponse> {
        let p = principal(&request)?;
        let tenant = reader(&p, &request.get_ref().tenant_id)?;
        let (v, status) = self.app.get_subscription(tenant).await?;
        Ok(Response::new(pb::GetSubscriptionResponse {
            subscription: v.map(|v| pb_subscription(tenant, v)),
            status: Some(pb_status(status)),
        }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Rpc<pb::IssueTokenResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let form = TokenForm {
            subject: r.subject,
            permissions: r.permissions,
            ttl_seconds: r.ttl_seconds,
        };
        let req = f.take(form.validate(self.app.default_token_ttl()))?;
        f.finish()?;
        let issued = self.app.issue_token(proven(tenant)?, proven(req)?).await?;
        Ok(Response::new(pb::IssueTokenResponse {
            token: Some(pb_token(issued.token)),
            secret: issued.secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Rpc<pb::ListTokensResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        f.finish()?;
        let (tokens, next) = self.app.list_tokens(proven(tenant)?, proven(page)?).await?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.into_iter().map(pb_token).collect(),
            next_page_token: next,
        }))
    }

    async fn rotate_token(
        &self,
        request: Request<pb::RotateTokenRequest>,
    ) -> Rpc<pb::RotateTokenResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let id = f.take(parse_uuid(&r.token_id, "token_id"))?;
        f.finish()?;
        let (issued, rotated) = self.app.rotate_token(proven(tenant)?, proven(id)?).await?;
        Ok(Response::new(pb::RotateTokenResponse {
            token: Some(pb_token(issued.token)),
            secret: issued.secret,
            rotated: Some(pb_token(rotated)),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Rpc<pb::RevokeTokenResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let id = f.take(parse_uuid(&r.token_id, "token_id"))?;
        f.finish()?;
        let token = self.app.revoke_token(proven(tenant)?, proven(id)?).await?;
        Ok(Response::new(pb::RevokeTokenResponse {
            token: Some(pb_token(token)),
        }))
    }

    async fn get_usage(&self, request: Request<pb::GetUsageRequest>) -> Rpc<pb::GetUsageResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let tenant = reader(&p, &r.tenant_id)?;
        let mut f = Fields::default();
        let from = f.take(parse_optional_date(&r.from_date, "from_date"))?;
        let to = f.take(parse_optional_date(&r.to_date, "to_date"))?;
        f.finish()?;
        let (from, to) = usage::validate_range(proven(from)?, proven(to)?)?;
        let report = self.app.usage(tenant, from, to).await?;
        Ok(Response::new(pb::GetUsageResponse {
            days: report
                .days
                .into_iter()
                .map(|d| pb::DailyUsage {
                    usage_date: d.date.to_string(),
                    channel: pb_channel(d.channel).into(),
                    message_count: d.count,
                })
                .collect(),
            totals: report
                .totals
                .into_iter()
                .map(|(c, n)| pb::ChannelUsage {
                    channel: pb_channel(c).into(),
                    message_count: n,
                })
                .collect(),
        }))
    }

    async fn close_month(
        &self,
        request: Request<pb::CloseMonthRequest>,
    ) -> Rpc<pb::CloseMonthResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let tenant = f.take(target(&r.tenant_id))?;
        let month = f.take(YearMonth::parse(&r.year_month).ok_or_else(|| {
            ServiceError::invalid(
                "year_month",
                "YYYY-MM 형식의 월이 아닙니다 (must be a month YYYY-MM)",
            )
        }))?;
        f.finish()?;
        let (inv, created) = self
            .app
            .close_month(proven(tenant)?, proven(month)?)
            .await?;
        Ok(Response::new(pb::CloseMonthResponse {
            invoice: Some(pb_invoice(inv)),
            created,
        }))
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Rpc<pb::GetInvoiceResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let tenant = reader(&p, &r.tenant_id)?;
        let id = parse_uuid(&r.invoice_id, "invoice_id")?;
        let inv = self.app.get_invoice(tenant, id).await?;
        Ok(Response::new(pb::GetInvoiceResponse {
            invoice: Some(pb_invoice(inv)),
        }))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Rpc<pb::ListInvoicesResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let tenant = reader(&p, &r.tenant_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (rows, next) = self
            .app
            .list_invoices(tenant, invoice_status(r.status()), page)
            .await?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: rows.into_iter().map(pb_invoice).collect(),
            next_page_token: next,
        }))
    }

    async fn issue_invoice(
        &self,
        request: Request<pb::IssueInvoiceRequest>,
    ) -> Rpc<pb::IssueInvoiceResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let inv = self
            .invoice_action(&r.tenant_id, &r.invoice_id, InvoiceAction::Issue)
            .await?;
        Ok(Response::new(pb::IssueInvoiceResponse {
            invoice: Some(inv),
        }))
    }

    async fn mark_invoice_paid(
        &self,
        request: Request<pb::MarkInvoicePaidRequest>,
    ) -> Rpc<pb::MarkInvoicePaidResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let inv = self
            .invoice_action(&r.tenant_id, &r.invoice_id, InvoiceAction::MarkPaid)
            .await?;
        Ok(Response::new(pb::MarkInvoicePaidResponse {
            invoice: Some(inv),
        }))
    }

    async fn void_invoice(
        &self,
        request: Request<pb::VoidInvoiceRequest>,
    ) -> Rpc<pb::VoidInvoiceResponse> {
        admin(&request)?;
        let r = request.into_inner();
        let inv = self
            .invoice_action(&r.tenant_id, &r.invoice_id, InvoiceAction::Void)
            .await?;
        Ok(Response::new(pb::VoidInvoiceResponse {
            invoice: Some(inv),
        }))
    }

    async fn export_invoices_csv(
        &self,
        request: Request<pb::ExportInvoicesCsvRequest>,
    ) -> Rpc<pb::ExportInvoicesCsvResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let tenant = reader(&p, &r.tenant_id)?;
        let mut f = Fields::default();
        let from = f.take(optional_month(&r.from_month, "from_month"))?;
        let to = f.take(optional_month(&r.to_month, "to_month"))?;
        f.finish()?;
        let (from, to) = (proven(from)?, proven(to)?);
        if let (Some(a), Some(b)) = (from, to)
            && b < a
        {
            return Err(ServiceError::invalid(
                "to_month",
                "종료 월이 시작 월보다 빠릅니다 (must not be before from_month)",
            )
            .into());
        }
        let (invoices_csv, lines_csv) = self.app.export_invoices_csv(tenant, from, to).await?;
        Ok(Response::new(pb::ExportInvoicesCsvResponse {
            invoices_csv,
            lines_csv,
        }))
    }
}
