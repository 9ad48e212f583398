//! The emitted component, run by the component host on the plaintext backend, gives the
//! IR evaluator's outputs; it imports only the world; the same source gives the same bytes.

mod common;

use std::collections::HashMap;

use qvm_core::Fp;
use qvm_lang::ast::Scalar;
use qvm_lang::compile_ir;
use qvm_lang::emit::emit;
use qvm_lang::eval::evaluate;
use qvm_lang::ir::Ir;
use qvm_runtime::{Field, PlaintextBackend, Runtime, RuntimeConfig, RuntimeError, Value};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../packages/{name}/{name}.qvm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example")
}

/// Inputs as the host passes them (reals for fixed, ints, booleans) and as the evaluator
/// takes them (scaled).
fn input_fields(
    ir: &Ir,
    values: &HashMap<String, Vec<f64>>,
) -> (Vec<Field>, HashMap<String, Vec<i128>>) {
    let mut fields = Vec::new();
    let mut scaled = HashMap::new();
    for p in &ir.inputs {
        let v = &values[&p.name];
        let value = match (p.ty, p.vector) {
            (Scalar::Fixed, true) => Value::Reals(v.clone()),
            (Scalar::Fixed, false) => Value::Real(v[0]),
            (Scalar::Int, true) => Value::Ints(v.iter().map(|x| *x as i64).collect()),
            (Scalar::Int, false) => Value::Int(v[0] as i64),
            (Scalar::Bool, true) => Value::Booleans(v.iter().map(|x| *x != 0.0).collect()),
            (Scalar::Bool, false) => Value::Boolean(v[0] != 0.0),
        };
        fields.push(Field {
            name: p.name.clone(),
            value,
        });
        scaled.insert(
            p.name.clone(),
            qvm_lang::eval::scale_values(ir, p, v).expect("scalable"),
        );
    }
    (fields, scaled)
}

async fn run_component(
    ir: &Ir,
    fields: Vec<Field>,
    secrets: &HashMap<String, Vec<i128>>,
) -> Result<Vec<(String, Vec<i128>)>, RuntimeError> {
    let bytes = emit(ir).expect("emits");
    let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let program = rt.load(&bytes)?;
    let plain: HashMap<String, Vec<Fp>> = secrets
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.iter()
                    .map(|x| Fp::from_i128(*x).expect("in range"))
                    .collect(),
            )
        })
        .collect();
    let (result, _) = rt
        .run(&program, PlaintextBackend::new(plain, 3), fields)
        .await;
    Ok(result?
        .into_iter()
        .map(|(n, v)| (n, v.as_slice().iter().map(|x| x.to_i128()).collect()))
        .collect())
}

fn fx(x: f64) -> i128 {
    (x * 65536.0).round() as i128
}

#[tokio::test]
async fn credit_score_component_matches_the_evaluator() {
    let src = example("credit-score");
    let ir = compile_ir(&src).expect("compiles");
    let mut features = vec![0.0; 12];
    features[..3].copy_from_slice(&[10.0, 4.0, 1.5]);
    let values = HashMap::from([
        ("features".to_string(), features),
        ("boundaries".to_string(), vec![0.0, 5.0, 6.0, 10.0]),
    ]);
    let mut weights = [0.0; 12];
    weights[..3].copy_from_slice(&[0.5, -1.25, 2.0]);
    let secrets = HashMap::from([
        (
            "weights".to_string(),
            weights.iter().map(|w| fx(*w)).collect(),
        ),
        ("bias".to_string(), vec![fx(3.0)]),
        ("cutoff".to_string(), vec![fx(5.5)]),
    ]);
    let (fields, scaled) = input_fields(&ir, &values);
    let expected = evaluate(&ir, &scaled, &secrets).expect("evaluates");
    let got = run_component(&ir, fields, &secrets).await.expect("runs");
    assert_eq!(got, expected);
    assert_eq!(got[1].1, vec![3]);
}

#[tokio::test]
async fn every_example_runs_and_matches() {
    for name in ["linear-score", "credit-score", "fraud-tree", "risk-mlp"] {
        let src = example(name);
        let ir = compile_ir(&src).expect("compiles");
        // Inputs and secrets: mid-range values of each declared bound.
        let values: HashMap<String, Vec<f64>> = ir
            .inputs
            .iter()
            .map(|p| {
                let scale = if p.ty == Scalar::Fixed { 65536.0 } else { 1.0 };
                let (lo, hi) = (p.range.lo as f64 / scale, p.range.hi as f64 / scale);
                (
                    p.name.clone(),
                    (0..p.len)
                        .map(|k| (lo + (hi - lo) * ((k * 7 % 11) as f64 / 11.0)).round())
                        .collect(),
                )
            })
            .collect();
        let secrets = common::spread_secrets(&ir);
        let (fields, scaled) = input_fields(&ir, &values);
        let expected = evaluate(&ir, &scaled, &secrets).expect("evaluates");
        let got = run_component(&ir, fields, &secrets)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[tokio::test]
async fn bad_inputs_are_the_programs_errors() {
    let ir = compile_ir(&example("credit-score")).expect("compiles");
    let secrets: HashMap<String, Vec<i128>> = ir
        .secrets
        .iter()
        .map(|p| (p.name.clone(), vec![0; p.len as usize]))
        .collect();
    let good = |features: Vec<f64>| {
        vec![
            Field {
                name: "features".into(),
                value: Value::Reals(features),
            },
            Field {
                name: "boundaries".into(),
                value: Value::Reals(vec![0.0; 4]),
            },
        ]
    };
    for (fields, what) in [
        (good(vec![0.0; 11]), "wrong length"),
        (good(vec![f64::NAN; 12]), "NaN"),
        (good(vec![1e9; 12]), "out of bounds"),
        (
            vec![Field {
                name: "boundaries".into(),
                value: Value::Reals(vec![0.0; 4]),
            }],
            "missing",
        ),
        (
            vec![
                Field {
                    name: "features".into(),
                    value: Value::Booleans(vec![true; 12]),
                },
                Field {
                    name: "boundaries".into(),
                    value: Value::Reals(vec![0.0; 4]),
                },
            ],
            "wrong type",
        ),
    ] {
        let err = run_component(&ir, fields, &secrets).await.expect_err(what);
        assert!(
            matches!(&err, RuntimeError::Program(m) if m.contains("features")),
            "{what}: {err}"
        );
    }
}

#[test]
fn the_same_source_gives_the_same_bytes() {
    for name in ["credit-score", "fraud-tree"] {
        let src = example(name);
        let a = emit(&compile_ir(&src).expect("compiles")).expect("emits");
        let b = emit(&compile_ir(&src).expect("compiles")).expect("emits");
        assert_eq!(a, b, "{name}");
    }
}

/// A batch run in one instance (`Runtime::run_each`) of inputs that together outgrow the
/// memory limit: the emitted guest's heap only grows (it bump-allocates each input), so
/// the host starts a fresh instance past half the limit, and every input that fits alone
/// fits in the batch, with the result of its own run.
#[tokio::test]
async fn a_batch_of_large_inputs_outgrowing_one_instance_still_runs() {
    let n = 20_000;
    let source = format!(
        "program wide(scale = 8)\ninput xs: fixed[{n}] in [-10.0, 10.0]\n\
         secret ws: fixed[{n}] in [-10.0, 10.0]\noutput y = dot(ws, xs)\n"
    );
    let ir = compile_ir(&source).expect("compiles");
    let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig {
        limits: qvm_runtime::Limits {
            memory_bytes: 4 << 20,
            ..qvm_runtime::Limits::default()
        },
        cache_dir: None,
    })
    .expect("runtime");
    let program = rt.load(&emit(&ir).expect("emits")).expect("loads");
    let ws: Vec<Fp> = (0..n).map(|i| Fp::from((i % 7) as i64 - 3)).collect();
    let backend = || PlaintextBackend::new(HashMap::from([("ws".to_string(), ws.clone())]), 3);
    let input = |b: usize| {
        vec![Field {
            name: "xs".into(),
            value: Value::Reals((0..n).map(|i| ((i + b) % 5) as f64 - 2.0).collect()),
        }]
    };
    // 40 inputs of 160 KB each: 6.4 MB through a 4 MiB instance.
    let items = (0..40).map(|b| (backend(), input(b))).collect();
    let ran = rt
        .run_each(&program, items)
        .await
        .expect("every input runs");
    assert_eq!(ran.len(), 40);
    for (b, (outputs, _)) in ran.iter().enumerate().step_by(13) {
        let (alone, _) = rt.run(&program, backend(), input(b)).await;
        assert_eq!(outputs, &alone.expect("runs alone"), "input {b}");
    }
}
