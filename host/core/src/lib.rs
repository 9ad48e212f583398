//! QuorumVM cryptographic core.
//!
//! Everything the custodians, the coordinator and the package tools agree on bit for bit,
//! and nothing that touches a disk, a socket or a clock:
//!
//! - [`field`]: the prime field F_p, p = 2^127 − 1 (DESIGN.md §2);
//! - [`fixed`]: fixed-point encoding of reals with a per-value scale (DESIGN.md §2);
//! - [`party`]: custodian indices and sets of custodians;
//! - [`shamir`]: Shamir secret sharing (Shamir 1979) with cached Lagrange coefficients and a
//!   degree check;
//! - [`prf`]: the keyed PRF (AES-128 under HKDF-derived keys) that expands to field elements;
//! - [`prss`]: pseudo-random secret sharing and zero sharing (Cramer, Damgård, Ishai 2005),
//!   exactly as DESIGN.md §3;
//! - [`pairwise`]: pairwise keys from P-256 ECDH + HKDF-SHA256 (DESIGN.md §3);
//! - [`ecies`]: sealing to a P-256 key (ephemeral ECDH, HKDF-SHA256, ChaCha20-Poly1305);
//! - [`sign`]: domain-separated ECDSA P-256 signatures;
//! - [`encoding`]: the one canonical binary encoding (BCS) and domain-separated SHA-256 used
//!   for every hash and signature.
//!
//! Secret material (shares, PRSS keys, pairwise keys, private keys) is zeroized on drop and
//! prints as `<redacted>`.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod ecies;
pub mod encoding;
mod error;
pub mod field;
pub mod fixed;
pub mod pairwise;
pub mod party;
mod point;
pub mod prf;
pub mod prss;
pub mod shamir;
pub mod sign;

pub use error::Error;
pub use field::Fp;
pub use party::{PartyIndex, PartySet};

/// The result type of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
