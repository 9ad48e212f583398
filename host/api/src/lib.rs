//! QuorumVM's wire protocol between clients, the coordinator and the custodians
//! (DESIGN.md §8–§9). Pure types and checks, no I/O: the daemons and the CLI move them.
//!
//! - [`request`] — what a client signs — program, version, inputs, nonce, time;
//! - [`ticket`] — what the coordinator signs for a session — the request's hash, the session
//!   id, the session set Q, the pooled items, an expiry, and the identity's *ticket chain*
//!   (sequence number and previous ticket hash) that lets every custodian see every
//!   evaluation an identity made, so no coordinator can split a budget across custodians;
//! - [`wire`] — the custodian's session messages, round by round;
//! - [`audit`] — the append-only hash chain each node keeps, with signed checkpoints;
//! - [`marks`] — the pooled ranges each custodian admitted, signed, pulled by the others.
//!
//! Every hash and signature is over the canonical encoding (`qvm_core::encoding`) under a
//! domain tag of its own, listed here.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod audit;
pub mod marks;
pub mod request;
pub mod ticket;
pub mod wire;

use qvm_core::encoding::Domain;

/// A client's signature on an evaluation request: over the body's digest ([`REQUEST_BODY`]).
/// v3 since it covers the digest, not the body.
pub const REQUEST: Domain = Domain::new("qvm/eval-request/v3");
/// The digest of a request's body: what the client signs, and the request's name.
pub const REQUEST_BODY: Domain = Domain::new("qvm/eval-request-body/v1");
/// A coordinator's ticket.
pub const TICKET: Domain = Domain::new("qvm/ticket/v1");
/// A coordinator's receipt to the client.
pub const RECEIPT: Domain = Domain::new("qvm/receipt/v1");
/// A coordinator's control message to a custodian (committee setup, offline batches,
/// proposals, certificates).
pub const CONTROL: Domain = Domain::new("qvm/control/v1");
/// An audit-log entry.
pub const AUDIT_ENTRY: Domain = Domain::new("qvm/audit-entry/v1");
/// A signed audit checkpoint.
pub const AUDIT_CHECKPOINT: Domain = Domain::new("qvm/audit-checkpoint/v1");
/// A custodian's delivery sealed to the client.
pub const REVEAL: Domain = Domain::new("qvm/reveal/v1");
/// A custodian's record of the pooled ranges it admitted, for the other custodians.
pub const POOL_MARKS: Domain = Domain::new("qvm/pool-marks/v1");
/// A custodian's signed question for another custodian's pool marks: only committee
/// members may read who was granted which items.
pub const POOL_MARKS_QUERY: Domain = Domain::new("qvm/pool-marks-query/v1");
/// A batch item's session id, derived from the ticket's.
pub const ITEM_SESSION: Domain = Domain::new("qvm/item-session/v2");

/// How far a request's `issued_at` may be from a node's clock, seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// How many times one request may be tried (the first try and retries with another Q).
pub const MAX_ATTEMPTS: u32 = 3;
/// The most inputs one batch request may carry.
pub const MAX_BATCH: usize = 10_000;
/// The most items one offline batch may have: custodians refuse larger ones (a batch's
/// shares and record are held in memory whole).
pub const MAX_OFFLINE_BATCH: u32 = 1 << 16;

/// Why a message is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The canonical encoding failed.
    #[error("encoding: {0}")]
    Encoding(String),
    /// A signature does not verify.
    #[error("bad signature on the {0}")]
    Signature(&'static str),
    /// A field is malformed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl From<qvm_core::Error> for Error {
    fn from(e: qvm_core::Error) -> Error {
        Error::Encoding(e.to_string())
    }
}
