//! The operator's `/healthz`, `/readyz` and `/metrics`, served on a real socket.
use std::time::Duration;

use prometheus_client::registry::Registry;
use spharos_operator::{
    http::{Health, router},
    metrics::Metrics,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request written");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("answered in time")
        .expect("response read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (code, out)
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let health = Health::new(registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("address");
    let app = router(health.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(get(addr, "/healthz").await.0, 200);
    // Not ready until the election loop reached the apiserver.
    assert_eq!(get(addr, "/readyz").await.0, 503);
    health.set_ready();
    assert_eq!(get(addr, "/readyz").await.0, 200);

    metrics.leader.set(1);
    drop(metrics.count_and_measure());
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "spharos_operator_leader 1",
        "spharos_operator_reconciliations_total 1",
        "spharos_operator_reconcile_duration_seconds_count 1",
    ] {
        assert!(body.contains(line), "{line} missing in:\n{body}");
    }
}
