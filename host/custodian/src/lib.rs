//! The custodian daemon (`qvm custodian run`): holds its shares of each program's secrets,
//! approves versions on its operator's word, and runs its side of every evaluation it is
//! ticketed for, after every check of DESIGN.md §8 step 3.
//!
//! - [`config`] — `custodian.toml`;
//! - [`store`] — the crash-safe database (packages, approvals, pools, ticket chains,
//!   budgets, rate buckets, the audit log);
//! - [`node`] — startup and recovery, committee setup, offline batches, packages;
//! - [`admission`] — the checks and the durable debit before a session runs;
//! - [`session`] — batch items as concurrent instances, rounds through the coordinator;
//! - [`gossip`] — the pooled ranges each custodian admitted, pulled from the others;
//! - [`retire`] — pooled items no ticket can grant any more, and pruned batch records;
//! - [`http`] — the HTTP/2 API.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod admission;
pub mod config;
pub mod gossip;
pub mod http;
pub mod metrics;
pub mod node;
pub mod retire;
pub mod session;
pub mod store;

use std::sync::Arc;

pub use config::Config;
pub use node::{Node, StartError};

/// Opens the custodian and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let node = tokio::task::spawn_blocking({
        let config = config.clone();
        move || Node::open(&config)
    })
    .await
    .map_err(|e| ServeError::Io(e.to_string()))??;
    tracing::info!(node = %node.name, listen = %config.listen, "custodian listening");
    if config.gossip.interval_ms > 0 {
        let interval = std::time::Duration::from_millis(config.gossip.interval_ms);
        tokio::spawn(gossip::run(Arc::clone(&node), interval));
    }
    tokio::spawn(retire::run(Arc::clone(&node)));
    qvm_node::http::serve(
        config.listen,
        qvm_node::channel::with_channel(http::router(Arc::clone(&node))),
        shutdown,
    )
    .await
    .map_err(ServeError::Io)
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
