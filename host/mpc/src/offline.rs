//! The offline phase: Beaver triples and random bits from PRSS plus public values
//! (DESIGN.md §4; Damgård–Nielsen 2007 §4 for triples).
//!
//! Needs 2t + 1 custodians (S, the batch set). With ctx = (committee, batch id):
//!
//! - **Triples.** PRSS gives [a]_t, [b]_t and a double sharing ([r]_t, [R]_2t). Each member
//!   of S sends d_i = a_i·b_i − R_i, a degree-2t share of ab − r; the king interpolates
//!   D = ab − r (uniform: r masks it) and publishes it; c_i = D + r_i is a degree-t share of
//!   ab.
//! - **Bits.** PRSS gives [r]_t and a zero sharing [z]_2t. Each member sends r_i² + z_i, a
//!   degree-2t share of r² re-randomized by z; the king opens s = r² and publishes a square
//!   root u of s. Then r = ±u with equal probability and b = (r/u + 1)/2 is a uniform bit:
//!   b_i = (r_i·u⁻¹ + 1)·2⁻¹. (Opening r² directly from degree-2t shares is the technique of
//!   MPyC's `random_bits`; it needs no triple.) If s = 0 the king publishes u = 0 and every
//!   custodian drops that item.
//!
//! Everything a custodian holds is PRSS-derived plus the published values, so a custodian
//! outside S (down during the batch) rebuilds its shares from the [`BatchRecord`]
//! ([`catch_up`]) and the pools stay aligned at every custodian.

use qvm_core::encoding::Digest;
use qvm_core::field::batch_inverse;
use qvm_core::prss::{PrssContext, PrssKeyring, PrssSession};
use qvm_core::{Fp, PartySet};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::committee::Committee;
use crate::king::KingSession;
use crate::msgs::{OpenedMsg, ShareMsg};
use crate::pool::{PoolKind, Produced, Triple};
use crate::stats::{Counters, OpKind, Stats};
use crate::{Error, Result};

/// PRSS op counters within a batch session.
const CTR_A: u64 = 0;
const CTR_B: u64 = 1;
const CTR_R: u64 = 2;

/// What a batch produces and where its items go in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSpec {
    /// The batch's session id (fresh per batch; binds the PRSS context).
    pub id: Digest,
    /// Triples or bits.
    pub kind: PoolKind,
    /// Items to attempt.
    pub count: u32,
    /// Pool index of the batch's first item.
    pub start: u64,
}

/// What the king publishes for a batch: enough for any custodian to rebuild its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch.
    pub spec: BatchSpec,
    /// D = ab − r per triple, or the root u per bit (0 marks a dropped bit).
    #[serde(with = "qvm_core::field::fp_vec")]
    pub public: Vec<Fp>,
}

impl BatchRecord {
    /// Items this batch adds to the pool (bits with u = 0 are dropped).
    pub fn yield_count(&self) -> u64 {
        match self.spec.kind {
            PoolKind::Triples => self.public.len() as u64,
            PoolKind::Bits => self.public.iter().filter(|u| **u != Fp::ZERO).count() as u64,
        }
    }
}

fn context(committee: &Committee, spec: &BatchSpec) -> PrssContext {
    PrssContext {
        committee: committee.id(),
        session: spec.id,
    }
}

/// A custodian's PRSS values for a batch (its shares' ingredients: wiped on drop).
#[derive(Zeroize, ZeroizeOnDrop)]
struct Derived {
    /// Triples: a, b, r per item. Bits: r per item.
    a: Vec<Fp>,
    b: Vec<Fp>,
    r: Vec<Fp>,
}

fn derive(prss: &PrssSession, spec: &BatchSpec) -> Derived {
    let n = spec.count;
    match spec.kind {
        PoolKind::Triples => Derived {
            a: prss.random_vec(CTR_A, n),
            b: prss.random_vec(CTR_B, n),
            r: prss.random_vec(CTR_R, n),
        },
        PoolKind::Bits => Derived {
            a: Vec::new(),
            b: Vec::new(),
            r: prss.random_vec(CTR_A, n),
        },
    }
}

/// The degree-2t shares a member of S sends.
fn degree_2t_shares(prss: &PrssSession, spec: &BatchSpec, d: &Derived) -> Vec<Fp> {
    match spec.kind {
        // d_i = a_i b_i − R_i with R_i = r_i + z_i.
        PoolKind::Triples => {
            let z = Zeroizing::new(prss.zero_vec(CTR_R, spec.count));
            (0..z.len())
                .map(|i| d.a[i] * d.b[i] - (d.r[i] + z[i]))
                .collect()
        }
        // r_i² + z_i.
        PoolKind::Bits => {
            let z = Zeroizing::new(prss.zero_vec(CTR_B, spec.count));
            d.r.iter()
                .zip(z.iter())
                .map(|(r, z)| r.square() + *z)
                .collect()
        }
    }
}

/// Combines the PRSS values with the published ones.
fn assemble(spec: &BatchSpec, d: Derived, public: &[Fp]) -> Result<Produced> {
    if public.len() != spec.count as usize {
        return Err(Error::WrongLength {
            expected: spec.count as usize,
            got: public.len(),
            from: None,
        });
    }
    Ok(match spec.kind {
        PoolKind::Triples => Produced::Triples(
            (0..public.len())
                .map(|i| Triple {
                    a: d.a[i],
                    b: d.b[i],
                    c: public[i] + d.r[i],
                })
                .collect(),
        ),
        PoolKind::Bits => {
            let kept: Vec<usize> = (0..public.len())
                .filter(|i| public[*i] != Fp::ZERO)
                .collect();
            let mut inv: Vec<Fp> = kept.iter().map(|i| public[*i]).collect();
            batch_inverse(&mut inv)?;
            let half = Fp::from(2u64).inverse()?;
            Produced::Bits(
                kept.iter()
                    .zip(inv)
                    .map(|(i, u_inv)| (d.r[*i] * u_inv + Fp::ONE) * half)
                    .collect(),
            )
        }
    })
}

/// A custodian's side of one offline batch.
#[derive(Debug)]
pub struct OfflineBatch {
    spec: BatchSpec,
    derived: DerivedSlot,
    stats: Stats,
}

/// Derived values kept between the two steps (redacted from `Debug`).
struct DerivedSlot(Derived);

impl core::fmt::Debug for DerivedSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn offline_kind(kind: PoolKind) -> OpKind {
    match kind {
        PoolKind::Triples => OpKind::OfflineTriples,
        PoolKind::Bits => OpKind::OfflineBits,
    }
}

impl OfflineBatch {
    /// Starts a batch as a member of the batch set: derives the PRSS values and returns the
    /// degree-2t shares to send to the king.
    pub fn start(
        keyring: &PrssKeyring,
        committee: &Committee,
        spec: BatchSpec,
    ) -> (OfflineBatch, ShareMsg) {
        let prss = keyring.session(&context(committee, &spec));
        let derived = derive(&prss, &spec);
        let shares = degree_2t_shares(&prss, &spec, &derived);
        let mut stats = Stats::default();
        let c = stats.entry(offline_kind(spec.kind));
        c.ops += 1;
        c.elements += spec.count as u64;
        c.sent += shares.len() as u64;
        let msg = ShareMsg {
            session: spec.id,
            round: 0,
            from: keyring.party(),
            shares,
        };
        (
            OfflineBatch {
                spec,
                derived: DerivedSlot(derived),
                stats,
            },
            msg,
        )
    }

    /// What this batch makes, and where.
    pub fn spec(&self) -> &BatchSpec {
        &self.spec
    }

    /// Finishes with the king's published values: the batch record and this custodian's
    /// items. A message for another batch or round, or of the wrong length, is refused.
    pub fn finish(mut self, opened: &OpenedMsg) -> Result<(BatchRecord, Produced, Stats)> {
        if opened.session != self.spec.id {
            return Err(Error::WrongSession {
                expected: self.spec.id,
                got: opened.session,
            });
        }
        if opened.round != 0 {
            return Err(Error::WrongRound {
                expected: 0,
                got: opened.round,
            });
        }
        let c = self.stats.entry(offline_kind(self.spec.kind));
        c.received += opened.values.len() as u64;
        c.rounds += 1;
        let produced = assemble(&self.spec, self.derived.0, &opened.values)?;
        let record = BatchRecord {
            spec: self.spec,
            public: opened.values.clone(),
        };
        Ok((record, produced, self.stats))
    }
}

/// Rebuilds a custodian's items of a batch it did not take part in, from the record.
pub fn catch_up(
    keyring: &PrssKeyring,
    committee: &Committee,
    record: &BatchRecord,
) -> Result<Produced> {
    let prss = keyring.session(&context(committee, &record.spec));
    let derived = derive(&prss, &record.spec);
    assemble(&record.spec, derived, &record.public)
}

/// The king's side of one offline batch: opens the degree-2t values and, for bits,
/// publishes square roots instead of the squares.
#[derive(Debug)]
pub struct OfflineKing {
    spec: BatchSpec,
    king: KingSession,
}

impl OfflineKing {
    /// A king for `spec` among `members`, which must be at least 2t + 1 custodians.
    pub fn new(committee: &Committee, spec: BatchSpec, members: PartySet) -> Result<OfflineKing> {
        committee.check_members(members, committee.offline_quorum())?;
        Ok(OfflineKing {
            spec,
            king: KingSession::new(spec.id, members, 2 * committee.degree())?,
        })
    }

    /// Takes a member's shares; once all arrived, returns the message to publish to the
    /// members and the record to keep (and hand to custodians that catch up later).
    pub fn receive(&mut self, msg: ShareMsg) -> Result<Option<(OpenedMsg, BatchRecord)>> {
        if msg.shares.len() != self.spec.count as usize {
            return Err(Error::WrongLength {
                expected: self.spec.count as usize,
                got: msg.shares.len(),
                from: Some(msg.from),
            });
        }
        let Some(mut opened) = self.king.receive(msg)? else {
            return Ok(None);
        };
        if self.spec.kind == PoolKind::Bits {
            // A non-residue cannot come from honest shares; publish 0 (drop) for it and for
            // s = 0 alike.
            qvm_core::field::sqrt_many(&mut opened.values);
        }
        let record = BatchRecord {
            spec: self.spec,
            public: opened.values.clone(),
        };
        Ok(Some((opened, record)))
    }

    /// Custodians still to send.
    pub fn waiting_for(&self) -> Vec<qvm_core::PartyIndex> {
        self.king.waiting_for()
    }

    /// The deadline passed: names the missing custodians.
    pub fn expire(&mut self) -> Error {
        self.king.expire()
    }

    /// The king's counters.
    pub fn counters(&self) -> Counters {
        self.king.counters()
    }
}
