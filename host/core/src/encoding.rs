//! The one canonical binary encoding, and domain-separated hashing on top of it.
//!
//! Every hash and every signature in QuorumVM is computed over the **BCS** (Binary Canonical
//! Serialization) encoding of a typed value: fixed-width little-endian integers, ULEB128
//! lengths before sequences and byte strings, struct fields in declaration order, enum
//! variants as a ULEB128 index, maps sorted by encoded key, no floats. Each value has exactly
//! one encoding and decoding rejects any other (trailing bytes, non-minimal lengths, a
//! non-canonical field element), so two parties that agree on a value agree on its bytes.
//! `docs/protocol/encoding.md` spells out the rules.
//!
//! Domain separation: a hash is SHA-256 of `BCS(("qvm/hash", domain, value))` and a signed
//! message is `BCS(("qvm/sig", domain, value))`, where `domain` is a versioned tag such as
//! `"qvm/approval/v1"`. The length-prefixed tags make it impossible for bytes hashed or
//! signed for one purpose to be read as those of another.

use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// A versioned domain-separation tag, like `"qvm/approval/v1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain(&'static str);

impl Domain {
    /// A tag. By convention `qvm/<purpose>/v<version>`.
    pub const fn new(tag: &'static str) -> Domain {
        Domain(tag)
    }

    /// The tag text.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

/// Prefix of every hashed message.
const HASH_PREFIX: &str = "qvm/hash";
/// Prefix of every signed message.
const SIG_PREFIX: &str = "qvm/sig";

/// The canonical encoding of `value`.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bcs::to_bytes(value).map_err(|e| Error::Encoding(e.to_string()))
}

/// Decodes a canonical encoding; any other byte string for the same value, and any trailing
/// bytes, are rejected.
pub fn from_canonical<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bcs::from_bytes(bytes).map_err(|e| Error::Encoding(e.to_string()))
}

/// SHA-256 of the canonical encoding of `(prefix, domain, value)`, streamed into the hasher.
fn digest_tagged<T: Serialize + ?Sized>(prefix: &str, domain: Domain, value: &T) -> Result<Digest> {
    let mut hasher = Sha256::new();
    bcs::serialize_into(&mut hasher, &(prefix, domain.0, value))
        .map_err(|e| Error::Encoding(e.to_string()))?;
    Ok(Digest(hasher.finalize().into()))
}

/// The domain-separated hash of a value: SHA-256(BCS(("qvm/hash", domain, value))).
pub fn hash<T: Serialize + ?Sized>(domain: Domain, value: &T) -> Result<Digest> {
    digest_tagged(HASH_PREFIX, domain, value)
}

/// The bytes an ECDSA signature covers: BCS(("qvm/sig", domain, value)).
pub fn signing_bytes<T: Serialize + ?Sized>(domain: Domain, value: &T) -> Result<Vec<u8>> {
    to_canonical(&(SIG_PREFIX, domain.0, value))
}

/// A 32-byte SHA-256 digest: package ids, committee ids, session ids, chain heads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| Error::Encoding(format!("digest: {e}")))?;
        Ok(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl core::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::from_hex(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        bytes_serde::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Digest, D::Error> {
        let v = bytes_serde::deserialize(d)?;
        let bytes: [u8; 32] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("a digest is 32 bytes"))?;
        Ok(Digest(bytes))
    }
}

/// Byte strings as lower-case hex in human-readable formats (JSON, TOML) and as
/// length-prefixed bytes in binary ones (the canonical encoding).
pub mod bytes_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `bytes`.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    /// Deserializes bytes written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(s).map_err(D::Error::custom)
        } else {
            Vec::<u8>::deserialize(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Fp;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Example {
        name: String,
        version: u64,
        weights: Vec<Fp>,
        id: Digest,
        flag: Option<bool>,
    }

    fn example() -> Example {
        Example {
            name: "score".into(),
            version: 3,
            weights: vec![Fp::from(1u64), -Fp::ONE],
            id: Digest::from_bytes([7; 32]),
            flag: Some(true),
        }
    }

    /// A byte snapshot: a change to the encoding rules is a visible test failure, not a
    /// silent break of every stored signature.
    #[test]
    fn encoding_snapshot() -> Result<()> {
        let bytes = to_canonical(&example())?;
        let expected = concat!(
            "0573636f7265",                     // "score": ULEB128 length 5, UTF-8
            "0300000000000000",                 // version: u64 LE
            "02",                               // two weights
            "01000000000000000000000000000000", // 1 as 16 LE bytes
            "feffffffffffffffffffffffffffff7f", // p - 1
            "20",
            "0707070707070707070707070707070707070707070707070707070707070707",
            "01",
            "01", // Some(true)
        );
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(from_canonical::<Example>(&bytes)?, example());
        Ok(())
    }

    #[test]
    fn decoding_is_strict() -> Result<()> {
        let mut bytes = to_canonical(&example())?;
        bytes.push(0);
        assert!(from_canonical::<Example>(&bytes).is_err(), "trailing byte");
        // A non-minimal ULEB128 length for the name (0x85 0x00 instead of 0x05).
        let good = to_canonical(&example())?;
        let mut padded = vec![0x85, 0x00];
        padded.extend_from_slice(&good[1..]);
        assert!(
            from_canonical::<Example>(&padded).is_err(),
            "non-minimal length"
        );
        Ok(())
    }

    #[test]
    fn hashes_are_domain_separated() -> Result<()> {
        const A: Domain = Domain::new("qvm/test-a/v1");
        const B: Domain = Domain::new("qvm/test-b/v1");
        let v = example();
        assert_eq!(hash(A, &v)?, hash(A, &v)?);
        assert_ne!(hash(A, &v)?, hash(B, &v)?);
        // The hash of a value never equals the hash of its signed message bytes.
        let signed = signing_bytes(A, &v)?;
        assert_ne!(hash(A, &v)?.as_bytes()[..], Sha256::digest(&signed)[..]);
        // Known answer: SHA-256 over BCS(("qvm/hash", "qvm/test-a/v1", 5u8)).
        let expected = Sha256::digest(
            hex::decode("0871766d2f686173680d71766d2f746573742d612f763105")
                .map_err(|e| Error::Encoding(e.to_string()))?,
        );
        assert_eq!(hash(A, &5u8)?.as_bytes()[..], expected[..]);
        Ok(())
    }

    #[test]
    fn digest_text_forms() -> Result<()> {
        let d = Digest::from_bytes([0xab; 32]);
        let json = serde_json::to_string(&d).map_err(|e| Error::Encoding(e.to_string()))?;
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(d.to_hex().parse::<Digest>()?, d);
        assert!("abc".parse::<Digest>().is_err());
        Ok(())
    }
}
