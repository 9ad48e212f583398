//! The custodian's Prometheus metrics (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use qvm_api::wire::RefusalKind;

/// A refusal's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The refusal kind.
    pub reason: String,
}

/// Counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Counter,
    done: Counter,
    refusals: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("qvm_custodian");
        let (started, done) = (Counter::default(), Counter::default());
        let refusals = Family::<Reason, Counter>::default();
        registry.register(
            "sessions_started",
            "Evaluation sessions admitted",
            started.clone(),
        );
        registry.register(
            "sessions_done",
            "Evaluation sessions that delivered outputs",
            done.clone(),
        );
        registry.register(
            "refusals",
            "Refused requests and failed sessions, by reason",
            refusals.clone(),
        );
        Metrics {
            registry,
            started,
            done,
            refusals,
        }
    }
}

impl Metrics {
    /// A session was admitted.
    pub fn session_started(&self) {
        self.started.inc();
    }

    /// A session delivered.
    pub fn session_done(&self) {
        self.done.inc();
    }

    /// Something was refused.
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
