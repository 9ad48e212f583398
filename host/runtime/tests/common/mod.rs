//! Builds test components: a core module written in WAT, with the `quorumvm:program` world
//! (and optionally extra WIT) embedded, turned into a component by wit-component — the
//! same path the DSL compiler takes.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::Path;

use qvm_core::Fp;
use qvm_runtime::{PlaintextBackend, Runtime, RuntimeConfig};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

/// The shares interface's import module name.
pub const SHARES: &str = "quorumvm:program/shares@0.1.0";

/// A component from a core module in WAT, for the `program` world, or for `world` in
/// `extra_wit` (which may include the program world and add imports).
pub fn component(core_wat: &str, extra_wit: Option<(&str, &str)>) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let wit_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let (pkg, _) = resolve.push_dir(&wit_dir).expect("wit parses");
    let world = match extra_wit {
        None => resolve
            .select_world(&[pkg], Some("program"))
            .expect("world"),
        Some((source, world)) => {
            let extra = resolve
                .push_str("extra.wit", source)
                .expect("extra wit parses");
            resolve
                .select_world(&[extra], Some(world))
                .expect("extra world")
        }
    };
    let mut module = wat::parse_str(core_wat).expect("wat parses");
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).expect("embed");
    ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("component encodes")
}

/// The imports of the share ops every test module has.
pub const PRELUDE: &str = r#"
  (import "quorumvm:program/shares@0.1.0" "secret" (func $secret (param i32 i32 i32)))
  (import "quorumvm:program/shares@0.1.0" "mul" (func $mul (param i32 i32 i32)))
  (import "quorumvm:program/shares@0.1.0" "ltz" (func $ltz (param i32 i32 i32)))
  (import "quorumvm:program/shares@0.1.0" "[method]shared.len" (func $len (param i32) (result i32)))
  (import "quorumvm:program/shares@0.1.0" "[method]shared.broadcast" (func $broadcast (param i32 i32 i32)))
  (import "quorumvm:program/shares@0.1.0" "[method]shared.add" (func $add (param i32 i32 i32)))
  (import "quorumvm:program/shares@0.1.0" "[resource-drop]shared" (func $drop (param i32)))
"#;

/// Memory, a bump allocator and the data the test programs use.
pub const DEFINITIONS: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (data (i32.const 16) "w")
  (data (i32.const 32) "y")
  (data (i32.const 40) "nope")
"#;

/// A well-behaved program: y = w·w + w for the secret vector `w` (one round), or the
/// share error if `w` is missing. Result area at 160; share results at 64 and 96.
pub const SQUARE: &str = r#"
  (func (export "run") (param i32 i32) (result i32)
    (call $secret (i32.const 16) (i32.const 1) (i32.const 64))
    (if (i32.load8_u (i32.const 64))
      (then
        (i32.store8 (i32.const 160) (i32.const 1))
        (i32.store8 (i32.const 164) (i32.const 1))
        (memory.copy (i32.const 168) (i32.const 68) (i32.const 12))
        (return (i32.const 160))))
    (call $mul (i32.load (i32.const 68)) (i32.load (i32.const 68)) (i32.const 96))
    (call $add (i32.load (i32.const 100)) (i32.load (i32.const 68)) (i32.const 112))
    (call $drop (i32.load (i32.const 100)))
    (call $drop (i32.load (i32.const 68)))
    (i32.store (i32.const 128) (i32.const 32))
    (i32.store (i32.const 132) (i32.const 1))
    (i32.store (i32.const 136) (i32.load (i32.const 116)))
    (i32.store8 (i32.const 160) (i32.const 0))
    (i32.store (i32.const 164) (i32.const 128))
    (i32.store (i32.const 168) (i32.const 1))
    (i32.const 160))
"#;

/// A module: the prelude and a body.
pub fn module(body: &str) -> String {
    module_with_imports("", body)
}

/// A module with extra imports.
pub fn module_with_imports(imports: &str, body: &str) -> String {
    format!("(module {PRELUDE} {imports} {DEFINITIONS} {body})")
}

/// A plaintext runtime with default limits, or these.
pub fn plaintext_runtime(config: RuntimeConfig) -> Runtime<PlaintextBackend> {
    Runtime::new(config).expect("runtime")
}

/// A plaintext backend holding `w`.
pub fn backend_with_w(w: &[i64]) -> PlaintextBackend {
    let mut secrets = HashMap::new();
    secrets.insert("w".to_string(), w.iter().map(|v| Fp::from(*v)).collect());
    PlaintextBackend::new(secrets, 1)
}
