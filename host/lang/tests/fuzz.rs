//! The parser and checker never panic, whatever the input: random token streams, random
//! text, and pathological nesting give errors, not crashes.

use proptest::prelude::*;

const VOCAB: &[&str] = &[
    "program",
    "p",
    "input",
    "secret",
    "fn",
    "let",
    "output",
    "if",
    "then",
    "else",
    "for",
    "in",
    "and",
    "or",
    "not",
    "true",
    "false",
    "int",
    "fixed",
    "bool",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "==",
    "!=",
    "<=",
    ">=",
    "<",
    ">",
    "=>",
    "=",
    "+",
    "-",
    "*",
    "/",
    "..",
    "x",
    "w",
    "dot",
    "sum",
    "min",
    "max",
    "abs",
    "0",
    "1",
    "3",
    "1.5",
    "99999999999999999999",
    "scale",
    "//",
    "\n",
    "\u{202E}",
    "é",
    "#",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_token_streams_do_not_panic(tokens in proptest::collection::vec(proptest::sample::select(VOCAB), 0..60)) {
        let src = tokens.join(" ");
        let _ = qvm_lang::compile_ir(&src).map_err(|e| e.render("fuzz.qvm", &src));
    }

    #[test]
    fn programs_with_a_valid_header_do_not_panic(tokens in proptest::collection::vec(proptest::sample::select(VOCAB), 0..80)) {
        let src = format!("program p\ninput x: int[3] in [-5, 5]\nsecret w: fixed[3] in [-1.0, 1.0]\n{}", tokens.join(" "));
        let _ = qvm_lang::compile_ir(&src).map_err(|e| e.render("fuzz.qvm", &src));
    }

    #[test]
    fn random_text_does_not_panic(src in "\\PC{0,200}") {
        let _ = qvm_lang::compile_ir(&src).map_err(|e| e.render("fuzz.qvm", &src));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for (open, close) in [
        ("(", ")"),
        ("-", ""),
        ("[", "]"),
        ("not ", ""),
        ("if true then ", " else 0"),
    ] {
        let src = format!(
            "program p\noutput y = {}1{}",
            open.repeat(5000),
            close.repeat(5000)
        );
        let err = qvm_lang::compile_ir(&src).expect_err("too deep");
        assert!(
            err.render("deep.qvm", &src).contains("nested too deeply"),
            "{open}"
        );
    }
}

#[test]
fn reasonable_nesting_is_fine() {
    let src = format!(
        "program p\nsecret w: int in [0, 1]\noutput y = {}w{}",
        "(".repeat(60),
        ")".repeat(60)
    );
    assert!(qvm_lang::compile_ir(&src).is_ok());
    let chain: String = (0..50)
        .map(|i| format!("if w == {i} then {i} else "))
        .collect();
    let src = format!("program p\nsecret w: int in [0, 100]\noutput y = {chain}0");
    if let Err(e) = qvm_lang::compile_ir(&src) {
        panic!("{}", e.render("chain.qvm", &src));
    }
}
