//! Custodian indices and sets of custodians.
//!
//! Custodian i evaluates its shares at x = i (DESIGN.md §2), so an index is never 0. A
//! committee has at most [`MAX_PARTIES`] custodians, which lets a set of custodians be one
//! 64-bit mask: cheap to copy, hash and use as a cache key.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::field::Fp;
use crate::{Error, Result};

/// The largest committee size N supported.
pub const MAX_PARTIES: u8 = 64;

/// A custodian's index in its committee, in `1..=MAX_PARTIES`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PartyIndex(u8);

impl PartyIndex {
    /// The index `i`, if `1 ≤ i ≤ MAX_PARTIES`.
    pub fn new(i: u32) -> Result<PartyIndex> {
        if (1..=MAX_PARTIES as u32).contains(&i) {
            Ok(PartyIndex(i as u8))
        } else {
            Err(Error::PartyOutOfRange {
                index: i,
                max: MAX_PARTIES as u32,
            })
        }
    }

    /// The index as a number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The evaluation point x = i of this custodian's shares.
    pub fn point(self) -> Fp {
        Fp::from(self.0)
    }

    /// All indices `1..=n`.
    pub fn range(n: u8) -> impl Iterator<Item = PartyIndex> {
        (1..=n.min(MAX_PARTIES)).map(PartyIndex)
    }

    fn bit(self) -> u64 {
        1u64 << (self.0 - 1)
    }
}

impl<'de> Deserialize<'de> for PartyIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        PartyIndex::new(u8::deserialize(d)? as u32).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for PartyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl fmt::Display for PartyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A set of custodians, as a bit mask (bit i−1 for custodian i).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartySet(u64);

impl PartySet {
    /// The empty set.
    pub const EMPTY: PartySet = PartySet(0);

    /// The set {1, …, n}.
    pub fn first(n: u8) -> PartySet {
        PartyIndex::range(n).collect()
    }

    /// The raw mask.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether `i` is a member.
    pub fn contains(self, i: PartyIndex) -> bool {
        self.0 & i.bit() != 0
    }

    /// The set with `i` added.
    #[must_use]
    pub fn with(self, i: PartyIndex) -> PartySet {
        PartySet(self.0 | i.bit())
    }

    /// The set with `i` removed.
    #[must_use]
    pub fn without(self, i: PartyIndex) -> PartySet {
        PartySet(self.0 & !i.bit())
    }

    /// The number of members.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members of `self` that are not in `other`.
    #[must_use]
    pub fn difference(self, other: PartySet) -> PartySet {
        PartySet(self.0 & !other.0)
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(self, other: PartySet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The lowest-indexed member.
    pub fn lowest(self) -> Option<PartyIndex> {
        (self.0 != 0).then(|| PartyIndex(self.0.trailing_zeros() as u8 + 1))
    }

    /// The members in increasing order.
    pub fn iter(self) -> impl Iterator<Item = PartyIndex> {
        (0..64u8)
            .filter(move |b| self.0 >> b & 1 == 1)
            .map(|b| PartyIndex(b + 1))
    }
}

impl FromIterator<PartyIndex> for PartySet {
    fn from_iter<I: IntoIterator<Item = PartyIndex>>(iter: I) -> PartySet {
        iter.into_iter().fold(PartySet::EMPTY, PartySet::with)
    }
}

impl fmt::Debug for PartySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bounds() {
        assert!(PartyIndex::new(0).is_err());
        assert!(PartyIndex::new(65).is_err());
        assert_eq!(PartyIndex::new(64).map(PartyIndex::get), Ok(64));
        assert!(serde_json::from_str::<PartyIndex>("0").is_err());
        assert_eq!(
            serde_json::from_str::<PartyIndex>("3")
                .map(PartyIndex::get)
                .ok(),
            Some(3)
        );
    }

    #[test]
    fn set_operations() -> Result<()> {
        let s: PartySet = [1, 3, 64]
            .into_iter()
            .map(PartyIndex::new)
            .collect::<Result<_>>()?;
        assert_eq!(s.len(), 3);
        assert_eq!(s.lowest(), Some(PartyIndex::new(1)?));
        assert_eq!(
            s.iter().map(PartyIndex::get).collect::<Vec<_>>(),
            vec![1, 3, 64]
        );
        assert!(s.contains(PartyIndex::new(64)?));
        assert!(!s.contains(PartyIndex::new(2)?));
        assert!(s.without(PartyIndex::new(3)?).is_subset(s));
        assert_eq!(PartySet::first(5).difference(s).len(), 3);
        assert_eq!(format!("{:?}", s), "{P1, P3, P64}");
        Ok(())
    }
}
