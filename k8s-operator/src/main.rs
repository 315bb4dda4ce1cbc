//! `spharos-operator`: watches `MembershipTenant` resources and provisions tenants. Serves
//! `/healthz`, `/readyz` and `/metrics`; reconciles only while it holds the leader Lease, and
//! exits when it loses it (as client-go controllers do), so a restarted pod rejoins as a follower
//! instead of two replicas ever reconciling at once.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use prometheus_client::registry::Registry;
use spharos_operator::{
    Context,
    billing::Billing,
    controller,
    desired::OperatorConfig,
    http::{self, Health},
    keys::PlatformPublicKey,
    lease::LeaderElector,
    metrics::Metrics,
};
use tracing::{error, info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "spharos-operator",
    about = "Provisions Spharos tenants from MembershipTenant resources"
)]
struct Args {
    /// gRPC endpoint of the billing service (the tenant registry).
    #[arg(long, env = "SPHAROS_OPERATOR_BILLING_ENDPOINT")]
    billing_endpoint: String,
    /// File holding a `platform:admin` bearer token for billing.
    #[arg(long, env = "SPHAROS_OPERATOR_BILLING_TOKEN_FILE")]
    billing_token_file: PathBuf,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "SPHAROS_OPERATOR_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    http_listen: SocketAddr,
    /// Image dedicated tenants run.
    #[arg(long, env = "SPHAROS_OPERATOR_TENANT_IMAGE")]
    tenant_image: String,
    /// NATS URL given to dedicated tenants.
    #[arg(long, env = "SPHAROS_OPERATOR_NATS_URL")]
    nats_url: String,
    /// The platform's JetStream stream (its `nats.stream`): dedicated tenants hear billing's
    /// token revocations there besides their own stream.
    #[arg(
        long,
        env = "SPHAROS_OPERATOR_PLATFORM_NATS_STREAM",
        default_value = "SPHAROS"
    )]
    platform_nats_stream: String,
    /// The platform's subject namespace (its `nats.namespace`), of those revocations.
    #[arg(
        long,
        env = "SPHAROS_OPERATOR_PLATFORM_NATS_NAMESPACE",
        default_value = "spharos"
    )]
    platform_nats_namespace: String,
    /// Client endpoint of the shared deployment, written into shared tenants' token Secrets.
    #[arg(long, env = "SPHAROS_OPERATOR_SHARED_ENDPOINT")]
    shared_endpoint: String,
    /// The platform's public key (SPKI PEM: the public half of the `signing.pem` billing signs
    /// tenant tokens with), handed to dedicated tenants as a trusted key. Unset: dedicated
    /// tenants report Provisioned=False (PlatformPublicKeyMissing).
    #[arg(long, env = "SPHAROS_OPERATOR_PLATFORM_PUBLIC_KEY_FILE")]
    platform_public_key_file: Option<PathBuf>,
    /// The platform's namespace (the Lease lives here; dedicated namespaces admit it).
    #[arg(long, env = "POD_NAMESPACE", default_value = "spharos-system")]
    namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "spharos-operator")]
    lease_name: String,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: i32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let token = std::fs::read_to_string(&args.billing_token_file)?
        .trim()
        .to_string();
    let billing = Billing::connect_lazy(&args.billing_endpoint, token)?;
    // Checked before anything else: a wrong key would only show at the tenants' clients.
    let platform_public_key = match &args.platform_public_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("platform public key {}: {e}", path.display()))?;
            let key = PlatformPublicKey::from_pem(&text)
                .map_err(|e| format!("platform public key {}: {e}", path.display()))?;
            info!(key_id = key.key_id(), "platform public key loaded");
            Some(key)
        }
        None => {
            warn!(
                "no platform public key (SPHAROS_OPERATOR_PLATFORM_PUBLIC_KEY_FILE): tokens \
                 issued by billing will not verify on dedicated tenants, which report \
                 Provisioned=False"
            );
            None
        }
    };
    let client = kube::Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let health = Health::new(registry);
    let listener = tokio::net::TcpListener::bind(args.http_listen).await?;
    let app = http::router(health.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    });

    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("spharos-operator-{}", uuid::Uuid::new_v4().simple()));
    let elector = LeaderElector::new(
        client.clone(),
        &args.namespace,
        &args.lease_name,
        &identity,
        args.lease_seconds,
    );
    let retry = Duration::from_secs(u64::try_from(args.lease_seconds.max(3)).unwrap_or(15) / 3);
    // Follow until the lease is ours; a follower is ready (it serves metrics and can take over).
    loop {
        match elector.try_acquire().await {
            Ok(true) => break,
            Ok(false) => health.set_ready(),
            Err(e) => warn!(error = %e, "lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
    info!(%identity, "leading");
    metrics.leader.set(1);
    health.set_ready();
    let config = OperatorConfig {
        image: args.tenant_image,
        nats_url: args.nats_url,
        shared_grpc_endpoint: args.shared_endpoint,
        platform_namespace: args.namespace.clone(),
        platform_public_key,
        platform_nats_stream: args.platform_nats_stream,
        platform_nats_namespace: args.platform_nats_namespace,
    };
    let ctx = Arc::new(Context::new(client, billing, config, metrics.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, async move {
        let _ = stopped.await;
    }));
    let lease_life = Duration::from_secs(u64::try_from(args.lease_seconds).unwrap_or(15));
    let mut renewed = tokio::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
        match elector.try_acquire().await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => break Err("lost the leader lease".into()),
            // Past the lease's life another replica may hold it: stop before both reconcile.
            Err(e) if renewed.elapsed() >= lease_life => {
                break Err(format!("could not renew the lease in time: {e}").into());
            }
            Err(e) => warn!(error = %e, "lease renewal"),
        }
    };
    metrics.leader.set(0);
    let _ = stop.send(());
    let _ = controller.await;
    if let Err(e) = elector.release().await {
        warn!(error = %e, "releasing the lease");
    }
    outcome
}
