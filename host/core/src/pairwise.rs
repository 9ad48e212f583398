//! Key agreement keys and pairwise keys (DESIGN.md §3).
//!
//! Every custodian has a P-256 key-agreement key. Two custodians i and j derive
//! k_ij = HKDF-SHA256(ECDH(sk_i, pk_j), info = "qvm/pair/v1" ‖ committee id) with no
//! interaction (SEC 1 v2 §3.3.1 ECDH, RFC 5869 HKDF); nobody else, the coordinator
//! included, can compute it. Pairwise keys seal PRSS key shipments and derive output masks.

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::encoding::Digest;
pub use crate::point::PUBLIC_KEY_BYTES;
use crate::point::{self, CompressedPoint, compressed_bytes};
use crate::{Error, Result};

/// HKDF info prefix of pairwise keys.
const PAIR_INFO: &[u8] = b"qvm/pair/v1";

/// A P-256 private key used only for key agreement (pairwise keys, opening ECIES).
#[derive(Clone)]
pub struct KeyAgreementSecret(p256::SecretKey);

impl KeyAgreementSecret {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> KeyAgreementSecret {
        KeyAgreementSecret(p256::SecretKey::random(rng))
    }

    /// Decodes a 32-byte big-endian scalar in 1..n.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyAgreementSecret> {
        p256::SecretKey::from_slice(bytes)
            .map(KeyAgreementSecret)
            .map_err(|_| Error::InvalidPrivateKey)
    }

    /// The 32-byte big-endian scalar, zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut bytes = self.0.to_bytes();
        let out = Zeroizing::new(bytes.into());
        bytes.zeroize();
        out
    }

    /// The public half.
    pub fn public(&self) -> KeyAgreementPublic {
        KeyAgreementPublic(self.0.public_key())
    }

    /// Derives the pairwise key with the holder of `peer` in committee `committee`.
    pub fn pairwise(&self, peer: &KeyAgreementPublic, committee: &Digest) -> PairwiseKey {
        PairwiseKey::derive(self, peer, committee)
    }
}

impl fmt::Debug for KeyAgreementSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyAgreementSecret(<redacted>)")
    }
}

/// A P-256 public key for key agreement, encoded as a 33-byte compressed SEC1 point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyAgreementPublic(p256::PublicKey);

impl KeyAgreementPublic {
    /// Decodes a SEC1 point (compressed or uncompressed), rejecting the identity and any
    /// point not on the curve.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<KeyAgreementPublic> {
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(KeyAgreementPublic)
            .map_err(|_| Error::InvalidPublicKey)
    }

    /// The compressed SEC1 encoding.
    pub fn to_sec1_bytes(&self) -> [u8; PUBLIC_KEY_BYTES] {
        compressed_bytes(&self.0.to_encoded_point(true))
    }
}

impl fmt::Debug for KeyAgreementPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyAgreementPublic({})",
            hex::encode(self.to_sec1_bytes())
        )
    }
}

impl CompressedPoint for KeyAgreementPublic {
    const WHAT: &'static str = "key-agreement public key";

    fn parse(bytes: &[u8]) -> Result<Self> {
        KeyAgreementPublic::from_sec1_bytes(bytes)
    }

    fn compressed(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.to_sec1_bytes()
    }
}

impl Serialize for KeyAgreementPublic {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        point::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for KeyAgreementPublic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        point::deserialize(d)
    }
}

/// Raw ECDH: the x-coordinate of sk·PK (SEC 1 v2 §3.3.1), zeroized on drop.
pub fn ecdh(secret: &KeyAgreementSecret, public: &KeyAgreementPublic) -> Zeroizing<[u8; 32]> {
    let shared = p256::ecdh::diffie_hellman(secret.0.to_nonzero_scalar(), public.0.as_affine());
    Zeroizing::new((*shared.raw_secret_bytes()).into())
}

/// A 256-bit key known to exactly two custodians of one committee.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairwiseKey([u8; 32]);

/// Bytes of the random nonce in front of a pairwise ciphertext (XChaCha20-Poly1305).
const NONCE_BYTES: usize = 24;

impl PairwiseKey {
    /// k_ij = HKDF-SHA256(ikm = ECDH(sk_i, pk_j), info = "qvm/pair/v1" ‖ committee id).
    /// Symmetric: i and j derive the same key.
    pub fn derive(
        mine: &KeyAgreementSecret,
        peer: &KeyAgreementPublic,
        committee: &Digest,
    ) -> PairwiseKey {
        let shared = ecdh(mine, peer);
        let hk = Hkdf::<Sha256>::new(None, shared.as_ref());
        let mut key = [0u8; 32];
        // HKDF-SHA256 can produce up to 255·32 bytes; 32 always succeeds.
        let _ = hk.expand_multi_info(&[PAIR_INFO, committee.as_bytes()], &mut key);
        PairwiseKey(key)
    }

    /// Wraps raw key bytes (for keys restored from a custodian's store).
    pub fn from_bytes(bytes: [u8; 32]) -> PairwiseKey {
        PairwiseKey(bytes)
    }

    /// The raw key bytes, for deriving sub-keys with HKDF.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Encrypts and authenticates `plaintext` bound to `aad`: random 192-bit nonce ‖
    /// XChaCha20-Poly1305 ciphertext. Random nonces of this size never repeat in practice,
    /// so one pairwise key can seal many messages.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Encryption)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`PairwiseKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_BYTES {
            return Err(Error::Decryption);
        }
        let (nonce, ct) = sealed.split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Decryption)
    }
}

impl fmt::Debug for PairwiseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairwiseKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn pairwise_keys_agree_and_depend_on_committee() -> Result<()> {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (a, b, c) = (
            KeyAgreementSecret::generate(&mut rng),
            KeyAgreementSecret::generate(&mut rng),
            KeyAgreementSecret::generate(&mut rng),
        );
        let committee = Digest::from_bytes([1; 32]);
        let other = Digest::from_bytes([2; 32]);
        let ab = a.pairwise(&b.public(), &committee);
        assert_eq!(
            ab.as_bytes(),
            b.pairwise(&a.public(), &committee).as_bytes()
        );
        assert_ne!(ab.as_bytes(), a.pairwise(&b.public(), &other).as_bytes());
        assert_ne!(
            ab.as_bytes(),
            a.pairwise(&c.public(), &committee).as_bytes()
        );

        let sealed = ab.seal(b"aad", b"hello", &mut rng)?;
        let ba = b.pairwise(&a.public(), &committee);
        assert_eq!(&ba.open(b"aad", &sealed)?[..], b"hello");
        assert_eq!(ba.open(b"aaD", &sealed), Err(Error::Decryption));
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert_eq!(ba.open(b"aad", &flipped), Err(Error::Decryption));
        assert_eq!(ba.open(b"aad", &sealed[..10]), Err(Error::Decryption));
        Ok(())
    }

    #[test]
    fn keys_roundtrip_and_redact() -> Result<()> {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let sk = KeyAgreementSecret::generate(&mut rng);
        let back = KeyAgreementSecret::from_bytes(sk.to_bytes().as_ref())?;
        assert_eq!(back.public(), sk.public());
        let pk = sk.public();
        assert_eq!(
            KeyAgreementPublic::from_sec1_bytes(&pk.to_sec1_bytes())?,
            pk
        );
        let json = serde_json::to_string(&pk).map_err(|e| Error::Encoding(e.to_string()))?;
        let parsed: KeyAgreementPublic =
            serde_json::from_str(&json).map_err(|e| Error::Encoding(e.to_string()))?;
        assert_eq!(parsed, pk);
        let printed = format!("{sk:?} {:?}", sk.pairwise(&pk, &Digest::default()));
        assert!(!printed.contains(&hex::encode(sk.to_bytes().as_ref())));
        assert!(printed.contains("<redacted>"));
        assert_eq!(
            KeyAgreementSecret::from_bytes(&[0u8; 32]).err(),
            Some(Error::InvalidPrivateKey)
        );
        assert_eq!(
            KeyAgreementPublic::from_sec1_bytes(&[9u8; 33]).err(),
            Some(Error::InvalidPublicKey)
        );
        Ok(())
    }
}
