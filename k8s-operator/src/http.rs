//! The operator's HTTP surface: `/healthz` (the process is alive), `/readyz` (it has reached
//! the apiserver and joined the election, as leader or follower) and `/metrics` (Prometheus
//! text format).
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus_client::registry::Registry;

use crate::metrics;

/// Shared by the HTTP handlers and the election loop.
#[derive(Clone)]
pub struct Health {
    pub registry: Arc<Registry>,
    pub ready: Arc<AtomicBool>,
}

impl Health {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// The routes.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> StatusCode {
    if h.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics_text(State(h): State<Health>) -> Result<String, StatusCode> {
    metrics::encode(&h.registry).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}
