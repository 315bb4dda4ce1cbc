//! A points-only server: the points module on its own gRPC port, configured like `spharos`
//! (defaults, then `SPHAROS__SECTION__KEY` variables), reaching the member service at
//! `services.member`. The crash test runs it as a child process so it can SIGKILL it mid-stream;
//! the product binary is `spharos`, which the lead wires with `spharos_points::module`.
use std::{process::ExitCode, sync::Arc};

use spharos_kit::{
    bus::Bus,
    config::Settings,
    platform::{Platform, load_keys},
};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load(None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let _telemetry = match spharos_kit::telemetry::init(&settings.telemetry, "points-test-server") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("telemetry: {e}");
            return ExitCode::from(64);
        }
    };
    let (signer, verifier, master_key) = match load_keys(&settings) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("keys: {e}");
            return ExitCode::from(64);
        }
    };
    let bus = match Bus::connect(&settings.nats).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(69);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&settings.grpc.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("grpc.listen {}: {e}", settings.grpc.listen);
            return ExitCode::from(64);
        }
    };
    let shutdown = CancellationToken::new();
    let platform = Platform {
        settings: Arc::new(settings),
        bus,
        verifier,
        signer,
        master_key: Arc::new(master_key),
        shutdown: shutdown.clone(),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    let (module, _app) = match spharos_points::module(&platform, &mut routes).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("points: {e}");
            return ExitCode::from(69);
        }
    };
    let server = tokio::spawn(spharos_kit::grpc::serve(
        listener,
        routes.routes(),
        shutdown.clone(),
    ));
    // The parent waits for this line before it sends requests.
    println!("points-test-server ready");
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    let _ = server.await;
    for t in module.tasks {
        let _ = t.await;
    }
    ExitCode::SUCCESS
}
