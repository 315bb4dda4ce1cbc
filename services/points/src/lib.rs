//! The points service: the points ledger of each tenant's members (earn, spend, cancel,
//! adjust, expire) with exactly-once POS semantics, served as `spharos.points.v1.PointsService`
//! and wired into a host process by [`module`].
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod members;
mod schedule;
pub mod store;

use spharos_kit::{
    auth::AuthInterceptor,
    bus,
    db::{Db, DbError},
    platform::{Module, Platform},
};
use spharos_proto::points::points_service_server::PointsServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use app::PointsApp;
pub use members::{Caller, MemberDirectory};
pub use schedule::EXPIRY_INTERVAL;

/// How the module runs its background work. `Default` is what production uses; tests shorten
/// or lengthen the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsOptions {
    /// How often the expiry job runs (its first pass comes one interval after start).
    pub expiry_interval: std::time::Duration,
}

impl Default for PointsOptions {
    fn default() -> Self {
        Self {
            expiry_interval: EXPIRY_INTERVAL,
        }
    }
}

/// Permission for staff operations: policy updates, manual adjustments, running expiry.
pub const PERM_POINTS_ADMIN: &str = "points:admin";

/// Why the points module could not start.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("services.member endpoint {endpoint:?} is not a valid URI: {reason}")]
    MemberEndpoint { endpoint: String, reason: String },
}

/// Builds the points module on `platform`: opens (and migrates) the `points` schema, starts
/// the outbox relay and the expiry schedule (both stopping on `platform.shutdown`), and adds
/// the authenticated gRPC service to `routes`. Members are resolved through the member
/// service at `settings.services.member` (this process when unset: `grpc.listen`). Returns the
/// module for the host and the application layer (for the load test and in-process callers).
pub async fn module(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(Module, PointsApp), PointsError> {
    module_with(platform, routes, PointsOptions::default()).await
}

/// [`module`] with explicit [`PointsOptions`].
pub async fn module_with(
    platform: &Platform,
    routes: &mut tonic::service::RoutesBuilder,
    options: PointsOptions,
) -> Result<(Module, PointsApp), PointsError> {
    let db = Db::open::<store::migrations::Migrator>(&platform.settings.database, "points").await?;
    let (_, relay) = bus::spawn_relay(
        "points",
        db.clone(),
        platform.bus.clone(),
        platform.shutdown.clone(),
    );
    let zone = spharos_kit::time::parse_zone(&platform.settings.tenant.default_time_zone)
        .unwrap_or(spharos_kit::time::DEFAULT_TIME_ZONE);
    let endpoint = platform
        .settings
        .endpoint_of(&platform.settings.services.member);
    let members = MemberDirectory::new(&endpoint).map_err(|e| PointsError::MemberEndpoint {
        endpoint: endpoint.clone(),
        reason: e.to_string(),
    })?;
    let app = PointsApp::new(db.clone(), zone, members);
    let expiry = schedule::spawn(
        app.clone(),
        options.expiry_interval,
        platform.shutdown.clone(),
    );
    routes.add_service(InterceptedService::new(
        PointsServiceServer::new(grpc::PointsGrpc { app: app.clone() }),
        AuthInterceptor::new(platform.verifier.clone()),
    ));
    let module = Module {
        name: "points",
        tasks: [relay, expiry]
            .into_iter()
            .chain(platform.keep_statistics(&db))
            .collect(),
        db: Some(db),
    };
    Ok((module, app))
}
