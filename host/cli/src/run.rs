//! `qvm run FILE.qvm --secrets S.toml --input name=value …`: the owner's what-if run.
//!
//! Compiles the program, emits its component, and runs it in the component host on the
//! plaintext backend — the same component the custodians will run, on plain values, on
//! the owner's machine. Truncations round down here (under MPC they may round up by one
//! unit in the last place); bounded operations check their bounds and fail if a value
//! escapes them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use qvm_core::Fp;
use qvm_lang::ast::Scalar;
use qvm_lang::ir::Ir;
use qvm_runtime::{Field, PlaintextBackend, Runtime, RuntimeConfig, Value};

/// Arguments of `qvm run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The program source.
    file: PathBuf,
    /// The secrets, as TOML: `name = number` or `name = [numbers]` (reals for fixed).
    #[arg(long)]
    secrets: PathBuf,
    /// An input: `name=value`, `name=[v1, v2, …]`, `name=true`.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
}

/// Runs `qvm run`.
pub fn run(args: Args) -> ExitCode {
    match what_if(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn what_if(args: &Args) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let ir = match qvm_lang::compile_ir(&source) {
        Ok(ir) => ir,
        Err(e) => {
            eprint!("{}", e.render(&args.file.display().to_string(), &source));
            return Ok(ExitCode::from(1));
        }
    };
    let bytes = qvm_lang::emit::emit(&ir)?;
    let secrets = read_secrets(&ir, &args.secrets)?;
    let fields = parse_inputs(&ir, &args.inputs)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default())?;
    let program = rt.load(&bytes)?;
    let (result, _) = tokio.block_on(rt.run(&program, PlaintextBackend::new(secrets, 0), fields));
    for (name, values) in result? {
        let scale = ir.output_scale(&name).unwrap_or(0);
        let shown: Vec<String> = values
            .as_slice()
            .iter()
            .map(|v| format_value(*v, scale))
            .collect();
        match shown.as_slice() {
            [one] => println!("{name} = {one}"),
            many => println!("{name} = [{}]", many.join(", ")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn format_value(v: Fp, scale: u32) -> String {
    let i = v.to_i128();
    if scale == 0 {
        i.to_string()
    } else {
        format!("{}", i as f64 / (1u128 << scale) as f64)
    }
}

/// The secrets file, read and checked the way `qvm package build` reads it.
fn read_secrets(ir: &Ir, path: &PathBuf) -> anyhow::Result<HashMap<String, Vec<Fp>>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    Ok(qvm_package::build::read_secrets(ir, &text)?
        .into_iter()
        .collect())
}

fn parse_inputs(ir: &Ir, given: &[String]) -> anyhow::Result<Vec<Field>> {
    let mut fields = Vec::new();
    for g in given {
        let (name, text) = g
            .split_once('=')
            .ok_or_else(|| anyhow!("`{g}`: write NAME=VALUE"))?;
        let p = ir
            .inputs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow!("the program has no input `{name}`"))?;
        let text = text.trim();
        let items: Vec<&str> = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) => inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            None => vec![text],
        };
        let value = match p.ty {
            Scalar::Bool => {
                let b = items
                    .iter()
                    .map(|s| {
                        s.parse::<bool>()
                            .with_context(|| format!("`{name}`: `{s}` is not true or false"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if p.vector {
                    Value::Booleans(b)
                } else {
                    Value::Boolean(b.first().copied().unwrap_or(false))
                }
            }
            Scalar::Int => {
                let v = items
                    .iter()
                    .map(|s| {
                        s.parse::<i64>()
                            .with_context(|| format!("`{name}`: `{s}` is not an integer"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if p.vector {
                    Value::Ints(v)
                } else {
                    Value::Int(v.first().copied().unwrap_or(0))
                }
            }
            Scalar::Fixed => {
                let v = items
                    .iter()
                    .map(|s| {
                        s.parse::<f64>()
                            .with_context(|| format!("`{name}`: `{s}` is not a number"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if p.vector {
                    Value::Reals(v)
                } else {
                    Value::Real(v.first().copied().unwrap_or(0.0))
                }
            }
        };
        fields.push(Field {
            name: name.to_string(),
            value,
        });
    }
    Ok(fields)
}
