//! The privacy service: consent types and members' consents (with the bulk advertising
//! query the campaign service asks), notices, terms and policies, data-subject requests and
//! the hash-chained PII access log of each tenant, served as
//! `spharos.privacy.v1.PrivacyService` and wired into a host process by [`module`].
#![forbid(unsafe_code)]

pub mod app;
pub mod clients;
pub mod domain;
pub mod events;
pub mod grpc;
mod schedule;
pub mod store;

use std::{sync::Arc, time::Duration};

use spharos_kit::{
    auth::AuthInterceptor,
    bus::{self, BusError},
    crypto::KeyRing,
    db::{Db, DbError},
    platform::{Module, Platform},
};
use spharos_proto::privacy::privacy_service_server::PrivacyServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::PrivacyApp;
pub use clients::{MemberDataService, Registry};

pub use spharos_kit::auth::PERM_PII_ERASE;

/// The largest request the service accepts: `FilterAdvertisingRecipients` with 1,000,000
/// packed member ids is 16,000,000 bytes plus framing; tonic's default is 4 MiB.
pub const MAX_REQUEST_BYTES: usize = 24 * 1024 * 1024;

/// How often the schedule runs when the host does not say.
pub const DEFAULT_JOB_INTERVAL: Duration = Duration::from_secs(3600);

/// Why the privacy module could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the privacy service cannot subscribe to its events: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Endpoint(#[from] clients::EndpointError),
}

/// How the host deploys the privacy module.
#[derive(Debug, Clone)]
pub struct PrivacyOptions {
    /// The period of the re-confirmation scan and the retention erasure.
    pub job_interval: Duration,
    /// The services a data-subject request visits; `None`: [`Registry::for_settings`].
    pub services: Option<Registry>,
}

impl Default for PrivacyOptions {
    fn default() -> Self {
        Self {
            job_interval: DEFAULT_JOB_INTERVAL,
            services: None,
        }
    }
}

/// Builds the privacy module on `platform`: opens (and migrates) the `privacy` schema, starts
/// the outbox relay, the consumers of member events and of `privacy.pii_accessed`, and the
/// schedule, all stopping on `platform.shutdown`, and adds the authenticated gRPC service to
/// `routes`. Returns the module for the host and the application layer.
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, PrivacyApp), PrivacyError> {
    module_with(platform, routes, PrivacyOptions::default()).await
}

/// [`module`] with deployment options.
pub async fn module_with(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
    options: PrivacyOptions,
) -> Result<(Module, PrivacyApp), PrivacyError> {
    let db =
        Db::open::<store::migrations::Migrator>(&platform.settings.database, "privacy").await?;
    let (_, relay) = bus::spawn_relay(
        "privacy",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let services = match options.services {
        Some(r) => r,
        None => Registry::for_settings(&platform.settings)?,
    };
    let app = PrivacyApp::new(
        db.clone(),
        KeyRing::new(platform.master_key.clone()),
        zone,
        services,
        platform.signer.clone(),
    );
    let members = bus::spawn_consumer(
        events::MEMBER_CONSUMER,
        &[
            events::MEMBER_JOINED,
            events::MEMBER_WITHDRAWN,
            events::MEMBER_ERASED,
        ],
        db.clone(),
        platform.bus.clone(),
        Arc::new(events::MemberEvents::new(app.clone())),
        platform.shutdown.clone(),
    )
    .await?;
    let access_log = bus::spawn_consumer(
        events::ACCESS_LOG_CONSUMER,
        &[events::PII_ACCESSED],
        db.clone(),
        platform.bus.clone(),
        Arc::new(events::AccessLogEvents::new(app.clone())),
        platform.shutdown.clone(),
    )
    .await?;
    let jobs = schedule::spawn(app.clone(), options.job_interval, platform.shutdown.clone());
    routes.add_service(InterceptedService::new(
        PrivacyServiceServer::new(grpc::PrivacyGrpc { app: app.clone() })
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        AuthInterceptor::new(platform.verifier.clone()),
    ));
    let module = Module {
        name: "privacy",
        tasks: [relay, members, access_log, jobs]
            .into_iter()
            .chain(platform.keep_statistics(&db))
            .collect(),
        db: Some(db),
    };
    Ok((module, app))
}
