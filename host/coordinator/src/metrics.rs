//! The coordinator's Prometheus metrics (`/metrics`): evaluations, refusals by reason,
//! latency, rounds, pool levels and budget remaining.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use qvm_api::wire::RefusalKind;

/// A refusal's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The refusal kind.
    pub reason: String,
}

/// A program's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabel {
    /// The program.
    pub program: String,
}

/// A pool's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// `triples` or `bits`.
    pub pool: String,
}

/// An identity's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabel {
    /// The program.
    pub program: String,
    /// The identity.
    pub identity: String,
}

/// The metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Evaluations answered, by program.
    pub evaluations: Family<ProgramLabel, Counter>,
    /// Refusals by reason.
    pub refusals: Family<Reason, Counter>,
    /// Retries with another session set.
    pub retries: Counter,
    /// End-to-end latency of answered evaluations, seconds.
    pub latency: Histogram,
    /// Rounds per answered evaluation.
    pub rounds: Histogram,
    /// Items available per pool.
    pub pool_available: Family<PoolLabel, Gauge>,
    /// Budget remaining in the current period.
    pub budget_remaining: Family<IdentityLabel, Gauge>,
    /// Healthy custodians.
    pub healthy: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("qvm_coordinator");
        let m = Metrics {
            registry: Registry::default(),
            evaluations: Family::default(),
            refusals: Family::default(),
            retries: Counter::default(),
            latency: Histogram::new([
                0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
                2.0, 5.0,
            ]),
            rounds: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            pool_available: Family::default(),
            budget_remaining: Family::default(),
            healthy: Gauge::default(),
        };
        registry.register("evaluations", "Evaluations answered", m.evaluations.clone());
        registry.register(
            "refusals",
            "Refused requests, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "retries",
            "Sessions retried with another session set",
            m.retries.clone(),
        );
        registry.register(
            "latency_seconds",
            "Latency of answered evaluations",
            m.latency.clone(),
        );
        registry.register("rounds", "Rounds per answered evaluation", m.rounds.clone());
        registry.register(
            "pool_available",
            "Pooled items available",
            m.pool_available.clone(),
        );
        registry.register(
            "budget_remaining",
            "Cost units left this period",
            m.budget_remaining.clone(),
        );
        registry.register(
            "healthy_custodians",
            "Custodians answering health checks",
            m.healthy.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts a refusal.
    pub fn refused(&self, kind: RefusalKind) {
        self.refusals
            .get_or_create(&Reason {
                reason: kind.as_str().into(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        qvm_node::http::metrics_text(&self.registry)
    }
}
