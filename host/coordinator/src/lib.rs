//! The coordinator daemon (`qvm coordinator run`).
//!
//! It serves clients, schedules sessions on K healthy custodians (retrying with another
//! set when one fails or hangs), runs the king of every round, reconstructs only the
//! outputs each identity is granted, collects approvals into activation certificates,
//! relays committee setup and runs the offline phase in the background. It holds no share
//! and no PRSS or pairwise key: what it sees is public (openings masked by the protocol)
//! or masked outputs, and it keeps its own budgets, rate limits and audit log as the first
//! line — each custodian checks everything again.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod config;
pub mod coordinator;
pub mod eval;
pub mod metrics;
pub mod store;

use std::sync::Arc;

pub use config::Config;
pub use coordinator::{Coordinator, StartError};

/// Opens the coordinator and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listen = config.listen;
    let c = tokio::task::spawn_blocking(move || Coordinator::open(config))
        .await
        .map_err(|e| ServeError::Io(e.to_string()))??;
    c.spawn_background();
    tracing::info!(%listen, "coordinator listening");
    let served = qvm_node::http::serve(listen, api::router(Arc::clone(&c)), shutdown)
        .await
        .map_err(ServeError::Io);
    if let Err(e) = c.flush_deferred(std::time::Duration::ZERO) {
        tracing::error!(error = %e, "cannot write completion entries to the audit log");
    }
    served
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Startup failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Listening or serving failed.
    #[error("{0}")]
    Io(String),
}
