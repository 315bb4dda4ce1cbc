//! The member service: stores, members (PII encrypted per field, masked on display, every
//! unmask audited), membership cards and grades of each tenant, served as
//! `spharos.member.v1.MemberService` and wired into a host process by [`module`].
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
    crypto::KeyRing,
    db::{Db, DbError},
    platform::{Module, Platform},
};
use spharos_proto::member::member_service_server::MemberServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::MemberApp;

/// Why the member module could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the member service cannot subscribe to its events: {0}")]
    Bus(#[from] BusError),
}

/// Builds the member module on `platform`: opens (and migrates) the `member` schema, starts the
/// outbox relay, the grade consumer (`points.purchase_recorded`, `points.earned`) and the
/// grade schedule, all stopping on `platform.shutdown`, and adds the authenticated gRPC
/// service to `routes`. Returns the module for the host and the application layer (for
/// seeding and in-process callers).
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, MemberApp), MemberError> {
    let db = Db::open::<store::migrations::Migrator>(&platform.settings.database, "member").await?;
    let (outbox, relay) = bus::spawn_relay(
        "member",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let app = MemberApp::new(
        db.clone(),
        KeyRing::new(platform.master_key.clone()),
        outbox,
        zone,
    );
    let consumer = bus::spawn_consumer(
        events::GRADE_CONSUMER,
        &[events::PURCHASE_RECORDED, events::POINTS_EARNED],
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
        tasks: vec![relay, consumer, grades],
        db: Some(db),
    };
    Ok((module, app))
}
