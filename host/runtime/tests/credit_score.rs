//! The credit-score example guest (built from `guest/examples/credit-score` for
//! wasm32-wasip2): it imports only the world, and gives the hand-computed outputs through
//! the plaintext backend.

use std::collections::HashMap;

use qvm_core::Fp;
use qvm_core::fixed::FixedPoint;
use qvm_runtime::{Field, PlaintextBackend, Runtime, RuntimeConfig, RuntimeError, Value};

fn fixed(x: f64) -> Fp {
    FixedPoint::default().encode(x).expect("in range")
}

fn secrets(weights: &[f64], bias: f64, cutoff: f64) -> HashMap<String, Vec<Fp>> {
    HashMap::from([
        (
            "weights".to_string(),
            weights.iter().map(|w| fixed(*w)).collect(),
        ),
        ("bias".to_string(), vec![fixed(bias)]),
        ("cutoff".to_string(), vec![fixed(cutoff)]),
    ])
}

fn input(features: &[f64], boundaries: &[f64]) -> Vec<Field> {
    vec![
        Field {
            name: "features".into(),
            value: Value::Reals(features.to_vec()),
        },
        Field {
            name: "boundaries".into(),
            value: Value::Reals(boundaries.to_vec()),
        },
    ]
}

async fn run(
    weights: &[f64],
    bias: f64,
    cutoff: f64,
    features: &[f64],
    boundaries: &[f64],
) -> Result<Vec<(String, Vec<Fp>)>, RuntimeError> {
    let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let bytes =
        qvm_guest_fixtures::read(qvm_guest_fixtures::CREDIT_SCORE).expect("built component");
    let program = rt.load(&bytes)?;
    let backend = PlaintextBackend::new(secrets(weights, bias, cutoff), 0);
    let (result, _) = rt.run(&program, backend, input(features, boundaries)).await;
    Ok(result?
        .into_iter()
        .map(|(n, v)| (n, v.as_slice().to_vec()))
        .collect())
}

#[tokio::test]
async fn matches_the_hand_computed_reference() {
    // score = 0.5·10 − 1.25·4 + 2·1.5 + 3 = 6; boundaries at or below 6: 0, 5, 6 → band 3.
    let out = run(
        &[0.5, -1.25, 2.0],
        3.0,
        5.5,
        &[10.0, 4.0, 1.5],
        &[0.0, 5.0, 6.0, 10.0],
    )
    .await
    .expect("runs");
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["score", "band", "approve"]);
    assert_eq!(out[0].1, vec![fixed(6.0)]);
    assert_eq!(out[1].1, vec![Fp::from(3u64)]);
    assert_eq!(out[2].1, vec![Fp::ONE]);

    // Below the cutoff, below every boundary: declined, band 0.
    let out = run(
        &[0.5, -1.25, 2.0],
        -10.0,
        5.5,
        &[10.0, 4.0, 1.5],
        &[0.0, 5.0],
    )
    .await
    .expect("runs");
    assert_eq!(out[0].1, vec![fixed(-7.0)]);
    assert_eq!(out[1].1, vec![Fp::ZERO]);
    assert_eq!(out[2].1, vec![Fp::ZERO]);

    // A fractional score: 0.1·3.3 = 0.33 (fixed point at scale 16, rounded down once).
    let out = run(&[0.1], 0.0, 0.0, &[3.3], &[0.25, 0.5])
        .await
        .expect("runs");
    let expected = (fixed(0.1).to_i128() * fixed(3.3).to_i128()) >> 16;
    assert_eq!(out[0].1[0].to_i128(), expected);
    assert_eq!(out[1].1, vec![Fp::ONE]);
}

#[tokio::test]
async fn bad_input_is_the_programs_error() {
    let err = run(&[1.0], 0.0, 0.0, &[f64::NAN], &[0.0])
        .await
        .expect_err("NaN refused");
    assert!(
        matches!(&err, RuntimeError::Program(m) if m.contains("features")),
        "{err}"
    );
    let err = run(&[1.0, 2.0], 0.0, 0.0, &[1.0], &[0.0])
        .await
        .expect_err("length mismatch");
    assert!(
        matches!(&err, RuntimeError::Program(m) if m.contains("LengthMismatch")),
        "{err}"
    );
}
