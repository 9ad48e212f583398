//! The prime field F_p with p = 2^127 − 1 (DESIGN.md §2).
//!
//! p is a Mersenne prime, so reduction is two shifts and adds; p ≡ 3 (mod 4), so a square
//! root is one exponentiation, a^((p+1)/4) = a^(2^125). Signed integers use the centered
//! representation: v ∈ F_p stands for v if v ≤ (p−1)/2 and for v − p otherwise.
//!
//! Arithmetic is branch-free on the values (the few conditional subtractions compile to
//! conditional moves) and exponentiation runs a fixed number of steps, so shares can be
//! computed on without leaking them through timing.

use core::fmt;
use core::iter::{Product, Sum};
use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use rand_core::{CryptoRng, RngCore};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use subtle::{Choice, ConstantTimeEq};

use crate::{Error, Result};

/// The modulus p = 2^127 − 1.
pub const MODULUS: u128 = (1u128 << 127) - 1;

/// The largest magnitude of a centered signed value: (p − 1) / 2 = 2^126 − 1.
pub const MAX_SIGNED: i128 = (1i128 << 126) - 1;

/// Bytes in the fixed-width encoding of an element.
pub const BYTES: usize = 16;

/// An element of F_p, p = 2^127 − 1. Always reduced: the inner value is below p.
///
/// `Fp` is a plain value type; types that hold secret field elements (shares, keys) wrap it
/// and take care of redaction and zeroization themselves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Fp(u128);

impl zeroize::DefaultIsZeroes for Fp {}

impl Fp {
    /// The additive identity.
    pub const ZERO: Fp = Fp(0);
    /// The multiplicative identity.
    pub const ONE: Fp = Fp(1);

    /// The element `v mod p`, for any `u128`.
    #[inline]
    pub const fn from_u128_reduced(v: u128) -> Fp {
        Fp(reduce_once(reduce_u128(v)))
    }

    /// The element `v`, or an error if `v ≥ p`.
    pub fn from_canonical(v: u128) -> Result<Fp> {
        if v < MODULUS {
            Ok(Fp(v))
        } else {
            Err(Error::NonCanonicalField)
        }
    }

    /// The canonical representative in `0..p`.
    #[inline]
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// The centered encoding of a signed integer; `|v|` must be at most (p−1)/2.
    pub fn from_i128(v: i128) -> Result<Fp> {
        if v.unsigned_abs() > MAX_SIGNED as u128 {
            return Err(Error::SignedOutOfRange);
        }
        Ok(if v >= 0 {
            Fp(v as u128)
        } else {
            Fp(MODULUS - v.unsigned_abs())
        })
    }

    /// The signed integer this element stands for in the centered representation.
    #[inline]
    pub const fn to_i128(self) -> i128 {
        if self.0 > MAX_SIGNED as u128 {
            -((MODULUS - self.0) as i128)
        } else {
            self.0 as i128
        }
    }

    /// The fixed-width little-endian encoding (16 bytes, top bit always clear).
    #[inline]
    pub const fn to_le_bytes(self) -> [u8; BYTES] {
        self.0.to_le_bytes()
    }

    /// Decodes the fixed-width little-endian encoding, rejecting values ≥ p.
    pub fn from_le_bytes(bytes: [u8; BYTES]) -> Result<Fp> {
        Fp::from_canonical(u128::from_le_bytes(bytes))
    }

    /// A uniformly random element: 127 random bits, rejecting the single value equal to p,
    /// so there is no modular bias.
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Fp {
        loop {
            let mut buf = [0u8; BYTES];
            rng.fill_bytes(&mut buf);
            if let Some(v) = Fp::from_127_bits(buf) {
                return v;
            }
        }
    }

    /// Takes the low 127 bits of `bytes` (little endian); `None` for the one value equal to
    /// p, which a caller drawing uniform elements must reject and redraw.
    #[inline]
    pub fn from_127_bits(bytes: [u8; BYTES]) -> Option<Fp> {
        let v = u128::from_le_bytes(bytes) & MODULUS;
        (v != MODULUS).then_some(Fp(v))
    }

    /// `self^2`.
    #[inline]
    pub fn square(self) -> Fp {
        // As `mul`, with the two cross products a0·a1 computed once (3 word products, not 4):
        // square roots and inverses are chains of squarings.
        let (a0, a1) = (self.0 as u64 as u128, self.0 >> 64);
        let ll = a0 * a0;
        // a1 < 2^63, so 2·a0·a1 < 2^128.
        let mid = (a0 * a1) << 1;
        let hh = a1 * a1;
        let (lo, carry) = ll.overflowing_add(mid << 64);
        let hi = hh + (mid >> 64) + carry as u128;
        Fp::from_wide(hi, lo)
    }

    /// Reduces a product hi·2^128 + lo of two elements.
    #[inline]
    fn from_wide(hi: u128, lo: u128) -> Fp {
        // x = hi·2^128 + lo ≡ 2·hi + lo (mod p), since 2^128 ≡ 2. hi < 2^126, so the sum
        // below stays under 2^128.
        let s = (hi << 1) + reduce_u128(lo);
        Fp(reduce_once(reduce_u128(s)))
    }

    /// `self^e`, by a fixed 128-step square-and-multiply ladder whose running time does not
    /// depend on `self` (the exponent is public in every use here).
    pub fn pow(self, e: u128) -> Fp {
        let mut acc = Fp::ONE;
        for bit in (0..128).rev() {
            acc = acc.square();
            let with = acc * self;
            let take = Choice::from(((e >> bit) & 1) as u8);
            acc = Fp::conditional_select(&acc, &with, take);
        }
        acc
    }

    /// `self^(2^k)`: k squarings.
    #[inline]
    fn square_n(self, k: u32) -> Fp {
        (0..k).fold(self, |acc, _| acc.square())
    }

    /// The multiplicative inverse, by Fermat: self^(p−2). Zero has none.
    ///
    /// p − 2 = 2^127 − 3 = 4·(2^125 − 1) + 1, so with t_k = x^(2^k − 1) and
    /// t_{a+b} = t_a^(2^b) · t_b the inverse is t_125^4 · x: 128 squarings and 11
    /// multiplications in a fixed order, about half the work of the generic ladder.
    pub fn inverse(self) -> Result<Fp> {
        if self == Fp::ZERO {
            return Err(Error::ZeroInverse);
        }
        let x = self;
        let t2 = x.square() * x;
        let t3 = t2.square() * x;
        let t5 = t3.square_n(2) * t2;
        let t6 = t3.square_n(3) * t3;
        let t12 = t6.square_n(6) * t6;
        let t24 = t12.square_n(12) * t12;
        let t48 = t24.square_n(24) * t24;
        let t96 = t48.square_n(48) * t48;
        let t120 = t96.square_n(24) * t24;
        let t125 = t120.square_n(5) * t5;
        Ok(t125.square_n(2) * x)
    }

    /// A square root, if one exists: a^((p+1)/4) = a^(2^125), valid because p ≡ 3 (mod 4).
    ///
    /// Returns the root r with r² = a that the exponentiation gives (for a ≠ 0 the other root
    /// is −r); `None` when a is not a quadratic residue.
    pub fn sqrt(self) -> Option<Fp> {
        let r = self.square_n(125);
        (r.square() == self).then_some(r)
    }

    /// `a` if `choice` is 0, `b` if it is 1, without branching on the choice.
    #[inline]
    pub fn conditional_select(a: &Fp, b: &Fp, choice: Choice) -> Fp {
        let mask = (choice.unwrap_u8() as u128).wrapping_neg();
        Fp(a.0 ^ (mask & (a.0 ^ b.0)))
    }
}

/// Inverts every element of `values` in place with one field inversion (Montgomery's trick:
/// prefix products, one inverse, then unwind). Fails, leaving `values` unchanged, if any
/// element is zero.
pub fn batch_inverse(values: &mut [Fp]) -> Result<()> {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Fp::ONE;
    for v in values.iter() {
        if *v == Fp::ZERO {
            return Err(Error::ZeroInverse);
        }
        prefix.push(acc);
        acc *= *v;
    }
    let mut inv = acc.inverse()?;
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let next = inv * *v;
        *v = inv * before;
        inv = next;
    }
    Ok(())
}

/// Square roots of many elements in place: each becomes the root [`Fp::sqrt`] gives, or
/// zero where there is none.
///
/// Why not a loop over `sqrt`: a root is 125 squarings in sequence, each waiting on the
/// last, so one chain leaves the multiplier idle most of the time; [`SQRT_LANES`]
/// independent chains advanced together keep it busy (the offline phase's king takes a
/// root per random bit).
pub fn sqrt_many(values: &mut [Fp]) {
    for chunk in values.chunks_mut(SQRT_LANES) {
        let mut r = [Fp::ZERO; SQRT_LANES];
        r[..chunk.len()].copy_from_slice(chunk);
        for _ in 0..125 {
            for x in r.iter_mut() {
                *x = x.square();
            }
        }
        for (v, root) in chunk.iter_mut().zip(r) {
            *v = if root.square() == *v { root } else { Fp::ZERO };
        }
    }
}

/// Independent square-root chains [`sqrt_many`] interleaves.
const SQRT_LANES: usize = 8;

/// Reduces any `u128` to a value ≤ p (possibly equal to p): 2^127 ≡ 1.
#[inline]
const fn reduce_u128(v: u128) -> u128 {
    (v & MODULUS) + (v >> 127)
}

/// Maps a value in `0..=p` (or up to 2p) to `0..p`.
#[inline]
const fn reduce_once(v: u128) -> u128 {
    let (d, borrow) = v.overflowing_sub(MODULUS);
    if borrow { v } else { d }
}

/// a − b mod p for a, b < p: subtract, and add p back where the subtraction borrowed
/// (selected by a mask, not a branch).
#[inline]
const fn sub_mod(a: u128, b: u128) -> u128 {
    let (d, borrow) = a.overflowing_sub(b);
    let fix = (borrow as u128).wrapping_neg() & MODULUS;
    d.wrapping_add(fix)
}

/// The full 254-bit product of two values below 2^127, as (high, low) 128-bit halves.
#[inline]
const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let ll = a0 * b0;
    // a1, b1 < 2^63 and a0, b0 < 2^64, so each cross term is below 2^127 and their sum
    // cannot overflow.
    let mid = a0 * b1 + a1 * b0;
    let hh = a1 * b1;
    let (lo, carry) = ll.overflowing_add(mid << 64);
    let hi = hh + (mid >> 64) + carry as u128;
    (hi, lo)
}

impl Add for Fp {
    type Output = Fp;
    #[inline]
    fn add(self, rhs: Fp) -> Fp {
        Fp(reduce_once(self.0 + rhs.0))
    }
}

impl Sub for Fp {
    type Output = Fp;
    #[inline]
    fn sub(self, rhs: Fp) -> Fp {
        Fp(sub_mod(self.0, rhs.0))
    }
}

impl Neg for Fp {
    type Output = Fp;
    #[inline]
    fn neg(self) -> Fp {
        Fp::ZERO - self
    }
}

impl Mul for Fp {
    type Output = Fp;
    #[inline]
    fn mul(self, rhs: Fp) -> Fp {
        let (hi, lo) = mul_wide(self.0, rhs.0);
        Fp::from_wide(hi, lo)
    }
}

macro_rules! assign_ops {
    ($($tr:ident $m:ident $op:tt),*) => {$(
        impl $tr for Fp {
            #[inline]
            fn $m(&mut self, rhs: Fp) {
                *self = *self $op rhs;
            }
        }
    )*};
}
assign_ops!(AddAssign add_assign +, SubAssign sub_assign -, MulAssign mul_assign *);

impl Sum for Fp {
    fn sum<I: Iterator<Item = Fp>>(iter: I) -> Fp {
        iter.fold(Fp::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Fp> for Fp {
    fn sum<I: Iterator<Item = &'a Fp>>(iter: I) -> Fp {
        iter.fold(Fp::ZERO, |a, b| a + *b)
    }
}

impl Product for Fp {
    fn product<I: Iterator<Item = Fp>>(iter: I) -> Fp {
        iter.fold(Fp::ONE, Mul::mul)
    }
}

macro_rules! from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Fp {
            fn from(v: $t) -> Fp {
                Fp(v as u128)
            }
        }
    )*};
}
from_unsigned!(u8, u32, u64, bool);

impl From<i64> for Fp {
    fn from(v: i64) -> Fp {
        if v >= 0 {
            Fp(v as u128)
        } else {
            Fp(MODULUS - v.unsigned_abs() as u128)
        }
    }
}

impl ConstantTimeEq for Fp {
    fn ct_eq(&self, other: &Fp) -> Choice {
        self.0.to_le_bytes().ct_eq(&other.0.to_le_bytes())
    }
}

impl fmt::Debug for Fp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fp({})", self.0)
    }
}

impl fmt::Display for Fp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl core::str::FromStr for Fp {
    type Err = Error;

    /// Parses the canonical decimal representative (`0..p`).
    fn from_str(s: &str) -> Result<Fp> {
        let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let v: u128 = if digits_only {
            s.parse().map_err(|_| Error::NonCanonicalField)?
        } else {
            return Err(Error::NonCanonicalField);
        };
        Fp::from_canonical(v)
    }
}

/// Serialized as 16 little-endian bytes in binary formats (the canonical encoding) and as a
/// decimal string in human-readable ones (JSON numbers cannot hold 127 bits faithfully).
impl Serialize for Fp {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&self.0)
        } else {
            self.to_le_bytes().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Fp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Fp, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(DecimalVisitor)
        } else {
            let bytes = <[u8; BYTES]>::deserialize(d)?;
            Fp::from_le_bytes(bytes).map_err(de::Error::custom)
        }
    }
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Fp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal string holding an integer in 0..2^127-1")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> core::result::Result<Fp, E> {
        v.parse().map_err(E::custom)
    }
}

/// Serde for vectors of field elements in bulk: in binary encodings one byte string of
/// 16-byte little-endian elements (decoded element by element, non-canonical ones refused)
/// instead of a sequence of 16-tuples, which cost a quarter of the cluster's CPU when the
/// offline phase and interactive rounds serialized millions of elements one byte at a time;
/// in human-readable ones the same decimal strings as a single [`Fp`]. Use with
/// `#[serde(with = "qvm_core::field::fp_vec")]`.
pub mod fp_vec {
    use super::{BYTES, Fp};
    use core::fmt;
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    /// Serializes `v`.
    pub fn serialize<S: Serializer>(v: &[Fp], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        let mut bytes = Vec::with_capacity(v.len() * BYTES);
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        s.serialize_bytes(&bytes)
    }

    /// Deserializes a vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Fp>, D::Error> {
        if d.is_human_readable() {
            return Vec::<Fp>::deserialize(d);
        }
        d.deserialize_bytes(BytesVisitor)
    }

    struct BytesVisitor;

    impl Visitor<'_> for BytesVisitor {
        type Value = Vec<Fp>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of 16-byte field elements")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<Fp>, E> {
            if !v.len().is_multiple_of(BYTES) {
                return Err(E::custom("field elements are 16 bytes each"));
            }
            v.chunks_exact(BYTES)
                .map(|c| {
                    let mut b = [0u8; BYTES];
                    b.copy_from_slice(c);
                    Fp::from_le_bytes(b).map_err(E::custom)
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vectors_encode_in_bulk_and_refuse_non_canonical_elements() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct V(#[serde(with = "super::fp_vec")] Vec<Fp>);
        let v = V(vec![Fp::from(7u64), -Fp::ONE, Fp::ZERO]);
        let bin = bcs::to_bytes(&v).expect("encodes");
        assert_eq!(bin.len(), 1 + 3 * BYTES);
        assert_eq!(bcs::from_bytes::<V>(&bin).expect("decodes"), v);
        let json = serde_json::to_string(&v).expect("encodes");
        assert_eq!(serde_json::from_str::<V>(&json).expect("decodes"), v);
        // p itself (2^127 − 1) is not a canonical element.
        let mut bad = bin.clone();
        bad[1 + BYTES..1 + 2 * BYTES].copy_from_slice(&(u128::MAX >> 1).to_le_bytes());
        assert!(bcs::from_bytes::<V>(&bad).is_err());
        // A length that is not a multiple of 16.
        assert!(bcs::from_bytes::<V>(&[3, 1, 2, 3]).is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn fp() -> impl Strategy<Value = Fp> {
        prop_oneof![
            any::<u128>().prop_map(Fp::from_u128_reduced),
            (0u128..4).prop_map(Fp::from_u128_reduced),
            (0u128..4).prop_map(|d| Fp::from_u128_reduced(MODULUS - 1 - d)),
        ]
    }

    /// A slow but obviously right reference multiplication: double-and-add.
    fn mul_reference(a: Fp, b: Fp) -> Fp {
        let mut acc = Fp::ZERO;
        for bit in (0..127).rev() {
            acc += acc;
            if (b.0 >> bit) & 1 == 1 {
                acc += a;
            }
        }
        acc
    }

    proptest! {
        #[test]
        fn ring_axioms(a in fp(), b in fp(), c in fp()) {
            prop_assert_eq!(a + b, b + a);
            prop_assert_eq!(a * b, b * a);
            prop_assert_eq!((a + b) + c, a + (b + c));
            prop_assert_eq!((a * b) * c, a * (b * c));
            prop_assert_eq!(a * (b + c), a * b + a * c);
            prop_assert_eq!(a + Fp::ZERO, a);
            prop_assert_eq!(a * Fp::ONE, a);
            prop_assert_eq!(a + (-a), Fp::ZERO);
            prop_assert_eq!(a - b, a + (-b));
            prop_assert!(a.to_u128() < MODULUS);
        }

        #[test]
        fn mul_matches_reference(a in fp(), b in fp()) {
            prop_assert_eq!(a * b, mul_reference(a, b));
        }

        #[test]
        fn inverse_matches_fermat_ladder(a in fp()) {
            prop_assume!(a != Fp::ZERO);
            prop_assert_eq!(a.inverse()?, a.pow(MODULUS - 2));
        }

        #[test]
        fn inverse_is_inverse(a in fp()) {
            match a.inverse() {
                Ok(inv) => prop_assert_eq!(a * inv, Fp::ONE),
                Err(e) => { prop_assert_eq!(a, Fp::ZERO); prop_assert_eq!(e, Error::ZeroInverse); }
            }
        }

        #[test]
        fn sqrt_of_square(a in fp()) {
            let r = a.square().sqrt();
            prop_assert!(r == Some(a) || r == Some(-a));
        }

        #[test]
        fn sqrt_none_only_for_non_residues(a in fp()) {
            // Euler's criterion: a is a non-zero residue iff a^((p-1)/2) = 1.
            let euler = a.pow((MODULUS - 1) / 2);
            match a.sqrt() {
                Some(r) => { prop_assert_eq!(r.square(), a); prop_assert!(a == Fp::ZERO || euler == Fp::ONE); }
                None => prop_assert_eq!(euler, -Fp::ONE),
            }
        }

        #[test]
        fn pow_adds_exponents(a in fp(), e1 in any::<u64>(), e2 in any::<u64>()) {
            let (e1, e2) = (e1 as u128, e2 as u128);
            prop_assert_eq!(a.pow(e1) * a.pow(e2), a.pow(e1 + e2));
        }

        #[test]
        fn square_equals_mul(a in fp()) {
            prop_assert_eq!(a.square(), a * a);
            let top = Fp::ZERO - a;
            prop_assert_eq!(top.square(), top * top);
        }

        #[test]
        fn sqrt_many_matches_sqrt(values in proptest::collection::vec(fp(), 0..20)) {
            let mut many: Vec<Fp> = values.iter().map(|v| v.square()).collect();
            many.extend(values.iter().copied());
            let want: Vec<Fp> = many.iter().map(|v| v.sqrt().unwrap_or(Fp::ZERO)).collect();
            sqrt_many(&mut many);
            prop_assert_eq!(many, want);
        }

        #[test]
        fn batch_inverse_matches(values in proptest::collection::vec(fp(), 0..20)) {
            let mut batch = values.clone();
            let all_nonzero = values.iter().all(|v| *v != Fp::ZERO);
            match batch_inverse(&mut batch) {
                Ok(()) => {
                    prop_assert!(all_nonzero);
                    for (v, inv) in values.iter().zip(&batch) {
                        prop_assert_eq!(*v * *inv, Fp::ONE);
                    }
                }
                Err(_) => { prop_assert!(!all_nonzero); prop_assert_eq!(batch, values); }
            }
        }

        #[test]
        fn centered_roundtrip(v in -MAX_SIGNED..=MAX_SIGNED) {
            let x = Fp::from_i128(v)?;
            prop_assert_eq!(x.to_i128(), v);
        }

        #[test]
        fn centered_is_a_homomorphism(a in -(1i128 << 100)..(1i128 << 100), b in -(1i128 << 100)..(1i128 << 100)) {
            let (x, y) = (Fp::from_i128(a)?, Fp::from_i128(b)?);
            prop_assert_eq!((x + y).to_i128(), a + b);
            prop_assert_eq!((x - y).to_i128(), a - b);
            let (sa, sb) = (a >> 40, b >> 40);
            prop_assert_eq!((Fp::from_i128(sa)? * Fp::from_i128(sb)?).to_i128(), sa * sb);
        }

        #[test]
        fn bytes_roundtrip(a in fp()) {
            prop_assert_eq!(Fp::from_le_bytes(a.to_le_bytes())?, a);
            let json = serde_json::to_string(&a).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(json.clone(), format!("\"{}\"", a.to_u128()));
            let back: Fp = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, a);
            let bin = bcs::to_bytes(&a).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(bin.len(), BYTES);
            prop_assert_eq!(bcs::from_bytes::<Fp>(&bin).map_err(|e| TestCaseError::fail(e.to_string()))?, a);
        }
    }

    #[test]
    fn reduction_edges() {
        assert_eq!(Fp::from_u128_reduced(MODULUS), Fp::ZERO);
        assert_eq!(Fp::from_u128_reduced(u128::MAX), Fp::ONE);
        assert_eq!(Fp::from_u128_reduced(MODULUS + 5), Fp::from(5u64));
        let m1 = -Fp::ONE;
        assert_eq!(m1.to_u128(), MODULUS - 1);
        assert_eq!(m1 * m1, Fp::ONE);
        assert_eq!(m1 + Fp::ONE, Fp::ZERO);
        assert_eq!(Fp::from(-7i64).to_i128(), -7);
    }

    #[test]
    fn rejects_non_canonical() {
        assert_eq!(Fp::from_canonical(MODULUS), Err(Error::NonCanonicalField));
        assert!(Fp::from_le_bytes(u128::MAX.to_le_bytes()).is_err());
        assert!(Fp::from_i128(MAX_SIGNED + 1).is_err());
        assert!(Fp::from_i128(-MAX_SIGNED - 1).is_err());
        assert!(serde_json::from_str::<Fp>(&format!("\"{MODULUS}\"")).is_err());
        assert!(serde_json::from_str::<Fp>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Fp>("\"+1\"").is_err());
        assert!(serde_json::from_str::<Fp>("\"\"").is_err());
        assert!(serde_json::from_str::<Fp>("12").is_err());
        assert!(bcs::from_bytes::<Fp>(&MODULUS.to_le_bytes()).is_err());
        assert_eq!(Fp::from_127_bits(u128::MAX.to_le_bytes()), None);
    }

    #[test]
    fn random_is_reduced_and_varied() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let xs: Vec<Fp> = (0..256).map(|_| Fp::random(&mut rng)).collect();
        assert!(xs.iter().all(|x| x.to_u128() < MODULUS));
        // Each of the 127 bits is set in roughly half the samples (binomial(256, 1/2) stays
        // within 128 ± 64 except with probability far below 2^-40).
        for bit in 0..127 {
            let ones = xs.iter().filter(|x| (x.to_u128() >> bit) & 1 == 1).count();
            assert!((64..=192).contains(&ones), "bit {bit}: {ones} ones");
        }
    }
}
