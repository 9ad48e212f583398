//! The SSA IR: a DAG of vector-valued nodes, each public or secret, with its fixed-point
//! scale and the interval its elements provably lie in.
//!
//! Every node is a vector (a scalar is a vector of length 1), so element-wise ops and their
//! interactive rounds batch naturally. The IR can be built without the surface language
//! ([`Builder`]); the checker produces it, the range analysis annotates it, the evaluator
//! and the cost model read it.

use serde::Serialize;

use crate::ast::Scalar;

/// A node's index in [`Ir::nodes`].
pub type NodeId = usize;

/// Who may see a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Vis {
    /// Known to every custodian (derived from public inputs and constants only).
    Public,
    /// Secret-shared.
    Secret,
}

/// A closed interval of scaled integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// Least value.
    pub lo: i128,
    /// Greatest value.
    pub hi: i128,
}

impl Interval {
    /// [lo, hi].
    pub fn new(lo: i128, hi: i128) -> Interval {
        Interval {
            lo: lo.min(hi),
            hi: lo.max(hi),
        }
    }

    /// The single value v.
    pub fn point(v: i128) -> Interval {
        Interval { lo: v, hi: v }
    }

    /// Bits k of a signed representation: every value lies in [−2^(k−1), 2^(k−1)).
    pub fn bits(&self) -> u32 {
        let need = |v: i128| {
            if v < 0 {
                128 - (!v).leading_zeros()
            } else {
                128 - v.leading_zeros()
            }
        };
        need(self.lo).max(need(self.hi)) + 1
    }

    /// The smallest interval holding both.
    pub fn union(&self, o: &Interval) -> Interval {
        Interval::new(self.lo.min(o.lo), self.hi.max(o.hi))
    }
}

/// What a node computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Op {
    /// A public input.
    Input(String),
    /// A secret parameter.
    Secret(String),
    /// Public constants.
    Const(Vec<i128>),
    /// a + b.
    Add(NodeId, NodeId),
    /// a − b.
    Sub(NodeId, NodeId),
    /// −a.
    Neg(NodeId),
    /// a · b, element-wise (interactive when both are secret).
    Mul(NodeId, NodeId),
    /// a · c for a public constant c (local; aligns scales and divides).
    MulConst(NodeId, i128),
    /// a / 2^m rounded down (for secrets, probabilistically up: TruncPr).
    Trunc(NodeId, u32),
    /// 1 where a < 0 (a within `k` bits).
    Ltz(NodeId, u32),
    /// 1 where a = 0 (a within `k` bits).
    Eqz(NodeId, u32),
    /// c · (a − b) + b.
    Select(NodeId, NodeId, NodeId),
    /// Σ a (length 1).
    Sum(NodeId),
    /// a[start..end].
    Slice(NodeId, u32, u32),
    /// The parts, one after the other.
    Concat(Vec<NodeId>),
    /// A length-1 a repeated n times.
    Broadcast(NodeId, u32),
}

impl Op {
    /// The nodes this op reads.
    pub fn deps(&self) -> Vec<NodeId> {
        match self {
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

    /// The node ids this op reads, to renumber them.
    pub fn deps_mut(&mut self) -> Vec<&mut NodeId> {
        match self {
            Op::Input(_) | Op::Secret(_) | Op::Const(_) => Vec::new(),
            Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => vec![a, b],
            Op::Neg(a)
            | Op::MulConst(a, _)
            | Op::Trunc(a, _)
            | Op::Ltz(a, _)
            | Op::Eqz(a, _)
            | Op::Sum(a)
            | Op::Slice(a, ..)
            | Op::Broadcast(a, _) => vec![a],
            Op::Select(c, a, b) => vec![c, a, b],
            Op::Concat(parts) => parts.iter_mut().collect(),
        }
    }
}

/// A node: its op and what the analysis proved about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Elements.
    pub len: u32,
    /// Public or secret.
    pub vis: Vis,
    /// Fixed-point scale of its elements (0 for integers and booleans).
    pub scale: u32,
    /// The type the program sees.
    pub ty: Scalar,
    /// Where every element provably lies (scaled).
    pub range: Interval,
}

impl Node {
    /// Whether computing this node needs interaction between custodians.
    pub fn is_interactive(&self, nodes: &[Node]) -> bool {
        let secret = |id: &NodeId| nodes[*id].vis == Vis::Secret;
        match &self.op {
            Op::Mul(a, b) => secret(a) && secret(b),
            Op::Trunc(a, _) | Op::Ltz(a, _) | Op::Eqz(a, _) => secret(a),
            Op::Select(c, a, b) => secret(c) && (secret(a) || secret(b)),
            _ => false,
        }
    }
}

/// A declared input or secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub ty: Scalar,
    /// Its length (1 for a scalar).
    pub len: u32,
    /// Whether it was declared as a vector.
    pub vector: bool,
    /// Its bounds, scaled.
    pub range: Interval,
}

/// A program in IR form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ir {
    /// The program's name.
    pub name: String,
    /// Its fixed-point scale f.
    pub scale: u32,
    /// Public inputs.
    pub inputs: Vec<Param>,
    /// Secret parameters.
    pub secrets: Vec<Param>,
    /// The DAG, in topological order.
    pub nodes: Vec<Node>,
    /// Named outputs, each at its node's scale (fixed products are revealed at scale 2f).
    pub outputs: Vec<(String, NodeId)>,
}

impl Ir {
    /// The scale an output is revealed at.
    pub fn output_scale(&self, name: &str) -> Option<u32> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| self.nodes[*id].scale)
    }
}

/// Builds IR with common subexpressions shared: pushing a node equal to an existing one
/// returns the existing id.
#[derive(Debug, Default)]
pub struct Builder {
    nodes: Vec<Node>,
    index: std::collections::HashMap<String, NodeId>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds a node (or finds the same one).
    pub fn push(&mut self, node: Node) -> NodeId {
        let key = format!("{:?}|{}|{}|{:?}", node.op, node.scale, node.len, node.ty);
        if let Some(id) = self.index.get(&key) {
            return *id;
        }
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        self.index.insert(key, id);
        id
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// The nodes built so far.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes, to finish an [`Ir`].
    pub fn finish(self) -> Vec<Node> {
        self.nodes
    }
}
