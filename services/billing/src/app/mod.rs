//! The application layer: one method per use case, each one tenant transaction (or, for the
//! cross-tenant registry, a system transaction) that checks the rules, writes the rows and
//! their events together, then wakes the outbox relay. Used by `grpc.rs`, the usage consumer,
//! the month-close job and, later, the Kubernetes operator.
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    auth::{TokenSigner, TokenVerifier},
    bus::{self, Envelope},
    db::Db,
};

use crate::domain::catalogue::BillingCatalogue;

mod invoices;
mod subscriptions;
mod tenants;
mod tokens;
mod usage;

pub use invoices::CloseSummary;
pub use subscriptions::SubscriptionView;
pub use tenants::{TenantOverview, TenantStatus};
pub use tokens::IssuedToken;
pub use usage::UsageReport;

/// Where "now" comes from: the system clock in production, a clock the test moves in tests
/// (month boundaries and proration depend on the date).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Now, at the microsecond precision PostgreSQL stores, so a value returned at creation
    /// equals the one read back later.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)().trunc_subsecs(6)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// The billing service's use cases. Cheap to clone (handles only).
#[derive(Clone)]
pub struct BillingApp {
    db: Db,
    signer: TokenSigner,
    verifier: TokenVerifier,
    catalogue: Arc<BillingCatalogue>,
    clock: Clock,
    /// The zone of tenants billing does not know yet (`tenant.default_time_zone`).
    default_zone: Tz,
    /// Lifetime of a token issued with `ttl_seconds` 0 (`auth.token_ttl_seconds`).
    default_token_ttl: u64,
}

impl std::fmt::Debug for BillingApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingApp")
            .field("default_zone", &self.default_zone)
            .finish_non_exhaustive()
    }
}

/// Everything [`BillingApp::new`] needs.
pub struct BillingDeps {
    pub db: Db,
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
    pub catalogue: BillingCatalogue,
    pub clock: Clock,
    pub default_zone: Tz,
    pub default_token_ttl: u64,
}

impl BillingApp {
    pub fn new(deps: BillingDeps) -> Self {
        Self {
            db: deps.db,
            signer: deps.signer,
            verifier: deps.verifier,
            catalogue: Arc::new(deps.catalogue),
            clock: deps.clock,
            default_zone: deps.default_zone,
            default_token_ttl: deps.default_token_ttl,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn catalogue(&self) -> &BillingCatalogue {
        &self.catalogue
    }

    pub fn default_zone(&self) -> Tz {
        self.default_zone
    }

    pub fn default_token_ttl(&self) -> u64 {
        self.default_token_ttl
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Today's business date in `zone`.
    pub(crate) fn today(&self, zone: Tz) -> NaiveDate {
        spharos_kit::time::local_date(self.now(), zone)
    }

    /// A tenant transaction whose tenant must be registered; returns the tenant's zone.
    async fn begin_known(
        &self,
        tenant: TenantId,
    ) -> Result<(Tx, crate::domain::tenant::Tenant), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let t = crate::store::tenants::get(&tx, tenant)
            .await?
            .ok_or_else(tenant_not_found)?;
        Ok((tx, t))
    }
}

async fn emit(tx: &Tx, event: Envelope) -> Result<(), ServiceError> {
    bus::enqueue(tx, &event).await?;
    Ok(())
}

pub(crate) fn tenant_not_found() -> ServiceError {
    ServiceError::not_found("테넌트를 찾을 수 없습니다 (tenant not found)")
}
