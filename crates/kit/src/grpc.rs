//! gRPC plumbing shared by every service: the server with its telemetry layer (spans after the
//! OpenTelemetry `rpc.*` conventions, W3C trace context from metadata, latency metrics), and the
//! conversions every `grpc.rs` boundary needs.
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};
use uuid::Uuid;

use crate::{
    error::ServiceError,
    telemetry::{RpcLabels, metrics, set_parent_from_traceparent},
};

/// Serves `routes` on `listener` until `shutdown` is cancelled, with the telemetry layer.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Without TCP_NODELAY small responses wait out the peer's delayed ACK: ~40 ms per call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(TelemetryLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
        .await
}

/// Tower layer: one span and one latency sample per RPC.
#[derive(Clone, Copy, Debug, Default)]
pub struct TelemetryLayer;

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct TelemetryService<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for TelemetryService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let (service, method) = (service.to_string(), method.to_string());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            spharos.tenant_id = tracing::field::Empty,
        );
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        set_parent_from_traceparent(&span, traceparent.as_deref());
        // Take the service that was polled ready, leave a fresh clone behind (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = inner.call(req).await;
                let code = match &result {
                    Ok(resp) => resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code);
                let labels = RpcLabels {
                    rpc_service: service,
                    rpc_method: method,
                    rpc_grpc_status_code: code,
                };
                let m = metrics();
                m.rpc_requests_total.get_or_create(&labels).inc();
                m.rpc_duration_seconds
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                result
            },
            span,
        ))
    }
}

/// `DateTime<Utc>` → protobuf `Timestamp`.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Optional protobuf `Timestamp` → `DateTime<Utc>`, naming `field` when it is out of range.
pub fn from_timestamp(
    t: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, ServiceError> {
    match t {
        None => Ok(None),
        Some(ts) => DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
            .map(Some)
            .ok_or_else(|| ServiceError::invalid(field, "is not a valid timestamp")),
    }
}

/// A required UUID field.
pub fn parse_uuid(value: &str, field: &str) -> Result<Uuid, ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| ServiceError::invalid(field, "must be a UUID"))
}

/// An optional UUID field ("" = none).
pub fn parse_optional_uuid(value: &str, field: &str) -> Result<Option<Uuid>, ServiceError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_uuid(value, field).map(Some)
    }
}

/// A `YYYY-MM-DD` date field ("" = none).
pub fn parse_optional_date(value: &str, field: &str) -> Result<Option<NaiveDate>, ServiceError> {
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ServiceError::invalid(field, "must be a date YYYY-MM-DD"))
}

/// The paths of an `update_mask`; an absent or empty mask is an error naming the field.
pub fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, ServiceError> {
    let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(ServiceError::invalid(
            "update_mask",
            format!(
                "must list the fields to change, from: {}",
                allowed.join(", ")
            ),
        ));
    }
    let mut v = crate::error::Violations::new();
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            v.add(
                "update_mask",
                format!("{p:?} cannot be updated; allowed: {}", allowed.join(", ")),
            );
        }
    }
    v.finish()?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let now = Utc::now();
        let back = from_timestamp(Some(&timestamp(now)), "t")
            .expect("valid")
            .expect("some");
        assert_eq!(back, now);
    }

    #[test]
    fn masks_and_ids_name_the_field() {
        let err = mask_paths(None, &["name"]).expect_err("empty");
        assert!(err.to_string().contains("update_mask"));
        let m = prost_types::FieldMask {
            paths: vec!["name".into(), "status".into()],
        };
        let err = mask_paths(Some(&m), &["name"]).expect_err("status not allowed");
        assert!(err.to_string().contains("\"status\""), "{err}");
        assert!(
            parse_uuid("x", "member_id")
                .expect_err("bad")
                .to_string()
                .contains("member_id")
        );
        assert!(parse_optional_date("1990-13-01", "birth_date").is_err());
        assert_eq!(parse_optional_uuid("", "x").expect("ok"), None);
    }
}
