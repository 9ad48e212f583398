//! The online phase, custodian side: batched vector ops with any K custodians
//! (DESIGN.md §4).
//!
//! The caller says which ops run together in a batch ([`CustodianSession::run`]); the batch
//! advances all of them in lockstep, and each interactive round is one [`ShareMsg`] to the
//! king carrying every op's values to open, then one [`OpenedMsg`] back. A batch therefore
//! takes as many rounds as its deepest op, whatever its width: scoring ten thousand inputs
//! costs the rounds of one.
//!
//! Ops and their rounds (m = bits reduced, log = ⌈log2⌉):
//!
//! | op | rounds | triples per element | bits per element |
//! |---|---|---|---|
//! | `Mul`, `Select` | 1 | 1 | 0 |
//! | `TruncPr(k, m)` | 1 | 0 | m |
//! | `Mod2m(k, m)` | 1 + log m | BitLT(m) | m |
//! | `Ltz(k)` | 1 + log(k − 1) | BitLT(k − 1) | k − 1 |
//! | `Eqz(k)` | 1 + log k | k − 1 | k |
//!
//! BitLT(m) ≈ 2m is the multiplications of a comparison tree ([`protocols`]).

mod protocols;

use qvm_core::encoding::Digest;
use qvm_core::prss::{PrssContext, PrssKeyring, PrssSession};
use qvm_core::{Fp, PartyIndex, PartySet};
use serde::{Deserialize, Serialize};
use std::cell::OnceCell;
use std::sync::Arc;

use crate::committee::Committee;
use crate::msgs::{OpenedMsg, OutputMsg, ShareMsg};
use crate::output::MaskKeys;
use crate::pool::{Material, PoolKind, Triple};
use crate::shares::{SharedVec, same_len};
use crate::stats::{OpKind, Stats};
use crate::{Error, KAPPA, MAX_K, Result};

pub use protocols::{bitlt_mults, tree_rounds};

/// PRSS op counters at or above this are the session's own `random` calls; below are
/// the masks of ops.
const RANDOM_COUNTER_BASE: u64 = 1 << 62;

/// One op of a batch, on this custodian's shares.
#[derive(Debug, Clone)]
pub enum Op {
    /// [x·y], element-wise.
    Mul {
        /// Left operand.
        x: SharedVec,
        /// Right operand.
        y: SharedVec,
    },
    /// [c ? x : y] = c·(x − y) + y for shared bits c.
    Select {
        /// Condition bits.
        c: SharedVec,
        /// Value where c = 1.
        x: SharedVec,
        /// Value where c = 0.
        y: SharedVec,
    },
    /// [x < 0] for x ∈ [−2^(k−1), 2^(k−1)).
    Ltz {
        /// Values.
        x: SharedVec,
        /// Bit bound k.
        k: u32,
    },
    /// [x = 0] for x ∈ [−2^(k−1), 2^(k−1)).
    Eqz {
        /// Values.
        x: SharedVec,
        /// Bit bound k.
        k: u32,
    },
    /// ⌊x / 2^m⌋ or ⌊x / 2^m⌋ + 1 (probabilistic rounding), x ∈ [−2^(k−1), 2^(k−1)).
    TruncPr {
        /// Values.
        x: SharedVec,
        /// Bit bound k.
        k: u32,
        /// Bits to drop.
        m: u32,
    },
    /// x mod 2^m ∈ [0, 2^m), x ∈ [−2^(k−1), 2^(k−1)).
    Mod2m {
        /// Values.
        x: SharedVec,
        /// Bit bound k.
        k: u32,
        /// Modulus exponent.
        m: u32,
    },
    /// `len` pooled random bits.
    RandomBits {
        /// How many.
        len: usize,
    },
}

/// Pooled items, rounds and elements an op needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCost {
    /// Beaver triples.
    pub triples: u64,
    /// Random bits.
    pub bits: u64,
    /// Interactive rounds.
    pub rounds: u32,
    /// Field elements this custodian sends (and receives).
    pub elements: u64,
}

fn check_k(k: u32, min: u32) -> Result<()> {
    if (min..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(Error::OpParams(format!(
            "bit bound k = {k} outside {min}..={MAX_K}"
        )))
    }
}

fn check_m(k: u32, m: u32) -> Result<()> {
    check_k(k, 2)?;
    if (1..k).contains(&m) {
        Ok(())
    } else {
        Err(Error::OpParams(format!(
            "m = {m} must satisfy 1 <= m < k = {k}"
        )))
    }
}

impl Op {
    /// The op's kind, for accounting.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Mul { .. } => OpKind::Mul,
            Op::Select { .. } => OpKind::Select,
            Op::Ltz { .. } => OpKind::Ltz,
            Op::Eqz { .. } => OpKind::Eqz,
            Op::TruncPr { .. } => OpKind::TruncPr,
            Op::Mod2m { .. } => OpKind::Mod2m,
            Op::RandomBits { .. } => OpKind::RandomBits,
        }
    }

    /// Elements in the op's result.
    pub fn len(&self) -> usize {
        match self {
            Op::Mul { x, .. } | Op::Select { x, .. } => x.len(),
            Op::Ltz { x, .. } | Op::Eqz { x, .. } | Op::TruncPr { x, .. } | Op::Mod2m { x, .. } => {
                x.len()
            }
            Op::RandomBits { len } => *len,
        }
    }

    /// Whether the op has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks bounds and operand lengths.
    pub fn validate(&self) -> Result<()> {
        let same = |a: &SharedVec, b: &SharedVec| same_len(a.as_slice(), b.as_slice());
        match self {
            Op::Mul { x, y } => same(x, y),
            Op::Select { c, x, y } => same(c, x).and(same(x, y)),
            Op::Ltz { k, .. } => check_k(*k, 2),
            Op::Eqz { k, .. } => check_k(*k, 1),
            Op::TruncPr { k, m, .. } | Op::Mod2m { k, m, .. } => check_m(*k, *m),
            Op::RandomBits { .. } => Ok(()),
        }
    }

    /// What the op costs: pooled items, rounds, elements sent.
    pub fn cost(&self) -> OpCost {
        let n = self.len() as u64;
        if n == 0 {
            return OpCost::default();
        }
        let mod2m = |m: u32| OpCost {
            triples: n * bitlt_mults(m),
            bits: n * m as u64,
            rounds: 1 + tree_rounds(m),
            elements: n + 2 * n * bitlt_mults(m),
        };
        match self {
            Op::Mul { .. } | Op::Select { .. } => OpCost {
                triples: n,
                bits: 0,
                rounds: 1,
                elements: 2 * n,
            },
            Op::TruncPr { m, .. } => OpCost {
                triples: 0,
                bits: n * *m as u64,
                rounds: 1,
                elements: n,
            },
            Op::Mod2m { m, .. } => mod2m(*m),
            Op::Ltz { k, .. } => mod2m(k - 1),
            Op::Eqz { k, .. } => OpCost {
                triples: n * (*k as u64 - 1),
                bits: n * *k as u64,
                rounds: 1 + tree_rounds(*k),
                elements: n + 2 * n * (*k as u64 - 1),
            },
            Op::RandomBits { .. } => OpCost {
                triples: 0,
                bits: n,
                rounds: 0,
                elements: 0,
            },
        }
    }
}

/// What the session set, session id and committee of an online session are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// The committee.
    pub committee: Committee,
    /// The session id (from the ticket).
    pub session: Digest,
    /// Q: the custodians taking part (at least K).
    pub members: PartySet,
}

/// What to do next after a step.
#[derive(Debug)]
pub enum Step {
    /// Send this to the king and wait for its answer.
    Send(ShareMsg),
    /// The batch finished: one result per op, in order.
    Done(Vec<SharedVec>),
}

/// Where a custodian's ops draw their pooled items and PRSS masks from.
pub(crate) struct Resources<'a> {
    material: &'a Material,
    triple_pos: &'a mut usize,
    bit_pos: &'a mut usize,
    prss: &'a PrssSession,
    counter: &'a mut u64,
}

impl Resources<'_> {
    fn take_triples(&mut self, n: usize) -> Result<Vec<Triple>> {
        take(
            &self.material.triples,
            self.triple_pos,
            n,
            PoolKind::Triples,
        )
    }

    fn take_bits(&mut self, n: usize) -> Result<Vec<Fp>> {
        take(&self.material.bits, self.bit_pos, n, PoolKind::Bits)
    }

    /// A bounded PRSS integer in [0, C(N,t)·2^bits) per element, under a fresh op counter.
    fn bounded(&mut self, len: usize, bits: u32) -> Result<Vec<Fp>> {
        let counter = *self.counter;
        *self.counter += 1;
        (0..len as u32)
            .map(|i| self.prss.bounded(counter, i, bits).map_err(Error::from))
            .collect()
    }
}

/// The next `n` items from a cursor into granted material.
fn take<T: Copy>(items: &[T], pos: &mut usize, n: usize, pool: PoolKind) -> Result<Vec<T>> {
    let slice = items
        .get(*pos..*pos + n)
        .ok_or(Error::GrantExhausted { pool })?;
    *pos += n;
    Ok(slice.to_vec())
}

struct Running {
    kinds: Vec<OpKind>,
    machines: Vec<Option<Box<dyn protocols::Protocol>>>,
    results: Vec<Option<Vec<Fp>>>,
    /// Values each op put in the message of the current round.
    open_lens: Vec<usize>,
}

/// One custodian's online session.
pub struct CustodianSession {
    party: PartyIndex,
    config: SessionConfig,
    /// The committee's PRSS keys; the session's PRF keys are derived from them on first
    /// use (`prss`): a local-only program never uses them, and deriving them (an HKDF
    /// per subset) was a twentieth of a custodian's work per batch item of one.
    keyring: Arc<PrssKeyring>,
    prss: OnceCell<PrssSession>,
    material: Material,
    triple_pos: usize,
    bit_pos: usize,
    counter: u64,
    random_counter: u64,
    round: u32,
    running: Option<Running>,
    failed: bool,
    outputs_delivered: bool,
    masks: Arc<MaskKeys>,
    item: u32,
    stats: Stats,
}

impl core::fmt::Debug for CustodianSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CustodianSession")
            .field("party", &self.party)
            .field("session", &self.config.session)
            .field("members", &self.config.members)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

/// The session's PRSS, derived on first use.
fn prss_of<'a>(
    cell: &'a OnceCell<PrssSession>,
    keyring: &PrssKeyring,
    config: &SessionConfig,
) -> &'a PrssSession {
    cell.get_or_init(|| {
        keyring.session(&PrssContext {
            committee: config.committee.id(),
            session: config.session,
        })
    })
}

impl CustodianSession {
    /// A session for the custodian whose PRSS keyring is given. `material` is what
    /// [`crate::pool::Pool::take`] handed out for the session's grant; `masks` are this
    /// custodian's output-mask keys for the ticket, shared by its batch items,
    /// of which this session is number `item`.
    pub fn new(
        config: SessionConfig,
        keyring: Arc<PrssKeyring>,
        material: Material,
        masks: Arc<MaskKeys>,
        item: u32,
    ) -> Result<CustodianSession> {
        let party = keyring.party();
        config
            .committee
            .check_members(config.members, config.committee.k())?;
        if !config.members.contains(party) {
            return Err(Error::NotInSession(party));
        }
        Ok(CustodianSession {
            party,
            config,
            keyring,
            prss: OnceCell::new(),
            material,
            triple_pos: 0,
            bit_pos: 0,
            counter: 0,
            random_counter: RANDOM_COUNTER_BASE,
            round: 0,
            running: None,
            failed: false,
            outputs_delivered: false,
            masks,
            item,
            stats: Stats::default(),
        })
    }

    /// This custodian.
    pub fn party(&self) -> PartyIndex {
        self.party
    }

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Counters per op kind.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Shares of `len` fresh random field elements (PRSS, no interaction).
    pub fn random(&mut self, len: usize) -> SharedVec {
        let counter = self.random_counter;
        self.random_counter += 1;
        let prss = prss_of(&self.prss, &self.keyring, &self.config);
        SharedVec::new(prss.random_vec(counter, len as u32))
    }

    /// Starts a batch. Returns the first message for the king, or the results at once when
    /// no op needs a round.
    pub fn run(&mut self, ops: Vec<Op>) -> Result<Step> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.running.is_some() {
            return Err(Error::Busy);
        }
        ops.iter().try_for_each(Op::validate)?;
        let n = ops.len();
        let mut running = Running {
            kinds: ops.iter().map(Op::kind).collect(),
            machines: Vec::with_capacity(n),
            results: vec![None; n],
            open_lens: vec![0; n],
        };
        for op in ops {
            let c = self.stats.entry(op.kind());
            c.ops += 1;
            c.elements += op.len() as u64;
            running.machines.push(Some(protocols::machine(op)));
        }
        self.running = Some(running);
        self.drive(None)
    }

    /// Takes the king's answer to the current round. A message for another session or
    /// round, or of the wrong length, is refused and changes nothing.
    pub fn on_opened(&mut self, msg: &OpenedMsg) -> Result<Step> {
        if self.failed {
            return Err(Error::Failed);
        }
        let running = self.running.as_ref().ok_or(Error::NotWaiting)?;
        if msg.session != self.config.session {
            return Err(Error::WrongSession {
                expected: self.config.session,
                got: msg.session,
            });
        }
        if msg.round.checked_add(1) != Some(self.round) {
            return Err(Error::WrongRound {
                expected: self.round.saturating_sub(1),
                got: msg.round,
            });
        }
        let expected: usize = running.open_lens.iter().sum();
        if msg.values.len() != expected {
            return Err(Error::WrongLength {
                expected,
                got: msg.values.len(),
                from: None,
            });
        }
        self.drive(Some(&msg.values))
    }

    fn drive(&mut self, opened: Option<&[Fp]>) -> Result<Step> {
        let result = self.advance_all(opened);
        if result.is_err() {
            self.failed = true;
            self.running = None;
        }
        result
    }

    fn advance_all(&mut self, opened: Option<&[Fp]>) -> Result<Step> {
        let Some(running) = self.running.as_mut() else {
            return Err(Error::NotWaiting);
        };
        let mut res = Resources {
            material: &self.material,
            triple_pos: &mut self.triple_pos,
            bit_pos: &mut self.bit_pos,
            prss: prss_of(&self.prss, &self.keyring, &self.config),
            counter: &mut self.counter,
        };
        let mut out = Vec::new();
        let mut offset = 0;
        for i in 0..running.machines.len() {
            let Some(machine) = running.machines[i].as_mut() else {
                continue;
            };
            let input = opened.map(|v| {
                let s = &v[offset..offset + running.open_lens[i]];
                offset += running.open_lens[i];
                s
            });
            let c = self.stats.by_op.entry(running.kinds[i]).or_default();
            if input.is_some() {
                c.received += running.open_lens[i] as u64;
            }
            match machine.advance(input, &mut res)? {
                protocols::Next::Open(v) => {
                    c.rounds += 1;
                    c.sent += v.len() as u64;
                    running.open_lens[i] = v.len();
                    out.extend(v);
                }
                protocols::Next::Done(v) => {
                    running.open_lens[i] = 0;
                    running.results[i] = Some(v);
                    running.machines[i] = None;
                }
            }
        }
        if out.is_empty() {
            let Some(running) = self.running.take() else {
                return Err(Error::NotWaiting);
            };
            let results = running
                .results
                .into_iter()
                .map(|r| SharedVec::new(r.unwrap_or_default()))
                .collect();
            return Ok(Step::Done(results));
        }
        let msg = ShareMsg {
            session: self.config.session,
            round: self.round,
            from: self.party,
            shares: out,
        };
        self.round += 1;
        Ok(Step::Send(msg))
    }

    /// Masks this custodian's shares of all the outputs it delivers, concatenated, for
    /// delivery (DESIGN.md §4). Once per session: masks depend on the ticket,
    /// the item and the element's position, so a second message would reuse them and the difference of the
    /// two would reveal a difference of shares.
    pub fn output_message(&mut self, outputs: &[&SharedVec]) -> Result<OutputMsg> {
        if self.outputs_delivered {
            return Err(Error::OutputsDelivered);
        }
        let all: Vec<Fp> = outputs
            .iter()
            .flat_map(|v| v.as_slice().iter().copied())
            .collect();
        let masked = self.masks.mask(self.item, &all);
        self.outputs_delivered = true;
        Ok(OutputMsg {
            session: self.config.session,
            from: self.party,
            masked,
        })
    }

    /// Pooled items left unused from the grant (a session that ends early leaves them; they
    /// are never reused).
    pub fn unused(&self) -> (usize, usize) {
        (
            self.material.triples.len() - self.triple_pos,
            self.material.bits.len() - self.bit_pos,
        )
    }
}

/// The bounded-mask bits for an op reducing m of k bits: k + κ − m.
pub(crate) fn mask_bits(k: u32, m: u32) -> u32 {
    k + KAPPA - m
}
