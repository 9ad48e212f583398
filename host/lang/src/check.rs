//! Names, types, secrecy and ranges: from the syntax tree to the IR.
//!
//! The checker inlines functions, unrolls loops, evaluates indices and loop bounds at
//! compile time (so control flow never depends on a secret: an `if` on a secret is an
//! oblivious select, both sides computed), tracks each value's fixed-point scale, and runs
//! the **range analysis**: from the declared bounds of inputs and secrets, every node gets
//! the interval its elements lie in, and every node must fit the 64-bit budget of
//! DESIGN.md §2 (comparisons and truncations need k ≤ 64; κ = 40 more bits of masking stay
//! below p). Truncations are inserted only where needed: a product's scale is reduced only
//! when it is multiplied again, when a sum would overflow, or at an output. A program that
//! could overflow anyway is rejected with an error naming the expression.

use std::collections::HashMap;

use crate::ast::{self, BinOp, Expr, ExprKind, Item, Scalar, UnOp};
use crate::diag::{CompileError, Diagnostic, Span};
use crate::ir::{Builder, Interval, Ir, Node, NodeId, Op, Param, Vis};

/// Default fixed-point scale.
pub const DEFAULT_SCALE: u32 = 16;
/// Values computed on shares (and public values, computed in i64) must fit this many bits.
pub const BUDGET_BITS: u32 = 64;
/// Longest unrolled loop.
pub const MAX_UNROLL: i128 = 100_000;
/// Most expressions a program may unroll to (loop bodies count once per iteration).
pub const MAX_WORK: u64 = 2_000_000;

/// Checks a parsed program and lowers it to IR.
pub fn check(program: &ast::Program, source: &str) -> Result<Ir, CompileError> {
    let scale = program.scale.as_ref().map_or(DEFAULT_SCALE, |(s, _)| *s);
    let mut c = Checker {
        source,
        scale,
        b: Builder::new(),
        scopes: vec![HashMap::new()],
        fns: HashMap::new(),
        calls: Vec::new(),
        errors: Vec::new(),
        inputs: Vec::new(),
        secrets: Vec::new(),
        outputs: Vec::new(),
        defined: HashMap::new(),
        work: 0,
    };
    for item in &program.items {
        if let Err(e) = c.item(item) {
            // A name whose definition failed is poisoned: its uses report nothing more.
            if let Item::Let(b) = item {
                c.bind(&b.name.name, Binding::Poisoned);
            }
            if e.message != POISONED {
                c.errors.push(e);
            }
        }
    }
    if c.outputs.is_empty() && c.errors.is_empty() {
        c.errors.push(
            Diagnostic::new(
                "the program has no outputs",
                program.name.span.clone(),
                "this program",
            )
            .with_hint("add `output NAME = EXPR`: a program reveals exactly its outputs"),
        );
    }
    if !c.errors.is_empty() {
        return Err(CompileError {
            diagnostics: c.errors,
        });
    }
    Ok(Ir {
        name: program.name.name.clone(),
        scale,
        inputs: c.inputs,
        secrets: c.secrets,
        nodes: c.b.finish(),
        outputs: c.outputs.into_iter().map(|(n, id, _)| (n, id)).collect(),
    })
}

/// The message of an error already reported elsewhere (a use of a failed definition).
const POISONED: &str = "\u{0}poisoned";

#[derive(Clone)]
enum Binding {
    /// A definition that failed to check.
    Poisoned,
    /// A value node.
    Value(NodeId),
    /// A compile-time integer (a loop variable).
    Const(i128),
}

struct Checker<'a> {
    source: &'a str,
    scale: u32,
    b: Builder,
    scopes: Vec<HashMap<String, Binding>>,
    fns: HashMap<String, &'a ast::FnDef>,
    calls: Vec<String>,
    errors: Vec<Diagnostic>,
    inputs: Vec<Param>,
    secrets: Vec<Param>,
    outputs: Vec<(String, NodeId, Span)>,
    defined: HashMap<String, Span>,
    /// Expressions elaborated so far, unrolled.
    work: u64,
}

type R<T> = Result<T, Diagnostic>;

const BUILTINS: [&str; 5] = ["dot", "sum", "min", "max", "abs"];

fn type_name(t: Scalar) -> &'static str {
    match t {
        Scalar::Int => "int",
        Scalar::Fixed => "fixed",
        Scalar::Bool => "bool",
    }
}

impl<'a> Checker<'a> {
    fn snippet(&self, span: &Span) -> String {
        let text = self
            .source
            .get(span.clone())
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.chars().count() > 48 {
            format!("{}…", text.chars().take(47).collect::<String>())
        } else {
            text
        }
    }

    fn define(&mut self, name: &ast::Ident) -> R<()> {
        if BUILTINS.contains(&name.name.as_str()) {
            return Err(Diagnostic::new(
                format!("`{}` is a built-in function", name.name),
                name.span.clone(),
                "cannot be redefined",
            ));
        }
        if let Some(first) = self.defined.get(&name.name) {
            return Err(Diagnostic::new(
                format!("`{}` is defined twice", name.name),
                name.span.clone(),
                "defined again here",
            )
            .with_secondary(first.clone(), "first defined here"));
        }
        self.defined.insert(name.name.clone(), name.span.clone());
        Ok(())
    }

    fn item(&mut self, item: &'a Item) -> R<()> {
        match item {
            Item::Input(d) => self.decl(d, false),
            Item::Secret(d) => self.decl(d, true),
            Item::Fn(f) => {
                self.define(&f.name)?;
                self.fns.insert(f.name.name.clone(), f);
                Ok(())
            }
            Item::Let(b) => {
                self.define(&b.name)?;
                let v = self.expr(&b.value)?;
                self.bind(&b.name.name, Binding::Value(v));
                Ok(())
            }
            Item::Output(b) => {
                if let Some((_, _, first)) = self.outputs.iter().find(|(n, _, _)| *n == b.name.name)
                {
                    return Err(Diagnostic::new(
                        format!("output `{}` is defined twice", b.name.name),
                        b.name.span.clone(),
                        "defined again here",
                    )
                    .with_secondary(first.clone(), "first defined here"));
                }
                let v = self.expr(&b.value)?;
                // An output keeps the scale it was computed at (the schema records it):
                // rescaling a value about to be revealed would cost a round and reveal
                // nothing less, and linear programs then need no interaction at all.
                self.outputs
                    .push((b.name.name.clone(), v, b.name.span.clone()));
                Ok(())
            }
        }
    }

    fn bind(&mut self, name: &str, b: Binding) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_string(), b);
        }
    }

    fn lookup(&self, name: &str) -> Option<Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name).cloned())
    }

    /// The scaled integer a bound stands for.
    fn bound(&self, e: &Expr, ty: Scalar) -> R<i128> {
        let v = self.const_real(e)?;
        let scaled = match ty {
            Scalar::Fixed => v * (1u64 << self.scale) as f64,
            _ => v,
        };
        if ty == Scalar::Int && v.fract() != 0.0 {
            return Err(Diagnostic::new(
                "an int bound must be a whole number",
                e.span.clone(),
                "not an integer",
            ));
        }
        if !scaled.is_finite() || scaled.abs() >= 2f64.powi(62) {
            return Err(
                Diagnostic::new("bound out of range", e.span.clone(), "too large")
                    .with_hint("bounds must fit 62 bits at the program's scale"),
            );
        }
        Ok(scaled.round() as i128)
    }

    fn decl(&mut self, d: &ast::Decl, secret: bool) -> R<()> {
        self.define(&d.name)?;
        let range = match (&d.bounds, d.ty.scalar) {
            (None, Scalar::Bool) => Interval::new(0, 1),
            (Some((_, _, span)), Scalar::Bool) => {
                return Err(Diagnostic::new(
                    "a bool takes no bounds",
                    span.clone(),
                    "remove this",
                ));
            }
            (None, _) => {
                return Err(Diagnostic::new(
                    format!("`{}` needs bounds", d.name.name),
                    d.ty.span.clone(),
                    "no bounds given",
                )
                .with_hint(format!(
                    "write `{}: {} in [LO, HI]`: the compiler proves every value fits from these",
                    d.name.name,
                    type_name(d.ty.scalar)
                )));
            }
            (Some((lo, hi, span)), ty) => {
                let (lo, hi) = (self.bound(lo, ty)?, self.bound(hi, ty)?);
                if lo > hi {
                    return Err(Diagnostic::new(
                        "empty bounds: the lower bound is above the upper",
                        span.clone(),
                        "here",
                    ));
                }
                Interval::new(lo, hi)
            }
        };
        let len = d.ty.len.unwrap_or(1);
        let param = Param {
            name: d.name.name.clone(),
            ty: d.ty.scalar,
            len,
            vector: d.ty.len.is_some(),
            range,
        };
        let (op, vis) = if secret {
            (Op::Secret(param.name.clone()), Vis::Secret)
        } else {
            (Op::Input(param.name.clone()), Vis::Public)
        };
        let scale = if d.ty.scalar == Scalar::Fixed {
            self.scale
        } else {
            0
        };
        let id = self.b.push(Node {
            op,
            len,
            vis,
            scale,
            ty: d.ty.scalar,
            range,
        });
        if secret {
            self.secrets.push(param);
        } else {
            self.inputs.push(param);
        }
        self.bind(&d.name.name, Binding::Value(id));
        Ok(())
    }

    // ----- compile-time constants -----

    /// An expression made of literals and loop variables, as a real number.
    fn const_real(&self, e: &Expr) -> R<f64> {
        match &e.kind {
            ExprKind::Int(v) => Ok(*v as f64),
            ExprKind::Decimal(d) => d
                .parse::<f64>()
                .map_err(|_| Diagnostic::new("malformed number", e.span.clone(), "here")),
            ExprKind::Unary(UnOp::Neg, x) => Ok(-self.const_real(x)?),
            ExprKind::Name(n) => match self.lookup(n) {
                Some(Binding::Const(v)) => Ok(v as f64),
                _ => Err(self.not_constant(e)),
            },
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), a, b) => {
                let (a, b) = (self.const_real(a)?, self.const_real(b)?);
                Ok(match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    _ => a * b,
                })
            }
            _ => Err(self.not_constant(e)),
        }
    }

    /// A compile-time integer.
    fn const_int(&self, e: &Expr) -> R<i128> {
        let v = self.const_real(e)?;
        if v.fract() != 0.0 || v.abs() > 2f64.powi(53) {
            return Err(Diagnostic::new(
                "expected a whole number",
                e.span.clone(),
                "not an integer",
            ));
        }
        Ok(v as i128)
    }

    fn not_constant(&self, e: &Expr) -> Diagnostic {
        Diagnostic::new(
            format!("`{}` is not a compile-time constant", self.snippet(&e.span)),
            e.span.clone(),
            "must be known when compiling",
        )
    }

    // ----- node construction with range checks -----

    fn node(&self, id: NodeId) -> &Node {
        self.b.node(id)
    }

    fn vis_of(&self, ids: &[NodeId]) -> Vis {
        if ids.iter().any(|i| self.node(*i).vis == Vis::Secret) {
            Vis::Secret
        } else {
            Vis::Public
        }
    }

    /// Adds a node after checking its range fits the budget.
    fn mk(&mut self, node: Node, span: &Span) -> R<NodeId> {
        let bits = node.range.bits();
        if bits > BUDGET_BITS {
            return Err(Diagnostic::new(
                format!("`{}` may overflow: its values need {bits} bits, more than the {BUDGET_BITS} every value must fit", self.snippet(span)),
                span.clone(),
                format!("may reach [{}, {}] (scaled by 2^{})", node.range.lo, node.range.hi, node.scale),
            )
            .with_hint("narrow the declared bounds of the inputs or secrets it depends on"));
        }
        Ok(self.b.push(node))
    }

    fn konst(&mut self, values: Vec<i128>, scale: u32, ty: Scalar) -> NodeId {
        let range = values.iter().fold(
            Interval::point(values.first().copied().unwrap_or(0)),
            |r, v| r.union(&Interval::point(*v)),
        );
        self.b.push(Node {
            len: values.len() as u32,
            op: Op::Const(values),
            vis: Vis::Public,
            scale,
            ty,
            range,
        })
    }

    /// Multiplies by 2^d to raise the scale.
    fn rescale_up(&mut self, v: NodeId, d: u32, span: &Span) -> R<NodeId> {
        if d == 0 {
            return Ok(v);
        }
        let n = self.node(v).clone();
        let f = 1i128 << d;
        self.mk(
            Node {
                op: Op::MulConst(v, f),
                range: Interval::new(n.range.lo.saturating_mul(f), n.range.hi.saturating_mul(f)),
                scale: n.scale + d,
                ..n
            },
            span,
        )
    }

    /// Divides by 2^d (rounding down; +1 with some probability for secrets).
    fn truncate(&mut self, v: NodeId, d: u32, span: &Span) -> R<NodeId> {
        if d == 0 {
            return Ok(v);
        }
        let n = self.node(v).clone();
        let range = Interval::new(n.range.lo >> d, (n.range.hi >> d) + 1);
        self.mk(
            Node {
                op: Op::Trunc(v, d),
                range,
                scale: n.scale - d,
                ..n
            },
            span,
        )
    }

    /// Brings a value to scale `s`.
    fn at_scale(&mut self, v: NodeId, s: u32, span: &Span) -> R<NodeId> {
        let cur = self.node(v).scale;
        if cur > s {
            self.truncate(v, cur - s, span)
        } else {
            self.rescale_up(v, s - cur, span)
        }
    }

    fn broadcast(&mut self, v: NodeId, len: u32, span: &Span) -> R<NodeId> {
        let n = self.node(v).clone();
        if n.len == len {
            return Ok(v);
        }
        if n.len != 1 {
            return Err(Diagnostic::new(
                format!("vector lengths differ: {} and {len}", n.len),
                span.clone(),
                "here",
            ));
        }
        self.mk(
            Node {
                op: Op::Broadcast(v, len),
                len,
                ..n
            },
            span,
        )
    }

    /// Same length (broadcasting scalars) and same scale (raising the lower).
    fn align(&mut self, a: NodeId, b: NodeId, span: &Span) -> R<(NodeId, NodeId)> {
        let len = self.node(a).len.max(self.node(b).len);
        let (a, b) = (self.broadcast(a, len, span)?, self.broadcast(b, len, span)?);
        let s = self.node(a).scale.max(self.node(b).scale);
        Ok((self.at_scale(a, s, span)?, self.at_scale(b, s, span)?))
    }

    fn numeric(&self, v: NodeId, span: &Span) -> R<Scalar> {
        match self.node(v).ty {
            Scalar::Bool => {
                Err(
                    Diagnostic::new("a bool is not a number", span.clone(), "this is a bool")
                        .with_hint("use `if b then 1 else 0` to turn a condition into a number"),
                )
            }
            t => Ok(t),
        }
    }

    fn boolean(&self, v: NodeId, span: &Span) -> R<()> {
        match self.node(v).ty {
            Scalar::Bool => Ok(()),
            t => Err(Diagnostic::new(
                format!("expected a bool, found {}", type_name(t)),
                span.clone(),
                "not a condition",
            )
            .with_hint("compare it: `x > 0`")),
        }
    }

    fn join_ty(a: Scalar, b: Scalar) -> Scalar {
        if a == Scalar::Fixed || b == Scalar::Fixed {
            Scalar::Fixed
        } else {
            a
        }
    }

    fn add_sub(&mut self, a: NodeId, b: NodeId, sub: bool, span: &Span) -> R<NodeId> {
        let (mut a0, mut b0) = (a, b);
        loop {
            let (a, b) = self.align(a0, b0, span)?;
            let (na, nb) = (self.node(a).clone(), self.node(b).clone());
            let range = if sub {
                Interval::new(
                    na.range.lo.saturating_sub(nb.range.hi),
                    na.range.hi.saturating_sub(nb.range.lo),
                )
            } else {
                Interval::new(
                    na.range.lo.saturating_add(nb.range.lo),
                    na.range.hi.saturating_add(nb.range.hi),
                )
            };
            let node = Node {
                op: if sub { Op::Sub(a, b) } else { Op::Add(a, b) },
                len: na.len,
                vis: self.vis_of(&[a, b]),
                scale: na.scale,
                ty: Self::join_ty(na.ty, nb.ty),
                range,
            };
            // A sum that would overflow at a product's doubled scale is computed at the
            // program's scale instead: that is where a truncation is needed.
            if node.range.bits() > BUDGET_BITS && na.scale > self.scale {
                let f = self.scale;
                a0 = self.at_scale(a0, f.min(self.node(a0).scale), span)?;
                b0 = self.at_scale(b0, f.min(self.node(b0).scale), span)?;
                if self.node(a0).scale <= f && self.node(b0).scale <= f {
                    continue;
                }
            }
            return self.mk(node, span);
        }
    }

    fn mul(&mut self, a: NodeId, b: NodeId, span: &Span) -> R<NodeId> {
        let f = self.scale;
        // A product of products would double the scale again: rescale operands first.
        let a = if self.node(a).scale > f {
            self.at_scale(a, f, span)?
        } else {
            a
        };
        let b = if self.node(b).scale > f {
            self.at_scale(b, f, span)?
        } else {
            b
        };
        let len = self.node(a).len.max(self.node(b).len);
        let (a, b) = (self.broadcast(a, len, span)?, self.broadcast(b, len, span)?);
        let (na, nb) = (self.node(a).clone(), self.node(b).clone());
        let products = [
            na.range.lo.saturating_mul(nb.range.lo),
            na.range.lo.saturating_mul(nb.range.hi),
            na.range.hi.saturating_mul(nb.range.lo),
            na.range.hi.saturating_mul(nb.range.hi),
        ];
        let range = Interval::new(
            products.iter().copied().min().unwrap_or(0),
            products.iter().copied().max().unwrap_or(0),
        );
        let ty = if na.ty == Scalar::Bool && nb.ty == Scalar::Bool {
            Scalar::Bool
        } else {
            Self::join_ty(na.ty, nb.ty)
        };
        self.mk(
            Node {
                op: Op::Mul(a, b),
                len,
                vis: self.vis_of(&[a, b]),
                scale: na.scale + nb.scale,
                ty,
                range,
            },
            span,
        )
    }

    /// [a < 0] (a's scale does not matter).
    fn ltz(&mut self, a: NodeId, span: &Span) -> R<NodeId> {
        let n = self.node(a).clone();
        let k = n.range.bits().max(2);
        self.mk(
            Node {
                op: Op::Ltz(a, k),
                scale: 0,
                ty: Scalar::Bool,
                range: Interval::new(0, 1),
                ..n
            },
            span,
        )
    }

    fn eqz(&mut self, a: NodeId, span: &Span) -> R<NodeId> {
        let n = self.node(a).clone();
        let k = n.range.bits();
        self.mk(
            Node {
                op: Op::Eqz(a, k),
                scale: 0,
                ty: Scalar::Bool,
                range: Interval::new(0, 1),
                ..n
            },
            span,
        )
    }

    /// 1 − b for a bool b.
    fn not(&mut self, b: NodeId, span: &Span) -> R<NodeId> {
        let len = self.node(b).len;
        let one = self.konst(vec![1; len as usize], 0, Scalar::Bool);
        let id = self.add_sub(one, b, true, span)?;
        Ok(self.retype(id, Scalar::Bool))
    }

    /// The same node, seen as another type (booleans built from arithmetic).
    fn retype(&mut self, id: NodeId, ty: Scalar) -> NodeId {
        let mut n = self.node(id).clone();
        if n.ty == ty {
            return id;
        }
        n.ty = ty;
        self.b.push(n)
    }

    fn select(&mut self, c: NodeId, a: NodeId, b: NodeId, span: &Span) -> R<NodeId> {
        let len = self.node(c).len.max(self.node(a).len).max(self.node(b).len);
        let (a, b) = (self.broadcast(a, len, span)?, self.broadcast(b, len, span)?);
        let (a, b) = self.align(a, b, span)?;
        let c = self.broadcast(c, len, span)?;
        let (na, nb) = (self.node(a).clone(), self.node(b).clone());
        if na.ty != nb.ty && (na.ty == Scalar::Bool || nb.ty == Scalar::Bool) {
            return Err(Diagnostic::new(
                format!(
                    "the branches have different types: {} and {}",
                    type_name(na.ty),
                    type_name(nb.ty)
                ),
                span.clone(),
                "here",
            ));
        }
        // c·(a − b) + b: the difference must fit too.
        let diff = Interval::new(
            na.range.lo.saturating_sub(nb.range.hi),
            na.range.hi.saturating_sub(nb.range.lo),
        );
        if diff.bits() > BUDGET_BITS {
            return Err(Diagnostic::new(
                format!(
                    "`{}` may overflow: the branches differ by too much",
                    self.snippet(span)
                ),
                span.clone(),
                "here",
            ));
        }
        let node = Node {
            op: Op::Select(c, a, b),
            len,
            vis: self.vis_of(&[c, a, b]),
            scale: na.scale,
            ty: Self::join_ty(na.ty, nb.ty),
            range: na.range.union(&nb.range),
        };
        self.mk(node, span)
    }

    fn sum(&mut self, v: NodeId, span: &Span) -> R<NodeId> {
        let n = self.node(v).clone();
        let l = n.len as i128;
        let range = Interval::new(n.range.lo.saturating_mul(l), n.range.hi.saturating_mul(l));
        let v = if range.bits() > BUDGET_BITS && n.scale > self.scale {
            self.at_scale(v, self.scale, span)?
        } else {
            v
        };
        let n = self.node(v).clone();
        let range = Interval::new(n.range.lo.saturating_mul(l), n.range.hi.saturating_mul(l));
        self.mk(
            Node {
                op: Op::Sum(v),
                len: 1,
                range,
                ..n
            },
            span,
        )
    }

    // ----- expressions -----

    fn expr(&mut self, e: &Expr) -> R<NodeId> {
        let span = &e.span;
        self.work += 1;
        if self.work > MAX_WORK {
            return Err(Diagnostic::new(
                format!("the program is too large: more than {MAX_WORK} operations once unrolled"),
                span.clone(),
                "here",
            )
            .with_hint(
                "use vector operations (dot, sum, element-wise arithmetic) instead of long loops",
            ));
        }
        match &e.kind {
            ExprKind::Int(v) => Ok(self.konst(vec![*v as i128], 0, Scalar::Int)),
            ExprKind::Decimal(_) => {
                let v = self.const_real(e)?;
                let scaled = (v * (1u64 << self.scale) as f64).round();
                if scaled.abs() >= 2f64.powi(62) {
                    return Err(Diagnostic::new(
                        "number out of range",
                        span.clone(),
                        "too large",
                    ));
                }
                Ok(self.konst(vec![scaled as i128], self.scale, Scalar::Fixed))
            }
            ExprKind::Bool(b) => Ok(self.konst(vec![*b as i128], 0, Scalar::Bool)),
            ExprKind::Name(n) => match self.lookup(n) {
                Some(Binding::Poisoned) => Err(Diagnostic::new(POISONED, span.clone(), "")),
                Some(Binding::Value(id)) => Ok(id),
                Some(Binding::Const(v)) => Ok(self.konst(vec![v], 0, Scalar::Int)),
                None if self.fns.contains_key(n) || BUILTINS.contains(&n.as_str()) => {
                    Err(Diagnostic::new(
                        format!("`{n}` is a function"),
                        span.clone(),
                        "call it with arguments",
                    ))
                }
                None => {
                    Err(
                        Diagnostic::new(format!("unknown name `{n}`"), span.clone(), "not defined")
                            .with_hint("names must be declared before they are used"),
                    )
                }
            },
            ExprKind::Unary(UnOp::Neg, x) => {
                let v = self.expr(x)?;
                self.numeric(v, &x.span)?;
                let n = self.node(v).clone();
                self.mk(
                    Node {
                        op: Op::Neg(v),
                        range: Interval::new(-n.range.hi, -n.range.lo),
                        ..n
                    },
                    span,
                )
            }
            ExprKind::Unary(UnOp::Not, x) => {
                let v = self.expr(x)?;
                self.boolean(v, &x.span)?;
                self.not(v, span)
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, span),
            ExprKind::If(c, a, b) => {
                let cv = self.expr(c)?;
                self.boolean(cv, &c.span)?;
                let (av, bv) = (self.expr(a)?, self.expr(b)?);
                self.select(cv, av, bv, span)
            }
            ExprKind::Call(f, args) => self.call(f, args, span),
            ExprKind::Index(v, i) => {
                let vid = self.expr(v)?;
                let idx = self.const_int(i).map_err(|_| {
                    Diagnostic::new("an index must be a compile-time constant", i.span.clone(), "not known when compiling").with_hint(
                        "control flow never depends on a secret; to pick an element by a secret position, use a one-hot vector: dot(onehot, v)",
                    )
                })?;
                let n = self.node(vid).clone();
                if idx < 0 || idx >= n.len as i128 {
                    return Err(Diagnostic::new(
                        format!("index {idx} is outside a vector of length {}", n.len),
                        i.span.clone(),
                        "out of range",
                    ));
                }
                self.mk(
                    Node {
                        op: Op::Slice(vid, idx as u32, idx as u32 + 1),
                        len: 1,
                        ..n
                    },
                    span,
                )
            }
            ExprKind::Vector(items) => {
                if items.is_empty() {
                    return Err(Diagnostic::new(
                        "an empty vector",
                        span.clone(),
                        "has no elements",
                    ));
                }
                let ids = items.iter().map(|x| self.expr(x)).collect::<R<Vec<_>>>()?;
                self.concat(ids, span)
            }
            ExprKind::For(var, from, to, body) => {
                let bounds = |c: &Self, x: &Expr| {
                    c.const_int(x).map_err(|_| {
                        Diagnostic::new("loop bounds must be compile-time constants", x.span.clone(), "not known when compiling")
                            .with_hint("loops are unrolled when compiling, so control flow can never depend on a secret")
                    })
                };
                let (lo, hi) = (bounds(self, from)?, bounds(self, to)?);
                if hi <= lo || hi - lo > MAX_UNROLL {
                    return Err(Diagnostic::new(
                        format!("a loop must run 1 to {MAX_UNROLL} times"),
                        span.clone(),
                        "here",
                    ));
                }
                let mut ids = Vec::with_capacity((hi - lo) as usize);
                for i in lo..hi {
                    self.scopes
                        .push(HashMap::from([(var.name.clone(), Binding::Const(i))]));
                    let r = self.expr(body);
                    self.scopes.pop();
                    ids.push(r?);
                }
                self.concat(ids, span)
            }
        }
    }

    fn concat(&mut self, ids: Vec<NodeId>, span: &Span) -> R<NodeId> {
        let s = ids.iter().map(|i| self.node(*i).scale).max().unwrap_or(0);
        let mut aligned = Vec::with_capacity(ids.len());
        let mut ty = self.node(ids[0]).ty;
        for id in ids {
            let t = self.node(id).ty;
            if (t == Scalar::Bool) != (ty == Scalar::Bool) {
                return Err(Diagnostic::new(
                    "a vector mixes bools and numbers",
                    span.clone(),
                    "here",
                ));
            }
            ty = Self::join_ty(ty, t);
            aligned.push(self.at_scale(id, s, span)?);
        }
        if aligned.len() == 1 {
            return Ok(aligned[0]);
        }
        let len = aligned.iter().map(|i| self.node(*i).len).sum();
        let range = aligned
            .iter()
            .skip(1)
            .fold(self.node(aligned[0]).range, |r, i| {
                r.union(&self.node(*i).range)
            });
        let vis = self.vis_of(&aligned);
        self.mk(
            Node {
                op: Op::Concat(aligned),
                len,
                vis,
                scale: s,
                ty,
                range,
            },
            span,
        )
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, span: &Span) -> R<NodeId> {
        if op == BinOp::Div {
            let x = self.expr(a)?;
            self.numeric(x, &a.span)?;
            let c = self.const_real(b).map_err(|_| {
                Diagnostic::new(
                    "division is only by a public constant",
                    b.span.clone(),
                    "not a constant",
                )
                .with_hint(
                    "divide by a number written in the program, or multiply by a secret reciprocal",
                )
            })?;
            if c == 0.0 {
                return Err(Diagnostic::new(
                    "division by zero",
                    b.span.clone(),
                    "is zero",
                ));
            }
            let recip = ((1u64 << self.scale) as f64 / c).round() as i128;
            let x = if self.node(x).scale > self.scale {
                self.at_scale(x, self.scale, span)?
            } else {
                x
            };
            let n = self.node(x).clone();
            let range = Interval::new(
                n.range.lo.saturating_mul(recip),
                n.range.hi.saturating_mul(recip),
            );
            return self.mk(
                Node {
                    op: Op::MulConst(x, recip),
                    scale: n.scale + self.scale,
                    ty: Scalar::Fixed,
                    range,
                    ..n
                },
                span,
            );
        }
        let (x, y) = (self.expr(a)?, self.expr(b)?);
        match op {
            BinOp::And | BinOp::Or => {
                self.boolean(x, &a.span)?;
                self.boolean(y, &b.span)?;
                let prod = self.mul(x, y, span)?;
                let id = if op == BinOp::And {
                    prod
                } else {
                    let s = self.add_sub(x, y, false, span)?;
                    self.add_sub(s, prod, true, span)?
                };
                Ok(self.retype(id, Scalar::Bool))
            }
            _ => {
                self.numeric(x, &a.span)?;
                self.numeric(y, &b.span)?;
                match op {
                    BinOp::Add => self.add_sub(x, y, false, span),
                    BinOp::Sub => self.add_sub(x, y, true, span),
                    BinOp::Mul => self.mul(x, y, span),
                    BinOp::Lt => {
                        let d = self.add_sub(x, y, true, span)?;
                        self.ltz(d, span)
                    }
                    BinOp::Gt => {
                        let d = self.add_sub(y, x, true, span)?;
                        self.ltz(d, span)
                    }
                    BinOp::Le => {
                        let d = self.add_sub(y, x, true, span)?;
                        let gt = self.ltz(d, span)?;
                        self.not(gt, span)
                    }
                    BinOp::Ge => {
                        let d = self.add_sub(x, y, true, span)?;
                        let lt = self.ltz(d, span)?;
                        self.not(lt, span)
                    }
                    BinOp::Eq => {
                        let d = self.add_sub(x, y, true, span)?;
                        self.eqz(d, span)
                    }
                    _ => {
                        let d = self.add_sub(x, y, true, span)?;
                        let eq = self.eqz(d, span)?;
                        self.not(eq, span)
                    }
                }
            }
        }
    }

    fn call(&mut self, f: &ast::Ident, args: &[Expr], span: &Span) -> R<NodeId> {
        let arity = |n: usize| -> R<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(Diagnostic::new(
                    format!("`{}` takes {n} argument(s), {} given", f.name, args.len()),
                    span.clone(),
                    "here",
                ))
            }
        };
        match f.name.as_str() {
            "dot" => {
                arity(2)?;
                let (a, b) = (self.expr(&args[0])?, self.expr(&args[1])?);
                self.numeric(a, &args[0].span)?;
                self.numeric(b, &args[1].span)?;
                let (la, lb) = (self.node(a).len, self.node(b).len);
                if la != lb && la != 1 && lb != 1 {
                    return Err(Diagnostic::new(
                        format!(
                            "dot of vectors of lengths {} and {}",
                            self.node(a).len,
                            self.node(b).len
                        ),
                        span.clone(),
                        "lengths differ",
                    ));
                }
                let p = self.mul(a, b, span)?;
                self.sum(p, span)
            }
            "sum" => {
                arity(1)?;
                let v = self.expr(&args[0])?;
                self.numeric(v, &args[0].span)?;
                self.sum(v, span)
            }
            "min" | "max" => {
                arity(2)?;
                let (a, b) = (self.expr(&args[0])?, self.expr(&args[1])?);
                self.numeric(a, &args[0].span)?;
                self.numeric(b, &args[1].span)?;
                let d = self.add_sub(a, b, true, span)?;
                let lt = self.ltz(d, span)?;
                if f.name == "min" {
                    self.select(lt, a, b, span)
                } else {
                    self.select(lt, b, a, span)
                }
            }
            "abs" => {
                arity(1)?;
                let x = self.expr(&args[0])?;
                self.numeric(x, &args[0].span)?;
                let n = self.node(x).clone();
                let neg = self.mk(
                    Node {
                        op: Op::Neg(x),
                        range: Interval::new(-n.range.hi, -n.range.lo),
                        ..n
                    },
                    span,
                )?;
                let lt = self.ltz(x, span)?;
                self.select(lt, neg, x, span)
            }
            name => {
                let Some(def) = self.fns.get(name).copied() else {
                    return Err(Diagnostic::new(
                        format!("unknown function `{name}`"),
                        f.span.clone(),
                        "not defined",
                    )
                    .with_hint("built-ins are dot, sum, min, max, abs"));
                };
                if self.calls.iter().any(|c| c == name) {
                    return Err(Diagnostic::new(
                        format!("`{name}` calls itself"),
                        f.span.clone(),
                        "recursive call",
                    )
                    .with_secondary(def.name.span.clone(), "defined here")
                    .with_hint("functions are inlined, so they cannot recurse"));
                }
                arity(def.params.len())?;
                // Arguments known when compiling stay constants (usable as indices and loop
                // bounds inside the body); the rest are values.
                let values = args
                    .iter()
                    .map(|a| match self.const_int(a) {
                        Ok(v) if !matches!(a.kind, ExprKind::Decimal(_)) => Ok(Binding::Const(v)),
                        _ => self.expr(a).map(Binding::Value),
                    })
                    .collect::<R<Vec<_>>>()?;
                let scope = def
                    .params
                    .iter()
                    .zip(values)
                    .map(|(p, v)| (p.name.clone(), v))
                    .collect();
                // A function body sees its parameters and the program's top-level names.
                let saved = self.scopes.split_off(1);
                self.scopes.push(scope);
                self.calls.push(name.to_string());
                let r = self.expr(&def.body);
                self.calls.pop();
                self.scopes.truncate(1);
                self.scopes.extend(saved);
                r
            }
        }
    }
}
