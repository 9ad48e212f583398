//! The four example programs in `packages/` compile; their class and cost are what the
//! design promises (linear-score is local-only; the others interactive).

use qvm_lang::compile_ir;
use qvm_lang::cost::{Class, cost};

fn compile(name: &str) -> qvm_lang::ir::Ir {
    let path = format!(
        "{}/../../packages/{name}/{name}.qvm",
        env!("CARGO_MANIFEST_DIR")
    );
    let src = std::fs::read_to_string(&path).expect("example exists");
    match compile_ir(&src) {
        Ok(ir) => ir,
        Err(e) => panic!("{}", e.render(&path, &src)),
    }
}

#[test]
fn the_examples_compile_with_the_promised_class() {
    for (name, class) in [
        ("linear-score", Class::LocalOnly),
        ("credit-score", Class::Interactive),
        ("fraud-tree", Class::Interactive),
        ("risk-mlp", Class::Interactive),
    ] {
        let ir = compile(name);
        let c = cost(&ir);
        println!("{name}: {c:?}");
        assert_eq!(c.class, class, "{name}");
    }
}

#[test]
fn fraud_tree_evaluates_to_the_reached_leaf() {
    use std::collections::HashMap;
    let ir = compile("fraud-tree");
    let fx = |x: f64| (x * 65536.0).round() as i128;
    // Every node looks at feature j mod 8 with threshold 0: the path is the signs of x.
    let mut select = vec![0i128; 120];
    for j in 0..15 {
        select[j * 8 + j % 8] = 1;
    }
    let x = [1.0, -1.0, 3.0, -2.0, 5.0, 6.0, 7.0, 8.0];
    // Path: node 0 (x0 ≥ 0: right) → node 2 (x2 ≥ 0: right) → node 6 (x6 ≥ 0: right) → node 14
    // (x14 mod 8 = x6 ≥ 0: right): leaf 15.
    let leaves: Vec<i128> = (0..16).map(|l| fx(l as f64 / 16.0)).collect();
    let inputs = HashMap::from([("x".to_string(), x.iter().map(|v| fx(*v)).collect())]);
    let secrets = HashMap::from([
        ("select".to_string(), select),
        ("threshold".to_string(), vec![0; 15]),
        ("leaf".to_string(), leaves.clone()),
    ]);
    let out = qvm_lang::eval::evaluate(&ir, &inputs, &secrets).expect("evaluates");
    assert_eq!(out[0].1, vec![leaves[15]]);
    assert_eq!(out[1].1, vec![1]);
}
