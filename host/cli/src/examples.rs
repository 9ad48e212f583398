//! Example inputs and policies for the embedded example programs: what `qvm demo` sends,
//! and what the cluster tests use.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use qvm_api::request::{Input, InputField, InputValue, Real};
use qvm_package::keys::KeySet;
use qvm_package::policy::{Degrade, Identity, Policy};

/// A vector of reals.
pub fn reals(v: &[f64]) -> InputValue {
    InputValue::Reals(v.iter().map(|x| Real(*x)).collect())
}

/// An input of `credit-score` (the first feature moved by `shift`).
pub fn credit(shift: f64) -> Input {
    vec![
        InputField {
            name: "features".into(),
            value: reals(&[
                10.0 + shift,
                4.0,
                1.5,
                2.0,
                0.0,
                3.0,
                1.0,
                0.5,
                2.5,
                8.0,
                -4.0,
                6.0,
            ]),
        },
        InputField {
            name: "boundaries".into(),
            value: reals(&[0.0, 5.0, 10.0, 20.0]),
        },
    ]
}

/// An input of `risk-mlp`.
pub fn mlp(shift: f64) -> Input {
    let x: Vec<f64> = (0..16)
        .map(|i| ((i as f64 * 1.7 + shift) % 9.0) - 4.0)
        .collect();
    vec![InputField {
        name: "x".into(),
        value: reals(&x),
    }]
}

/// An input of `linear-score`.
pub fn linear(shift: f64) -> Input {
    vec![InputField {
        name: "features".into(),
        value: reals(
            &(0..100)
                .map(|i| (i % 13) as f64 - 6.0 + shift)
                .collect::<Vec<_>>(),
        ),
    }]
}

/// A policy identity for `key` with a daily budget, a rate, a burst and granted outputs.
pub fn identity(
    key: &KeySet,
    name: &str,
    budget: u64,
    rate_per_minute: u32,
    burst: u32,
    outputs: &[&str],
) -> Identity {
    Identity {
        name: name.into(),
        key: key.signing.verifying_key(),
        budget,
        period_secs: 86_400,
        rate_per_minute,
        burst,
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        reveal_to_client: false,
    }
}

/// A policy of these identities, no degrade rules.
pub fn policy(identities: Vec<Identity>) -> Policy {
    Policy {
        identities,
        degrade: Degrade::default(),
    }
}

/// The owner's plaintext run of a program on one input of reals, with the secrets of a
/// `secrets.toml`: the reference a threshold evaluation must equal.
pub fn plaintext(
    source: &str,
    secrets: &str,
    input: &Input,
) -> anyhow::Result<Vec<(String, Vec<i128>)>> {
    let ir =
        qvm_lang::compile_ir(source).map_err(|e| anyhow!("{}", e.render("program", source)))?;
    let secrets: HashMap<String, Vec<i128>> = qvm_package::build::read_secrets(&ir, secrets)?
        .into_iter()
        .map(|(n, v)| (n, v.iter().map(|x| x.to_i128()).collect()))
        .collect();
    let mut inputs = HashMap::new();
    for p in &ir.inputs {
        let f = input
            .iter()
            .find(|f| f.name == p.name)
            .ok_or_else(|| anyhow!("missing {}", p.name))?;
        let InputValue::Reals(v) = &f.value else {
            bail!("reals expected")
        };
        let v: Vec<f64> = v.iter().map(|r| r.0).collect();
        inputs.insert(
            p.name.clone(),
            qvm_lang::eval::scale_values(&ir, p, &v).ok_or_else(|| anyhow!("scale"))?,
        );
    }
    Ok(qvm_lang::eval::evaluate(&ir, &inputs, &secrets)?)
}
