//! Fixed-point encoding of reals in F_p (DESIGN.md §2).
//!
//! A real x with scale f is the integer round(x · 2^f) in the centered representation.
//! Every value the protocols handle is bounded by 2^k with k ≤ 64, which leaves room for the
//! κ = 40 bits of statistical masking in comparisons and truncation: k + κ + 1 ≤ 105 < 127.
//! Conversions from `f64` are checked: NaN, infinities and values outside (−2^k, 2^k) after
//! scaling are errors, never silently wrapped.

use crate::field::Fp;
use crate::{Error, Result};

/// The largest bound k any value may have (DESIGN.md §2).
pub const MAX_BOUND_BITS: u32 = 64;

/// The default scale f (fractional bits) of a program's fixed-point values.
pub const DEFAULT_SCALE: u32 = 16;

/// A fixed-point format: `scale` fractional bits, magnitude of the scaled integer below
/// 2^`bound_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FixedPoint {
    scale: u32,
    bound_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            scale: DEFAULT_SCALE,
            bound_bits: MAX_BOUND_BITS,
        }
    }
}

impl FixedPoint {
    /// A format with `scale` fractional bits and scaled values bounded by 2^`bound_bits`.
    /// Requires `scale < bound_bits ≤ 64`.
    pub fn new(scale: u32, bound_bits: u32) -> Result<FixedPoint> {
        if scale >= bound_bits || bound_bits > MAX_BOUND_BITS {
            return Err(Error::FixedParams);
        }
        Ok(FixedPoint { scale, bound_bits })
    }

    /// A format with `scale` fractional bits and the widest bound, 2^64.
    pub fn with_scale(scale: u32) -> Result<FixedPoint> {
        FixedPoint::new(scale, MAX_BOUND_BITS)
    }

    /// The scale f.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The bound k.
    pub fn bound_bits(&self) -> u32 {
        self.bound_bits
    }

    fn out_of_range(&self) -> Error {
        Error::FixedOutOfRange {
            scale: self.scale,
            bound_bits: self.bound_bits,
        }
    }

    /// round(x · 2^f) as an integer, rounding half to even, checked against the bound.
    pub fn to_scaled(&self, x: f64) -> Result<i128> {
        if !x.is_finite() {
            return Err(Error::NonFinite);
        }
        // Multiplying by a power of two is exact unless it overflows to infinity, which the
        // bound check below catches.
        let scaled = (x * pow2(self.scale)).round_ties_even();
        if scaled.abs() >= pow2(self.bound_bits) {
            return Err(self.out_of_range());
        }
        // |scaled| < 2^64 and it is an integer, so the conversion is exact.
        Ok(scaled as i128)
    }

    /// Encodes `x` as a field element.
    pub fn encode(&self, x: f64) -> Result<Fp> {
        Fp::from_i128(self.to_scaled(x)?)
    }

    /// Encodes an integer (no fractional part) as a field element at this scale.
    pub fn encode_int(&self, v: i64) -> Result<Fp> {
        let scaled = (v as i128)
            .checked_mul(1i128 << self.scale)
            .filter(|s| s.unsigned_abs() < 1u128 << self.bound_bits)
            .ok_or_else(|| self.out_of_range())?;
        Fp::from_i128(scaled)
    }

    /// Decodes a field element to the nearest `f64`; the element's centered value must be
    /// within the bound (otherwise it is not a value of this format: an error, not a guess).
    pub fn decode(&self, v: Fp) -> Result<f64> {
        let i = v.to_i128();
        if i.unsigned_abs() >= 1u128 << self.bound_bits {
            return Err(self.out_of_range());
        }
        Ok(i as f64 / pow2(self.scale))
    }
}

/// 2^e as an `f64`, exact for the exponents used here (e ≤ 64).
fn pow2(e: u32) -> f64 {
    (1u128 << e) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_non_finite_and_out_of_range() {
        let fx = FixedPoint::default();
        assert_eq!(fx.encode(f64::NAN), Err(Error::NonFinite));
        assert_eq!(fx.encode(f64::INFINITY), Err(Error::NonFinite));
        assert_eq!(fx.encode(f64::NEG_INFINITY), Err(Error::NonFinite));
        // 2^48 · 2^16 = 2^64: exactly the bound, so out of range.
        assert!(matches!(
            fx.encode(2f64.powi(48)),
            Err(Error::FixedOutOfRange { .. })
        ));
        assert!(matches!(
            fx.encode(-2f64.powi(48)),
            Err(Error::FixedOutOfRange { .. })
        ));
        assert!(fx.encode(2f64.powi(47)).is_ok());
        assert!(matches!(
            fx.encode(f64::MAX),
            Err(Error::FixedOutOfRange { .. })
        ));
        let small = FixedPoint::new(8, 20).expect("valid");
        assert!(small.encode(4095.0).is_ok());
        assert!(small.encode(4096.0).is_err());
        assert!(small.encode_int(4096).is_err());
        assert!(small.decode(Fp::from(1u64 << 20)).is_err());
    }

    #[test]
    fn params_are_checked() {
        assert_eq!(FixedPoint::new(16, 65), Err(Error::FixedParams));
        assert_eq!(FixedPoint::new(16, 16), Err(Error::FixedParams));
        assert!(FixedPoint::new(0, 1).is_ok());
    }

    #[test]
    fn rounding_is_half_to_even() {
        let fx = FixedPoint::with_scale(1).expect("valid");
        assert_eq!(fx.to_scaled(0.25), Ok(0));
        assert_eq!(fx.to_scaled(0.75), Ok(2));
        assert_eq!(fx.to_scaled(-0.75), Ok(-2));
    }

    proptest! {
        #[test]
        fn roundtrip_within_half_ulp(x in -1.0e9f64..1.0e9, scale in 0u32..34) {
            let fx = FixedPoint::with_scale(scale)?;
            let back = fx.decode(fx.encode(x)?)?;
            prop_assert!((back - x).abs() <= 0.5 / pow2(scale) + x.abs() * f64::EPSILON);
        }

        #[test]
        fn integers_are_exact(v in -(1i64 << 40)..(1i64 << 40)) {
            let fx = FixedPoint::default();
            prop_assert_eq!(fx.encode_int(v)?, fx.encode(v as f64)?);
            prop_assert_eq!(fx.decode(fx.encode_int(v)?)?, v as f64);
        }

        #[test]
        fn encoding_is_additive(a in -1.0e6f64..1.0e6, b in -1.0e6f64..1.0e6) {
            let fx = FixedPoint::default();
            let (ea, eb) = (fx.to_scaled(a)?, fx.to_scaled(b)?);
            prop_assert_eq!((fx.encode(a)? + fx.encode(b)?).to_i128(), ea + eb);
        }
    }
}
