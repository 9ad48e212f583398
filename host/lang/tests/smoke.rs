//! The example programs compile, and evaluate to hand-computed values.

use std::collections::HashMap;

use qvm_lang::{compile_ir, cost::cost, eval::evaluate};

fn source(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../packages/{name}/{name}.qvm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example exists")
}

fn fx(x: f64) -> i128 {
    (x * 65536.0).round() as i128
}

#[test]
fn credit_score_compiles_and_evaluates() {
    let src = source("credit-score");
    let ir = match compile_ir(&src) {
        Ok(ir) => ir,
        Err(e) => panic!("{}", e.render("credit-score.qvm", &src)),
    };
    let c = cost(&ir);
    println!("{c:?}");
    let mut inputs = HashMap::new();
    let mut features = [0.0; 12];
    features[0] = 10.0;
    features[1] = 4.0;
    features[2] = 1.5;
    inputs.insert(
        "features".to_string(),
        features.iter().map(|x| fx(*x)).collect(),
    );
    inputs.insert(
        "boundaries".to_string(),
        [0.0, 5.0, 6.0, 10.0].iter().map(|x| fx(*x)).collect(),
    );
    let mut secrets = HashMap::new();
    let mut weights = [0.0; 12];
    weights[0] = 0.5;
    weights[1] = -1.25;
    weights[2] = 2.0;
    secrets.insert(
        "weights".to_string(),
        weights.iter().map(|x| fx(*x)).collect(),
    );
    secrets.insert("bias".to_string(), vec![fx(3.0)]);
    secrets.insert("cutoff".to_string(), vec![fx(5.5)]);
    let out = evaluate(&ir, &inputs, &secrets).expect("evaluates");
    // The score is revealed at scale 32 (a product of two scale-16 values).
    assert_eq!(ir.output_scale("score"), Some(32));
    assert_eq!(out[0], ("score".to_string(), vec![fx(6.0) << 16]));
    assert_eq!(out[1], ("band".to_string(), vec![3]));
    assert_eq!(out[2], ("approve".to_string(), vec![1]));
}

/// A layer of ReLUs (`max(v, 0)`: a select with a public branch) is one select round, not
/// one per unit: a public branch is lifted so the layer's selects share one call.
#[test]
fn a_relu_layer_costs_one_select_round() {
    let relu = |units: usize| {
        let src = format!(
            "program relu(scale = 16)\n\
             input x: fixed[4] in [-10.0, 10.0]\n\
             secret w: fixed[{n}] in [-4.0, 4.0]\n\
             fn relu(v) = max(v, 0)\n\
             let h = for j in 0..{units} => relu(dot(for i in 0..4 => w[j * 4 + i], x))\n\
             output s = sum(h)\n",
            n = 4 * units
        );
        let ir = compile_ir(&src).unwrap_or_else(|e| panic!("{}", e.render("relu.qvm", &src)));
        cost(&ir)
    };
    let (one, sixteen) = (relu(1), relu(16));
    assert_eq!(one.rounds, sixteen.rounds, "{one:?} / {sixteen:?}");
    assert_eq!(sixteen.multiplications, 16 * one.multiplications);
    let risk = cost(&compile_ir(&source("risk-mlp")).expect("risk-mlp"));
    assert_eq!(risk.rounds, 17, "{risk:?}");
}
