//! Pools of offline material, their cursors, and grants (DESIGN.md §4).
//!
//! Every pooled item has a global index in its pool, the same at every custodian: batches
//! are appended in order ([`Pool::add`]), and a custodian that missed a batch rebuilds its
//! items from the public values ([`crate::offline::catch_up`]). An online session is granted
//! index ranges ([`PoolGrant`], named in the ticket); [`Pool::take`] hands out exactly those
//! items and records them as used, refusing any grant that overlaps a used range, so no
//! item is ever used twice — in whatever order concurrent sessions arrive. Items granted to
//! sessions this custodian did not serve stay until the front of the pool is used up. The
//! coordinator hands out ranges from a [`PoolLedger`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use qvm_core::Fp;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// Which pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PoolKind {
    /// Beaver triples ([a], [b], [ab]).
    Triples,
    /// Random bits [b], b ∈ {0, 1}.
    Bits,
}

impl PoolKind {
    /// Its index in per-pool arrays: triples 0, bits 1.
    pub fn slot(self) -> usize {
        match self {
            PoolKind::Triples => 0,
            PoolKind::Bits => 1,
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolKind::Triples => "triples",
            PoolKind::Bits => "bits",
        })
    }
}

/// One custodian's shares of a Beaver triple: [a], [b], [c] with c = ab.
#[derive(Clone, Copy, Default, PartialEq, Eq, Zeroize)]
pub struct Triple {
    /// Share of a.
    pub a: Fp,
    /// Share of b.
    pub b: Fp,
    /// Share of c = ab.
    pub c: Fp,
}

impl fmt::Debug for Triple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Triple(<redacted>)")
    }
}

/// A range of items in one pool: `start .. start + count`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First item.
    pub start: u64,
    /// Number of items.
    pub count: u64,
}

impl Range {
    /// One past the last item (saturating: a range from a hostile ticket must not
    /// overflow, it is refused as beyond the pool instead).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }
}

/// The pooled items a session may use (named in its ticket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolGrant {
    /// Beaver triples.
    pub triples: Range,
    /// Random bits.
    pub bits: Range,
}

/// The material a session took from the pool: exactly its grant.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub struct Material {
    pub(crate) triples: Vec<Triple>,
    pub(crate) bits: Vec<Fp>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Material({} triples, {} bits, <redacted>)",
            self.triples.len(),
            self.bits.len()
        )
    }
}

impl Material {
    /// Material handed over directly (for a custodian restoring a session, or tests).
    pub fn new(triples: Vec<Triple>, bits: Vec<Fp>) -> Material {
        Material { triples, bits }
    }
}

/// A sequence of items with a global index, and the ranges already handed out.
///
/// Sessions may start out of order (concurrent sessions reach a custodian in any order),
/// so a grant may lie above or below another: what must never happen is handing out an
/// item twice. Items handed out are zeroized in place and recorded as used ranges; the
/// front of the pool is dropped once it is entirely used.
#[derive(Default)]
struct Store<T: Zeroize + Copy + Default> {
    /// Global index of `items[0]`: every item below it was used or discarded.
    base: u64,
    items: VecDeque<T>,
    /// Used ranges at or above `base`, start → end, disjoint.
    used: BTreeMap<u64, u64>,
    /// One past the highest item handed out.
    high_water: u64,
}

impl<T: Zeroize + Copy + Default> Drop for Store<T> {
    fn drop(&mut self) {
        self.items.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl<T: Zeroize + Copy + Default> Store<T> {
    fn end(&self) -> u64 {
        self.base + self.items.len() as u64
    }

    fn add(&mut self, start: u64, mut items: Vec<T>) -> Result<()> {
        if start != self.end() {
            items.zeroize();
            return Err(Error::BadBatch("batch does not start where the pool ends"));
        }
        if self.items.capacity() - self.items.len() < items.len() {
            // Grown by hand: the deque's own growth would free its old buffer unwiped.
            let needed = (self.items.len() + items.len()).next_power_of_two();
            let mut grown = VecDeque::with_capacity(needed);
            grown.extend(self.items.iter().copied());
            self.items.iter_mut().for_each(Zeroize::zeroize);
            self.items = grown;
        }
        self.items.extend(items.iter().copied());
        // The batch's own buffer is freed here: wiped first.
        items.zeroize();
        self.drop_used_front();
        Ok(())
    }

    /// Wipes the first `n` items where they lie, then drops them (draining alone would
    /// wipe only the copies it yields and leave the values in the deque's buffer).
    fn drop_front(&mut self, n: usize) {
        self.items.range_mut(..n).for_each(Zeroize::zeroize);
        self.items.drain(..n);
    }

    /// The end of a used range `range` overlaps (or the base, if it starts below it).
    fn overlap(&self, range: Range) -> Option<u64> {
        if range.start < self.base {
            return Some(self.base);
        }
        self.used
            .range(..range.end())
            .next_back()
            .filter(|(_, end)| **end > range.start)
            .map(|(_, end)| *end)
    }

    /// Hands out `range`, which [`Pool::check`] has vetted.
    fn take(&mut self, range: Range) -> Vec<T> {
        if range.count == 0 {
            return Vec::new();
        }
        let from = (range.start - self.base) as usize;
        let out: Vec<T> = self
            .items
            .range_mut(from..from + range.count as usize)
            .map(|x| {
                let v = *x;
                x.zeroize();
                v
            })
            .collect();
        self.mark_used(range);
        out
    }

    /// Records `range` as used and drops the used front of the pool. The range may lie
    /// beyond the items held (a custodian learns of items another used before their
    /// batch reaches it): it is kept until they arrive.
    fn mark_used(&mut self, range: Range) {
        // A range wholly below the base is used already (and dropped).
        if range.count == 0 || range.end() <= self.base {
            return;
        }
        self.high_water = self.high_water.max(range.end());
        self.used.insert(range.start.max(self.base), range.end());
        self.drop_used_front();
    }

    /// Records every item below `x` as used: the custodian knows no ticket can still
    /// grant them. Used ranges starting below `x` merge into one from the base, which
    /// keeps the ranges disjoint.
    fn retire_below(&mut self, x: u64) {
        if x <= self.base {
            return;
        }
        let below: Vec<u64> = self.used.range(..x).map(|(s, _)| *s).collect();
        let mut end = x;
        for s in below {
            if let Some(e) = self.used.remove(&s) {
                end = end.max(e);
            }
        }
        self.used.insert(self.base, end);
        self.drop_used_front();
    }

    /// Drops every item held and continues at `start`, at or past the end.
    fn skip_to(&mut self, start: u64) -> Result<()> {
        if start < self.end() {
            return Err(Error::BadBatch("a pool skips only forward, past its end"));
        }
        self.drop_front(self.items.len());
        let below = std::mem::take(&mut self.used);
        let (before, after) = {
            let mut b = below;
            let a = b.split_off(&start);
            (b, a)
        };
        self.used = after;
        // A used range crossing `start` keeps its part at or above it.
        if let Some((_, &end)) = before.iter().next_back().filter(|(_, e)| **e > start) {
            let e = self.used.get(&start).map_or(end, |x| (*x).max(end));
            self.used.insert(start, e);
        }
        self.base = start;
        Ok(())
    }

    /// Drops used ranges at the front, as far as the items held reach: the base never
    /// passes the end, so the next batch still starts where the pool ends.
    fn drop_used_front(&mut self) {
        while let Some(&end) = self.used.get(&self.base) {
            let n = (end.min(self.end()) - self.base) as usize;
            if n == 0 {
                return;
            }
            self.used.remove(&self.base);
            self.drop_front(n);
            let reached = self.base + n as u64;
            if end > reached {
                // The rest of the range is beyond the items held.
                self.used.insert(reached, end);
            }
            self.base = reached;
        }
    }
}

/// One custodian's pools.
#[derive(Default)]
pub struct Pool {
    triples: Store<Triple>,
    bits: Store<Fp>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("triples", &(self.triples.base..self.triples.end()))
            .field("bits", &(self.bits.base..self.bits.end()))
            .finish()
    }
}

/// Material produced by an offline batch.
pub enum Produced {
    /// Beaver triples.
    Triples(Vec<Triple>),
    /// Random bits.
    Bits(Vec<Fp>),
}

impl fmt::Debug for Produced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Produced::Triples(t) => write!(f, "Produced::Triples({})", t.len()),
            Produced::Bits(b) => write!(f, "Produced::Bits({})", b.len()),
        }
    }
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Appends a batch whose first item has global index `start`; batches must arrive in
    /// order.
    pub fn add(&mut self, start: u64, produced: Produced) -> Result<()> {
        match produced {
            Produced::Triples(t) => self.triples.add(start, t),
            Produced::Bits(b) => self.bits.add(start, b),
        }
    }

    /// One past the last item of a pool.
    pub fn end(&self, kind: PoolKind) -> u64 {
        match kind {
            PoolKind::Triples => self.triples.end(),
            PoolKind::Bits => self.bits.end(),
        }
    }

    /// One past the highest item handed out from a pool.
    pub fn high_water(&self, kind: PoolKind) -> u64 {
        match kind {
            PoolKind::Triples => self.triples.high_water,
            PoolKind::Bits => self.bits.high_water,
        }
    }

    /// Records `range` as used without handing it out: how a custodian restores what it
    /// handed out from durable storage after a restart, once it has rebuilt its batches.
    pub fn mark_used(&mut self, kind: PoolKind, range: Range) {
        match kind {
            PoolKind::Triples => self.triples.mark_used(range),
            PoolKind::Bits => self.bits.mark_used(range),
        }
    }

    /// The index of a pool's first item held: every item below it was used or retired.
    pub fn base(&self, kind: PoolKind) -> u64 {
        match kind {
            PoolKind::Triples => self.triples.base,
            PoolKind::Bits => self.bits.base,
        }
    }

    /// Retires every item of a pool below `x`, held or still to come: items no ticket
    /// can grant any more (every ticket that could has expired), which would otherwise
    /// pin the rest of the pool in memory behind them — a grant whose session never
    /// reached this custodian (failed over, or a coordinator that crashed after
    /// granting), or items used under tickets it never saw.
    pub fn retire_below(&mut self, kind: PoolKind, x: u64) {
        match kind {
            PoolKind::Triples => self.triples.retire_below(x),
            PoolKind::Bits => self.bits.retire_below(x),
        }
    }

    /// Drops every item a pool holds and continues at item `start` (at or past its end):
    /// at a restart, where the custodian's next batch record starts when it pruned the
    /// ones between, every item in them used or retired.
    pub fn skip_to(&mut self, kind: PoolKind, start: u64) -> Result<()> {
        match kind {
            PoolKind::Triples => self.triples.skip_to(start),
            PoolKind::Bits => self.bits.skip_to(start),
        }
    }

    /// Hands out exactly the granted items, refusing reuse and reporting a dry pool.
    /// Nothing changes if either pool refuses.
    pub fn take(&mut self, grant: &PoolGrant) -> Result<Material> {
        self.check_grant(grant)?;
        Ok(Material {
            triples: self.triples.take(grant.triples),
            bits: self.bits.take(grant.bits),
        })
    }

    /// What [`Pool::take`] would refuse, changing nothing: admission asks before it
    /// commits, so a session that cannot take its items records no debit and no audit
    /// entry for work that never ran.
    pub fn check_grant(&self, grant: &PoolGrant) -> Result<()> {
        self.check(PoolKind::Triples, grant.triples)?;
        self.check(PoolKind::Bits, grant.bits)
    }

    fn check(&self, kind: PoolKind, range: Range) -> Result<()> {
        if range.count == 0 {
            return Ok(());
        }
        let store_overlap = match kind {
            PoolKind::Triples => self.triples.overlap(range),
            PoolKind::Bits => self.bits.overlap(range),
        };
        if let Some(high_water) = store_overlap {
            return Err(Error::PoolReuse {
                pool: kind,
                start: range.start,
                high_water,
            });
        }
        let end = self.end(kind);
        if range.end() > end {
            return Err(Error::PoolDry {
                pool: kind,
                needed: range.count,
                available: end.saturating_sub(range.start),
            });
        }
        Ok(())
    }
}

/// Seconds past a ticket's expiry before the items below its grant are retired.
pub const RETIRE_MARGIN_SECS: u64 = 5;

/// Grants whose tickets are waiting to expire, for retiring the items below them.
///
/// The coordinator allocates items in order and every ticket expires, so once a ticket
/// granting items from `s` has expired, so has every ticket granting items below `s`:
/// they were allocated, and so issued, before it. Tickets issued within the same second
/// may be allocated out of order, hence [`RETIRE_MARGIN_SECS`]. Custodians retire those
/// items from their pools and prune their batch records. (The margin covers clock steps
/// and admission latency; issuance itself is serialized.)
///
/// Each entry is (when to retire, the first item of each pool the grant names, 0 for
/// none).
#[derive(Debug, Default)]
pub struct Retirements {
    pending: VecDeque<(u64, [u64; 2])>,
}

impl Retirements {
    /// Notes a grant of a ticket that expires at `expires_at` (Unix seconds). Grants noted
    /// out of order, or within the same second, merge into the latest entry (retired no
    /// earlier than it, which is only later than needed): the queue holds about one entry
    /// per second of ticket lifetime.
    pub fn note(&mut self, expires_at: u64, grant: &PoolGrant) {
        let at = expires_at.saturating_add(RETIRE_MARGIN_SECS);
        let mut starts = [0; 2];
        for (kind, r) in [
            (PoolKind::Triples, grant.triples),
            (PoolKind::Bits, grant.bits),
        ] {
            if r.count > 0 {
                starts[kind.slot()] = r.start;
            }
        }
        if starts == [0, 0] {
            return;
        }
        match self.pending.back_mut() {
            Some((back, s)) if at <= *back => {
                s[0] = s[0].max(starts[0]);
                s[1] = s[1].max(starts[1]);
            }
            _ => self.pending.push_back((at, starts)),
        }
    }

    /// The points below which items can be retired at `now`, per pool (0: nothing new).
    pub fn due(&mut self, now: u64) -> [u64; 2] {
        let mut below = [0; 2];
        while let Some((at, starts)) = self.pending.front().copied() {
            if at >= now {
                break;
            }
            self.pending.pop_front();
            below[0] = below[0].max(starts[0]);
            below[1] = below[1].max(starts[1]);
        }
        below
    }
}

/// The coordinator's view of the pools: how much was produced and how much handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLedger {
    produced: [u64; 2],
    allocated: [u64; 2],
}

fn slot(kind: PoolKind) -> usize {
    match kind {
        PoolKind::Triples => 0,
        PoolKind::Bits => 1,
    }
}

impl PoolLedger {
    /// An empty ledger.
    pub fn new() -> PoolLedger {
        PoolLedger::default()
    }

    /// Global index at which the next batch of `kind` starts.
    pub fn next_batch_start(&self, kind: PoolKind) -> u64 {
        self.produced[slot(kind)]
    }

    /// Records a finished batch of `count` items.
    pub fn record(&mut self, kind: PoolKind, count: u64) {
        self.produced[slot(kind)] += count;
    }

    /// Items produced and not yet handed out.
    pub fn available(&self, kind: PoolKind) -> u64 {
        self.produced[slot(kind)] - self.allocated[slot(kind)]
    }

    /// Grants the next `triples` triples and `bits` bits, or says which pool is dry.
    pub fn allocate(&mut self, triples: u64, bits: u64) -> Result<PoolGrant> {
        for (kind, needed) in [(PoolKind::Triples, triples), (PoolKind::Bits, bits)] {
            if self.available(kind) < needed {
                return Err(Error::PoolDry {
                    pool: kind,
                    needed,
                    available: self.available(kind),
                });
            }
        }
        let grant = PoolGrant {
            triples: Range {
                start: self.allocated[0],
                count: triples,
            },
            bits: Range {
                start: self.allocated[1],
                count: bits,
            },
        };
        self.allocated[0] += triples;
        self.allocated[1] += bits;
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(n: usize) -> Produced {
        Produced::Bits((0..n as u64).map(Fp::from).collect())
    }

    #[test]
    fn grants_are_used_once() -> Result<()> {
        let mut pool = Pool::new();
        pool.add(0, bits(10))?;
        assert!(matches!(pool.add(5, bits(1)), Err(Error::BadBatch(_))));
        let g = |start, count| PoolGrant {
            bits: Range { start, count },
            ..PoolGrant::default()
        };
        let m = pool.take(&g(2, 3))?;
        assert_eq!(m.bits, vec![Fp::from(2u64), Fp::from(3u64), Fp::from(4u64)]);
        assert_eq!(pool.high_water(PoolKind::Bits), 5);
        assert_eq!(
            pool.take(&g(4, 1)).err(),
            Some(Error::PoolReuse {
                pool: PoolKind::Bits,
                start: 4,
                high_water: 5
            })
        );
        assert_eq!(
            pool.take(&g(8, 5)).err(),
            Some(Error::PoolDry {
                pool: PoolKind::Bits,
                needed: 5,
                available: 2
            })
        );
        // A refused grant changes nothing.
        assert_eq!(pool.take(&g(5, 5))?.bits.len(), 5);
        let triples = PoolGrant {
            triples: Range { start: 0, count: 1 },
            ..PoolGrant::default()
        };
        assert!(matches!(
            pool.take(&triples),
            Err(Error::PoolDry {
                pool: PoolKind::Triples,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn grants_may_arrive_out_of_order_but_never_twice() -> Result<()> {
        let mut pool = Pool::new();
        pool.add(0, bits(10))?;
        let g = |start, count| PoolGrant {
            bits: Range { start, count },
            ..PoolGrant::default()
        };
        // A later grant first, then an earlier one: both served, nothing twice.
        assert_eq!(
            pool.take(&g(6, 2))?.bits,
            vec![Fp::from(6u64), Fp::from(7u64)]
        );
        assert_eq!(
            pool.take(&g(0, 3))?.bits,
            vec![Fp::from(0u64), Fp::from(1u64), Fp::from(2u64)]
        );
        assert!(matches!(
            pool.take(&g(7, 1)),
            Err(Error::PoolReuse { high_water: 8, .. })
        ));
        assert!(matches!(
            pool.take(&g(2, 2)),
            Err(Error::PoolReuse { high_water: 3, .. })
        ));
        assert_eq!(pool.take(&g(3, 3))?.bits.len(), 3);
        assert_eq!(pool.high_water(PoolKind::Bits), 8);
        // Restored after a restart: used ranges are refused.
        let mut restored = Pool::new();
        restored.add(0, bits(10))?;
        restored.mark_used(PoolKind::Bits, Range { start: 4, count: 2 });
        assert!(matches!(
            restored.take(&g(5, 1)),
            Err(Error::PoolReuse { .. })
        ));
        assert_eq!(restored.take(&g(6, 1))?.bits, vec![Fp::from(6u64)]);
        // Learned again after the front was dropped (another custodian's marks): no-op.
        restored.mark_used(PoolKind::Bits, Range { start: 0, count: 4 });
        restored.mark_used(PoolKind::Bits, Range { start: 1, count: 2 });
        assert_eq!(restored.take(&g(7, 1))?.bits, vec![Fp::from(7u64)]);
        assert!(matches!(
            restored.take(&g(2, 1)),
            Err(Error::PoolReuse { .. })
        ));
        Ok(())
    }

    #[test]
    fn items_used_elsewhere_before_their_batch_arrives_wait_for_it() -> Result<()> {
        let mut pool = Pool::new();
        pool.add(0, bits(4))?;
        let g = |start, count| PoolGrant {
            bits: Range { start, count },
            ..PoolGrant::default()
        };
        assert_eq!(pool.take(&g(0, 4))?.bits.len(), 4);
        // Another custodian used 4..6 and 6..9, of a batch not here yet.
        pool.mark_used(PoolKind::Bits, Range { start: 4, count: 2 });
        pool.mark_used(PoolKind::Bits, Range { start: 6, count: 3 });
        assert_eq!(pool.end(PoolKind::Bits), 4);
        pool.add(4, bits(10))?;
        assert_eq!(pool.end(PoolKind::Bits), 14);
        assert!(matches!(pool.take(&g(8, 1)), Err(Error::PoolReuse { .. })));
        assert_eq!(
            pool.take(&g(9, 2))?.bits,
            vec![Fp::from(5u64), Fp::from(6u64)]
        );
        // A range reaching past a batch is dropped in part, the rest when the next comes.
        pool.mark_used(
            PoolKind::Bits,
            Range {
                start: 11,
                count: 6,
            },
        );
        pool.add(14, bits(5))?;
        assert!(matches!(pool.take(&g(16, 1)), Err(Error::PoolReuse { .. })));
        assert_eq!(
            pool.take(&g(17, 2))?.bits,
            vec![Fp::from(3u64), Fp::from(4u64)]
        );
        Ok(())
    }

    #[test]
    fn retired_items_free_the_pool_behind_them() -> Result<()> {
        let mut pool = Pool::new();
        pool.add(0, bits(10))?;
        let g = |start, count| PoolGrant {
            bits: Range { start, count },
            ..PoolGrant::default()
        };
        // 0..2 never used (a session that never came), 2..4 and 6..7 used, 8..12 used
        // elsewhere (past the items held): the front stays pinned at 0.
        pool.take(&g(2, 2))?;
        pool.take(&g(6, 1))?;
        pool.mark_used(PoolKind::Bits, Range { start: 8, count: 4 });
        assert_eq!(pool.base(PoolKind::Bits), 0);
        // Retiring below 7 frees everything up to the next unused item, 7.
        pool.retire_below(PoolKind::Bits, 7);
        assert_eq!(pool.base(PoolKind::Bits), 7);
        assert!(matches!(pool.take(&g(5, 1)), Err(Error::PoolReuse { .. })));
        assert_eq!(pool.take(&g(7, 1))?.bits, vec![Fp::from(7u64)]);
        // Items 8..12 reach past the held ones: the base stops at the end, and the next
        // batch starts there; its first two items are the used range's tail.
        assert_eq!(pool.base(PoolKind::Bits), 10);
        pool.add(10, bits(4))?;
        assert_eq!(pool.base(PoolKind::Bits), 12);
        // Retiring below a point beyond the items held waits for them too; again and
        // lower is nothing new.
        pool.retire_below(PoolKind::Bits, 20);
        pool.retire_below(PoolKind::Bits, 3);
        assert_eq!(pool.base(PoolKind::Bits), 14);
        pool.add(14, bits(10))?;
        assert_eq!(pool.base(PoolKind::Bits), 20);
        assert_eq!(pool.take(&g(20, 1))?.bits, vec![Fp::from(6u64)]);
        Ok(())
    }

    #[test]
    fn a_pool_skips_forward_only() -> Result<()> {
        let mut pool = Pool::new();
        pool.mark_used(PoolKind::Bits, Range { start: 3, count: 2 });
        pool.mark_used(PoolKind::Bits, Range { start: 9, count: 2 });
        pool.skip_to(PoolKind::Bits, 8)?;
        assert!(matches!(pool.add(0, bits(1)), Err(Error::BadBatch(_))));
        pool.add(8, bits(4))?;
        let g = |start, count| PoolGrant {
            bits: Range { start, count },
            ..PoolGrant::default()
        };
        assert_eq!(pool.take(&g(8, 1))?.bits, vec![Fp::from(0u64)]);
        assert!(matches!(pool.take(&g(9, 1)), Err(Error::PoolReuse { .. })));
        // Not back into the items held; past them, dropping them.
        assert!(matches!(
            pool.skip_to(PoolKind::Bits, 11),
            Err(Error::BadBatch(_))
        ));
        // A used range crossing the skip point keeps its part above it.
        pool.mark_used(
            PoolKind::Bits,
            Range {
                start: 18,
                count: 4,
            },
        );
        pool.skip_to(PoolKind::Bits, 20)?;
        assert_eq!(pool.end(PoolKind::Bits), 20);
        assert!(matches!(pool.take(&g(10, 1)), Err(Error::PoolReuse { .. })));
        pool.add(20, bits(4))?;
        assert!(matches!(pool.take(&g(21, 1)), Err(Error::PoolReuse { .. })));
        assert_eq!(pool.take(&g(22, 2))?.bits.len(), 2);
        let mut empty = Pool::new();
        empty.skip_to(PoolKind::Triples, 5)?;
        assert!(matches!(
            empty.skip_to(PoolKind::Triples, 4),
            Err(Error::BadBatch(_))
        ));
        Ok(())
    }

    fn grant(t: u64, b: u64) -> PoolGrant {
        PoolGrant {
            triples: Range {
                start: t,
                count: if t > 0 { 10 } else { 0 },
            },
            bits: Range {
                start: b,
                count: if b > 0 { 5 } else { 0 },
            },
        }
    }

    #[test]
    fn grants_retire_what_lies_below_them_once_expired_with_the_margin() {
        let mut r = Retirements::default();
        r.note(100, &grant(50, 20));
        r.note(100, &grant(80, 0)); // same second: merged
        r.note(101, &grant(90, 30));
        r.note(99, &grant(200, 200)); // learned late: retired with the latest entry
        r.note(100, &grant(0, 0)); // no pooled items: nothing to note
        assert_eq!(r.pending.len(), 2);
        assert_eq!(r.due(100 + RETIRE_MARGIN_SECS), [0, 0]);
        assert_eq!(r.due(101 + RETIRE_MARGIN_SECS), [80, 20]);
        assert_eq!(r.due(102 + RETIRE_MARGIN_SECS), [200, 200]);
        assert_eq!(r.due(10_000), [0, 0]);
        assert!(r.pending.is_empty());
    }
    #[test]
    fn ledger_allocates_in_order_and_reports_dry() -> Result<()> {
        let mut ledger = PoolLedger::new();
        assert!(matches!(
            ledger.allocate(1, 0),
            Err(Error::PoolDry {
                pool: PoolKind::Triples,
                ..
            })
        ));
        ledger.record(PoolKind::Triples, 10);
        ledger.record(PoolKind::Bits, 4);
        let a = ledger.allocate(6, 4)?;
        let b = ledger.allocate(4, 0)?;
        assert_eq!(
            (a.triples.start, b.triples.start, b.triples.count),
            (0, 6, 4)
        );
        assert!(matches!(
            ledger.allocate(0, 1),
            Err(Error::PoolDry {
                pool: PoolKind::Bits,
                needed: 1,
                available: 0
            })
        ));
        Ok(())
    }
}
