//! The HTTP port: `/healthz` (the process is up), `/readyz` (migrations ran, modules started,
//! databases answer) and `/metrics` (Prometheus text format). Bound before the modules start,
//! so an orchestrator sees "alive, not ready" while migrations run.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use spharos_kit::db::Db;

/// What `/readyz` looks at.
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    dbs: RwLock<Vec<Db>>,
}

impl Readiness {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Called once every module has migrated and started.
    pub fn set_ready(&self, dbs: Vec<Db>) {
        if let Ok(mut guard) = self.dbs.write() {
            *guard = dbs;
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_marked_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn readyz(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    if !r.is_marked_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting (migrations running)\n".to_string(),
        );
    }
    let dbs = r.dbs.read().map(|g| g.clone()).unwrap_or_default();
    for db in dbs {
        if let Err(e) = db.ping().await {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: database of {} unreachable: {e}\n", db.schema()),
            );
        }
    }
    (StatusCode::OK, "ready\n".to_string())
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        spharos_kit::telemetry::render_metrics(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> StatusCode {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        router.oneshot(req).await.expect("response").status()
    }

    #[tokio::test]
    async fn readyz_waits_for_migrations_but_healthz_does_not() {
        let r = Readiness::new();
        let app = router(r.clone());
        assert_eq!(get_status(app.clone(), "/healthz").await, StatusCode::OK);
        assert_eq!(
            get_status(app.clone(), "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.set_ready(vec![]);
        assert_eq!(get_status(app.clone(), "/readyz").await, StatusCode::OK);
        assert_eq!(get_status(app, "/metrics").await, StatusCode::OK);
    }
}
