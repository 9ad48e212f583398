//! A generator of random well-typed integer programs, shared by the property tests.
#![allow(dead_code)] // each test binary uses a different subset

use proptest::prelude::*;

// ----- a generator of well-typed integer programs -----

pub fn num(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("x".to_string()),
        Just("s".to_string()),
        Just("t".to_string()),
        (-9i64..10).prop_map(|k| if k < 0 {
            format!("({k})")
        } else {
            k.to_string()
        }),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let n = || num(depth - 1);
    prop_oneof![
        2 => leaf,
        2 => (n(), n()).prop_map(|(a, b)| format!("({a} + {b})")),
        1 => (n(), n()).prop_map(|(a, b)| format!("({a} - {b})")),
        2 => (n(), n()).prop_map(|(a, b)| format!("({a} * {b})")),
        1 => n().prop_map(|a| format!("(-{a})")),
        2 => (boolean(depth - 1), n(), n()).prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
        1 => (n(), n()).prop_map(|(a, b)| format!("min({a}, {b})")),
        1 => (n(), n()).prop_map(|(a, b)| format!("max({a}, {b})")),
        1 => n().prop_map(|a| format!("abs({a})")),
        1 => n().prop_map(|a| format!("sum({a})")),
        1 => (n(), n()).prop_map(|(a, b)| format!("dot({a}, {b})")),
    ]
    .boxed()
}

pub fn boolean(depth: u32) -> BoxedStrategy<String> {
    let n = || num(depth.saturating_sub(1));
    let cmp = (
        n(),
        n(),
        prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]),
    )
        .prop_map(|(a, b, op)| format!("({a} {op} {b})"));
    if depth == 0 {
        return prop_oneof![Just("f".to_string()), Just("true".to_string())].boxed();
    }
    let b = || boolean(depth - 1);
    prop_oneof![
        3 => cmp,
        1 => Just("f".to_string()),
        1 => (b(), b()).prop_map(|(a, c)| format!("({a} and {c})")),
        1 => (b(), b()).prop_map(|(a, c)| format!("({a} or {c})")),
        1 => b().prop_map(|a| format!("(not {a})")),
    ]
    .boxed()
}

pub fn program() -> impl Strategy<Value = String> {
    (num(3), num(2), boolean(2)).prop_map(|(a, b, c)| {
        format!(
            "program r(scale = 0)\ninput x: int[3] in [-20, 20]\ninput f: bool\nsecret s: int[3] in [-20, 20]\nsecret t: int in [-20, 20]\n\
             fn sq(v) = v * v\nlet u = {a}\noutput o1 = u\noutput o2 = sq({b}) + u\noutput o3 = if {c} then u else 0\n"
        )
    })
}

pub fn values(len: usize) -> impl Strategy<Value = Vec<i128>> {
    proptest::collection::vec(-20i128..=20, len)
}

/// Secret values spread over each secret's declared bounds (deterministic).
pub fn spread_secrets(ir: &qvm_lang::ir::Ir) -> std::collections::HashMap<String, Vec<i128>> {
    ir.secrets
        .iter()
        .map(|p| {
            let values = (0..p.len as i128)
                .map(|k| p.range.lo + (p.range.hi - p.range.lo) * ((k * 5 % 13) + 1) / 14)
                .collect();
            (p.name.clone(), values)
        })
        .collect()
}
