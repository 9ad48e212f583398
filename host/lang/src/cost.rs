//! The cost model: what one evaluation costs the custodians.
//!
//! Interactive nodes are grouped in layers (a node's layer is one more than the deepest
//! interactive node it depends on), and within a layer into batches of one kind: each batch
//! is one host call on concatenated operands, so its rounds do not grow with the number or
//! width of the ops in it. A layer costs the sum of its batches' rounds (one op kind per
//! call in the guest ABI), the program the sum over layers. Pooled material and bytes
//! follow the protocols of `qvm-mpc` exactly (`docs/protocol/mpc.md`), with each batch run
//! at the largest bit bound of its members, as the emitter runs it.

use qvm_mpc::online::{bitlt_mults, tree_rounds};
use serde::Serialize;

use crate::ir::{Ir, Op};

/// Whether a program needs interaction between custodians.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Class {
    /// Only linear operations on secrets: each custodian computes alone; any K suffice and
    /// no offline material is used.
    LocalOnly,
    /// Secret × secret products or comparisons: needs the offline phase, so N ≥ 2K − 1.
    Interactive,
}

impl Class {
    /// The smallest committee that can run the program with threshold K.
    pub fn min_n(&self, k: usize) -> usize {
        match self {
            Class::LocalOnly => k,
            Class::Interactive => 2 * k - 1,
        }
    }
}

/// What one evaluation costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Local-only or interactive.
    pub class: Class,
    /// Interactive rounds (through the king).
    pub rounds: u32,
    /// Secret × secret multiplications (Beaver triples), including those inside
    /// comparisons.
    pub multiplications: u64,
    /// Comparison elements (LTZ and EQZ).
    pub comparisons: u64,
    /// Probabilistic truncations (fixed-point rescales of secrets).
    pub truncations: u64,
    /// Random bits from the pool.
    pub random_bits: u64,
    /// Field elements each custodian sends (and receives) through the king.
    pub elements_sent: u64,
    /// Bytes each custodian sends and receives (16 per element each way).
    pub bytes_per_custodian: u64,
    /// Budget units: 1 per evaluation, 1 per round, 1 per 1 000 elements sent.
    pub cost_units: u64,
}

/// One interactive node's (rounds, triples, bits, elements sent, comparisons).
fn node_cost(op: &Op, len: u64) -> (u32, u64, u64, u64, u64) {
    match op {
        Op::Mul(..) | Op::Select(..) => (1, len, 0, 2 * len, 0),
        Op::Trunc(_, m) => (1, 0, len * *m as u64, len, 0),
        Op::Ltz(_, k) => {
            let m = k - 1;
            (
                1 + tree_rounds(m),
                len * bitlt_mults(m),
                len * m as u64,
                len + 2 * len * bitlt_mults(m),
                len,
            )
        }
        Op::Eqz(_, k) => {
            let t = (*k as u64).saturating_sub(1);
            (
                1 + tree_rounds(*k),
                len * t,
                len * *k as u64,
                len + 2 * len * t,
                len,
            )
        }
        _ => (0, 0, 0, 0, 0),
    }
}

/// Each node's interactive layer: one more than the deepest interactive node it depends
/// on (for an interactive node), or the same (for a local one). The ops of one layer can
/// run in the same rounds.
pub fn layers(ir: &Ir) -> Vec<u32> {
    let mut layer = vec![0u32; ir.nodes.len()];
    for (i, node) in ir.nodes.iter().enumerate() {
        let base = node.op.deps().iter().map(|d| layer[*d]).max().unwrap_or(0);
        layer[i] = base + node.is_interactive(&ir.nodes) as u32;
    }
    layer
}

/// Interactive ops that run together: one layer, one kind (one shift for truncations).
/// The emitter runs each batch as one host call on the concatenated operands, with the
/// largest bit bound of its members; the cost model charges exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The layer.
    pub layer: u32,
    /// The nodes, in IR order.
    pub members: Vec<usize>,
}

/// What batches an interactive node joins: equal keys in one layer run together.
pub fn batch_key(ir: &Ir, id: usize) -> String {
    let secret = |x: &usize| ir.nodes[*x].vis == crate::ir::Vis::Secret;
    match &ir.nodes[id].op {
        Op::Mul(..) => "mul".into(),
        Op::Ltz(..) => "ltz".into(),
        Op::Eqz(..) => "eqz".into(),
        Op::Trunc(_, m) => format!("trunc{m}"),
        // An interactive select has a secret condition and at least one secret branch; a
        // public branch is lifted to a trivial sharing, so all of a layer's selects share
        // one call (a ReLU layer's `max(v, 0)` is one round, not one per unit).
        Op::Select(c, ..) if secret(c) => "select".into(),
        _ => format!("single{id}"),
    }
}

/// The batches of each layer, layers in order.
pub fn batches(ir: &Ir) -> Vec<Batch> {
    let layer = layers(ir);
    let mut out: Vec<(Batch, String)> = Vec::new();
    for (id, node) in ir.nodes.iter().enumerate() {
        if !node.is_interactive(&ir.nodes) {
            continue;
        }
        let key = batch_key(ir, id);
        match out
            .iter_mut()
            .find(|(b, k)| b.layer == layer[id] && *k == key)
        {
            Some((b, _)) => b.members.push(id),
            None => out.push((
                Batch {
                    layer: layer[id],
                    members: vec![id],
                },
                key,
            )),
        }
    }
    let mut batches: Vec<Batch> = out.into_iter().map(|(b, _)| b).collect();
    batches.sort_by_key(|b| b.layer);
    batches
}

/// The bit bound a batch runs with: the largest of its members'.
pub fn batch_bits(ir: &Ir, b: &Batch) -> u32 {
    b.members
        .iter()
        .map(|id| match &ir.nodes[*id].op {
            Op::Ltz(_, k) | Op::Eqz(_, k) => *k,
            Op::Trunc(a, m) => ir.nodes[*a].range.bits().max(m + 1),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The cost of one evaluation of `ir`, as the emitted component runs it.
pub fn cost(ir: &Ir) -> Cost {
    let mut layer_rounds: Vec<u32> = Vec::new();
    let (mut triples, mut bits, mut sent, mut comparisons, mut truncations) = (0, 0, 0, 0, 0);
    for b in batches(ir) {
        let first = &ir.nodes[b.members[0]];
        let len: u64 = b.members.iter().map(|id| ir.nodes[*id].len as u64).sum();
        let k = batch_bits(ir, &b);
        let op = match first.op {
            Op::Ltz(a, _) => Op::Ltz(a, k),
            Op::Eqz(a, _) => Op::Eqz(a, k),
            ref other => other.clone(),
        };
        let (r, t, bi, e, c) = node_cost(&op, len);
        if layer_rounds.len() < b.layer as usize {
            layer_rounds.resize(b.layer as usize, 0);
        }
        // Each batch is one host call; the calls of a layer run one after another (the
        // guest ABI has one op per call), so a layer costs the sum of its batches' rounds.
        layer_rounds[b.layer as usize - 1] += r;
        triples += t;
        bits += bi;
        sent += e;
        comparisons += c;
        if matches!(op, Op::Trunc(..)) {
            truncations += len;
        }
    }
    let rounds: u32 = layer_rounds.iter().sum();
    Cost {
        class: if rounds == 0 {
            Class::LocalOnly
        } else {
            Class::Interactive
        },
        rounds,
        multiplications: triples,
        comparisons,
        truncations,
        random_bits: bits,
        elements_sent: sent,
        bytes_per_custodian: sent * qvm_mpc::msgs::FIELD_BYTES,
        cost_units: 1 + rounds as u64 + sent.div_ceil(1000),
    }
}
