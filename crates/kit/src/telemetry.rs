//! Logs, traces and metrics. `tracing` logs (pretty or JSON), OpenTelemetry traces exported by
//! OTLP when an endpoint is configured, W3C trace context carried through gRPC metadata and NATS
//! headers, and a Prometheus registry rendered at `/metrics`.
use std::{
    io::IsTerminal,
    sync::{OnceLock, atomic::AtomicU64},
};

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, TelemetrySettings};

/// Labels of RPC metrics (OpenTelemetry `rpc.*` semantic conventions).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub rpc_service: String,
    pub rpc_method: String,
    pub rpc_grpc_status_code: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
    pub outcome: String,
}

/// The process's metrics. Names follow `spharos_<area>_<what>_<unit>`.
pub struct Metrics {
    pub rpc_requests_total: Family<RpcLabels, Counter>,
    pub rpc_duration_seconds: Family<RpcLabels, Histogram>,
    pub outbox_lag_seconds: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    pub outbox_published_total: Family<ServiceLabels, Counter>,
    pub events_consumed_total: Family<ConsumerLabels, Counter>,
    /// Writes per committed group-commit transaction (the points ledger's and the coupon
    /// claims' batches), by service.
    pub group_commit_writes: Family<ServiceLabels, Histogram>,
    /// Wall time of a group-commit batch from its first statement to its answers, by service.
    pub group_commit_duration_seconds: Family<ServiceLabels, Histogram>,
    registry: Registry,
}

/// Buckets of [`Metrics::group_commit_writes`]: powers of two up to 256.
fn batch_size_buckets() -> impl Iterator<Item = f64> {
    (0..=8).map(|i| f64::from(1u32 << i))
}

/// Records one committed group-commit batch of `service`.
pub fn observe_group_commit(service: &str, writes: usize, elapsed: std::time::Duration) {
    let labels = ServiceLabels {
        service: service.to_string(),
    };
    let m = metrics();
    m.group_commit_writes
        .get_or_create(&labels)
        .observe(writes as f64);
    m.group_commit_duration_seconds
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// `(batches, writes)` recorded by [`observe_group_commit`] for `service` so far, as
/// `/metrics` shows them; `None` before its first batch. For tests and diagnostics: it renders
/// the whole registry.
pub fn group_commit_totals(service: &str) -> Option<(u64, f64)> {
    let text = render_metrics();
    let labels = format!("{{service=\"{service}\"}} ");
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(labels.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((
        value("spharos_group_commit_writes_count")? as u64,
        value("spharos_group_commit_writes_sum")?,
    ))
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ]
    .into_iter()
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("spharos");
        let rpc_requests_total = Family::<RpcLabels, Counter>::default();
        let rpc_duration_seconds = Family::<RpcLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let outbox_lag_seconds = Family::<ServiceLabels, Gauge<f64, AtomicU64>>::default();
        let outbox_published_total = Family::<ServiceLabels, Counter>::default();
        let events_consumed_total = Family::<ConsumerLabels, Counter>::default();
        let group_commit_writes = Family::<ServiceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(batch_size_buckets())
        });
        let group_commit_duration_seconds =
            Family::<ServiceLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(latency_buckets())
            });
        registry.register(
            "rpc_requests",
            "gRPC requests handled",
            rpc_requests_total.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC request latency",
            rpc_duration_seconds.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest unpublished outbox event",
            outbox_lag_seconds.clone(),
        );
        registry.register(
            "outbox_published",
            "Outbox events published and acknowledged",
            outbox_published_total.clone(),
        );
        registry.register(
            "events_consumed",
            "Events handled by consumers, by outcome",
            events_consumed_total.clone(),
        );
        registry.register(
            "group_commit_writes",
            "Writes per committed group-commit batch",
            group_commit_writes.clone(),
        );
        registry.register(
            "group_commit_duration_seconds",
            "Wall time of a committed group-commit batch",
            group_commit_duration_seconds.clone(),
        );
        Metrics {
            rpc_requests_total,
            rpc_duration_seconds,
            outbox_lag_seconds,
            outbox_published_total,
            events_consumed_total,
            group_commit_writes,
            group_commit_duration_seconds,
            registry,
        }
    })
}

/// The metrics in the Prometheus text format.
pub fn render_metrics() -> String {
    let mut out = String::new();
    if encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    out
}

/// Keeps the trace exporter alive; flushes on drop.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_level {0:?} is not a valid filter: {1}")]
    Filter(String, String),
    #[error("telemetry.otlp_endpoint: {0}")]
    Otlp(String),
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(
    settings: &TelemetrySettings,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.log_level)
        .map_err(|e| TelemetryError::Filter(settings.log_level.clone(), e.to_string()))?;
    let (provider, otel_layer) = match &settings.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service_name.to_string())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("spharos");
            opentelemetry::global::set_tracer_provider(provider.clone());
            (
                Some(provider),
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            )
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(TelemetryGuard { provider })
}

/// Test helper: a quiet subscriber honouring `RUST_LOG`, installed once.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .try_init();
    });
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);
impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The W3C `traceparent` of the current span, if it is being traced.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut pairs = Vec::new();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut pairs));
    pairs
        .into_iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v)
}

struct OneHeader<'a>(Option<&'a str>);
impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" { self.0 } else { None }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Makes `span` a child of the remote context in `traceparent` (from gRPC metadata or an event).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    if traceparent.is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&OneHeader(traceparent));
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_format() {
        metrics()
            .rpc_requests_total
            .get_or_create(&RpcLabels {
                rpc_service: "spharos.member.v1.MemberService".into(),
                rpc_method: "JoinMember".into(),
                rpc_grpc_status_code: 0,
            })
            .inc();
        let text = render_metrics();
        assert!(text.contains("spharos_rpc_requests_total{"), "{text}");
        assert!(text.contains("rpc_method=\"JoinMember\""), "{text}");
    }

    #[test]
    fn group_commit_batches_are_counted_by_size_and_time() {
        observe_group_commit("telemetry-test", 20, std::time::Duration::from_millis(7));
        observe_group_commit("telemetry-test", 3, std::time::Duration::from_millis(2));
        let text = render_metrics();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains("service=\"telemetry-test\""))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} line with a value in\n{text}"))
        };
        assert_eq!(line("spharos_group_commit_writes_count{"), 2.0);
        assert_eq!(line("spharos_group_commit_writes_sum{"), 23.0);
        // 3 falls in the bucket up to 4, 20 in the one up to 32.
        assert_eq!(
            line("spharos_group_commit_writes_bucket{le=\"4.0\",service="),
            1.0
        );
        assert_eq!(
            line("spharos_group_commit_writes_bucket{le=\"32.0\",service="),
            2.0
        );
        let seconds = line("spharos_group_commit_duration_seconds_sum{");
        assert!((seconds - 0.009).abs() < 1e-9, "{seconds}");
        assert_eq!(group_commit_totals("telemetry-test"), Some((2, 23.0)));
        assert_eq!(group_commit_totals("telemetry-test-unused"), None);
    }
}
