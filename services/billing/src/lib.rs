//! The billing service: the platform's tenant registry, plans and subscriptions (Basic and
//! Custom, prorated by days), tenant API tokens with revocation, usage metering from events and
//! monthly invoices with VAT, served as `spharos.billing.v1.BillingService` and wired into a
//! host process by [`module`].
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
mod schedule;
pub mod store;

use std::{sync::Arc, time::Duration};

use spharos_kit::{
    auth::AuthInterceptor,
    bus::{self, BusError},
    db::{Db, DbError},
    platform::{Module, Platform},
};
use spharos_proto::billing::billing_service_server::BillingServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::{BillingApp, Clock};
pub use domain::{catalogue::BillingCatalogue, token::PERM_PLATFORM_ADMIN};

/// How often the month-close job looks for months to close.
pub const CLOSE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Why the billing module could not start.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the billing service cannot subscribe to its events: {0}")]
    Bus(#[from] BusError),
    #[error("invalid billing catalogue: {0}")]
    Catalogue(String),
}

/// How a host configures billing; [`Default`] is production (published catalogue, system
/// clock, [`CLOSE_INTERVAL`]).
#[derive(Debug, Clone)]
pub struct BillingOptions {
    pub catalogue: BillingCatalogue,
    pub clock: Clock,
    pub close_interval: Duration,
}

impl Default for BillingOptions {
    fn default() -> Self {
        Self {
            catalogue: BillingCatalogue::default(),
            clock: Clock::system(),
            close_interval: CLOSE_INTERVAL,
        }
    }
}

/// Builds the billing module with the default options; see [`module_with`].
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, BillingApp), BillingError> {
    module_with(platform, routes, BillingOptions::default()).await
}

/// Builds the billing module on `platform`: opens (and migrates) the `billing` schema, starts
/// the outbox relay, the metering consumer (`campaign.message.sent`, `member.joined`,
/// `member.withdrawn`, `member.store_created`, `member.store_updated`) and the month-close job,
/// all stopping on `platform.shutdown`, and adds the authenticated gRPC service to `routes`.
/// Returns the module for the host and the application layer (for the operator and tests).
pub async fn module_with(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
    options: BillingOptions,
) -> Result<(Module, BillingApp), BillingError> {
    options
        .catalogue
        .validate()
        .map_err(BillingError::Catalogue)?;
    let db =
        Db::open::<store::migrations::Migrator>(&platform.settings.database, "billing").await?;
    let (_, relay) = bus::spawn_relay(
        "billing",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let app = BillingApp::new(app::BillingDeps {
        db: db.clone(),
        signer: platform.signer.clone(),
        verifier: platform.verifier.clone(),
        catalogue: options.catalogue,
        clock: options.clock,
        default_zone: zone,
        default_token_ttl: platform.settings.auth.token_ttl_seconds,
    });
    let consumer = bus::spawn_consumer(
        events::USAGE_CONSUMER,
        &events::USAGE_TOPICS,
        db.clone(),
        platform.bus.clone(),
        Arc::new(events::UsageEvents::new(app.clone())),
        platform.shutdown.clone(),
    )
    .await?;
    let closer = schedule::spawn(
        app.clone(),
        options.close_interval,
        platform.shutdown.clone(),
    );
    routes.add_service(InterceptedService::new(
        BillingServiceServer::new(grpc::BillingGrpc { app: app.clone() }),
        AuthInterceptor::new(platform.verifier.clone()),
    ));
    let module = Module {
        name: "billing",
        tasks: [relay, consumer, closer]
            .into_iter()
            .chain(platform.keep_statistics(&db))
            .collect(),
        db: Some(db),
    };
    Ok((module, app))
}
