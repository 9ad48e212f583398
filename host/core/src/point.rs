//! The one encoding of a P-256 public key: the 33-byte compressed SEC1 point.
//!
//! Key-agreement keys and verifying keys both decode any SEC1 form but serialize, and
//! accept in serialized values, only the compressed one, so each key has exactly one byte
//! string in every hash and signature.

use serde::de::Error as _;
use serde::{Deserializer, Serializer};

use crate::Result;
use crate::encoding::bytes_serde;

/// Length of a compressed SEC1 point.
pub const PUBLIC_KEY_BYTES: usize = 33;

/// A public key type with the compressed-point encoding.
pub(crate) trait CompressedPoint: Sized {
    /// What the key is, for error messages.
    const WHAT: &'static str;
    /// Decodes any SEC1 form, rejecting the identity and points off the curve.
    fn parse(bytes: &[u8]) -> Result<Self>;
    /// The compressed encoding.
    fn compressed(&self) -> [u8; PUBLIC_KEY_BYTES];
}

/// The compressed bytes of an encoded point that was produced with compression on.
pub(crate) fn compressed_bytes(point: &p256::EncodedPoint) -> [u8; PUBLIC_KEY_BYTES] {
    let mut out = [0u8; PUBLIC_KEY_BYTES];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Serializes a key as its compressed point (hex in human-readable formats).
pub(crate) fn serialize<P: CompressedPoint, S: Serializer>(
    p: &P,
    s: S,
) -> core::result::Result<S::Ok, S::Error> {
    bytes_serde::serialize(&p.compressed(), s)
}

/// Deserializes a key, accepting only its compressed point.
pub(crate) fn deserialize<'de, P: CompressedPoint, D: Deserializer<'de>>(
    d: D,
) -> core::result::Result<P, D::Error> {
    let bytes = bytes_serde::deserialize(d)?;
    if bytes.len() != PUBLIC_KEY_BYTES {
        return Err(D::Error::custom(format!(
            "a {} is a 33-byte compressed point",
            P::WHAT
        )));
    }
    let key = P::parse(&bytes).map_err(D::Error::custom)?;
    // SEC1 also has a 33-byte "compact" form; only the compressed one is canonical.
    if key.compressed()[..] != bytes[..] {
        return Err(D::Error::custom(format!(
            "{} is not in compressed SEC1 form",
            P::WHAT
        )));
    }
    Ok(key)
}
