//! `qvm eval`: sign a request with a client key, send it to the coordinator, print the
//! outputs and the receipt.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use qvm_package::keys::KeySet;

use crate::client::{Client, ClientError, identity_of, open_sealed, sign_with};
use crate::inputs;

/// Arguments of `qvm eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The coordinator's URL.
    #[arg(long)]
    coordinator: String,
    /// The client's key directory (`qvm keygen --role client`).
    #[arg(long)]
    key: PathBuf,
    /// The program.
    #[arg(long)]
    program: String,
    /// The identity (default: the policy's identity with this key).
    #[arg(long)]
    identity: Option<String>,
    /// An input: `name=value`, `name=[v1, v2, …]`, `name=true`.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// Many inputs: a CSV (header of input names) or JSON Lines file; one row each,
    /// evaluated in one request.
    #[arg(long)]
    batch: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `qvm eval`.
pub fn run(args: Args) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(eval(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Refused(_)) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

async fn eval(args: Args) -> anyhow::Result<()> {
    let key = KeySet::read(&args.key)?;
    let client = Client::new(&args.coordinator)?;
    let program = client.program(&args.program).await?;
    let identity = match args.identity {
        Some(i) => i,
        None => identity_of(&program, &key.signing)?,
    };
    let decl = &program.schema.inputs;
    let inputs = match (&args.batch, args.inputs.is_empty()) {
        (Some(path), true) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if path.extension().is_some_and(|e| e == "csv") {
                inputs::parse_csv(decl, &text)?
            } else {
                inputs::parse_jsonl(decl, &text)?
            }
        }
        (None, false) => vec![inputs::parse_args(decl, &args.inputs)?],
        (Some(_), false) => bail!("give --input or --batch, not both"),
        (None, true) => bail!("give the inputs with --input NAME=VALUE or --batch FILE"),
    };
    let reveal_to = key.agreement.as_ref().map(|a| a.public());
    let req = sign_with(&key.signing, reveal_to, &program, &identity, inputs)?;
    let mut resp = client.eval(&req).await?;
    if !resp.sealed.is_empty() {
        // Outputs sealed to this client: open and reconstruct them here.
        let agreement = key.agreement.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the outputs are sealed to a key-agreement key this key set lacks")
        })?;
        resp.outputs = open_sealed(&resp, agreement, &program)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    let show = |v: &[f64]| match v {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if resp.outputs.len() == 1 {
        for o in &resp.outputs[0] {
            println!("{} = {}", o.name, show(&o.reals()));
        }
    } else if let Some(first) = resp.outputs.first() {
        println!(
            "{}",
            first
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        for row in &resp.outputs {
            println!(
                "{}",
                row.iter()
                    .map(|o| show(&o.reals()))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    }
    let r = &resp.receipt.receipt;
    eprintln!(
        "receipt: ticket {} by custodians {:?}, {} round(s), {} cost unit(s)",
        r.ticket, r.members, r.rounds, r.cost
    );
    Ok(())
}
