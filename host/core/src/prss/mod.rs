//! Pseudo-random secret sharing (PRSS) and zero sharing (PRZS), after Cramer, Damgård and
//! Ishai, "Share conversion, pseudorandom secret-sharing and applications to secure
//! computation", TCC 2005, exactly as DESIGN.md §3 specifies.
//!
//! For every set A of N − t custodians there is a key k_A known to exactly A's members
//! ([`PrssKeyring`], distributed by [`setup`]). With f_A the degree-t polynomial with
//! f_A(0) = 1 and f_A(j) = 0 for every j ∉ A, custodian i computes, with no interaction:
//!
//! 1. a degree-t share of a random element: r_i = Σ_{A∋i} PRF(k_A, ctx) · f_A(i)
//!    ([`PrssSession::random`]); the secret is r = Σ_A PRF(k_A, ctx);
//! 2. a share of a bounded random integer: the same sum with PRF outputs below 2^b
//!    ([`PrssSession::bounded`]);
//! 3. a degree-2t share of zero: z_i = Σ_{A∋i} Σ_{l=1..t} PRF(k_A, ctx, l) · i^l · f_A(i)
//!    ([`PrssSession::zero`]);
//! 4. a double sharing ([r]_t, [r]_2t = [r]_t + [0]_2t) ([`PrssSession::double`]).
//!
//! Any t custodians miss at least one key k_A (the set A of the others), whose PRF output
//! masks the secret. The context `ctx` binds committee id, session id and op counter
//! ([`PrssContext`] plus the counter and element index of each call); a context must never
//! be reused.
//!
//! The PRF ([`crate::prf::FieldPrf`]): per session, each k_A is expanded by HKDF-SHA256
//! (salt "qvm/prss/v1", info = committee ‖ session ‖ A) to an AES-128 key.

pub mod setup;

use core::fmt;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::encoding::Digest;
use crate::field::Fp;
use crate::party::{MAX_PARTIES, PartyIndex, PartySet};
use crate::prf::{FieldPrf, PrfInput};
use crate::{Error, Result};

/// The most subsets (C(N, t)) a committee may have: each is one PRF call per element for
/// every member, so this bounds the cost of every PRSS operation.
pub const MAX_SUBSETS: u64 = 4096;

/// HKDF salt of per-session PRSS keys.
const SESSION_SALT: &[u8] = b"qvm/prss/v1";

/// PRF block kinds: distinct outputs for distinct uses of one (counter, index).
const KIND_RANDOM: u8 = 1;
const KIND_BOUNDED: u8 = 2;
const KIND_ZERO: u8 = 3;

/// The parameters of a PRSS committee: N custodians, degree t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrssParams {
    parties: u8,
    degree: u8,
}

impl PrssParams {
    /// N custodians, sharings of degree t; needs t < N ≤ 64 and C(N, t) ≤ [`MAX_SUBSETS`].
    pub fn new(parties: usize, degree: usize) -> Result<PrssParams> {
        if degree >= parties || parties > MAX_PARTIES as usize {
            return Err(Error::SharingParams { degree, parties });
        }
        let subsets = binomial(parties as u64, degree as u64);
        if subsets > MAX_SUBSETS {
            return Err(Error::PrssTooManySubsets {
                parties,
                degree,
                subsets,
                max: MAX_SUBSETS,
            });
        }
        Ok(PrssParams {
            parties: parties as u8,
            degree: degree as u8,
        })
    }

    /// N.
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// t.
    pub fn degree(&self) -> usize {
        self.degree as usize
    }

    /// Every set of N − t custodians, in increasing order of their bit masks.
    pub fn subsets(&self) -> Vec<PartySet> {
        let n = self.parties as u32;
        let size = n - self.degree as u32;
        let all = PartySet::first(self.parties);
        // Gosper's hack over n-bit masks with `size` bits set, computed in u128 so the step
        // past the last mask cannot overflow.
        let mut out = Vec::new();
        let mut mask: u128 = (1u128 << size) - 1;
        while mask < (1u128 << n) {
            out.push(
                all.iter()
                    .filter(|i| mask >> (i.get() - 1) & 1 == 1)
                    .collect(),
            );
            let low = mask & mask.wrapping_neg();
            let ripple = mask + low;
            mask = (((ripple ^ mask) >> 2) / low) | ripple;
        }
        out
    }

    /// The subsets that contain `party`.
    pub fn subsets_of(&self, party: PartyIndex) -> Vec<PartySet> {
        self.subsets()
            .into_iter()
            .filter(|a| a.contains(party))
            .collect()
    }

    /// f_A(x) = Π_{j ∉ A} (j − x) / j: degree t, f_A(0) = 1, zero outside A.
    pub fn f_a(&self, subset: PartySet, x: Fp) -> Fp {
        let outside = PartySet::first(self.parties).difference(subset);
        outside
            .iter()
            .map(|j| {
                let jp = j.point();
                // j ≥ 1, so j is invertible.
                (jp - x) * jp.inverse().unwrap_or(Fp::ZERO)
            })
            .product()
    }

    /// The largest b for which a bounded PRSS integer (a sum of C(N, t) values below 2^b)
    /// stays below 2^126, so it is a non-negative integer in the centered representation.
    pub fn max_bounded_bits(&self) -> u32 {
        let subsets = binomial(self.parties as u64, self.degree as u64);
        126 - (64 - (subsets - 1).leading_zeros()).min(126)
    }
}

/// C(n, k), saturating at `u64::MAX`.
fn binomial(n: u64, k: u64) -> u64 {
    let k = k.min(n - k);
    let mut acc: u128 = 1;
    for i in 0..k {
        acc = acc * (n - i) as u128 / (i + 1) as u128;
        if acc > u64::MAX as u128 {
            return u64::MAX;
        }
    }
    acc as u64
}

/// A PRSS key k_A. Prints as `<redacted>`, zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PrssKey([u8; 32]);

impl PrssKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> PrssKey {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        PrssKey(k)
    }

    /// Wraps stored key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PrssKey {
        PrssKey(bytes)
    }

    /// The key bytes (for sealing at rest).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PrssKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrssKey(<redacted>)")
    }
}

/// One custodian's PRSS keys: exactly one key for every subset A that contains it.
#[derive(Clone, Debug)]
pub struct PrssKeyring {
    party: PartyIndex,
    params: PrssParams,
    /// (A, k_A), in the order of [`PrssParams::subsets_of`].
    keys: Vec<(PartySet, PrssKey)>,
    /// f_A(i) for each key's subset, same order: public, computed once per keyring.
    weights: Vec<Fp>,
}

impl PrssKeyring {
    /// Assembles a keyring, checking it holds exactly the keys of `party`'s subsets.
    pub fn new(
        party: PartyIndex,
        params: PrssParams,
        keys: impl IntoIterator<Item = (PartySet, PrssKey)>,
    ) -> Result<PrssKeyring> {
        let malformed = |reason| Error::PrssKeyring { party, reason };
        if party.get() as usize > params.parties() {
            return Err(malformed("party is not a member of the committee"));
        }
        let mut given: Vec<(PartySet, PrssKey)> = keys.into_iter().collect();
        given.sort_by_key(|(a, _)| *a);
        if given.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(malformed("two keys for one subset"));
        }
        let wanted = params.subsets_of(party);
        if given.len() != wanted.len() || given.iter().zip(&wanted).any(|((a, _), w)| a != w) {
            return Err(malformed("keys do not match the party's subsets"));
        }
        let weights = given
            .iter()
            .map(|(a, _)| params.f_a(*a, party.point()))
            .collect();
        Ok(PrssKeyring {
            party,
            params,
            keys: given,
            weights,
        })
    }

    /// Whose keyring this is.
    pub fn party(&self) -> PartyIndex {
        self.party
    }

    /// The committee's parameters.
    pub fn params(&self) -> PrssParams {
        self.params
    }

    /// The keys, by subset.
    pub fn keys(&self) -> impl Iterator<Item = (PartySet, &PrssKey)> {
        self.keys.iter().map(|(a, k)| (*a, k))
    }

    /// Derives the per-session PRF keys for `ctx`.
    pub fn session(&self, ctx: &PrssContext) -> PrssSession {
        PrssSession::new(self, ctx)
    }
}

/// What binds a PRSS session: the committee and the session. Each call adds an op counter
/// and an element index, completing DESIGN.md §3's ctx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrssContext {
    /// The committee id (hash of the committee's canonical encoding).
    pub committee: Digest,
    /// The session id (an evaluation, or an offline batch).
    pub session: Digest,
}

struct SubsetPrf {
    prf: FieldPrf,
    /// f_A(i) for this custodian's i.
    weight: Fp,
}

/// One custodian's PRSS for one context: per-subset AES keys derived once, then each
/// sharing costs one AES block per subset (per subset and power for zero sharings).
pub struct PrssSession {
    party: PartyIndex,
    params: PrssParams,
    prfs: Vec<SubsetPrf>,
    /// i^1, …, i^t for zero sharings.
    powers: Vec<Fp>,
}

impl fmt::Debug for PrssSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrssSession")
            .field("party", &self.party)
            .field("params", &self.params)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl PrssSession {
    /// Derives the session keys k_{A,ctx} = HKDF-SHA256(salt = "qvm/prss/v1", ikm = k_A,
    /// info = committee ‖ session ‖ A).
    pub fn new(keyring: &PrssKeyring, ctx: &PrssContext) -> PrssSession {
        let x = keyring.party.point();
        let prfs = keyring
            .keys
            .iter()
            .zip(&keyring.weights)
            .map(|((subset, key), weight)| SubsetPrf {
                prf: FieldPrf::derive(
                    &key.0,
                    SESSION_SALT,
                    &[
                        ctx.committee.as_bytes(),
                        ctx.session.as_bytes(),
                        &subset.bits().to_le_bytes(),
                    ],
                ),
                weight: *weight,
            })
            .collect();
        let powers = (1..=keyring.params.degree())
            .scan(Fp::ONE, |acc, _| {
                *acc *= x;
                Some(*acc)
            })
            .collect();
        PrssSession {
            party: keyring.party,
            params: keyring.params,
            prfs,
            powers,
        }
    }

    /// Whose session this is.
    pub fn party(&self) -> PartyIndex {
        self.party
    }

    /// This custodian's degree-t share of a random element, for op `counter`, element
    /// `index`.
    pub fn random(&self, counter: u64, index: u32) -> Fp {
        self.prfs
            .iter()
            .map(|p| p.prf.element(PrfInput::new(KIND_RANDOM, counter, index)) * p.weight)
            .sum()
    }

    /// Shares of `len` random elements for op `counter` (indices 0..len).
    /// Equal to [`PrssSession::random`] per index, with the AES blocks pipelined.
    pub fn random_vec(&self, counter: u64, len: u32) -> Vec<Fp> {
        let mut out = vec![Fp::ZERO; len as usize];
        for p in &self.prfs {
            let input = PrfInput::new(KIND_RANDOM, counter, 0);
            p.prf
                .elements_into(input, &mut out, |acc, x| *acc += x * p.weight);
        }
        out
    }

    /// A degree-t share of a random integer in [0, C(N, t) · 2^bits): the sum over subsets
    /// of PRF outputs below 2^bits. `bits` is at most [`PrssParams::max_bounded_bits`].
    pub fn bounded(&self, counter: u64, index: u32, bits: u32) -> Result<Fp> {
        let max = self.params.max_bounded_bits();
        if bits > max {
            return Err(Error::PrssBoundTooLarge { bits, max });
        }
        let mask = (1u128 << bits) - 1;
        Ok(self
            .prfs
            .iter()
            .map(|p| {
                Fp::from_u128_reduced(
                    p.prf.bits(PrfInput::new(KIND_BOUNDED, counter, index)) & mask,
                ) * p.weight
            })
            .sum())
    }

    /// A degree-2t share of zero for op `counter`, element `index`.
    pub fn zero(&self, counter: u64, index: u32) -> Fp {
        self.prfs
            .iter()
            .map(|p| {
                let inner: Fp = self
                    .powers
                    .iter()
                    .enumerate()
                    .map(|(l, pow)| {
                        p.prf.element(PrfInput {
                            kind: KIND_ZERO,
                            l: l as u8 + 1,
                            counter,
                            index,
                        }) * *pow
                    })
                    .sum();
                inner * p.weight
            })
            .sum()
    }

    /// Degree-2t shares of `len` zeros for op `counter` (indices 0..len), equal to
    /// [`PrssSession::zero`] per index.
    pub fn zero_vec(&self, counter: u64, len: u32) -> Vec<Fp> {
        let mut out = vec![Fp::ZERO; len as usize];
        for p in &self.prfs {
            for (l, pow) in self.powers.iter().enumerate() {
                let input = PrfInput {
                    kind: KIND_ZERO,
                    l: l as u8 + 1,
                    counter,
                    index: 0,
                };
                let factor = *pow * p.weight;
                p.prf
                    .elements_into(input, &mut out, |acc, x| *acc += x * factor);
            }
        }
        out
    }

    /// A double sharing of one random element: ([r]_t, [r]_2t = [r]_t + [0]_2t).
    pub fn double(&self, counter: u64, index: u32) -> (Fp, Fp) {
        let r = self.random(counter, index);
        (r, r + self.zero(counter, index))
    }
}

#[cfg(test)]
mod tests;
