//! `spharos serve`: binds the gRPC and HTTP ports, builds the platform (keys, bus), starts the
//! selected modules on one tonic router (plus `grpc.health.v1` and server reflection), marks the
//! process ready, and runs until SIGINT / SIGTERM.
use std::{sync::Arc, time::Duration};

use spharos_kit::{
    bus::Bus,
    config::Settings,
    platform::{Module, Platform, load_keys},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{AppError, http, registry::Target};

/// Serves until a shutdown signal.
pub async fn serve(settings: Settings, targets: Vec<Target>, demo: bool) -> Result<(), AppError> {
    let _telemetry = spharos_kit::telemetry::init(&settings.telemetry, "spharos")
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let started = std::time::Instant::now();
    // Installed first: a SIGTERM during start-up or the demo seed then stops the process
    // gracefully instead of killing it with the default action.
    let stop_signals = StopSignals::install();

    let grpc_listener = bind("grpc.listen", &settings.grpc.listen).await?;
    let http_listener = bind("http.listen", &settings.http.listen).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| AppError::Other(e.to_string()))?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|e| AppError::Other(e.to_string()))?;

    let shutdown = CancellationToken::new();
    let readiness = http::Readiness::new();
    let http_task = {
        let router = http::router(readiness.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(http_listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        })
    };

    let (signer, verifier, master_key) =
        load_keys(&settings).map_err(|e| AppError::Usage(format!("keys: {e}")))?;
    let bus = Bus::connect(&settings.nats)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    // In-process deliveries wait until every module has subscribed (see Bus::hold_deliveries).
    bus.hold_deliveries();
    let platform = Platform {
        settings: Arc::new(settings.clone()),
        bus,
        verifier,
        signer: signer.clone(),
        master_key: Arc::new(master_key),
        shutdown: shutdown.clone(),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(spharos_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| AppError::Other(format!("gRPC reflection: {e}")))?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(health_service).add_service(reflection);

    // One per process: every module here shares the verifier, so one listener serves them all
    // (plus one on `auth.revocations` when set: a dedicated tenant hears the platform's).
    let revocations = platform
        .spawn_revocation_listeners()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let mut modules: Vec<Module> = Vec::new();
    let mut member_app = None;
    let in_process: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    for target in &targets {
        let (module, grpc_service) = match target {
            Target::Member => {
                // Sign-up consents are checked with the privacy module where one is deployed.
                let privacy_endpoint = if targets.contains(&Target::Privacy) {
                    Some(platform.settings.endpoint_of(&None))
                } else {
                    platform.settings.services.privacy.clone()
                };
                let options = spharos_member::MemberOptions { privacy_endpoint };
                let (module, app) = spharos_member::module_with(&platform, &mut routes, options)
                    .await
                    .map_err(|e| AppError::Unavailable(format!("member: {e}")))?;
                member_app = Some(app);
                (module, "spharos.member.v1.MemberService")
            }
            Target::Points => {
                let (module, _app) = spharos_points::module(&platform, &mut routes)
                    .await
                    .map_err(|e| AppError::Unavailable(format!("points: {e}")))?;
                (module, "spharos.points.v1.PointsService")
            }
            Target::Coupon => {
                let (module, _app) = spharos_coupon::module(&platform, &mut routes)
                    .await
                    .map_err(|e| AppError::Unavailable(format!("coupon: {e}")))?;
                (module, "spharos.coupon.v1.CouponService")
            }
            Target::Privacy => {
                // Data-subject requests visit the member-data modules of this deployment.
                let services = spharos_privacy::Registry::for_deployment(&settings, &in_process)
                    .map_err(|e| AppError::Usage(e.to_string()))?;
                let options = spharos_privacy::PrivacyOptions {
                    services: Some(services),
                    ..Default::default()
                };
                let (module, _app) = spharos_privacy::module_with(&platform, &mut routes, options)
                    .await
                    .map_err(|e| AppError::Unavailable(format!("privacy: {e}")))?;
                (module, "spharos.privacy.v1.PrivacyService")
            }
            Target::Billing => {
                let (module, _app) = spharos_billing::module(&platform, &mut routes)
                    .await
                    .map_err(|e| AppError::Unavailable(format!("billing: {e}")))?;
                (module, "spharos.billing.v1.BillingService")
            }
        };
        health_reporter
            .set_service_status(grpc_service, tonic_health::ServingStatus::Serving)
            .await;
        modules.push(module);
    }

    platform.bus.release_deliveries();

    let grpc_task = {
        let stop = shutdown.clone();
        let routes = routes.routes();
        tokio::spawn(async move {
            if let Err(e) = spharos_kit::grpc::serve(grpc_listener, routes, stop).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    };
    readiness.set_ready(modules.iter().filter_map(|m| m.db.clone()).collect());
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        targets = %targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
        database = if settings.uses_postgres() { "postgres" } else { "sqlite" },
        bus = if settings.nats.url.is_some() { "nats" } else { "in-process" },
        startup_ms = started.elapsed().as_millis() as u64,
        "spharos ready"
    );

    if demo {
        match &member_app {
            Some(app) => crate::demo::seed(&settings, &signer, app, grpc_addr)
                .await
                .map_err(|e| AppError::Other(format!("demo: {e}")))?,
            None => tracing::warn!("--demo needs the member target; nothing seeded"),
        }
    }

    tokio::select! {
        _ = stop_signals.received() => tracing::info!("shutdown signal received"),
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
    let mut tasks = vec![http_task, grpc_task, revocations];
    for m in modules {
        tasks.extend(m.tasks);
    }
    let drained = tokio::time::timeout(Duration::from_secs(10), futures_join(tasks)).await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    tracing::info!("spharos stopped");
    Ok(())
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn bind(key: &str, addr: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Usage(format!("{key} {addr}: cannot listen: {e}")))
}

/// SIGINT and SIGTERM, listened for from the moment [`StopSignals::install`] returns.
struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => {
                    tracing::warn!("cannot listen for SIGINT / SIGTERM; stopping needs a kill");
                    None
                }
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn received(self) {
        #[cfg(unix)]
        match self.streams {
            Some((mut int, mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            None => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
