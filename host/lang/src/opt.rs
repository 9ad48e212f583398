//! Optimizations on the IR, after checking: constant folding and dead-code elimination.
//! (Common subexpressions are shared as the IR is built: see [`crate::ir::Builder`].)

use crate::eval::apply;
use crate::ir::{Interval, Ir, NodeId, Op};

/// Folds constants, then drops nodes no output needs. Inputs and secrets are kept even
/// when unused: inputs are still validated and secrets' lengths still checked.
pub fn optimize(ir: Ir) -> Ir {
    prune(fold(ir))
}

/// Replaces every node computed only from constants by a constant.
pub fn fold(mut ir: Ir) -> Ir {
    let mut values: Vec<Vec<i128>> = Vec::with_capacity(ir.nodes.len());
    let mut constant = vec![false; ir.nodes.len()];
    for id in 0..ir.nodes.len() {
        let op = &ir.nodes[id].op;
        let foldable =
            !matches!(op, Op::Input(_) | Op::Secret(_)) && op.deps().iter().all(|d| constant[*d]);
        if foldable {
            let v = apply(op, &values);
            let range = v
                .iter()
                .fold(Interval::point(v.first().copied().unwrap_or(0)), |r, x| {
                    r.union(&Interval::point(*x))
                });
            let node = &mut ir.nodes[id];
            node.op = Op::Const(v.clone());
            node.range = range;
            constant[id] = true;
            values.push(v);
        } else {
            values.push(Vec::new());
        }
    }
    ir
}

/// Removes nodes that no output (and no input or secret declaration) needs, renumbering
/// the rest in order.
pub fn prune(ir: Ir) -> Ir {
    let n = ir.nodes.len();
    let mut live = vec![false; n];
    let mut stack: Vec<NodeId> = ir.outputs.iter().map(|(_, id)| *id).collect();
    stack.extend((0..n).filter(|id| matches!(ir.nodes[*id].op, Op::Input(_) | Op::Secret(_))));
    while let Some(id) = stack.pop() {
        if !live[id] {
            live[id] = true;
            stack.extend(ir.nodes[id].op.deps());
        }
    }
    let mut map = vec![usize::MAX; n];
    let mut nodes = Vec::with_capacity(n);
    for (id, node) in ir.nodes.into_iter().enumerate() {
        if !live[id] {
            continue;
        }
        let mut node = node;
        for d in node.op.deps_mut() {
            *d = map[*d];
        }
        map[id] = nodes.len();
        nodes.push(node);
    }
    Ir {
        outputs: ir
            .outputs
            .into_iter()
            .map(|(name, id)| (name, map[id]))
            .collect(),
        nodes,
        ..ir
    }
}

#[cfg(test)]
mod tests {
    use crate::compile_ir;
    use crate::ir::Op;

    #[test]
    fn constants_fold_and_dead_code_goes() {
        let ir = compile_ir(
            "program p\nsecret w: int in [0, 10]\ninput x: int in [0, 10]\nlet unused = w * w\nlet k = (2 + 3) * 4\noutput y = w + k\noutput z = x + 1 - 1",
        )
        .expect("compiles");
        // (2 + 3) · 4 is one constant 20; `unused` (a secret product) is gone.
        assert!(ir.nodes.iter().any(|n| n.op == Op::Const(vec![20])));
        assert!(!ir.nodes.iter().any(|n| matches!(n.op, Op::Mul(..))));
        assert!(!ir.nodes.iter().any(|n| matches!(n.op, Op::Add(a, b) if matches!(ir.nodes[a].op, Op::Const(_)) && matches!(ir.nodes[b].op, Op::Const(_)))));
        assert_eq!(crate::cost::cost(&ir).class, crate::cost::Class::LocalOnly);
        // Every reference points backwards (topological order survives renumbering).
        for (id, n) in ir.nodes.iter().enumerate() {
            assert!(n.op.deps().iter().all(|d| *d < id));
        }
    }
}
