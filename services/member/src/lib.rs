//! The member service: stores, members (PII encrypted per field, masked on display, every
//! unmask audited), membership cards and grades of each tenant, served as
//! `spharos.member.v1.MemberService` and wired into a host process by [`module`].
#![forbid(unsafe_code)]

pub mod app;
pub mod consent_check;
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
use spharos_proto::member::member_service_server::MemberServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::MemberApp;
pub use consent_check::SignupConsentCheck;

/// Why the member module could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the member service cannot subscribe to its events: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    ConsentCheck(#[from] consent_check::ConsentCheckError),
}

/// How the host deploys the member module.
#[derive(Debug, Clone, Default)]
pub struct MemberOptions {
    /// The privacy service's gRPC endpoint (`http://host:port`) when the privacy module is
    /// deployed: joins then check their consent answers with it before creating anything.
    /// `None` (no privacy module): joins need no consents.
    pub privacy_endpoint: Option<String>,
}

impl MemberOptions {
    /// The privacy module runs in this process (`--target all`): its endpoint is this
    /// process's `grpc.listen`.
    pub fn with_privacy_in_process(platform: &Platform) -> Self {
        Self {
            privacy_endpoint: Some(platform.settings.endpoint_of(&None)),
        }
    }
}

/// Builds the member module on `platform`: opens (and migrates) the `member` schema, starts the
/// outbox relay, the grade consumer (`points.purchase_recorded`) and the
/// grade schedule, all stopping on `platform.shutdown`, and adds the authenticated gRPC
/// service to `routes`. Returns the module for the host and the application layer (for
/// seeding and in-process callers).
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, MemberApp), MemberError> {
    module_with(platform, routes, MemberOptions::default()).await
}

/// [`module`] with deployment options (the privacy service that checks sign-up consents).
pub async fn module_with(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
    options: MemberOptions,
) -> Result<(Module, MemberApp), MemberError> {
    let db = Db::open::<store::migrations::Migrator>(&platform.settings.database, "member").await?;
    let (_, relay) = bus::spawn_relay(
        "member",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let mut app = MemberApp::new(db.clone(), KeyRing::new(platform.master_key.clone()), zone);
    if let Some(endpoint) = &options.privacy_endpoint {
        app = app
            .with_signup_consent_check(SignupConsentCheck::new(endpoint, platform.signer.clone())?);
    }
    let consumer = bus::spawn_consumer(
        events::GRADE_CONSUMER,
        &[events::PURCHASE_RECORDED],
        db.clone(),
        platform.bus.clone(),
        Arc::new(events::GradeEvents::new(app.clone())),
        platform.shutdown.clone(),
    )
    .await?;
    let grades = schedule::spawn(
        app.clone(),
        Duration::from_secs(platform.settings.member.grade_evaluation_interval_seconds),
        platform.shutdown.clone(),
    );
    routes.add_service(InterceptedService::new(
        MemberServiceServer::new(grpc::MemberGrpc { app: app.clone() }),
        AuthInterceptor::new(platform.verifier.clone()),
    ));
    let module = Module {
        name: "member",
        tasks: [relay, consumer, grades]
            .into_iter()
            .chain(platform.keep_statistics(&db))
            .collect(),
        db: Some(db),
    };
    Ok((module, app))
}
