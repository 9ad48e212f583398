//! Counters: rounds, field elements sent and received, pooled items used, per op kind,
//! online and offline separately.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::msgs::FIELD_BYTES;

/// What an op was, for accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// Beaver multiplication.
    Mul,
    /// Oblivious select.
    Select,
    /// Less than zero.
    Ltz,
    /// Equal to zero.
    Eqz,
    /// Probabilistic truncation.
    TruncPr,
    /// Reduction modulo 2^m.
    Mod2m,
    /// Pooled random bits handed out.
    RandomBits,
    /// Offline: Beaver triples produced.
    OfflineTriples,
    /// Offline: random bits produced.
    OfflineBits,
}

/// Counters for one op kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Op invocations (one per op in a batch).
    pub ops: u64,
    /// Vector elements processed.
    pub elements: u64,
    /// Interactive rounds the ops took part in.
    pub rounds: u64,
    /// Field elements this custodian sent.
    pub sent: u64,
    /// Field elements this custodian received.
    pub received: u64,
    /// Beaver triples consumed.
    pub triples: u64,
    /// Random bits consumed.
    pub bits: u64,
}

impl Counters {
    /// Bytes sent, counting field elements only.
    pub fn bytes_sent(&self) -> u64 {
        self.sent * FIELD_BYTES
    }

    /// Bytes received, counting field elements only.
    pub fn bytes_received(&self) -> u64 {
        self.received * FIELD_BYTES
    }

    /// Adds another set of counters to these.
    pub fn merge(&mut self, o: &Counters) {
        self.ops += o.ops;
        self.elements += o.elements;
        self.rounds += o.rounds;
        self.sent += o.sent;
        self.received += o.received;
        self.triples += o.triples;
        self.bits += o.bits;
    }
}

/// Counters by op kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per op kind.
    pub by_op: BTreeMap<OpKind, Counters>,
}

impl Stats {
    /// The counters of one kind, created on first use.
    pub fn entry(&mut self, kind: OpKind) -> &mut Counters {
        self.by_op.entry(kind).or_default()
    }

    /// The counters of one kind.
    pub fn get(&self, kind: OpKind) -> Counters {
        self.by_op.get(&kind).copied().unwrap_or_default()
    }

    /// The sum over all kinds.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        self.by_op.values().for_each(|c| t.merge(c));
        t
    }
}
