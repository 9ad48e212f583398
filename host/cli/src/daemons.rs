//! `qvm custodian run|approve|refuse` and `qvm coordinator run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use qvm_core::encoding::Digest;
use qvm_package::approval::Decision;

use crate::package::exit;

/// `qvm custodian …`.
#[derive(Debug, clap::Subcommand)]
pub enum CustodianCommand {
    /// Run the custodian daemon.
    Run(ConfigArg),
    /// Approve a proposed package (the operator's decision): verify it again, sign, record.
    Approve(DecideArgs),
    /// Refuse a proposed package, with a reason.
    Refuse(RefuseArgs),
}

/// `qvm coordinator …`.
#[derive(Debug, clap::Subcommand)]
pub enum CoordinatorCommand {
    /// Run the coordinator daemon.
    Run(ConfigArg),
}

/// A config file.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
}

/// A decision on a package.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The custodian's configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// The package id (hex).
    pub package: String,
}

/// A refusal.
#[derive(Debug, clap::Args)]
pub struct RefuseArgs {
    /// The custodian's configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// The package id (hex).
    pub package: String,
    /// Why.
    #[arg(long)]
    pub reason: String,
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs `qvm custodian …`.
pub fn custodian(cmd: CustodianCommand) -> ExitCode {
    exit(match cmd {
        CustodianCommand::Run(a) => (|| {
            qvm_node::logging::init();
            let config = qvm_custodian::Config::load(&a.config)?;
            runtime()?.block_on(qvm_custodian::serve(config, shutdown_signal()))?;
            Ok(())
        })(),
        CustodianCommand::Approve(a) => {
            decide(&a.config, &a.package, Decision::Approve).map(|()| {
                eprintln!("approved package {}", a.package);
            })
        }
        CustodianCommand::Refuse(a) => decide(&a.config, &a.package, Decision::Refuse(a.reason))
            .map(|()| {
                eprintln!("refused package {}", a.package);
            }),
    })
}

/// Records the operator's decision in the custodian's store (the daemon may be running:
/// the store is shared safely between processes).
pub fn decide(config: &std::path::Path, package: &str, decision: Decision) -> anyhow::Result<()> {
    let config = qvm_custodian::Config::load(config)?;
    let id = Digest::from_hex(package).context("the package id is 64 hex digits")?;
    let node = qvm_custodian::Node::open_offline(&config)?;
    node.decide(&id, decision)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    Ok(())
}

/// Runs `qvm coordinator …`.
pub fn coordinator(cmd: CoordinatorCommand) -> ExitCode {
    exit(match cmd {
        CoordinatorCommand::Run(a) => (|| {
            qvm_node::logging::init();
            let config = qvm_coordinator::Config::load(&a.config)?;
            runtime()?.block_on(qvm_coordinator::serve(config, shutdown_signal()))?;
            Ok(())
        })(),
    })
}
