//! Vectors of shares and the local (non-interactive) operations on them.
//!
//! Shamir sharing is linear: adding two sharings, adding or multiplying by public values,
//! dot products with public vectors, are all done share by share with no interaction.

use core::fmt;

use qvm_core::Fp;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// One custodian's shares of a vector of secrets. Prints as `<redacted>`, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SharedVec(Vec<Fp>);

impl fmt::Debug for SharedVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedVec(len {}, <redacted>)", self.0.len())
    }
}

/// Checks two operands have the same length.
pub(crate) fn same_len<T>(a: &[T], b: &[T]) -> Result<()> {
    if a.len() == b.len() {
        Ok(())
    } else {
        Err(Error::OpParams(format!(
            "operand lengths differ: {} and {}",
            a.len(),
            b.len()
        )))
    }
}

impl SharedVec {
    /// Wraps share values.
    pub fn new(values: Vec<Fp>) -> SharedVec {
        SharedVec(values)
    }

    /// The share values.
    pub fn as_slice(&self) -> &[Fp] {
        &self.0
    }

    /// Takes the share values out (the caller becomes responsible for them).
    pub fn into_vec(mut self) -> Vec<Fp> {
        core::mem::take(&mut self.0)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn zip_with(&self, other: &[Fp], f: impl Fn(Fp, Fp) -> Fp) -> Result<SharedVec> {
        same_len(&self.0, other)?;
        Ok(SharedVec(
            self.0.iter().zip(other).map(|(a, b)| f(*a, *b)).collect(),
        ))
    }

    /// [x] + [y].
    pub fn add(&self, other: &SharedVec) -> Result<SharedVec> {
        self.zip_with(&other.0, |a, b| a + b)
    }

    /// [x] − [y].
    pub fn sub(&self, other: &SharedVec) -> Result<SharedVec> {
        self.zip_with(&other.0, |a, b| a - b)
    }

    /// −[x].
    pub fn neg(&self) -> SharedVec {
        SharedVec(self.0.iter().map(|a| -*a).collect())
    }

    /// [x] + c for a public vector c (every custodian adds c: the secret moves by c).
    pub fn add_public(&self, c: &[Fp]) -> Result<SharedVec> {
        self.zip_with(c, |a, b| a + b)
    }

    /// [x] · c for a public vector c, element-wise.
    pub fn mul_public(&self, c: &[Fp]) -> Result<SharedVec> {
        self.zip_with(c, |a, b| a * b)
    }

    /// [x] · s for a public scalar s.
    pub fn scale(&self, s: Fp) -> SharedVec {
        SharedVec(self.0.iter().map(|a| *a * s).collect())
    }

    /// Σ c_i [x_i] for a public vector c: a vector of length 1.
    pub fn dot_public(&self, c: &[Fp]) -> Result<SharedVec> {
        same_len(&self.0, c)?;
        Ok(SharedVec(vec![
            self.0.iter().zip(c).map(|(a, b)| *a * *b).sum(),
        ]))
    }

    /// Σ [x_i]: a vector of length 1.
    pub fn sum(&self) -> SharedVec {
        SharedVec(vec![self.0.iter().sum()])
    }

    /// Elements `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> Result<SharedVec> {
        self.0
            .get(start..end)
            .map(|s| SharedVec(s.to_vec()))
            .ok_or_else(|| {
                Error::OpParams(format!(
                    "slice {start}..{end} of a vector of length {}",
                    self.0.len()
                ))
            })
    }

    /// The concatenation of `parts`.
    pub fn concat(parts: &[&SharedVec]) -> SharedVec {
        SharedVec(parts.iter().flat_map(|p| p.0.iter().copied()).collect())
    }

    /// A length-1 vector repeated `n` times.
    pub fn broadcast(&self, n: usize) -> Result<SharedVec> {
        match self.0.as_slice() {
            [x] => Ok(SharedVec(vec![*x; n])),
            _ => Err(Error::OpParams(format!(
                "broadcast needs a vector of length 1, got {}",
                self.0.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_lengths_are_checked() {
        let v = SharedVec::new(vec![Fp::from(123_456_789u64); 3]);
        assert_eq!(format!("{v:?}"), "SharedVec(len 3, <redacted>)");
        assert!(v.add(&SharedVec::new(vec![Fp::ONE])).is_err());
        assert!(v.slice(2, 4).is_err());
        assert!(v.broadcast(2).is_err());
        assert_eq!(v.sum().as_slice(), &[Fp::from(370_370_367u64)]);
    }
}
