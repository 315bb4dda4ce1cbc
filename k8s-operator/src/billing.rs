//! The billing service as the operator uses it: the tenant registry over gRPC
//! (`spharos.billing.v1.BillingService`), with a `platform:admin` token. This module is the only
//! place prost types appear; the rest of the operator sees [`BillingState`] and plain values.
use std::time::Duration;

use spharos_proto::billing::{self as pb, billing_service_client::BillingServiceClient};
use tonic::{Code, Request, Status, transport::Channel};

use crate::{
    crd::{MembershipTenant, ModuleName, ModuleSpec, Plan},
    desired::{BillingState, PlanLimits, SubscriptionState, SubscriptionStatus, TokenRecord},
};

/// Why a billing call failed.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("billing endpoint {0:?} is invalid: {1}")]
    Endpoint(String, String),
    #[error("billing {call} failed: {status}")]
    Call {
        call: &'static str,
        #[source]
        status: Box<Status>,
    },
    #[error("billing returned no {0}")]
    Missing(&'static str),
    #[error("the operator's billing token is not a valid header value")]
    Token,
}

impl BillingError {
    /// A short label for metrics (`call_code`).
    pub fn label(&self) -> String {
        match self {
            BillingError::Endpoint(..) => "endpoint".into(),
            BillingError::Call { call, status } => format!("{call}_{:?}", status.code()),
            BillingError::Missing(_) => "missing".into(),
            BillingError::Token => "token".into(),
        }
    }
}

fn call(call: &'static str) -> impl FnOnce(Status) -> BillingError {
    move |status| BillingError::Call {
        call,
        status: Box::new(status),
    }
}

/// Tokens per `ListTokens` page (billing's maximum is 1,000).
const TOKEN_PAGE_SIZE: i32 = 200;

/// A billing client authenticated as the platform.
#[derive(Clone)]
pub struct Billing {
    client: BillingServiceClient<Channel>,
    token: String,
}

/// Billing's CSV export of a tenant's invoices.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceExport {
    pub invoices_csv: String,
    pub lines_csv: String,
}

impl Billing {
    /// Connects lazily (the first call dials), so the operator starts while billing is still
    /// coming up; each call has a deadline so a hung billing cannot stall the reconciler.
    pub fn connect_lazy(endpoint: &str, token: String) -> Result<Self, BillingError> {
        let channel = Channel::from_shared(endpoint.to_string())
            .map_err(|e| BillingError::Endpoint(endpoint.into(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .connect_lazy();
        Ok(Self::new(channel, token))
    }

    /// Over an existing channel.
    pub fn new(channel: Channel, token: String) -> Self {
        Self {
            client: BillingServiceClient::new(channel),
            token,
        }
    }

    fn req<T>(&self, msg: T) -> Result<Request<T>, BillingError> {
        let mut r = Request::new(msg);
        let value = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| BillingError::Token)?;
        r.metadata_mut().insert("authorization", value);
        Ok(r)
    }

    /// The Basic plan's limits from the catalogue.
    pub async fn limits(&self) -> Result<PlanLimits, BillingError> {
        let c = self
            .client
            .clone()
            .get_catalogue(self.req(pb::GetCatalogueRequest {})?)
            .await
            .map_err(call("GetCatalogue"))?
            .into_inner();
        Ok(PlanLimits {
            basic_members: c.basic_member_limit,
            basic_stores: c.basic_store_limit,
        })
    }

    /// The tenant as billing sees it; an unknown tenant is `registered: false`.
    pub async fn state(&self, tenant_id: &str) -> Result<BillingState, BillingError> {
        let res = self
            .client
            .clone()
            .get_tenant(self.req(pb::GetTenantRequest {
                tenant_id: tenant_id.into(),
            })?)
            .await;
        let r = match res {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(BillingState::default()),
            Err(s) => return Err(call("GetTenant")(s)),
        };
        let status = r.status.unwrap_or_default();
        Ok(BillingState {
            registered: true,
            subscription: r.subscription.and_then(subscription_state),
            member_count: status.member_count,
            store_count: status.store_count,
            compliant: status.plan_compliant,
            compliance_reason: status.plan_compliance_reason,
            compliance_message: status.plan_compliance_message,
        })
    }

    /// Registers the tenant under `tenant_id`. A retry after a lost response finds it
    /// registered already (`ALREADY_EXISTS`), which is success.
    pub async fn create_tenant(
        &self,
        tenant: &MembershipTenant,
        tenant_id: &str,
    ) -> Result<(), BillingError> {
        let spec = &tenant.spec;
        let res = self
            .client
            .clone()
            .create_tenant(self.req(pb::CreateTenantRequest {
                tenant_id: tenant_id.into(),
                name: spec.display_name.clone(),
                business_registration_number: spec.business_number.clone(),
                contact_name: spec.contact.name.clone(),
                contact_email: spec.contact.email.clone(),
                contact_phone: spec.contact.phone.clone().unwrap_or_default(),
                time_zone: spec.time_zone.clone(),
            })?)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(call("CreateTenant")(s)),
        }
    }

    pub async fn subscribe(
        &self,
        tenant_id: &str,
        plan: Plan,
        modules: &[ModuleSpec],
    ) -> Result<(), BillingError> {
        self.client
            .clone()
            .subscribe(self.req(pb::SubscribeRequest {
                tenant_id: tenant_id.into(),
                plan: plan_to_pb(plan).into(),
                module_fees: fees(modules),
            })?)
            .await
            .map_err(call("Subscribe"))?;
        Ok(())
    }

    /// Changes the plan from today (prorated), so the declared plan is the plan in force.
    pub async fn change_plan(
        &self,
        tenant_id: &str,
        plan: Plan,
        modules: &[ModuleSpec],
    ) -> Result<(), BillingError> {
        self.client
            .clone()
            .change_plan(self.req(pb::ChangePlanRequest {
                tenant_id: tenant_id.into(),
                plan: plan_to_pb(plan).into(),
                module_fees: fees(modules),
                timing: pb::ChangeTiming::Immediate.into(),
            })?)
            .await
            .map_err(call("ChangePlan"))?;
        Ok(())
    }

    pub async fn cancel(&self, tenant_id: &str) -> Result<(), BillingError> {
        self.client
            .clone()
            .cancel_subscription(self.req(pb::CancelSubscriptionRequest {
                tenant_id: tenant_id.into(),
            })?)
            .await
            .map_err(call("CancelSubscription"))?;
        Ok(())
    }

    /// Issues the tenant's API token; returns the bearer secret (billing shows it once).
    pub async fn issue_token(
        &self,
        tenant_id: &str,
        subject: &str,
    ) -> Result<String, BillingError> {
        let r = self
            .client
            .clone()
            .issue_token(self.req(pb::IssueTokenRequest {
                tenant_id: tenant_id.into(),
                subject: subject.into(),
                permissions: Vec::new(),
                ttl_seconds: 0,
            })?)
            .await
            .map_err(call("IssueToken"))?
            .into_inner();
        if r.secret.is_empty() {
            return Err(BillingError::Missing("token secret"));
        }
        Ok(r.secret)
    }

    /// Every API token billing recorded for the tenant, revoked and expired ones included, in
    /// issue order (all pages). `None`: billing does not know the tenant.
    pub async fn list_tokens(
        &self,
        tenant_id: &str,
    ) -> Result<Option<Vec<TokenRecord>>, BillingError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let res = self
                .client
                .clone()
                .list_tokens(self.req(pb::ListTokensRequest {
                    tenant_id: tenant_id.into(),
                    page_size: TOKEN_PAGE_SIZE,
                    page_token: page_token.clone(),
                })?)
                .await;
            let page = match res {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == Code::NotFound => return Ok(None),
                Err(s) => return Err(call("ListTokens")(s)),
            };
            out.extend(page.tokens.into_iter().map(|t| TokenRecord {
                token_id: t.token_id,
                subject: t.subject,
                revoked: t.revoke_time.is_some(),
                expire_time: t.expire_time.map(|e| e.seconds),
            }));
            // A page token that does not move would loop forever; billing's always moves.
            if page.next_page_token.is_empty() || page.next_page_token == page_token {
                return Ok(Some(out));
            }
            page_token = page.next_page_token;
        }
    }

    /// Revokes one token. Revoking a revoked token is success (billing returns it unchanged),
    /// and so is a token or tenant billing no longer knows: there is nothing left to refuse.
    pub async fn revoke_token(&self, tenant_id: &str, token_id: &str) -> Result<(), BillingError> {
        let res = self
            .client
            .clone()
            .revoke_token(self.req(pb::RevokeTokenRequest {
                tenant_id: tenant_id.into(),
                token_id: token_id.into(),
            })?)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(call("RevokeToken")(s)),
        }
    }

    /// Every invoice and invoice line of the tenant, as CSV.
    pub async fn export_invoices(&self, tenant_id: &str) -> Result<InvoiceExport, BillingError> {
        let r = self
            .client
            .clone()
            .export_invoices_csv(self.req(pb::ExportInvoicesCsvRequest {
                tenant_id: tenant_id.into(),
                from_month: String::new(),
                to_month: String::new(),
            })?)
            .await
            .map_err(call("ExportInvoicesCsv"))?
            .into_inner();
        Ok(InvoiceExport {
            invoices_csv: String::from_utf8_lossy(&r.invoices_csv).into_owned(),
            lines_csv: String::from_utf8_lossy(&r.lines_csv).into_owned(),
        })
    }
}

fn plan_to_pb(plan: Plan) -> pb::Plan {
    match plan {
        Plan::Basic => pb::Plan::Basic,
        Plan::Custom => pb::Plan::Custom,
    }
}

fn module_to_pb(m: ModuleName) -> pb::Module {
    match m {
        ModuleName::Membership => pb::Module::Membership,
        ModuleName::AppWeb => pb::Module::AppWeb,
        ModuleName::Campaign => pb::Module::Campaign,
        ModuleName::Analytics => pb::Module::Analytics,
        ModuleName::CustomerCentre => pb::Module::CustomerCentre,
        ModuleName::Privacy => pb::Module::Privacy,
    }
}

fn module_from_pb(m: pb::Module) -> Option<ModuleName> {
    Some(match m {
        pb::Module::Membership => ModuleName::Membership,
        pb::Module::AppWeb => ModuleName::AppWeb,
        pb::Module::Campaign => ModuleName::Campaign,
        pb::Module::Analytics => ModuleName::Analytics,
        pb::Module::CustomerCentre => ModuleName::CustomerCentre,
        pb::Module::Privacy => ModuleName::Privacy,
        pb::Module::Unspecified => return None,
    })
}

fn fees(modules: &[ModuleSpec]) -> Vec<pb::ModuleFee> {
    modules
        .iter()
        .map(|m| pb::ModuleFee {
            module: module_to_pb(m.name).into(),
            monthly_fee_krw: m.monthly_fee_krw,
        })
        .collect()
}

fn subscription_state(s: pb::Subscription) -> Option<SubscriptionState> {
    let plan = match s.plan() {
        pb::Plan::Basic => Plan::Basic,
        pb::Plan::Custom => Plan::Custom,
        pb::Plan::Unspecified => return None,
    };
    let status = match s.status() {
        pb::SubscriptionStatus::Active => SubscriptionStatus::Active,
        pb::SubscriptionStatus::Suspended => SubscriptionStatus::Suspended,
        pb::SubscriptionStatus::Cancelled => SubscriptionStatus::Cancelled,
        pb::SubscriptionStatus::Unspecified => return None,
    };
    let mut modules: Vec<ModuleSpec> = s
        .module_fees
        .iter()
        .filter_map(|f| {
            Some(ModuleSpec {
                name: module_from_pb(f.module())?,
                monthly_fee_krw: f.monthly_fee_krw,
            })
        })
        .collect();
    modules.sort_by_key(|m| m.name);
    Some(SubscriptionState {
        plan,
        status,
        modules,
    })
}
