//! The plaintext evaluator of the IR: the reference every threshold result is tested
//! against.
//!
//! Values are scaled integers (i128 holds every value the range analysis admits and every
//! product of two of them). Truncation rounds down; under MPC it rounds up with
//! probability equal to the dropped fraction, so a threshold result may exceed this one by
//! one unit in the last place at each truncation.

use std::collections::HashMap;

use crate::ir::{Ir, Op, Param};

/// Why an evaluation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A declared input or secret was not given.
    #[error("no value for `{0}`")]
    Missing(String),
    /// A value of the wrong length.
    #[error("`{name}` has {got} elements, the program declares {expected}")]
    Length {
        /// The parameter.
        name: String,
        /// Declared length.
        expected: u32,
        /// Given length.
        got: usize,
    },
    /// A value outside the declared bounds (the range analysis relies on them).
    #[error("`{name}` = {value} (scaled) is outside its declared bounds [{lo}, {hi}]")]
    OutOfBounds {
        /// The parameter.
        name: String,
        /// The value.
        value: i128,
        /// Lower bound.
        lo: i128,
        /// Upper bound.
        hi: i128,
    },
}

fn take(
    params: &[Param],
    given: &HashMap<String, Vec<i128>>,
) -> Result<HashMap<String, Vec<i128>>, EvalError> {
    let mut out = HashMap::new();
    for p in params {
        let v = given
            .get(&p.name)
            .ok_or_else(|| EvalError::Missing(p.name.clone()))?;
        if v.len() != p.len as usize {
            return Err(EvalError::Length {
                name: p.name.clone(),
                expected: p.len,
                got: v.len(),
            });
        }
        if let Some(x) = v.iter().find(|x| **x < p.range.lo || **x > p.range.hi) {
            return Err(EvalError::OutOfBounds {
                name: p.name.clone(),
                value: *x,
                lo: p.range.lo,
                hi: p.range.hi,
            });
        }
        out.insert(p.name.clone(), v.clone());
    }
    Ok(out)
}

/// Evaluates the program on scaled inputs and secrets; returns the named outputs, scaled
/// (fixed outputs at the program's scale, ints and bools at scale 0).
pub fn evaluate(
    ir: &Ir,
    inputs: &HashMap<String, Vec<i128>>,
    secrets: &HashMap<String, Vec<i128>>,
) -> Result<Vec<(String, Vec<i128>)>, EvalError> {
    let inputs = take(&ir.inputs, inputs)?;
    let secrets = take(&ir.secrets, secrets)?;
    let mut values: Vec<Vec<i128>> = Vec::with_capacity(ir.nodes.len());
    for node in &ir.nodes {
        let out: Vec<i128> = match &node.op {
            Op::Input(n) => inputs.get(n).cloned().unwrap_or_default(),
            Op::Secret(n) => secrets.get(n).cloned().unwrap_or_default(),
            op => apply(op, &values),
        };
        values.push(out);
    }
    Ok(ir
        .outputs
        .iter()
        .map(|(n, id)| (n.clone(), values[*id].clone()))
        .collect())
}

/// One op on the values of the nodes before it (inputs and secrets are given, not
/// computed). Shared by the evaluator and constant folding.
pub fn apply(op: &Op, values: &[Vec<i128>]) -> Vec<i128> {
    let v = |id: &usize| &values[*id];
    let zip = |a: &usize, b: &usize, f: &dyn Fn(i128, i128) -> i128| -> Vec<i128> {
        v(a).iter().zip(v(b)).map(|(x, y)| f(*x, *y)).collect()
    };
    match op {
        Op::Input(_) | Op::Secret(_) => Vec::new(),
        Op::Const(c) => c.clone(),
        Op::Add(a, b) => zip(a, b, &|x, y| x + y),
        Op::Sub(a, b) => zip(a, b, &|x, y| x - y),
        Op::Mul(a, b) => zip(a, b, &|x, y| x * y),
        Op::Neg(a) => v(a).iter().map(|x| -x).collect(),
        Op::MulConst(a, c) => v(a).iter().map(|x| x * c).collect(),
        Op::Trunc(a, m) => v(a).iter().map(|x| x >> m).collect(),
        Op::Ltz(a, _) => v(a).iter().map(|x| (*x < 0) as i128).collect(),
        Op::Eqz(a, _) => v(a).iter().map(|x| (*x == 0) as i128).collect(),
        Op::Select(c, a, b) => {
            let (c, a, b) = (v(c), v(a), v(b));
            (0..c.len()).map(|i| c[i] * (a[i] - b[i]) + b[i]).collect()
        }
        Op::Sum(a) => vec![v(a).iter().sum()],
        Op::Slice(a, s, e) => v(a)[*s as usize..*e as usize].to_vec(),
        Op::Concat(parts) => parts.iter().flat_map(|p| v(p).iter().copied()).collect(),
        Op::Broadcast(a, n) => vec![v(a).first().copied().unwrap_or(0); *n as usize],
    }
}

/// Scales real inputs to the integers the program declares: fixed values times 2^f
/// (rounded to nearest), ints and bools as they are (they must be whole).
pub fn scale_values(ir: &Ir, param: &Param, reals: &[f64]) -> Option<Vec<i128>> {
    let f = match param.ty {
        crate::ast::Scalar::Fixed => (1u64 << ir.scale) as f64,
        _ => 1.0,
    };
    reals
        .iter()
        .map(|x| {
            let s = x * f;
            (s.is_finite() && (param.ty == crate::ast::Scalar::Fixed || s.fract() == 0.0))
                .then(|| s.round() as i128)
        })
        .collect()
}
