//! The coupon service: templates, issuing (staff, campaign, bulk jobs, first-come claims held
//! exactly under concurrency, welcome and birthday coupons), redemption at the till, gift
//! vouchers and expiry, served as `spharos.coupon.v1.CouponService` and wired by [`module`].
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
mod schedule;
pub mod store;

use std::sync::Arc;

use spharos_kit::{
    auth::AuthInterceptor,
    bus::{self, BusError},
    db::{Db, DbError},
    platform::{Module, Platform},
};
use spharos_proto::coupon::coupon_service_server::CouponServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::CouponApp;

/// Why the coupon module could not start.
#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the coupon service cannot subscribe to member events: {0}")]
    Bus(#[from] BusError),
}

/// Builds the coupon module on `platform`: opens (and migrates) the `coupon` schema, starts the
/// outbox relay, the member-projection consumer (`member.joined`, `member.withdrawn`), the
/// bulk-issue worker and the expiry / notice / birthday schedule, all stopping on
/// `platform.shutdown`, and adds the authenticated gRPC service to `routes`. Returns the
/// module for the host and the application layer (for `--demo` and load tests).
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, CouponApp), CouponError> {
    let db = Db::open::<store::migrations::Migrator>(&platform.settings.database, "coupon").await?;
    let (_, relay) = bus::spawn_relay(
        "coupon",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let app = CouponApp::new(db.clone(), zone);
    let consumer = bus::spawn_consumer(
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
    let worker = schedule::spawn_bulk_worker(app.clone(), platform.shutdown.clone());
    let jobs = schedule::spawn_schedule(
        app.clone(),
        schedule::SCHEDULE_EVERY,
        platform.shutdown.clone(),
    );
    routes.add_service(InterceptedService::new(
        CouponServiceServer::new(grpc::CouponGrpc { app: app.clone() }),
        AuthInterceptor::new(platform.verifier.clone()),
    ));
    let module = Module {
        name: "coupon",
        tasks: [relay, consumer, worker, jobs]
            .into_iter()
            .chain(platform.keep_statistics(&db))
            .collect(),
        db: Some(db),
    };
    Ok((module, app))
}
