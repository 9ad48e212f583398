//! The package workflow through the `qvm` binary: keys, committee, build, inspect, verify
//! as each custodian, and a tampered package refused. Also times `package build` for the
//! four examples.

mod common;

use common::qvm;

use std::path::{Path, PathBuf};

fn ok(args: &[&str]) -> String {
    let (code, out, err) = qvm(args);
    assert_eq!(code, 0, "qvm {args:?}: {err}");
    out + &err
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn keys_committee_build_inspect_verify() {
    let dir: PathBuf = std::env::temp_dir().join(format!("qvm-pkg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = |n: &str| dir.join(n);
    ok(&["keygen", "--role", "owner", "--out", &s(&d("owner"))]);
    ok(&["keygen", "--role", "coordinator", "--out", &s(&d("coord"))]);
    for i in 1..=3 {
        ok(&[
            "keygen",
            "--role",
            "custodian",
            "--out",
            &s(&d(&format!("c{i}"))),
        ]);
    }
    // Keys are never overwritten.
    assert_ne!(
        qvm(&["keygen", "--role", "owner", "--out", &s(&d("owner"))]).0,
        0
    );
    let custodian = |i: u32| {
        format!(
            "{i}={}@http://127.0.0.1:{}",
            s(&d(&format!("c{i}")).join("public.json")),
            7000 + i
        )
    };
    let committee = s(&d("committee.json"));
    ok(&[
        "committee",
        "init",
        "--k",
        "2",
        "--custodian",
        &custodian(1),
        "--custodian",
        &custodian(2),
        "--custodian",
        &custodian(3),
        "--coordinator",
        &s(&d("coord/public.json")),
        "--out",
        &committee,
    ]);

    for name in ["linear-score", "credit-score", "fraud-tree", "risk-mlp"] {
        let pkg = s(&d(&format!("{name}.qvmpkg")));
        let out = ok(&[
            "package",
            "build",
            "--source",
            &format!("packages/{name}/{name}.qvm"),
            "--secrets",
            &format!("packages/{name}/secrets.toml"),
            "--policy",
            &format!("packages/{name}/policy.toml"),
            "--committee",
            &committee,
            "--owner-key",
            &s(&d("owner")),
            "--version",
            "1",
            "-o",
            &pkg,
        ]);
        println!("{name}: {}", out.trim());
        let inspected = ok(&["package", "inspect", &pkg]);
        assert!(
            inspected.contains("version 1") && inspected.contains("K = 2, N = 3"),
            "{inspected}"
        );
        for i in 1..=3 {
            let v = ok(&[
                "package",
                "verify",
                &pkg,
                "--committee",
                &committee,
                "--as-custodian",
                &s(&d(&format!("c{i}"))),
            ]);
            assert!(v.contains("this custodian's bundle"), "{v}");
        }
    }

    // A flipped byte is refused with the failed check named.
    let pkg = d("credit-score.qvmpkg");
    let mut bytes = std::fs::read(&pkg).expect("package");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = d("tampered.qvmpkg");
    std::fs::write(&bad, &bytes).expect("write");
    let (code, _, err) = qvm(&[
        "package",
        "verify",
        &s(&bad),
        "--committee",
        &committee,
        "--as-custodian",
        &s(&d("c1")),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused: the manifest's owner signature does not verify"),
        "{err}"
    );

    // Version 2 follows version 1.
    let v2 = s(&d("credit-score-v2.qvmpkg"));
    ok(&[
        "package",
        "build",
        "--source",
        "packages/credit-score/credit-score.qvm",
        "--secrets",
        "packages/credit-score/secrets.toml",
        "--policy",
        "packages/credit-score/policy.toml",
        "--committee",
        &committee,
        "--owner-key",
        &s(&d("owner")),
        "--version",
        "2",
        "--previous",
        &s(&pkg),
        "-o",
        &v2,
    ]);
    ok(&[
        "package",
        "verify",
        &v2,
        "--committee",
        &committee,
        "--previous",
        &s(&pkg),
    ]);
    assert_ne!(
        qvm(&["package", "verify", &v2, "--committee", &committee]).0,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
