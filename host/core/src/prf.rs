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
use zeroize::{Zeroize, Zeroizing};

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
        let mut b = plaintext(input, attempt).into();
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

impl FieldPrf {
    /// Calls `f(&mut out[j], element(input with index input.index + j))` for every j,
    /// the same values as [`FieldPrf::element`] per index.
    ///
    /// Why not a loop over `element`: one AES block at a time waits on each round's
    /// latency, while the CPU's AES unit pipelines independent blocks; the offline phase
    /// derives millions of elements, so this encrypts [`CHUNK`] blocks per call.
    pub fn elements_into(&self, input: PrfInput, out: &mut [Fp], mut f: impl FnMut(&mut Fp, Fp)) {
        let mut blocks = [aes::Block::default(); CHUNK];
        for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
            let base = input.index.wrapping_add((c * CHUNK) as u32);
            let blocks = &mut blocks[..chunk.len()];
            for (j, b) in blocks.iter_mut().enumerate() {
                let at = PrfInput {
                    index: base.wrapping_add(j as u32),
                    ..input
                };
                *b = plaintext(at, 0).into();
            }
            self.0.encrypt_blocks(blocks);
            for (j, (slot, b)) in chunk.iter_mut().zip(blocks.iter()).enumerate() {
                let x = match Fp::from_127_bits((*b).into()) {
                    Some(x) => x,
                    // The one value ≥ p after masking (probability 2^-127): redraw as
                    // `element` does.
                    None => self.element(PrfInput {
                        index: base.wrapping_add(j as u32),
                        ..input
                    }),
                };
                f(slot, x);
            }
        }
        // The blocks are PRF outputs (parts of secret shares).
        blocks.iter_mut().for_each(|b| b.as_mut_slice().zeroize());
    }
}

/// Blocks encrypted per call in [`FieldPrf::elements_into`] (a multiple of the AES-NI
/// backend's 8 parallel blocks).
const CHUNK: usize = 64;

/// The PRF's input block: `kind ‖ l ‖ attempt ‖ 0 ‖ index ‖ counter`.
fn plaintext(input: PrfInput, attempt: u8) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[0] = input.kind;
    block[1] = input.l;
    block[2] = attempt;
    block[4..8].copy_from_slice(&input.index.to_le_bytes());
    block[8..16].copy_from_slice(&input.counter.to_le_bytes());
    block
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

    #[test]
    fn elements_into_equals_element_per_index() {
        let prf = FieldPrf::derive(&[9u8; 32], b"salt", &[b"x"]);
        for len in [0usize, 1, 7, 8, 63, 64, 65, 200] {
            let input = PrfInput {
                kind: 3,
                l: 2,
                counter: 11,
                index: 5,
            };
            let mut out = vec![Fp::ONE; len];
            prf.elements_into(input, &mut out, |slot, x| *slot += x);
            for (j, got) in out.iter().enumerate() {
                let want = prf.element(PrfInput {
                    index: 5 + j as u32,
                    ..input
                }) + Fp::ONE;
                assert_eq!(*got, want, "len {len}, index {j}");
            }
        }
    }
}
