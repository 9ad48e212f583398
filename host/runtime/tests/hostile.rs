//! Hostile components: each is stopped with a typed error, and the same runtime goes on
//! serving a well-behaved program afterwards.

mod common;

use std::time::Duration;

use common::{SQUARE, backend_with_w, component, module, module_with_imports, plaintext_runtime};
use qvm_core::Fp;
use qvm_runtime::{Limits, PlaintextBackend, Runtime, RuntimeConfig, RuntimeError};

/// Runs `body` as a program, then checks the runtime still serves the square program.
async fn run_hostile(rt: &Runtime<PlaintextBackend>, body: &str) -> RuntimeError {
    let program = rt.load(&component(&module(body), None)).expect("loads");
    let (result, _) = rt.run(&program, backend_with_w(&[3]), Vec::new()).await;
    let err = result.expect_err("hostile program fails");
    still_serving(rt).await;
    err
}

async fn still_serving(rt: &Runtime<PlaintextBackend>) {
    let square = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let (result, _) = rt.run(&square, backend_with_w(&[3, -2]), Vec::new()).await;
    let outputs = result.expect("square runs");
    assert_eq!(outputs[0].1.as_slice(), &[Fp::from(12u64), Fp::from(2u64)]);
}

fn small_limits() -> Limits {
    Limits {
        fuel: 50_000_000,
        deadline: Duration::from_secs(20),
        memory_bytes: 4 << 20,
        max_outputs: 4,
        max_live_elements: 1 << 16,
        ..Limits::default()
    }
}

fn runtime() -> Runtime<PlaintextBackend> {
    plaintext_runtime(RuntimeConfig {
        limits: small_limits(),
        cache_dir: None,
    })
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#,
    )
    .await;
    assert!(matches!(err, RuntimeError::OutOfFuel(50_000_000)), "{err}");
}

#[tokio::test]
async fn an_infinite_loop_with_fuel_to_spare_hits_the_deadline() {
    let rt = plaintext_runtime(RuntimeConfig {
        limits: Limits {
            fuel: u64::MAX / 2,
            deadline: Duration::from_millis(300),
            ..small_limits()
        },
        cache_dir: None,
    });
    let program = rt
        .load(&component(&module(r#"(func (export "run") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#), None))
        .expect("loads");
    let (result, _) = rt.run(&program, backend_with_w(&[1]), Vec::new()).await;
    assert!(matches!(result, Err(RuntimeError::Deadline)), "{result:?}");
}

#[tokio::test]
async fn a_memory_bomb_stops_at_the_limit() {
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32)
             (loop $l (drop (memory.grow (i32.const 16))) (br $l))
             (i32.const 0))"#,
    )
    .await;
    assert!(matches!(err, RuntimeError::MemoryLimit(_)), "{err}");
}

#[tokio::test]
async fn a_host_side_bomb_stops_at_the_limit() {
    // Broadcasting a secret again and again makes the host hold ever more elements.
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32)
             (call $secret (i32.const 16) (i32.const 1) (i32.const 64))
             (loop $l
               (call $broadcast (i32.load (i32.const 68)) (i32.const 60000) (i32.const 96))
               (br $l))
             (i32.const 0))"#,
    )
    .await;
    assert!(matches!(err, RuntimeError::MemoryLimit(_)), "{err}");
}

#[tokio::test]
async fn a_trap_is_reported() {
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32) unreachable)"#,
    )
    .await;
    assert!(
        matches!(&err, RuntimeError::Trap(m) if m.contains("unreachable")),
        "{err}"
    );
}

#[tokio::test]
async fn too_many_outputs_are_refused() {
    // Five outputs (the limit is four), each with its own handle from `secret`.
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32)
             (local $i i32)
             (loop $l
               (call $secret (i32.const 16) (i32.const 1) (i32.const 64))
               (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 12))) (i32.const 32))
               (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 12))) (i32.const 1))
               (i32.store (i32.add (i32.const 1032) (i32.mul (local.get $i) (i32.const 12))) (i32.load (i32.const 68)))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $l (i32.lt_u (local.get $i) (i32.const 5))))
             (i32.store8 (i32.const 160) (i32.const 0))
             (i32.store (i32.const 164) (i32.const 1024))
             (i32.store (i32.const 168) (i32.const 5))
             (i32.const 160))"#,
    )
    .await;
    assert!(matches!(err, RuntimeError::OutputTooLarge(_)), "{err}");
}

#[tokio::test]
async fn an_output_list_past_the_end_of_memory_traps() {
    let rt = runtime();
    let err = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32)
             (i32.store8 (i32.const 160) (i32.const 0))
             (i32.store (i32.const 164) (i32.const 1024))
             (i32.store (i32.const 168) (i32.const 100000000))
             (i32.const 160))"#,
    )
    .await;
    assert!(matches!(err, RuntimeError::Trap(_)), "{err}");
}

#[tokio::test]
async fn forged_and_dropped_handles_trap() {
    let rt = runtime();
    let forged = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32) (drop (call $len (i32.const 12345))) (i32.const 0))"#,
    )
    .await;
    assert!(
        matches!(&forged, RuntimeError::Trap(m) if m.contains("handle")),
        "{forged}"
    );
    let after_drop = run_hostile(
        &rt,
        r#"(func (export "run") (param i32 i32) (result i32)
             (call $secret (i32.const 16) (i32.const 1) (i32.const 64))
             (call $drop (i32.load (i32.const 68)))
             (drop (call $len (i32.load (i32.const 68))))
             (i32.const 0))"#,
    )
    .await;
    assert!(
        matches!(&after_drop, RuntimeError::Trap(m) if m.contains("handle")),
        "{after_drop}"
    );
}

#[tokio::test]
async fn an_import_outside_the_world_is_refused_at_load() {
    let rt = runtime();
    let wit = r#"
        package evil:spy;
        interface environment {
            get-environment: func() -> list<tuple<string, string>>;
        }
        world spy {
            include quorumvm:program/program@0.1.0;
            import environment;
        }
    "#;
    let imports = r#"(import "evil:spy/environment" "get-environment" (func $env (param i32)))"#;
    let body = r#"(func (export "run") (param i32 i32) (result i32) (call $env (i32.const 256)) (i32.const 0))"#;
    let err = rt
        .load(&component(
            &module_with_imports(imports, body),
            Some((wit, "spy")),
        ))
        .expect_err("refused");
    assert!(
        matches!(&err, RuntimeError::ForbiddenImport(name) if name == "evil:spy/environment"),
        "{err}"
    );
    assert!(matches!(
        rt.load(b"not a component"),
        Err(RuntimeError::InvalidComponent(_))
    ));
    still_serving(&rt).await;
}

/// Counts to a million (about 8 million fuel) and returns no outputs.
const COUNT: &str = r#"(func (export "run") (param i32 i32) (result i32)
     (local $i i32)
     (loop $l
       (local.set $i (i32.add (local.get $i) (i32.const 1)))
       (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
     (i32.store8 (i32.const 160) (i32.const 0))
     (i32.store (i32.const 164) (i32.const 0))
     (i32.store (i32.const 168) (i32.const 0))
     (i32.const 160))"#;

fn fuel_runtime(fuel: u64) -> Runtime<PlaintextBackend> {
    plaintext_runtime(RuntimeConfig {
        limits: Limits {
            fuel,
            ..small_limits()
        },
        cache_dir: None,
    })
}

#[tokio::test]
async fn inputs_in_one_instance_each_get_the_whole_fuel() {
    // The program needs more than 6 million fuel: it fails on that budget...
    let rt = fuel_runtime(6_000_000);
    let program = rt.load(&component(&module(COUNT), None)).expect("loads");
    let (result, _) = rt.run(&program, backend_with_w(&[1]), Vec::new()).await;
    assert!(
        matches!(result, Err(RuntimeError::OutOfFuel(_))),
        "{result:?}"
    );
    // ...and three runs in one instance on 12 million each succeed (together they need
    // twice that).
    let rt = fuel_runtime(12_000_000);
    let program = rt.load(&component(&module(COUNT), None)).expect("loads");
    let items = (0..3).map(|_| (backend_with_w(&[1]), Vec::new())).collect();
    let ran = rt
        .run_each(&program, items)
        .await
        .expect("each has its fuel");
    assert_eq!(ran.len(), 3);
}

#[tokio::test]
async fn a_hostile_input_in_one_instance_ends_the_batch_with_its_index() {
    let rt = runtime();
    let program = rt
        .load(&component(
            &module(r#"(func (export "run") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#),
            None,
        ))
        .expect("loads");
    let items = (0..3).map(|_| (backend_with_w(&[1]), Vec::new())).collect();
    let failure = rt.run_each(&program, items).await.expect_err("out of fuel");
    assert_eq!(failure.index, 0);
    assert!(
        matches!(failure.error, RuntimeError::OutOfFuel(_)),
        "{failure:?}"
    );
    still_serving(&rt).await;
}
