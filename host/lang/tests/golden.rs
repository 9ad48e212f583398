//! Golden tests of error messages: every `golden/fail/NAME.qvm` must fail to compile with
//! exactly the text in `golden/fail/NAME.stderr`. `BLESS=1 cargo test -p qvm-lang` writes
//! the expected files from the current output (review the diff before committing).

use std::path::Path;

#[test]
fn failing_programs_report_the_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fail");
    let bless = std::env::var_os("BLESS").is_some();
    let mut sources: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "qvm"))
        .collect();
    sources.sort();
    assert!(sources.len() >= 10);
    let mut mismatches = Vec::new();
    for path in sources {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let src = std::fs::read_to_string(&path).expect("readable");
        let err = match qvm_lang::compile_ir(&src) {
            Ok(_) => panic!("{name} compiled but should fail"),
            Err(e) => e.render(&name, &src),
        };
        let expected_path = path.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &err).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != err {
            mismatches.push(format!("--- {name}: expected\n{expected}\n--- got\n{err}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
