//! Example inputs and policies for the embedded example programs: what `qvm demo` sends,
//! and what the cluster tests use.

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
