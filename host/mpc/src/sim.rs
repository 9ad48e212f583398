//! An in-process harness: N custodians and the king in one process, deterministic, with
//! hooks to drop, delay, duplicate, replay or corrupt a custodian's message and to take
//! custodians down between the offline and online phases.
//!
//! It drives the same state machines the daemons drive ([`crate::offline`],
//! [`crate::online`], [`crate::king`], [`crate::output`]); only the transport is a loop.
//! Secret inputs are dealt by Shamir-sharing plaintext values ([`Simulation::share`]) — in
//! the product they come from the owner's sealed bundles.

use std::collections::BTreeMap;
use std::sync::Arc;

use qvm_core::encoding::Digest;
use qvm_core::pairwise::{KeyAgreementSecret, PairwiseKey};
use qvm_core::prss::PrssKeyring;
use qvm_core::prss::setup::deal_in_process;
use qvm_core::shamir::{Lagrange, ShamirParams, share};
use qvm_core::{Fp, PartyIndex, PartySet};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::committee::Committee;
use crate::king::KingSession;
use crate::msgs::{OpenedMsg, ShareMsg};
use crate::offline::{BatchRecord, BatchSpec, OfflineBatch, OfflineKing, catch_up};
use crate::online::{CustodianSession, Op, OpCost, SessionConfig, Step};
use crate::output::{MaskKeys, OutputCollector};
use crate::pool::{Pool, PoolGrant, PoolKind, PoolLedger};
use crate::shares::SharedVec;
use crate::stats::{Counters, Stats};
use crate::{Error, Result};

/// What happens to a custodian's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never delivered: the round stalls.
    Drop,
    /// Delivered after every other message of its round.
    Delay,
    /// Delivered twice in a row.
    Duplicate,
    /// Delivered again during the next round (a replay).
    Replay,
    /// Its first share is changed before delivery.
    Corrupt,
}

/// A fault on the message `from` sends in `round` of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// The custodian.
    pub from: PartyIndex,
    /// The round.
    pub round: u32,
    /// What happens.
    pub fault: Fault,
}

/// N custodians with their keys and pools, and the king's ledger.
pub struct Simulation {
    committee: Committee,
    keyrings: Vec<Arc<PrssKeyring>>,
    pairwise: Vec<BTreeMap<PartyIndex, PairwiseKey>>,
    pools: Vec<Pool>,
    /// How many batch records each custodian has applied to its pool.
    applied: Vec<usize>,
    records: Vec<BatchRecord>,
    ledger: PoolLedger,
    up: PartySet,
    rng: ChaCha20Rng,
    offline_stats: Stats,
    king_offline: Counters,
}

impl core::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Simulation")
            .field("committee", &self.committee)
            .field("up", &self.up)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// A K-of-N committee with fresh PRSS and key-agreement keys, from a seed.
    pub fn new(k: usize, n: usize, seed: u64) -> Result<Simulation> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let committee = Committee::new(Digest::from_bytes(id), n, k)?;
        let keyrings = deal_in_process(&committee.prss_params(), &mut rng)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let ka: Vec<KeyAgreementSecret> = (0..n)
            .map(|_| KeyAgreementSecret::generate(&mut rng))
            .collect();
        let parties: Vec<PartyIndex> = committee.all().iter().collect();
        let pairwise = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|j| *j != i)
                    .map(|j| (parties[j], ka[i].pairwise(&ka[j].public(), &committee.id())))
                    .collect()
            })
            .collect();
        Ok(Simulation {
            committee,
            keyrings,
            pairwise,
            pools: (0..n).map(|_| Pool::new()).collect(),
            applied: vec![0; n],
            records: Vec::new(),
            ledger: PoolLedger::new(),
            up: committee.all(),
            rng,
            offline_stats: Stats::default(),
            king_offline: Counters::default(),
        })
    }

    /// The committee.
    pub fn committee(&self) -> Committee {
        self.committee
    }

    /// Custodians currently up.
    pub fn up(&self) -> PartySet {
        self.up
    }

    /// The coordinator's pool ledger.
    pub fn ledger(&self) -> &PoolLedger {
        &self.ledger
    }

    /// One custodian's pool.
    pub fn pool(&self, p: PartyIndex) -> &Pool {
        &self.pools[p.get() as usize - 1]
    }

    /// Offline counters summed over custodians, and the king's.
    pub fn offline_stats(&self) -> (&Stats, Counters) {
        (&self.offline_stats, self.king_offline)
    }

    /// Takes a custodian down: it misses offline batches until brought up.
    pub fn take_down(&mut self, p: PartyIndex) {
        self.up = self.up.without(p);
    }

    /// Brings a custodian up; it catches up on missed batches from their public records.
    pub fn bring_up(&mut self, p: PartyIndex) -> Result<()> {
        self.up = self.up.with(p);
        let i = p.get() as usize - 1;
        while self.applied[i] < self.records.len() {
            let record = &self.records[self.applied[i]];
            let produced = catch_up(&self.keyrings[i], &self.committee, record)?;
            self.pools[i].add(record.spec.start, produced)?;
            self.applied[i] += 1;
        }
        Ok(())
    }

    /// Runs one offline batch among the custodians that are up (at least 2K − 1).
    pub fn offline(&mut self, kind: PoolKind, count: u32) -> Result<BatchRecord> {
        let members = self.up;
        let mut id = [0u8; 32];
        self.rng.fill_bytes(&mut id);
        let spec = BatchSpec {
            id: Digest::from_bytes(id),
            kind,
            count,
            start: self.ledger.next_batch_start(kind),
        };
        let mut king = OfflineKing::new(&self.committee, spec, members)?;
        let mut started = Vec::new();
        let mut published = None;
        for p in members.iter() {
            let (batch, msg) =
                OfflineBatch::start(&self.keyrings[p.get() as usize - 1], &self.committee, spec);
            started.push((p, batch));
            published = king.receive(msg)?;
        }
        let (opened, record) = published.ok_or_else(|| king.expire())?;
        for (p, batch) in started {
            let i = p.get() as usize - 1;
            let (_, produced, stats) = batch.finish(&opened)?;
            for (kind, c) in stats.by_op {
                self.offline_stats.entry(kind).merge(&c);
            }
            self.pools[i].add(spec.start, produced)?;
            self.applied[i] = self.records.len() + 1;
        }
        self.king_offline.merge(&king.counters());
        self.ledger.record(kind, record.yield_count());
        self.records.push(record.clone());
        Ok(record)
    }

    /// Shamir-shares plaintext values among all N custodians (the dealer stands in for the
    /// owner's sealed bundles): entry i − 1 is custodian i's shares.
    pub fn share(&mut self, values: &[Fp]) -> Result<Vec<SharedVec>> {
        let params = ShamirParams::new(self.committee.degree(), self.committee.n())?;
        let mut per_party = vec![Vec::with_capacity(values.len()); self.committee.n()];
        for v in values {
            for (i, s) in share(*v, params, &mut self.rng).into_iter().enumerate() {
                per_party[i].push(s.value());
            }
        }
        Ok(per_party.into_iter().map(SharedVec::new).collect())
    }

    /// Starts an online session among `members`, granted enough pooled items for `cost`.
    pub fn session(&mut self, members: PartySet, cost: OpCost) -> Result<OnlineSession> {
        self.committee.check_members(members, self.committee.k())?;
        if let Some(down) = members.difference(self.up).iter().next() {
            return Err(Error::NotInSession(down));
        }
        let grant = self.ledger.allocate(cost.triples, cost.bits)?;
        self.session_with_grant(members, grant)
    }

    /// Starts an online session with an explicit grant (to test reuse and dry pools).
    pub fn session_with_grant(
        &mut self,
        members: PartySet,
        grant: PoolGrant,
    ) -> Result<OnlineSession> {
        let mut id = [0u8; 32];
        self.rng.fill_bytes(&mut id);
        let config = SessionConfig {
            committee: self.committee,
            session: Digest::from_bytes(id),
            members,
        };
        let mut custodians = BTreeMap::new();
        for p in members.iter() {
            let i = p.get() as usize - 1;
            let material = self.pools[i].take(&grant)?;
            // The simulation's session id stands in for a ticket's hash.
            let masks = MaskKeys::derive(
                &config.committee,
                &config.session,
                members,
                p,
                &self.pairwise[i],
            )?;
            let session = CustodianSession::new(
                config,
                Arc::clone(&self.keyrings[i]),
                material,
                Arc::new(masks),
                0,
            )?;
            custodians.insert(p, session);
        }
        Ok(OnlineSession {
            king: KingSession::new(config.session, members, self.committee.degree())?,
            config,
            custodians,
            faults: Vec::new(),
            rejected: Vec::new(),
            transcript: Transcript::default(),
        })
    }
}

/// Every message of a session as it was delivered: what the king and the custodians saw.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Custodians' share messages, as the king received them.
    pub shares: Vec<ShareMsg>,
    /// The king's opened values, as every custodian received them.
    pub opened: Vec<OpenedMsg>,
}

/// One online session: the custodians of Q and the king.
#[derive(Debug)]
pub struct OnlineSession {
    config: SessionConfig,
    custodians: BTreeMap<PartyIndex, CustodianSession>,
    king: KingSession,
    faults: Vec<FaultRule>,
    /// Messages the king or a custodian refused, with why.
    pub rejected: Vec<Error>,
    /// Everything delivered.
    pub transcript: Transcript,
}

impl OnlineSession {
    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Adds a fault.
    pub fn inject(&mut self, rule: FaultRule) {
        self.faults.push(rule);
    }

    /// One custodian's session (for its counters).
    pub fn custodian(&self, p: PartyIndex) -> Option<&CustodianSession> {
        self.custodians.get(&p)
    }

    /// The parts, for a caller that moves the messages itself (over channels, say).
    pub fn into_parts(
        self,
    ) -> (
        SessionConfig,
        BTreeMap<PartyIndex, CustodianSession>,
        KingSession,
    ) {
        (self.config, self.custodians, self.king)
    }

    /// One custodian's session, to drive it by hand.
    pub fn custodian_mut(&mut self, p: PartyIndex) -> Option<&mut CustodianSession> {
        self.custodians.get_mut(&p)
    }

    /// The king, to drive it by hand.
    pub fn king_mut(&mut self) -> &mut KingSession {
        &mut self.king
    }

    /// The king's counters.
    pub fn king_counters(&self) -> Counters {
        self.king.counters()
    }

    fn fault(&self, from: PartyIndex, round: u32) -> Option<Fault> {
        self.faults
            .iter()
            .find(|r| r.from == from && r.round == round)
            .map(|r| r.fault)
    }

    /// Runs one batch: `ops(p)` gives custodian p's ops (the same ops on its own shares).
    pub fn batch(
        &mut self,
        mut ops: impl FnMut(PartyIndex) -> Vec<Op>,
    ) -> Result<BTreeMap<PartyIndex, Vec<SharedVec>>> {
        let mut outgoing = Vec::new();
        let mut done = BTreeMap::new();
        let members: Vec<PartyIndex> = self.custodians.keys().copied().collect();
        for p in &members {
            let session = self.custodians.get_mut(p).ok_or(Error::NotInSession(*p))?;
            match session.run(ops(*p))? {
                Step::Send(m) => outgoing.push(m),
                Step::Done(r) => {
                    done.insert(*p, r);
                }
            }
        }
        let mut replays: Vec<ShareMsg> = Vec::new();
        while !outgoing.is_empty() {
            let opened = self.deliver_round(core::mem::take(&mut outgoing), &mut replays)?;
            for p in &members {
                let session = self.custodians.get_mut(p).ok_or(Error::NotInSession(*p))?;
                match session.on_opened(&opened)? {
                    Step::Send(m) => outgoing.push(m),
                    Step::Done(r) => {
                        done.insert(*p, r);
                    }
                }
            }
        }
        Ok(done)
    }

    /// Delivers one round's messages to the king, applying faults; returns its answer or
    /// the error of a stalled or failed round.
    fn deliver_round(
        &mut self,
        msgs: Vec<ShareMsg>,
        replays: &mut Vec<ShareMsg>,
    ) -> Result<OpenedMsg> {
        let mut queue: Vec<ShareMsg> = Vec::new();
        let mut delayed = Vec::new();
        for stale in replays.drain(..) {
            queue.push(stale);
        }
        for mut m in msgs {
            match self.fault(m.from, m.round) {
                Some(Fault::Drop) => {}
                Some(Fault::Delay) => delayed.push(m),
                Some(Fault::Duplicate) => {
                    queue.push(m.clone());
                    queue.push(m);
                }
                Some(Fault::Replay) => {
                    replays.push(m.clone());
                    queue.push(m);
                }
                Some(Fault::Corrupt) => {
                    if let Some(s) = m.shares.first_mut() {
                        *s += Fp::ONE;
                    }
                    queue.push(m);
                }
                None => queue.push(m),
            }
        }
        queue.extend(delayed);
        let mut opened = None;
        for m in queue {
            self.transcript.shares.push(m.clone());
            match self.king.receive(m) {
                Ok(Some(o)) => opened = Some(o),
                Ok(None) => {}
                Err(
                    e @ (Error::Inconsistent { .. }
                    | Error::InconsistentUnattributed
                    | Error::Failed),
                ) => return Err(e),
                Err(e) => self.rejected.push(e),
            }
        }
        let opened = opened.ok_or_else(|| self.king.expire())?;
        self.transcript.opened.push(opened.clone());
        Ok(opened)
    }

    /// Delivers outputs: each custodian masks its shares, the collector reconstructs.
    pub fn reveal(&mut self, outputs: &BTreeMap<PartyIndex, SharedVec>) -> Result<Vec<Fp>> {
        let mut collector = OutputCollector::new(self.config);
        let mut result = None;
        for (p, session) in &mut self.custodians {
            let shares = outputs.get(p).ok_or(Error::Missing {
                missing: vec![*p],
                round: 0,
            })?;
            result = collector.receive(session.output_message(&[shares])?)?;
        }
        result.ok_or_else(|| Error::Missing {
            missing: collector.waiting_for(),
            round: 0,
        })
    }
}

/// Opens shares directly (checking consistency): the tests' view of what a result is,
/// without the output masks.
pub fn open(per_party: &BTreeMap<PartyIndex, SharedVec>, degree: usize) -> Result<Vec<Fp>> {
    let lagrange = Lagrange::new();
    let len = per_party.values().next().map_or(0, SharedVec::len);
    (0..len)
        .map(|e| {
            let points: Vec<(PartyIndex, Fp)> = per_party
                .iter()
                .map(|(p, v)| (*p, v.as_slice()[e]))
                .collect();
            Ok(lagrange.interpolate(&points, degree, 0)?)
        })
        .collect()
}
