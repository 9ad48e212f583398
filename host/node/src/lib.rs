//! What QuorumVM's two daemons (custodian and coordinator) share.
//!
//! - [`store`] — SQLite with real crash safety and the audit log as a table;
//! - [`http`] — request and response bodies in the canonical encoding, refusals with the
//!   HTTP status that says whose fault they are;
//! - [`client`] — the HTTP/2 client one node uses to call another, with deadlines;
//! - [`logging`] — structured logs (`tracing`), which never carry secrets: secret types
//!   print `<redacted>`, and handlers log kinds and ids, not bodies.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod channel;
pub mod client;
pub mod config;
pub mod http;
pub mod logging;
pub mod store;

/// Unix seconds.
pub fn now_secs() -> u64 {
    store::now_ms() / 1000
}

/// Runs blocking work (signature checks, an fsync, milliseconds of arithmetic) on this
/// thread, moving the async worker's other tasks elsewhere, rather than handing it to the
/// blocking pool: the hand-off and the wake-up back cost a tenth of a custodian's admission
/// on a loaded 2-core host. A current-thread runtime cannot do that, and runs it in place.
pub fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
