//! Range analysis: one test per rule. A program that could overflow the 64-bit budget is
//! rejected with an error naming the expression; one that cannot is accepted; truncations
//! appear only where needed.

use qvm_lang::compile_ir;
use qvm_lang::ir::{Ir, Op};

fn ok(src: &str) -> Ir {
    match compile_ir(src) {
        Ok(ir) => ir,
        Err(e) => panic!("should compile:\n{}", e.render("t.qvm", src)),
    }
}

fn overflow(src: &str, expr: &str) {
    match compile_ir(src) {
        Ok(_) => panic!("should be rejected:\n{src}"),
        Err(e) => {
            let text = e.render("t.qvm", src);
            assert!(
                text.contains("may overflow") && text.contains(&format!("`{expr}`")),
                "{text}"
            );
        }
    }
}

fn truncs(ir: &Ir) -> Vec<(u32, &Op)> {
    ir.nodes
        .iter()
        .filter_map(|n| {
            if let Op::Trunc(a, m) = &n.op {
                Some((*m, &ir.nodes[*a].op))
            } else {
                None
            }
        })
        .collect()
}

const B61: &str = "2305843009213693951"; // 2^61 − 1

#[test]
fn sums_of_declared_bounds() {
    ok(&format!(
        "program p\nsecret a: int in [0, {B61}]\nsecret b: int in [0, {B61}]\noutput y = a + b"
    ));
    overflow(
        &format!(
            "program p\nsecret a: int in [0, {B61}]\nsecret b: int in [0, {B61}]\noutput y = a + b + a + b"
        ),
        "a + b + a + b",
    );
    overflow(
        &format!(
            "program p\nsecret a: int in [-{B61}, 0]\nsecret b: int in [0, {B61}]\noutput y = b - a - a - a"
        ),
        "b - a - a - a",
    );
}

#[test]
fn products_of_declared_bounds() {
    ok(
        "program p\nsecret a: int in [-2147483648, 2147483648]\nsecret b: int in [-2147483647, 2147483647]\noutput y = a * b",
    );
    overflow(
        "program p\nsecret a: int in [-4294967296, 4294967296]\nsecret b: int in [-4294967296, 4294967296]\noutput y = a * b",
        "a * b",
    );
}

#[test]
fn a_product_is_rescaled_only_when_multiplied_again() {
    let ir = ok(
        "program p(scale = 16)\ninput x: fixed in [-1000.0, 1000.0]\nsecret w: fixed in [-1000.0, 1000.0]\noutput y = (x * w) * w",
    );
    let t = truncs(&ir);
    // One truncation of the first product (scale 32 → 16) before the second product; the
    // output keeps its scale (32).
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t.iter().all(|(m, _)| *m == 16));
    assert!(matches!(t[0].1, Op::Mul(..)));
    assert_eq!(ir.output_scale("y"), Some(32));
}

#[test]
fn integer_programs_never_truncate() {
    let ir = ok(
        "program p\ninput x: int[3] in [-10, 10]\nsecret w: int[3] in [-10, 10]\noutput y = dot(w, x) * 2 - 1",
    );
    assert!(truncs(&ir).is_empty());
}

#[test]
fn a_long_dot_truncates_before_summing_only_when_it_must() {
    // 12 products at scale 32 fit: no truncation at all, a local-only program.
    let short = ok(
        "program p\ninput x: fixed[12] in [-1000.0, 1000.0]\nsecret w: fixed[12] in [-1000.0, 1000.0]\noutput y = dot(w, x)",
    );
    assert!(truncs(&short).is_empty());
    assert_eq!(
        qvm_lang::cost::cost(&short).class,
        qvm_lang::cost::Class::LocalOnly
    );
    // 8192 products at scale 32 would need 66 bits: the products are rescaled first.
    let long = ok(
        "program p\ninput x: fixed[8192] in [-1000.0, 1000.0]\nsecret w: fixed[8192] in [-1000.0, 1000.0]\noutput y = dot(w, x)",
    );
    assert_eq!(truncs(&long).len(), 1);
    assert!(matches!(truncs(&long)[0].1, Op::Mul(..)));
}

#[test]
fn comparisons_use_the_bits_of_the_difference() {
    let ir =
        ok("program p\ninput x: int in [-100, 100]\nsecret w: int in [-28, 27]\noutput y = w < x");
    let k: Vec<u32> = ir
        .nodes
        .iter()
        .filter_map(|n| {
            if let Op::Ltz(_, k) = n.op {
                Some(k)
            } else {
                None
            }
        })
        .collect();
    // w − x ∈ [−128, 127]: 8 bits.
    assert_eq!(k, vec![8]);
}

#[test]
fn select_branches_must_not_differ_beyond_the_budget() {
    ok(&format!(
        "program p\ninput c: bool\nsecret a: int in [0, {B61}]\nsecret b: int in [0, {B61}]\noutput y = if c then a else b"
    ));
    overflow(
        &format!(
            "program p\ninput c: bool\nsecret a: int in [-{B61}, {B61}]\nsecret b: int in [-{B61}, {B61}]\noutput y = if c then a + a else b + b"
        ),
        "if c then a + a else b + b",
    );
}

#[test]
fn division_by_a_constant_is_a_fixed_point_product() {
    let ir = ok("program p(scale = 16)\nsecret w: fixed in [0.0, 10.0]\noutput y = w / 4");
    assert!(
        ir.nodes
            .iter()
            .any(|n| matches!(n.op, Op::MulConst(_, 16384)))
    );
    assert_eq!(ir.output_scale("y"), Some(32));
}

#[test]
fn negation_and_abs_mirror_the_range() {
    let ir = ok("program p\nsecret w: int in [-5, 3]\noutput y = abs(w)\noutput z = -w");
    let y = ir
        .outputs
        .iter()
        .find(|(n, _)| n == "y")
        .map(|(_, id)| ir.nodes[*id].range)
        .expect("y");
    let z = ir
        .outputs
        .iter()
        .find(|(n, _)| n == "z")
        .map(|(_, id)| ir.nodes[*id].range)
        .expect("z");
    assert_eq!((z.lo, z.hi), (-3, 5));
    assert!(y.lo <= 0 && y.hi >= 5);
}

#[test]
fn huge_unrolling_is_refused() {
    let src = "program p\ninput x: int in [0, 1]\noutput y = sum(for i in 0..100000 => sum(for j in 0..100000 => x))";
    let e = compile_ir(src).expect_err("too large");
    assert!(e.render("t.qvm", src).contains("too large"));
}
