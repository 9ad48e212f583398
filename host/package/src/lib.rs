//! Program packages (DESIGN.md §7): what an owner builds and custodians approve.
//!
//! A package is one file: a signed manifest, the component, and one share bundle per
//! custodian sealed to that custodian's key-agreement key. The package id is the hash of
//! the manifest's canonical encoding. A custodian approves only after [`verify`]ing every
//! check of §7 itself (owner signature, committee, version chain, component hash,
//! recompiling the source to the identical component, opening its own bundle and checking
//! it against its commitment); a version is active once an [`approval::Certificate`] holds
//! K distinct valid approvals.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod approval;
pub mod build;
pub mod committee;
pub mod diff;
mod error;
pub mod keys;
pub mod manifest;
pub mod policy;
pub mod verify;

pub use error::{Error, VerifyError};

/// The result type of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
