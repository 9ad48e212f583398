//! The error type of `qvm-core`.

use crate::party::PartyIndex;

/// Everything that can go wrong in the cryptographic core.
///
/// No variant carries secret material: values that failed a check are described, never
/// printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A byte string or number does not encode an element of F_p (it is ≥ p).
    #[error("not a canonical field element: value is not below p = 2^127 - 1")]
    NonCanonicalField,
    /// A signed integer lies outside the centered range (−p/2, p/2).
    #[error("integer outside the centered range of the field (|v| must be below 2^126)")]
    SignedOutOfRange,
    /// Zero has no inverse.
    #[error("zero has no multiplicative inverse")]
    ZeroInverse,
    /// A fixed-point conversion was given NaN or an infinity.
    #[error("fixed-point value is not finite (NaN or infinity)")]
    NonFinite,
    /// A fixed-point value does not fit its bound.
    #[error("fixed-point value out of range: |x * 2^{scale}| must be below 2^{bound_bits}")]
    FixedOutOfRange {
        /// The scale f of the encoding.
        scale: u32,
        /// The bound k: encoded values must lie in (−2^k, 2^k).
        bound_bits: u32,
    },
    /// Invalid fixed-point parameters.
    #[error("invalid fixed-point parameters: need scale < bound_bits <= {max}", max = crate::fixed::MAX_BOUND_BITS)]
    FixedParams,
    /// A party index outside 1..=N or above the supported maximum.
    #[error("party index {index} is out of range 1..={max}")]
    PartyOutOfRange {
        /// The index that was given.
        index: u32,
        /// The largest index allowed here.
        max: u32,
    },
    /// The sharing parameters make no sense (degree ≥ number of parties, too many parties).
    #[error("invalid sharing parameters: degree {degree} with {parties} parties")]
    SharingParams {
        /// The polynomial degree t.
        degree: usize,
        /// The number of parties N.
        parties: usize,
    },
    /// Too few shares to reconstruct.
    #[error("need at least {needed} shares, got {got}")]
    NotEnoughShares {
        /// Shares required (degree + 1).
        needed: usize,
        /// Distinct shares given.
        got: usize,
    },
    /// The same party appears twice among the shares.
    #[error("party {0} appears more than once among the shares")]
    DuplicateShare(PartyIndex),
    /// The shares do not lie on one polynomial of the expected degree.
    #[error("shares are inconsistent: they do not lie on one polynomial of degree {degree}")]
    InconsistentShares {
        /// The degree that was checked.
        degree: usize,
    },
    /// A PRSS keyring does not hold exactly the keys of its party's subsets.
    #[error("PRSS keyring for party {party} is malformed: {reason}")]
    PrssKeyring {
        /// The party whose keyring it is.
        party: PartyIndex,
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many PRSS subsets for this committee (C(N, t) is bounded).
    #[error(
        "PRSS for N = {parties}, t = {degree} needs {subsets} subsets, more than the supported {max}"
    )]
    PrssTooManySubsets {
        /// N.
        parties: usize,
        /// t.
        degree: usize,
        /// C(N, t).
        subsets: u64,
        /// The supported maximum.
        max: u64,
    },
    /// A bounded PRSS integer asked for more bits than one PRF block gives.
    #[error("bounded random integers are limited to {max} bits, asked for {bits}")]
    PrssBoundTooLarge {
        /// Bits asked for.
        bits: u32,
        /// The maximum.
        max: u32,
    },
    /// A PRSS key shipment could not be opened: wrong key, wrong context or tampered.
    #[error("PRSS key shipment from party {from} could not be opened")]
    PrssShipment {
        /// The party that sent it (the blame goes to it, or to whoever relayed it).
        from: PartyIndex,
    },
    /// A public key could not be decoded or is not a valid curve point.
    #[error("invalid P-256 public key encoding")]
    InvalidPublicKey,
    /// A private key could not be decoded (not in 1..n).
    #[error("invalid P-256 private key encoding")]
    InvalidPrivateKey,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Randomness,
    /// A signature is malformed or does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// An ECIES or pairwise ciphertext is malformed, or its tag does not verify.
    #[error("decryption failed: ciphertext, associated data or key do not match")]
    Decryption,
    /// Encryption failed (the plaintext is too long for the AEAD).
    #[error("encryption failed: plaintext too long")]
    Encryption,
    /// The canonical encoding of a value failed or bytes are not a canonical encoding.
    #[error("canonical encoding error: {0}")]
    Encoding(String),
}
