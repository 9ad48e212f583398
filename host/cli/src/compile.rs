//! `qvm compile FILE.qvm`: check a program, print its cost and class.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use qvm_lang::cost::{Class, Cost, cost};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// The SSA IR, as JSON.
    Ir,
    /// The cost model, as JSON.
    Cost,
    /// The WebAssembly component.
    Wasm,
}

/// Arguments of `qvm compile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The program source.
    file: PathBuf,
    /// Also write this artifact.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// Where to write it (standard output if absent).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Threshold K, to say the smallest committee that can run the program.
    #[arg(long, default_value_t = 2)]
    k: usize,
}

/// Runs `qvm compile`.
pub fn run(args: Args) -> ExitCode {
    match compile(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn compile(args: &Args) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let name = args.file.display().to_string();
    let ir = match qvm_lang::compile_ir(&source) {
        Ok(ir) => ir,
        Err(e) => {
            eprint!("{}", e.render(&name, &source));
            return Ok(ExitCode::from(1));
        }
    };
    let c = cost(&ir);
    print_summary(&ir.name, &c, args.k);
    if let Some(emit) = args.emit {
        let bytes = match emit {
            Emit::Ir => (serde_json::to_string_pretty(&ir)? + "\n").into_bytes(),
            Emit::Cost => (serde_json::to_string_pretty(&c)? + "\n").into_bytes(),
            Emit::Wasm => qvm_lang::emit::emit(&ir)?,
        };
        match &args.output {
            Some(path) => std::fs::write(path, &bytes)
                .with_context(|| format!("writing {}", path.display()))?,
            None if emit == Emit::Wasm => anyhow::bail!("--emit wasm needs -o FILE"),
            None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(name: &str, c: &Cost, k: usize) {
    let class = match c.class {
        Class::LocalOnly => "local-only (no interaction between custodians)",
        Class::Interactive => "interactive (needs the offline phase)",
    };
    eprintln!("program `{name}`: {class}");
    eprintln!("  minimum committee for K = {k}: N >= {}", c.class.min_n(k));
    eprintln!(
        "  rounds {}, multiplications {}, comparisons {}, truncations {}, random bits {}",
        c.rounds, c.multiplications, c.comparisons, c.truncations, c.random_bits
    );
    eprintln!(
        "  per custodian: {} field elements, {} bytes each way; {} cost units per evaluation",
        c.elements_sent, c.bytes_per_custodian, c.cost_units
    );
}
