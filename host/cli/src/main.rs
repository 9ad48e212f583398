//! `qvm`: the QuorumVM command line.
//!
//! Thin by design: parse arguments, call the libraries, print. The verbs arrive with the
//! crates that implement them.

use qvm::{audit, bench, cluster, compile, daemons, demo, eval, package, run};

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's allocator. The daemons allocate and free buffers of
/// hundreds of kilobytes many times a second (requests, round messages, offline batches);
/// glibc returned their pages to the kernel and faulted fresh zeroed pages back in (a
/// seventh of a custodian's CPU in the offline phase went to clearing pages), and its
/// free-list upkeep showed in every profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// QuorumVM: run proprietary programs so that no single machine can run or rebuild them.
///
/// Secrets are Shamir-shared across N custodians, a version runs only after K of them
/// approve it, and a coordinator reconstructs only the outputs.
#[derive(Debug, Parser)]
#[command(
    name = "qvm",
    version,
    about,
    long_about,
    arg_required_else_help = true
)]
struct Cli {
    /// Print the cryptographic parameters this build uses and exit.
    #[arg(long)]
    parameters: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a program and print its cost: rounds, multiplications, comparisons, bytes, and
    /// whether it needs interaction (and so N ≥ 2K − 1).
    Compile(compile::Args),
    /// Run a program on plain values (the owner's what-if run), through its component.
    Run(run::Args),
    /// Generate a role's keys.
    Keygen(package::KeygenArgs),
    /// Committees.
    #[command(subcommand)]
    Committee(CommitteeCommand),
    /// Program packages.
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// The whole workflow in one process: compile, share, offline phase, evaluation by K
    /// custodians under MPC, masked outputs reconstructed, compared with plaintext.
    Demo(demo::Args),
    /// The custodian daemon and its operator's decisions.
    #[command(subcommand)]
    Custodian(daemons::CustodianCommand),
    /// The coordinator daemon.
    #[command(subcommand)]
    Coordinator(daemons::CoordinatorCommand),
    /// Evaluate a program through a coordinator.
    Eval(eval::Args),
    /// Load a cluster and report latency and throughput, with every control on.
    Bench(bench::Args),
    /// Audit logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// A local cluster of separate processes on loopback.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Debug, Subcommand)]
enum CommitteeCommand {
    /// Write committee.json from the custodians' and coordinator's public keys.
    Init(package::CommitteeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.parameters {
        print_parameters();
    }
    match cli.command {
        Some(Command::Compile(args)) => compile::run(args),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Keygen(args)) => package::keygen(args),
        Some(Command::Committee(CommitteeCommand::Init(args))) => package::committee(args),
        Some(Command::Package(cmd)) => package::package(cmd),
        Some(Command::Custodian(cmd)) => daemons::custodian(cmd),
        Some(Command::Coordinator(cmd)) => daemons::coordinator(cmd),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Cluster(cmd)) => cluster::run(cmd),
        Some(Command::Audit(cmd)) => audit::run(cmd),
        Some(Command::Bench(args)) => bench::run(args),
        None => std::process::ExitCode::SUCCESS,
    }
}

fn print_parameters() {
    use qvm_core::field::MODULUS;
    use qvm_core::fixed::{DEFAULT_SCALE, MAX_BOUND_BITS};
    println!("field modulus p        = 2^127 - 1 = {MODULUS}");
    println!("fixed-point scale f    = {DEFAULT_SCALE} (default, per program)");
    println!("value bound k          <= {MAX_BOUND_BITS} bits");
    println!("max committee size N   = {}", qvm_core::party::MAX_PARTIES);
    println!("max PRSS subsets C(N,t) = {}", qvm_core::prss::MAX_SUBSETS);
    println!("signatures             = ECDSA P-256 / SHA-256, domain-separated, low-S");
    println!("key agreement          = ECDH P-256 + HKDF-SHA256");
    println!("sealing                = ECIES (P-256, HKDF-SHA256, ChaCha20-Poly1305)");
    println!("canonical encoding     = BCS; hashes SHA-256 with domain tags");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_and_help_exit_cleanly() {
        for flag in ["--version", "--help"] {
            let err = Cli::try_parse_from(["qvm", flag]).expect_err("prints and exits");
            assert_eq!(err.exit_code(), 0, "{flag}");
        }
        assert!(Cli::try_parse_from(["qvm", "--no-such-flag"]).is_err());
    }
}
