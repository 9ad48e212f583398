//! The cost model: what one evaluation costs the custodians.
//!
//! Interactive nodes are grouped in layers (a node's layer is one more than the deepest
//! interactive node it depends on); the ops of one layer run in the same rounds, so a
//! layer costs the rounds of its slowest op and the program costs the sum over layers —
//! rounds equal the multiplicative depth, whatever the vector widths. Pooled material and
//! bytes follow the protocols of `qvm-mpc` exactly (`docs/protocol/mpc.md`).

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
fn node_cost(op: &Op, len: u64, k_of: impl Fn(usize) -> u32) -> (u32, u64, u64, u64, u64) {
    match op {
        Op::Mul(..) | Op::Select(..) => (1, len, 0, 2 * len, 0),
        Op::Trunc(a, m) => {
            let _ = k_of(*a);
            (1, 0, len * *m as u64, len, 0)
        }
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

/// The cost of one evaluation of `ir`.
pub fn cost(ir: &Ir) -> Cost {
    let mut layer = vec![0u32; ir.nodes.len()];
    let mut layer_rounds: Vec<u32> = Vec::new();
    let (mut triples, mut bits, mut sent, mut comparisons, mut truncations) = (0, 0, 0, 0, 0);
    for (i, node) in ir.nodes.iter().enumerate() {
        let deps = deps(&node.op);
        let base = deps.iter().map(|d| layer[*d]).max().unwrap_or(0);
        if !node.is_interactive(&ir.nodes) {
            layer[i] = base;
            continue;
        }
        layer[i] = base + 1;
        let (r, t, b, e, c) = node_cost(&node.op, node.len as u64, |a| ir.nodes[a].range.bits());
        if layer_rounds.len() < layer[i] as usize {
            layer_rounds.resize(layer[i] as usize, 0);
        }
        let slot = &mut layer_rounds[layer[i] as usize - 1];
        *slot = (*slot).max(r);
        triples += t;
        bits += b;
        sent += e;
        comparisons += c;
        if matches!(node.op, Op::Trunc(..)) {
            truncations += node.len as u64;
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

/// The nodes a node reads.
pub fn deps(op: &Op) -> Vec<usize> {
    match op {
        Op::Input(_) | Op::Secret(_) | Op::Const(_) => Vec::new(),
        Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => vec![*a, *b],
        Op::Neg(a)
        | Op::MulConst(a, _)
        | Op::Trunc(a, _)
        | Op::Ltz(a, _)
        | Op::Eqz(a, _)
        | Op::Sum(a)
        | Op::Slice(a, ..)
        | Op::Broadcast(a, _) => vec![*a],
        Op::Select(c, a, b) => vec![*c, *a, *b],
        Op::Concat(parts) => parts.clone(),
    }
}
