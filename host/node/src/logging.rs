//! Log setup for the daemons: `RUST_LOG`-style filters, one line per event on stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls do nothing). The default level is
/// `info` for QuorumVM's crates and `warn` for the rest.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,qvm=info,qvm_custodian=info,qvm_coordinator=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
