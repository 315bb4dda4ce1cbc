//! Prometheus metrics of the reconciler, as controller-rs has them: reconciliations, failures by
//! tenant and error, and a duration histogram observed when the guard drops (so an early return
//! or `?` is measured too).
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::time::Instant;

/// Labels of a failed reconciliation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `<namespace>/<name>` of the tenant resource.
    pub instance: String,
    /// The error's metric label (its kind, never a message with ids).
    pub error: String,
}

/// The operator's metrics, registered once per process.
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Counter::default(),
            failures: Family::default(),
            reconcile_duration: Histogram::new([0.01, 0.1, 0.25, 0.5, 1., 5., 15., 60.]),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `spharos_operator` prefix.
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("spharos_operator");
        r.register(
            "reconciliations",
            "Reconciliations started",
            self.reconciliations.clone(),
        );
        r.register(
            "reconciliation_errors",
            "Reconciliations that failed, by tenant and error",
            self.failures.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "How long a reconciliation took",
            self.reconcile_duration.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        self
    }

    /// Counts a failure of `instance` with `error`.
    pub fn reconcile_failure(&self, instance: &str, error: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                instance: instance.into(),
                error: error.into(),
            })
            .inc();
    }

    /// Counts a reconciliation and measures it until the guard drops.
    pub fn count_and_measure(&self) -> ReconcileMeasurer {
        self.reconciliations.inc();
        ReconcileMeasurer {
            start: Instant::now(),
            metric: self.reconcile_duration.clone(),
        }
    }
}

/// Observes the elapsed time into the histogram on drop.
pub struct ReconcileMeasurer {
    start: Instant,
    metric: Histogram,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.metric.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The text exposition of `registry` (`/metrics`).
pub fn encode(registry: &Arc<Registry>) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}
