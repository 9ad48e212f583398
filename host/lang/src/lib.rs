//! The QuorumVM language: threshold programs in a small, readable, circuit-like language
//! (DESIGN.md §6).
//!
//! Pipeline: [`parser`] → [`check`] (names, types, secrecy, bounds; lowering to the SSA IR
//! of [`ir`] with range analysis and truncation insertion) → [`opt`] (constant folding,
//! dead code; CSE happens while building) → [`cost`] → [`emit`] (the Wasm component). [`eval`] evaluates the IR on plain values: the reference every threshold
//! result is tested against.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod ast;
pub mod check;
pub mod cost;
pub mod diag;
pub mod emit;
pub mod eval;
pub mod ir;
pub mod lexer;
pub mod opt;
pub mod parser;

pub use diag::{CompileError, Diagnostic, Span};

/// Stack for the compiler's recursion: parsing and checking recurse once per nesting
/// level (up to the parser's limit), and unoptimized builds use large frames.
const COMPILER_STACK: usize = 64 << 20;

/// Parses and checks a program: the IR, with ranges proven, or every error found.
pub fn compile_ir(source: &str) -> Result<ir::Ir, CompileError> {
    let run = || {
        let program = parser::parse(source)?;
        check::check(&program, source).map(opt::optimize)
    };
    std::thread::scope(|s| {
        match std::thread::Builder::new()
            .name("qvm-compile".into())
            .stack_size(COMPILER_STACK)
            .spawn_scoped(s, run)
        {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: compile here, within this thread's stack.
            Err(_) => run(),
        }
    })
}
