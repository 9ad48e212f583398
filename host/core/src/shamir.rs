//! Shamir secret sharing over F_p (Shamir, "How to share a secret", CACM 1979).
//!
//! A secret s is the constant term of a random polynomial f of degree t; custodian i holds
//! f(i). Any t+1 shares determine f (Lagrange interpolation), any t say nothing about s.
//! Here t = K − 1 (DESIGN.md §2). Lagrange coefficients depend only on which custodians
//! answered, so [`Lagrange`] caches them per responder set: reconstruction in the hot path
//! is then a dot product.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::field::{Fp, batch_inverse};
use crate::party::{MAX_PARTIES, PartyIndex, PartySet};
use crate::{Error, Result};

/// The parameters of a sharing: polynomial degree t and number of custodians N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShamirParams {
    degree: usize,
    parties: u8,
}

impl ShamirParams {
    /// Degree `t` among `n` custodians; needs `t < n ≤ MAX_PARTIES`.
    pub fn new(degree: usize, parties: usize) -> Result<ShamirParams> {
        if degree >= parties || parties > MAX_PARTIES as usize {
            return Err(Error::SharingParams { degree, parties });
        }
        Ok(ShamirParams {
            degree,
            parties: parties as u8,
        })
    }

    /// The parameters for a K-of-N committee: degree K − 1.
    pub fn for_threshold(k: usize, n: usize) -> Result<ShamirParams> {
        let degree = k.checked_sub(1).ok_or(Error::SharingParams {
            degree: 0,
            parties: n,
        })?;
        ShamirParams::new(degree, n)
    }

    /// The degree t.
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// The number of custodians N.
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// Shares needed to reconstruct: t + 1.
    pub fn threshold(&self) -> usize {
        self.degree + 1
    }
}

/// One custodian's share of one secret. Prints as `<redacted>`, zeroized on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Share {
    #[zeroize(skip)]
    index: PartyIndex,
    value: Fp,
}

impl Share {
    /// A share held by custodian `index`.
    pub fn new(index: PartyIndex, value: Fp) -> Share {
        Share { index, value }
    }

    /// Whose share this is (its evaluation point).
    pub fn index(&self) -> PartyIndex {
        self.index
    }

    /// The share value.
    pub fn value(&self) -> Fp {
        self.value
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Share({:?}, <redacted>)", self.index)
    }
}

/// Evaluates the polynomial with coefficients `coeffs` (constant term first) at `x`.
pub fn evaluate(coeffs: &[Fp], x: Fp) -> Fp {
    coeffs.iter().rev().fold(Fp::ZERO, |acc, c| acc * x + *c)
}

/// Shares `secret` among custodians 1..=N with a fresh random polynomial of degree t.
pub fn share<R: RngCore + CryptoRng + ?Sized>(
    secret: Fp,
    params: ShamirParams,
    rng: &mut R,
) -> Vec<Share> {
    let mut coeffs = Vec::with_capacity(params.degree + 1);
    coeffs.push(secret);
    coeffs.extend((0..params.degree).map(|_| Fp::random(rng)));
    let shares = PartyIndex::range(params.parties)
        .map(|i| Share::new(i, evaluate(&coeffs, i.point())))
        .collect();
    coeffs.zeroize();
    shares
}

/// (basis set, evaluation point, whether the entry holds the coefficients' inverses).
type CacheKey = (PartySet, u8, bool);

/// A cache of Lagrange coefficients (and of their inverses) keyed by (basis set, evaluation
/// point).
///
/// Thread-safe; the number of distinct responder sets a committee sees is small, and the
/// cache is cleared if it ever grows past [`Lagrange::CAPACITY`] entries.
#[derive(Debug, Default)]
pub struct Lagrange {
    cache: RwLock<HashMap<CacheKey, Arc<[Fp]>>>,
}

impl Lagrange {
    /// Entries kept before the cache is cleared.
    pub const CAPACITY: usize = 4096;

    /// The process's shared cache.
    ///
    /// Why shared: every session (each item of a batch is one) masks and reconstructs its
    /// outputs with the coefficients of the same few responder sets, and a fresh cache per
    /// session recomputed them each time (inversions included): 18 % of a custodian's
    /// per-item work under a batch load of a local-only program.
    pub fn shared() -> &'static Lagrange {
        static SHARED: std::sync::LazyLock<Lagrange> = std::sync::LazyLock::new(Lagrange::new);
        &SHARED
    }

    /// An empty cache.
    pub fn new() -> Lagrange {
        Lagrange::default()
    }

    /// The coefficients λ_i(x) = Π_{j∈S, j≠i} (x − j)/(i − j) for the members i of `basis`
    /// in increasing order, so that f(x) = Σ λ_i(x) f(i) for every f of degree < |S|.
    /// `x = 0` gives the coefficients that reconstruct the secret.
    pub fn coefficients(&self, basis: PartySet, x: u8) -> Arc<[Fp]> {
        let Ok(c) = self.cached((basis, x, false), || {
            Ok::<_, core::convert::Infallible>(compute_coefficients(basis, Fp::from(x)))
        });
        c
    }

    /// The inverses λ_i(x)⁻¹ of [`Lagrange::coefficients`] (output masks divide by
    /// λ_i(0)). Fails with [`Error::ZeroInverse`] when `x` is a member of `basis`, where
    /// the other members' coefficients are 0.
    pub fn inverse_coefficients(&self, basis: PartySet, x: u8) -> Result<Arc<[Fp]>> {
        self.cached((basis, x, true), || {
            let mut c = self.coefficients(basis, x).to_vec();
            batch_inverse(&mut c)?;
            Ok(c)
        })
    }

    /// The entry for `key`, computed and kept on a miss.
    fn cached<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> core::result::Result<Vec<Fp>, E>,
    ) -> core::result::Result<Arc<[Fp]>, E> {
        if let Some(c) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(c));
        }
        let values: Arc<[Fp]> = compute()?.into();
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= Self::CAPACITY {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&values));
        Ok(values)
    }

    /// Reconstructs the secret from at least t+1 shares of a degree-t sharing. With more
    /// than t+1 shares it also checks they lie on one polynomial of degree t, and fails with
    /// [`Error::InconsistentShares`] if not.
    pub fn reconstruct(&self, shares: &[Share], degree: usize) -> Result<Fp> {
        let points: Vec<(PartyIndex, Fp)> = shares.iter().map(|s| (s.index, s.value)).collect();
        self.interpolate(&points, degree, 0)
    }

    /// Like [`Lagrange::reconstruct`] on bare points: the value at `x` of the degree-`degree`
    /// polynomial through `points`, after checking any redundant points agree.
    pub fn interpolate(&self, points: &[(PartyIndex, Fp)], degree: usize, x: u8) -> Result<Fp> {
        let sorted = sorted_distinct(points)?;
        if sorted.len() <= degree {
            return Err(Error::NotEnoughShares {
                needed: degree + 1,
                got: sorted.len(),
            });
        }
        if !self.consistent_sorted(&sorted, degree) {
            return Err(Error::InconsistentShares { degree });
        }
        let (basis, values) = split_basis(&sorted, degree);
        let coeffs = self.coefficients(basis, x);
        Ok(dot(&coeffs, &values))
    }

    /// Whether `points` lie on one polynomial of degree ≤ `degree`. Any d+1 points do; each
    /// point beyond those is checked against the polynomial through the first d+1.
    pub fn is_consistent(&self, points: &[(PartyIndex, Fp)], degree: usize) -> Result<bool> {
        let sorted = sorted_distinct(points)?;
        Ok(self.consistent_sorted(&sorted, degree))
    }

    fn consistent_sorted(&self, sorted: &[(PartyIndex, Fp)], degree: usize) -> bool {
        if sorted.len() <= degree + 1 {
            return true;
        }
        let (basis, values) = split_basis(sorted, degree);
        sorted[degree + 1..].iter().all(|(j, y)| {
            let coeffs = self.coefficients(basis, j.get());
            dot(&coeffs, &values) == *y
        })
    }
}

fn sorted_distinct(points: &[(PartyIndex, Fp)]) -> Result<Vec<(PartyIndex, Fp)>> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|(i, _)| *i);
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::DuplicateShare(w[0].0));
    }
    Ok(sorted)
}

/// The first d+1 points as a basis set, with their values in the same order.
fn split_basis(sorted: &[(PartyIndex, Fp)], degree: usize) -> (PartySet, Vec<Fp>) {
    let head = &sorted[..degree + 1];
    (
        head.iter().map(|(i, _)| *i).collect(),
        head.iter().map(|(_, y)| *y).collect(),
    )
}

fn dot(a: &[Fp], b: &[Fp]) -> Fp {
    a.iter().zip(b).map(|(x, y)| *x * *y).sum()
}

fn compute_coefficients(basis: PartySet, x: Fp) -> Vec<Fp> {
    let members: Vec<Fp> = basis.iter().map(PartyIndex::point).collect();
    let mut numerators = Vec::with_capacity(members.len());
    let mut denominators = Vec::with_capacity(members.len());
    for (a, xi) in members.iter().enumerate() {
        let mut num = Fp::ONE;
        let mut den = Fp::ONE;
        for (b, xj) in members.iter().enumerate() {
            if a != b {
                num *= x - *xj;
                den *= *xi - *xj;
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    // The members are distinct points, so no denominator is zero.
    if batch_inverse(&mut denominators).is_err() {
        unreachable!("distinct evaluation points give non-zero Lagrange denominators");
    }
    numerators
        .into_iter()
        .zip(denominators)
        .map(|(n, d)| n * d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Every subset of `1..=n` with exactly `k` members.
    fn subsets(n: u8, k: usize) -> Vec<PartySet> {
        (0u64..1 << n)
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| {
                PartySet::first(n)
                    .iter()
                    .filter(|i| m >> (i.get() - 1) & 1 == 1)
                    .collect()
            })
            .collect()
    }

    fn pick(shares: &[Share], set: PartySet) -> Vec<Share> {
        shares
            .iter()
            .filter(|s| set.contains(s.index()))
            .cloned()
            .collect()
    }

    fn params() -> impl Strategy<Value = ShamirParams> {
        (2usize..=9)
            .prop_flat_map(|n| (0..n, Just(n)))
            .prop_map(|(t, n)| ShamirParams::new(t, n).expect("t < n ≤ 9"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Share → reconstruct from every (t+1)-subset, for N up to 9.
        #[test]
        fn every_threshold_subset_reconstructs(p in params(), secret in any::<u128>(), seed in any::<u64>()) {
            let secret = Fp::from_u128_reduced(secret);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = share(secret, p, &mut rng);
            prop_assert_eq!(shares.len(), p.parties());
            let lagrange = Lagrange::new();
            for set in subsets(p.parties() as u8, p.threshold()) {
                prop_assert_eq!(lagrange.reconstruct(&pick(&shares, set), p.degree())?, secret);
            }
            // All N shares: redundant, consistent, same answer.
            prop_assert_eq!(lagrange.reconstruct(&shares, p.degree())?, secret);
        }

        /// t shares say nothing: for random t shares and any candidate secret there is a
        /// polynomial of degree t through the candidate (at 0) and the t shares. We build it
        /// and check it passes through every one of them.
        #[test]
        fn t_shares_fit_every_candidate(p in params(), secret in any::<u128>(), candidate in any::<u128>(), seed in any::<u64>()) {
            prop_assume!(p.degree() > 0);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = share(Fp::from_u128_reduced(secret), p, &mut rng);
            let candidate = Fp::from_u128_reduced(candidate);
            let seen = &shares[..p.degree()];
            // Points (0, candidate) and the t shares: t+1 points determine a polynomial g of
            // degree ≤ t. Evaluate g at each share's point via Lagrange over the t+1 x-values.
            let xs: Vec<Fp> = std::iter::once(Fp::ZERO).chain(seen.iter().map(|s| s.index().point())).collect();
            let ys: Vec<Fp> = std::iter::once(candidate).chain(seen.iter().map(Share::value)).collect();
            let g = interpolate_coefficients(&xs, &ys);
            prop_assert!(g.len() <= p.degree() + 1);
            prop_assert_eq!(evaluate(&g, Fp::ZERO), candidate);
            for s in seen {
                prop_assert_eq!(evaluate(&g, s.index().point()), s.value());
            }
        }

        #[test]
        fn degree_check_catches_one_bad_share(p in params(), seed in any::<u64>(), which in any::<prop::sample::Index>(), delta in 1u128..) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = share(Fp::random(&mut rng), p, &mut rng);
            let mut points: Vec<_> = shares.iter().map(|s| (s.index(), s.value())).collect();
            let lagrange = Lagrange::new();
            prop_assert!(lagrange.is_consistent(&points, p.degree())?);
            let i = which.index(points.len());
            points[i].1 += Fp::from_u128_reduced(delta);
            prop_assume!(points[i].1 != shares[i].value());
            let redundant = points.len() > p.threshold();
            prop_assert_eq!(lagrange.is_consistent(&points, p.degree())?, !redundant);
            // A sharing of degree t is also of degree ≤ any larger d.
            prop_assert!(lagrange.is_consistent(&points, p.parties() - 1)?);
        }
    }

    /// Coefficients (constant first) of the polynomial through (xs[i], ys[i]), by Newton's
    /// divided differences: an independent route from the Lagrange code under test.
    fn interpolate_coefficients(xs: &[Fp], ys: &[Fp]) -> Vec<Fp> {
        let n = xs.len();
        let mut dd = ys.to_vec();
        for level in 1..n {
            for i in (level..n).rev() {
                let den = (xs[i] - xs[i - level]).inverse().expect("distinct xs");
                dd[i] = (dd[i] - dd[i - 1]) * den;
            }
        }
        let mut coeffs = vec![Fp::ZERO; n];
        for k in (0..n).rev() {
            // coeffs = coeffs * (X - xs[k]) + dd[k]
            let mut next = vec![Fp::ZERO; n];
            for (j, c) in coeffs.iter().enumerate() {
                if j + 1 < n {
                    next[j + 1] += *c;
                }
                next[j] -= *c * xs[k];
            }
            next[0] += dd[k];
            coeffs = next;
        }
        while coeffs.len() > 1 && coeffs.last() == Some(&Fp::ZERO) {
            coeffs.pop();
        }
        coeffs
    }

    #[test]
    fn errors_are_reported() -> Result<()> {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let p = ShamirParams::for_threshold(3, 5)?;
        let shares = share(Fp::from(42u64), p, &mut rng);
        let lagrange = Lagrange::new();
        assert_eq!(
            lagrange.reconstruct(&shares[..2], 2),
            Err(Error::NotEnoughShares { needed: 3, got: 2 })
        );
        let dup = vec![shares[0].clone(), shares[0].clone(), shares[1].clone()];
        assert_eq!(
            lagrange.reconstruct(&dup, 2),
            Err(Error::DuplicateShare(PartyIndex::new(1)?))
        );
        let mut bad = shares.clone();
        bad[4] = Share::new(bad[4].index(), bad[4].value() + Fp::ONE);
        assert_eq!(
            lagrange.reconstruct(&bad, 2),
            Err(Error::InconsistentShares { degree: 2 })
        );
        assert!(ShamirParams::new(3, 3).is_err());
        assert!(ShamirParams::for_threshold(0, 3).is_err());
        assert!(ShamirParams::new(1, 65).is_err());
        Ok(())
    }

    #[test]
    fn inverse_coefficients_invert_the_coefficients() -> Result<()> {
        let lagrange = Lagrange::new();
        let basis: PartySet = [1, 3, 4]
            .into_iter()
            .map(PartyIndex::new)
            .collect::<Result<_>>()?;
        for x in [0u8, 2, 9] {
            let coeffs = lagrange.coefficients(basis, x);
            let inverses = lagrange.inverse_coefficients(basis, x)?;
            assert_eq!(coeffs.len(), inverses.len());
            for (c, i) in coeffs.iter().zip(inverses.iter()) {
                assert_eq!(*c * *i, Fp::ONE);
            }
        }
        // At a member's own point the other members' coefficients are 0.
        assert_eq!(
            lagrange.inverse_coefficients(basis, 3),
            Err(Error::ZeroInverse)
        );
        Ok(())
    }

    #[test]
    fn debug_redacts() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = Fp::from(987_654_321u64);
        let shares = share(secret, ShamirParams::new(1, 3).expect("valid"), &mut rng);
        let printed = format!("{shares:?}");
        assert!(printed.contains("<redacted>"));
        for s in &shares {
            assert!(!printed.contains(&s.value().to_string()));
        }
    }
}
