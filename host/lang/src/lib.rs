//! The QuorumVM language: threshold programs in a small, readable, circuit-like language
//! (DESIGN.md §6).
//!
//! Pipeline: [`parser`] → [`check`] (names, types, secrecy, bounds; lowering to the SSA IR
//! of [`ir`] with range analysis and truncation insertion) → [`cost`] → (next: the Wasm
//! component). [`eval`] evaluates the IR on plain values: the reference every threshold
//! result is tested against.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod ast;
pub mod check;
pub mod cost;
pub mod diag;
pub mod eval;
pub mod ir;
pub mod lexer;
pub mod parser;

pub use diag::{CompileError, Diagnostic, Span};

/// Parses and checks a program: the IR, with ranges proven, or every error found.
pub fn compile_ir(source: &str) -> Result<ir::Ir, CompileError> {
    let program = parser::parse(source)?;
    check::check(&program, source)
}
