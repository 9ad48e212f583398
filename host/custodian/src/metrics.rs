//! The custodian's Prometheus metrics (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use qvm_api::wire::RefusalKind;

/// A refusal's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The refusal kind.
    pub reason: String,
}

/// An alarm's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Alarm {
    /// What was seen: `pool_reuse` or `chain_fork`.
    pub kind: String,
}

/// A pool's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// `triples` or `bits`.
    pub pool: String,
}

/// Counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Counter,
    done: Counter,
    refusals: Family<Reason, Counter>,
    alarms: Family<Alarm, Counter>,
    learned: Counter,
    held: Family<PoolLabel, Gauge>,
    pruned: Counter,
    marks_refused: Family<Reason, Counter>,
    offline_pending: Gauge,
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
        let alarms = Family::<Alarm, Counter>::default();
        registry.register(
            "alarms",
            "Evidence of a misbehaving coordinator, by kind",
            alarms.clone(),
        );
        let learned = Counter::default();
        registry.register(
            "pool_ranges_learned",
            "Pooled ranges other custodians admitted, learned from their signed pool marks",
            learned.clone(),
        );
        let held = Family::<PoolLabel, Gauge>::default();
        registry.register(
            "pool_held",
            "Pooled items held in memory, from the first not yet used or retired to the end",
            held.clone(),
        );
        let pruned = Counter::default();
        registry.register(
            "batches_pruned",
            "Batch records deleted once every item in them was used or retired",
            pruned.clone(),
        );
        let marks_refused = Family::<Reason, Counter>::default();
        registry.register(
            "pool_marks_refused",
            "Pool-marks questions refused (not from another custodian, or too old), by reason",
            marks_refused.clone(),
        );
        let offline_pending = Gauge::default();
        registry.register(
            "offline_pending",
            "Offline batches this custodian started whose record has not arrived",
            offline_pending.clone(),
        );
        Metrics {
            registry,
            marks_refused,
            offline_pending,
            started,
            done,
            refusals,
            alarms,
            learned,
            held,
            pruned,
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

    /// A pool-marks question was refused (kept apart from evaluation refusals: anyone
    /// who reaches the port can cause these).
    pub fn marks_refused(&self, kind: RefusalKind) {
        self.marks_refused
            .get_or_create(&Reason {
                reason: kind.as_str().into(),
            })
            .inc();
    }

    /// An alarm was raised.
    pub fn alarm(&self, kind: &str) {
        self.alarms
            .get_or_create(&Alarm { kind: kind.into() })
            .inc();
    }

    /// Ranges were learned from another custodian's pool marks.
    pub fn learned(&self, n: u64) {
        self.learned.inc_by(n);
    }

    /// The items a pool holds, after a sweep.
    pub fn pool_held(&self, pool: &str, items: u64) {
        self.held
            .get_or_create(&PoolLabel { pool: pool.into() })
            .set(items as i64);
    }

    /// Offline batches waiting for their records.
    pub fn offline_pending(&self, batches: usize) {
        self.offline_pending.set(batches as i64);
    }

    /// Batch records were pruned.
    pub fn pruned(&self, n: u64) {
        self.pruned.inc_by(n);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        qvm_node::http::metrics_text(&self.registry)
    }
}
