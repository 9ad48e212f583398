//! ECIES: sealing a message to a P-256 public key (SEC 1 v2 §5.1, with HKDF-SHA256 as the
//! KDF and ChaCha20-Poly1305 as the authenticated cipher).
//!
//! Format: `ephemeral public key (33-byte compressed SEC1) ‖ ciphertext ‖ 16-byte tag`.
//! The AEAD key is HKDF-SHA256(ikm = ECDH(eph, recipient), info = "qvm/ecies/v1" ‖
//! ephemeral key ‖ recipient key), so a ciphertext is bound to both keys; each key seals one
//! message, so the all-zero nonce is safe. The caller's AAD (for share bundles: package id ‖
//! custodian index, DESIGN.md §7) is authenticated but not sent.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::pairwise::{KeyAgreementPublic, KeyAgreementSecret, PUBLIC_KEY_BYTES, ecdh};
use crate::{Error, Result};

const ECIES_INFO: &[u8] = b"qvm/ecies/v1";
const TAG_BYTES: usize = 16;

/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = PUBLIC_KEY_BYTES + TAG_BYTES;

fn aead_key(
    shared: &[u8; 32],
    ephemeral: &[u8; PUBLIC_KEY_BYTES],
    recipient: &[u8; PUBLIC_KEY_BYTES],
) -> ChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(None, shared);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit.
    let _ = hk.expand_multi_info(&[ECIES_INFO, ephemeral, recipient], key.as_mut());
    ChaCha20Poly1305::new(key.as_ref().into())
}

/// Seals `plaintext` to `recipient`, authenticating `aad`.
pub fn seal<R: RngCore + CryptoRng>(
    recipient: &KeyAgreementPublic,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let ephemeral = KeyAgreementSecret::generate(rng);
    let eph_bytes = ephemeral.public().to_sec1_bytes();
    let shared = ecdh(&ephemeral, recipient);
    let cipher = aead_key(&shared, &eph_bytes, &recipient.to_sec1_bytes());
    let ct = cipher
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Encryption)?;
    let mut out = Vec::with_capacity(PUBLIC_KEY_BYTES + ct.len());
    out.extend_from_slice(&eph_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a message sealed to `recipient`'s public key with the same `aad`. Any change to the
/// ephemeral key, the ciphertext, the tag or the AAD makes it fail.
pub fn open(
    recipient: &KeyAgreementSecret,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < OVERHEAD {
        return Err(Error::Decryption);
    }
    let (eph_bytes, ct) = sealed.split_at(PUBLIC_KEY_BYTES);
    let ephemeral =
        KeyAgreementPublic::from_sec1_bytes(eph_bytes).map_err(|_| Error::Decryption)?;
    // Only the compressed encoding is produced; accept nothing else so each ciphertext has one form.
    let eph_canonical = ephemeral.to_sec1_bytes();
    if eph_canonical[..] != eph_bytes[..] {
        return Err(Error::Decryption);
    }
    let shared = ecdh(recipient, &ephemeral);
    let cipher = aead_key(&shared, &eph_canonical, &recipient.public().to_sec1_bytes());
    cipher
        .decrypt(&Nonce::default(), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::Decryption)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn roundtrip_and_every_flipped_bit_fails(
            seed in any::<u64>(),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
            aad in proptest::collection::vec(any::<u8>(), 0..16),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let sk = KeyAgreementSecret::generate(&mut rng);
            let sealed = seal(&sk.public(), &aad, &msg, &mut rng)?;
            prop_assert_eq!(sealed.len(), msg.len() + OVERHEAD);
            prop_assert_eq!(&open(&sk, &aad, &sealed)?[..], &msg[..]);

            // A flipped bit anywhere: ephemeral key (first 33 bytes), ciphertext or tag.
            let i = bit.index(sealed.len() * 8);
            let mut tampered = sealed.clone();
            tampered[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(open(&sk, &aad, &tampered).err(), Some(Error::Decryption));

            // A flipped bit in the AAD, or an extra AAD byte.
            let mut aad2 = aad.clone();
            if aad2.is_empty() { aad2.push(0); } else { aad2[i % aad.len()] ^= 1 << (i % 8); }
            prop_assert_eq!(open(&sk, &aad2, &sealed).err(), Some(Error::Decryption));

            // Another recipient.
            let other = KeyAgreementSecret::generate(&mut rng);
            prop_assert_eq!(open(&other, &aad, &sealed).err(), Some(Error::Decryption));
        }
    }

    #[test]
    fn flipped_ephemeral_key_bits_fail() -> Result<()> {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let sk = KeyAgreementSecret::generate(&mut rng);
        let sealed = seal(&sk.public(), b"pkg|3", b"bundle", &mut rng)?;
        for i in 0..PUBLIC_KEY_BYTES * 8 {
            let mut t = sealed.clone();
            t[i / 8] ^= 1 << (i % 8);
            assert_eq!(
                open(&sk, b"pkg|3", &t).err(),
                Some(Error::Decryption),
                "bit {i}"
            );
        }
        assert_eq!(
            open(&sk, b"pkg|3", &sealed[..OVERHEAD - 1]).err(),
            Some(Error::Decryption)
        );
        Ok(())
    }
}
