//! A keyed PRF from 128-bit blocks to field elements (DESIGN.md §3: "a fast keyed PRF …
//! expanded to field elements without bias").
//!
//! Keys are derived with HKDF-SHA256 from a long-term 256-bit key and a context (HKDF is used
//! only for key derivation); outputs are AES-128 blocks over a structured input
//! `kind ‖ l ‖ attempt ‖ 0 ‖ index (u32 LE) ‖ counter (u64 LE)`. A field element keeps the
//! low 127 bits and rejects the single value equal to p, redrawing with the next attempt
//! number, so it is exactly uniform if AES is a PRF. AES uses the CPU's AES instructions
//! when present.

use core::fmt;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::field::Fp;

/// An AES-128-based PRF under a derived key.
#[derive(Clone)]
pub struct FieldPrf(Aes128);

/// The input of one PRF block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrfInput {
    /// What the output is for; distinct uses of one (counter, index) take distinct kinds.
    pub kind: u8,
    /// A small sub-index (the power l of a PRSS zero sharing).
    pub l: u8,
    /// The operation counter.
    pub counter: u64,
    /// The element index within the operation.
    pub index: u32,
}

impl PrfInput {
    /// An input with `l = 0`.
    pub const fn new(kind: u8, counter: u64, index: u32) -> PrfInput {
        PrfInput {
            kind,
            l: 0,
            counter,
            index,
        }
    }
}

impl FieldPrf {
    /// Derives the PRF key HKDF-SHA256(salt, ikm = key, info = the concatenated parts)
    /// truncated to 128 bits.
    pub fn derive(key: &[u8; 32], salt: &[u8], info: &[&[u8]]) -> FieldPrf {
        let hk = Hkdf::<Sha256>::new(Some(salt), key);
        let mut k = Zeroizing::new([0u8; 16]);
        // 16 bytes is far below HKDF-SHA256's output limit, so expansion cannot fail.
        let _ = hk.expand_multi_info(info, k.as_mut());
        FieldPrf(Aes128::new(k.as_ref().into()))
    }

    fn block(&self, input: PrfInput, attempt: u8) -> u128 {
        let mut block = [0u8; 16];
        block[0] = input.kind;
        block[1] = input.l;
        block[2] = attempt;
        block[4..8].copy_from_slice(&input.index.to_le_bytes());
        block[8..16].copy_from_slice(&input.counter.to_le_bytes());
        let mut b = block.into();
        self.0.encrypt_block(&mut b);
        u128::from_le_bytes(b.into())
    }

    /// 128 pseudo-random bits.
    pub fn bits(&self, input: PrfInput) -> u128 {
        self.block(input, 0)
    }

    /// A uniform field element.
    pub fn element(&self, input: PrfInput) -> Fp {
        let mut attempt = 0u8;
        loop {
            if let Some(x) = Fp::from_127_bits(self.block(input, attempt).to_le_bytes()) {
                return x;
            }
            // Probability 2^-127 per attempt.
            attempt = attempt.wrapping_add(1);
        }
    }
}

impl fmt::Debug for FieldPrf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldPrf(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_keys_separate_outputs() {
        let k = [7u8; 32];
        let prf = FieldPrf::derive(&k, b"salt", &[b"a", b"b"]);
        let x = PrfInput::new(1, 2, 3);
        assert_eq!(prf.element(x), prf.element(x));
        let variants = [
            PrfInput::new(2, 2, 3),
            PrfInput::new(1, 3, 3),
            PrfInput::new(1, 2, 4),
            PrfInput { l: 1, ..x },
        ];
        for v in variants {
            assert_ne!(prf.element(v), prf.element(x));
        }
        assert_ne!(
            FieldPrf::derive(&k, b"salt", &[b"ab"]).element(x),
            FieldPrf::derive(&k, b"salt", &[b"a", b"c"]).element(x)
        );
        assert_ne!(
            FieldPrf::derive(&k, b"other", &[b"a", b"b"]).element(x),
            prf.element(x)
        );
        assert_eq!(format!("{prf:?}"), "FieldPrf(<redacted>)");
    }
}
