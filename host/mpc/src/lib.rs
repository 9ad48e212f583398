//! QuorumVM's MPC engine: sans-IO state machines for the custodians and the king.
//!
//! Honest-majority Shamir MPC over F_p (p = 2^127 − 1) in the style of Damgård and Nielsen,
//! "Scalable and unconditionally secure multiparty computation", CRYPTO 2007 (double
//! sharings, the king), with the integer primitives of Catrina and de Hoogh, "Improved
//! primitives for secure multiparty integer computation", SCN 2010 (Mod2m, TruncPr, LTZ,
//! BitLT), specified for QuorumVM in DESIGN.md §3–§4:
//!
//! - [`offline`]: with 2t + 1 = 2K − 1 custodians, fill pools of Beaver triples and random
//!   bits from PRSS plus values the king publishes ([`pool`] keeps them, with cursors that
//!   refuse reuse);
//! - [`online`]: with any K custodians, batched vector ops — local linear ops, `mul`,
//!   `select`, `ltz`, `eqz`, `trunc_pr`, `mod2m` — each interactive round a single opening
//!   through the king;
//! - [`king`]: the coordinator's side: reconstructs opened vectors, checks redundant shares
//!   and names inconsistent custodians;
//! - [`output`]: output shares masked with pairwise PRFs so the coordinator learns the
//!   outputs and nothing else;
//! - [`sim`]: an in-process harness that runs N custodians and the king with fault hooks.
//!
//! No I/O, no async, no clock: messages ([`msgs`]) go in and come out; the daemons move them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod committee;
mod error;
pub mod king;
pub mod msgs;
pub mod offline;
pub mod online;
pub mod output;
pub mod pool;
pub mod shares;
pub mod sim;
pub mod stats;

pub use committee::Committee;
pub use error::Error;
pub use shares::SharedVec;

/// The result type of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Statistical security parameter κ of comparison and truncation masks (DESIGN.md §2).
pub const KAPPA: u32 = 40;

/// The largest value bound k (bits) an op accepts (DESIGN.md §2).
pub const MAX_K: u32 = 64;
