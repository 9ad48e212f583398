//! The `qvm` binary, run as a process: compile and what-if run the examples.

mod common;

use common::qvm;

#[test]
fn compile_prints_the_class_and_cost() {
    let (code, _, err) = qvm(&[
        "compile",
        "packages/linear-score/linear-score.qvm",
        "--k",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("local-only") && err.contains("N >= 3"),
        "{err}"
    );
    let (code, _, err) = qvm(&[
        "compile",
        "packages/credit-score/credit-score.qvm",
        "--k",
        "3",
    ]);
    assert_eq!(code, 0);
    assert!(
        err.contains("interactive") && err.contains("N >= 5") && err.contains("rounds 7"),
        "{err}"
    );
}

#[test]
fn compile_errors_are_rendered_with_a_caret() {
    let (code, _, err) = qvm(&["compile", "host/lang/tests/golden/fail/secret-index.qvm"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("secret-index.qvm:4:14") && err.contains('^'),
        "{err}"
    );
}

#[test]
fn what_if_run_of_credit_score() {
    let (code, out, err) = qvm(&[
        "run",
        "packages/credit-score/credit-score.qvm",
        "--secrets",
        "packages/credit-score/secrets.toml",
        "--input",
        "features=[10, 4, 1.5, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
        "--input",
        "boundaries=[0, 5, 6, 10]",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "score = 6\nband = 3\napprove = 1\n");
    // Out-of-bounds input: the program's own error, exit code 2.
    let (code, _, err) = qvm(&[
        "run",
        "packages/credit-score/credit-score.qvm",
        "--secrets",
        "packages/credit-score/secrets.toml",
        "--input",
        "features=[1e9]",
        "--input",
        "boundaries=[0, 1, 2, 3]",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("input `features`"), "{err}");
}

#[test]
fn emit_wasm_writes_a_component() {
    let path = std::env::temp_dir().join(format!("qvm-cli-{}.wasm", std::process::id()));
    let p = path.to_string_lossy().into_owned();
    let (code, _, err) = qvm(&[
        "compile",
        "packages/fraud-tree/fraud-tree.qvm",
        "--emit",
        "wasm",
        "-o",
        &p,
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&path).expect("written");
    // A component's preamble: magic, then version 0x0d with layer 1.
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0");
    let _ = std::fs::remove_file(path);
}

#[test]
fn the_demo_runs_the_whole_workflow() {
    let (code, out, err) = qvm(&["demo"]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "threshold results equal the plaintext reference",
        "band = 3.000  approve = 1.000",
        "a request altered after signing: refused",
        "the same signed request sent again: refused",
        "`trial` after two evaluations: refused (budget",
        "a third time at once: refused (rate limit",
        "credit_score still served",
        "2 of the 3 custodians needed are available",
        "every log verifies",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
