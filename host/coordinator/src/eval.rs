//! An evaluation, the coordinator's side (DESIGN.md §8): the first line of checks and
//! limits, a ticket in the identity's chain, the session round by round with the king,
//! failover to another session set, reconstruction of the granted outputs, the receipt.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use qvm_api::audit::Event;
use qvm_api::request::{
    DigestedRequest, Receipt, RevealedOutput, SignedReceipt, SignedRequest, check_input,
};
use qvm_api::ticket::{SignedTicket, Ticket};
use qvm_api::wire::{Refusal, RefusalKind, RoundInput, SessionEvent, StartSessionRef, pool_slot};
use qvm_api::{MAX_ATTEMPTS, MAX_BATCH, MAX_CLOCK_SKEW_SECS};
use qvm_core::encoding::{Digest, to_canonical};
use qvm_core::{PartyIndex, PartySet};
use qvm_mpc::king::KingSession;
use qvm_mpc::online::SessionConfig;
use qvm_mpc::output::OutputCollector;
use qvm_mpc::pool::PoolKind;
use qvm_node::client::CallError;
use qvm_package::policy::Identity;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::coordinator::{ActiveProgram, Coordinator, CustodianLink};
use crate::metrics::{IdentityLabel, ProgramLabel};
use crate::store::{self, StoreError, dec, enc, now_ms};

/// What a client gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalResponse {
    /// Per input, the granted outputs (empty when they are sealed to the client).
    pub outputs: Vec<Vec<RevealedOutput>>,
    /// For identities whose outputs are for the client only: each custodian's masked
    /// output shares, sealed to the request's `reveal_to` key. The client opens them and
    /// reconstructs; the coordinator never saw an output.
    #[serde(default)]
    pub sealed: Vec<SealedDelivery>,
    /// The coordinator's signed receipt.
    pub receipt: SignedReceipt,
}

/// One custodian's delivery, sealed to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedDelivery {
    /// The custodian.
    pub custodian: u8,
    /// ECIES to the request's `reveal_to` key, AAD `qvm_api::wire::reveal_aad`.
    #[serde(with = "qvm_core::encoding::bytes_serde")]
    pub ciphertext: Vec<u8>,
}

/// What a session delivered.
enum Delivered {
    Revealed(Vec<Vec<RevealedOutput>>),
    Sealed(Vec<SealedDelivery>),
}

fn refuse(kind: RefusalKind, msg: impl Into<String>) -> Refusal {
    Refusal::new(kind, msg)
}

/// A checked request.
struct Checked {
    program: Arc<ActiveProgram>,
    identity: Identity,
    request: Digest,
    cost: u64,
    /// Cost units the identity had spent this period when the request was checked.
    spent: u64,
}

/// The client's signature, being verified on a blocking thread while the coordinator
/// checks the rest and prepares the ticket: about 0.1 ms of the single-request path that
/// would otherwise come first. Nothing is committed before it holds ([`Pending::confirm`]
/// runs inside the ticket's transaction).
struct Pending {
    answer: std::sync::mpsc::Receiver<bool>,
    verified: Option<bool>,
    confirmed: bool,
}

impl Pending {
    fn start(req: DigestedRequest, key: qvm_core::sign::VerifyingKey) -> Pending {
        let (tx, answer) = std::sync::mpsc::sync_channel(1);
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(req.verify(&key).is_ok());
        });
        Pending {
            answer,
            verified: None,
            confirmed: false,
        }
    }

    /// Waits for the signature check (a few tens of microseconds at most, the rest
    /// having run meanwhile).
    fn signature(&mut self) -> Result<(), Refusal> {
        let ok = *self
            .verified
            .get_or_insert_with(|| self.answer.recv().unwrap_or(false));
        if ok {
            Ok(())
        } else {
            Err(refuse(
                RefusalKind::BadClientSignature,
                "the client's signature does not verify",
            ))
        }
    }

    /// The signature holds and the identity's rate allows the request: the request is
    /// the client's, and the ticket may commit. Once per request, whatever the attempts.
    fn confirm(
        &mut self,
        c: &Coordinator,
        program: &str,
        checked: &Checked,
    ) -> Result<(), Refusal> {
        if self.confirmed {
            return Ok(());
        }
        self.signature()?;
        c.take_token(program, &checked.identity)?;
        self.confirmed = true;
        Ok(())
    }
}

/// How a session attempt failed.
enum Failure {
    /// The request is at fault (or the program): no retry.
    Final(Refusal),
    /// Retry without `excluded`. Of them, `faulty` failed or hung and are quarantined;
    /// the others only disagreed with this coordinator's view (a version not active there
    /// yet, a ticket for items they hold used or retired), which says nothing about their
    /// health: quarantining one would stop every session set that needs it.
    Custodians {
        excluded: PartySet,
        faulty: PartySet,
        reason: Refusal,
    },
}

impl Failure {
    /// These custodians failed or hung.
    fn custodians(faulty: PartySet, reason: Refusal) -> Failure {
        Failure::Custodians {
            excluded: faulty,
            faulty,
            reason,
        }
    }
}

impl Coordinator {
    /// Evaluates a signed request end to end.
    pub async fn evaluate(self: &Arc<Self>, req: SignedRequest) -> Result<EvalResponse, Refusal> {
        let t0 = Instant::now();
        let result = self.evaluate_inner(req).await;
        match &result {
            Ok((resp, program)) => {
                self.metrics.latency.observe(t0.elapsed().as_secs_f64());
                self.metrics
                    .rounds
                    .observe(resp.receipt.receipt.rounds as f64);
                self.metrics
                    .evaluations
                    .get_or_create(&ProgramLabel {
                        program: program.clone(),
                    })
                    .inc();
            }
            Err(r) => {
                self.metrics.refused(r.kind);
                tracing::info!(kind = r.kind.as_str(), reason = %r.message, "refused");
            }
        }
        result.map(|(r, _)| r)
    }

    async fn evaluate_inner(
        self: &Arc<Self>,
        req: SignedRequest,
    ) -> Result<(EvalResponse, String), Refusal> {
        let t0 = Instant::now();
        let req = Arc::new(req);
        let (checked, mut pending) = match self.check(&req) {
            Ok(c) => c,
            Err(r) => {
                self.audit_refusal(&req, &r);
                return Err(r);
            }
        };
        let mut excluded = PartySet::EMPTY;
        let mut last = None;
        for attempt in 0..MAX_ATTEMPTS {
            let t_check = t0.elapsed();
            let program = req.request.program.as_str();
            let issued = self.pick(&checked, excluded).and_then(|members| {
                self.issue(&req, &checked, members, attempt, &mut || {
                    pending.confirm(self, program, &checked)
                })
            });
            let ticket = match issued {
                Ok(t) => t,
                Err(r) => {
                    // Whatever else failed, a request that is not the client's says so.
                    let r = pending.signature().err().unwrap_or(r);
                    if matches!(
                        r.kind,
                        RefusalKind::BadClientSignature | RefusalKind::RateLimited
                    ) {
                        self.audit_refusal(&req, &r);
                    }
                    return Err(r);
                }
            };
            let t_issue = t0.elapsed();
            match self.run(&req, &ticket, &checked).await {
                Ok((outputs, rounds)) => {
                    let t_run = t0.elapsed();
                    let resp = self.answer(&checked, &ticket, outputs, rounds)?;
                    tracing::debug!(
                        check_us = t_check.as_micros() as u64,
                        issue_us = (t_issue - t_check).as_micros() as u64,
                        session_us = (t_run - t_issue).as_micros() as u64,
                        answer_us = (t0.elapsed() - t_run).as_micros() as u64,
                        "evaluated"
                    );
                    return Ok((resp, checked.program.manifest.program.clone()));
                }
                Err(Failure::Final(r)) => return Err(r),
                Err(Failure::Custodians {
                    excluded: without,
                    faulty,
                    reason: r,
                }) => {
                    tracing::warn!(failed = ?without, reason = %r.message, attempt, "session failed; retrying with another set");
                    for c in &self.custodians {
                        if faulty.contains(c.index) {
                            c.fail();
                        }
                    }
                    self.metrics.retries.inc();
                    excluded = excluded.iter().chain(without.iter()).collect();
                    last = Some(r);
                }
            }
        }
        Err(last.unwrap_or_else(|| refuse(RefusalKind::Unavailable, "no attempt succeeded")))
    }

    fn audit_refusal(&self, req: &SignedRequest, r: &Refusal) {
        let event = Event::Refused {
            request: req.hash().ok(),
            identity: Some(req.request.identity.clone()),
            kind: r.kind.as_str().into(),
            reason: r.message.clone(),
        };
        if let Err(e) = self.store().audit(event) {
            tracing::error!(error = %e, "cannot record a refusal");
        }
    }

    /// The coordinator's own checks, the first line (the custodians repeat them):
    /// program, version, identity, time, inputs, replay and budget, with the client's
    /// signature verified on a blocking thread meanwhile. The
    /// rate token is taken once the signature holds ([`Pending::confirm`]), so a forged
    /// request spends nothing of the identity's rate.
    fn check(&self, req: &Arc<SignedRequest>) -> Result<(Checked, Pending), Refusal> {
        let r = &req.request;
        let program = self.active(&r.program).ok_or_else(|| {
            refuse(
                RefusalKind::UnknownProgram,
                format!("no active version of `{}`", r.program),
            )
        })?;
        let m = &program.manifest;
        if m.version != r.version {
            return Err(refuse(
                RefusalKind::UnknownProgram,
                format!(
                    "version {} of `{}` is not active (version {} is)",
                    r.version, r.program, m.version
                ),
            ));
        }
        let identity = m
            .policy
            .identities
            .iter()
            .find(|i| i.name == r.identity)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    RefusalKind::UnknownIdentity,
                    format!("`{}` is not in the policy of `{}`", r.identity, r.program),
                )
            })?;
        if identity.reveal_to_client && r.reveal_to.is_none() {
            return Err(refuse(
                RefusalKind::InvalidInput,
                "this identity's outputs are sealed to the client: the request must carry its key-agreement key (reveal_to)",
            ));
        }
        let digested = req
            .digested()
            .map_err(|e| refuse(RefusalKind::InvalidInput, e.to_string()))?;
        let mut pending = Pending::start(digested, identity.key);
        match self.check_rest(req, &digested, program, identity) {
            Ok(checked) => Ok((checked, pending)),
            // A request that is not the client's learns nothing more than that.
            Err(r) => Err(pending.signature().err().unwrap_or(r)),
        }
    }

    /// The checks after the identity's key is known; the signature is checked beside
    /// them ([`Pending`]).
    fn check_rest(
        &self,
        req: &SignedRequest,
        digested: &DigestedRequest,
        program: Arc<ActiveProgram>,
        identity: Identity,
    ) -> Result<Checked, Refusal> {
        let r = &req.request;
        let m = &program.manifest;
        let now = qvm_node::now_secs();
        if r.issued_at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
            return Err(refuse(
                RefusalKind::Expired,
                "the request is too old or from the future",
            ));
        }
        if r.inputs.is_empty() || r.inputs.len() > MAX_BATCH {
            return Err(refuse(
                RefusalKind::InvalidInput,
                format!("a request has 1..={MAX_BATCH} inputs"),
            ));
        }
        for (i, input) in r.inputs.iter().enumerate() {
            check_input(&m.schema, input)
                .map_err(|why| refuse(RefusalKind::InvalidInput, format!("item {i}: {why}")))?;
        }
        let request = digested.hash();
        if store::request_seen(&self.store(), &request)? {
            return Err(refuse(
                RefusalKind::Replay,
                "this request was already served",
            ));
        }
        let cost = m.cost.cost_units.saturating_mul(r.inputs.len() as u64);
        let window = now / identity.period_secs.max(1);
        let spent = store::spent(&self.store(), &r.program, &r.identity, window)?;
        if spent.saturating_add(cost) > identity.budget {
            return Err(refuse(
                RefusalKind::BudgetExhausted,
                format!(
                    "budget: {spent} of {} cost units spent this period, this request costs {cost}",
                    identity.budget
                ),
            ));
        }
        Ok(Checked {
            program,
            identity,
            request,
            cost,
            spent,
        })
    }

    fn take_token(&self, program: &str, identity: &Identity) -> Result<(), Refusal> {
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| refuse(RefusalKind::Internal, "lock"))?;
        let now = now_ms();
        let burst = identity.burst as f64;
        let key = (program.to_string(), identity.name.clone());
        let (tokens, updated) = buckets.get(&key).copied().unwrap_or((burst, now));
        let tokens = (tokens
            + now.saturating_sub(updated) as f64 * identity.rate_per_minute as f64 / 60_000.0)
            .min(burst);
        if tokens < 1.0 {
            buckets.insert(key, (tokens, now));
            return Err(refuse(
                RefusalKind::RateLimited,
                format!(
                    "rate limit: {} per minute, burst {}",
                    identity.rate_per_minute, identity.burst
                ),
            ));
        }
        buckets.insert(key, (tokens - 1.0, now));
        Ok(())
    }

    /// Picks Q: K healthy custodians with their keys, in an order fixed per (program,
    /// identity) — rendezvous hashing. One identity's requests keep going to the same
    /// custodians while they are healthy, so their copies of its ticket chain stay whole
    /// (a custodian that missed tickets is refused once with a gap and sent them again,
    /// one more round trip and a signature check per missed ticket), while different
    /// identities spread over different sets.
    fn pick(&self, checked: &Checked, excluded: PartySet) -> Result<PartySet, Refusal> {
        let k = self.committee.k as usize;
        let m = &checked.program.manifest;
        // Custodians known to hold the version first; others (whose last report may predate
        // the activation) after them.
        let mut candidates: Vec<(bool, PartyIndex)> = self
            .healthy()
            .into_iter()
            .filter(|(c, h)| h.keyring && h.writable && !excluded.contains(c.index))
            .map(|(c, h)| (!h.active.contains(&checked.program.id), c.index))
            .collect();
        let rank = |p: PartyIndex| {
            let mut h = std::hash::DefaultHasher::new();
            (&m.program, &checked.identity.name, p.get()).hash(&mut h);
            h.finish()
        };
        candidates.sort_by_key(|(stale, p)| (*stale, rank(*p)));
        let healthy: Vec<PartyIndex> = candidates.into_iter().map(|(_, p)| p).collect();
        if healthy.len() < k {
            let down: Vec<String> = self
                .custodians
                .iter()
                .filter(|c| !healthy.contains(&c.index))
                .map(|c| c.index.to_string())
                .collect();
            return Err(refuse(
                RefusalKind::Unavailable,
                format!(
                    "{} of the {k} custodians needed are available (K = {k} of N = {}; unavailable: {}); `{}` cannot be served",
                    healthy.len(),
                    self.committee.n(),
                    down.join(", "),
                    m.program
                ),
            ));
        }
        Ok(healthy.into_iter().take(k).collect())
    }

    /// Issues the ticket: next in the identity's chain, pooled items granted, durable
    /// (with the audit entry) before any custodian sees it.
    fn issue(
        &self,
        req: &SignedRequest,
        checked: &Checked,
        members: PartySet,
        attempt: u32,
        confirm: &mut dyn FnMut() -> Result<(), Refusal>,
    ) -> Result<SignedTicket, Refusal> {
        let r = &req.request;
        let m = &checked.program.manifest;
        let items = r.inputs.len() as u64;
        let _guard = self
            .issuing
            .lock()
            .map_err(|_| refuse(RefusalKind::Internal, "lock"))?;
        let (need_t, need_b) = (m.cost.multiplications * items, m.cost.random_bits * items);
        self.demand[0].fetch_max(need_t, Ordering::Relaxed);
        self.demand[1].fetch_max(need_b, Ordering::Relaxed);
        let mut ledger = self.ledger();
        let mut next = ledger.clone();
        let grant = next
            .allocate(m.cost.multiplications * items, m.cost.random_bits * items)
            .map_err(|e| {
                refuse(
                    RefusalKind::PoolDry,
                    format!("{e}; the offline phase refills it in the background"),
                )
            })?;
        let (sequence, previous) = store::chain_head(&self.store(), &r.program, &r.identity)?
            .map_or((1, Digest::default()), |(s, h)| (s + 1, h));
        let mut session = [0u8; 32];
        OsRng.fill_bytes(&mut session);
        let now = qvm_node::now_secs();
        let ticket = Ticket {
            request: checked.request,
            package: checked.program.id,
            program: r.program.clone(),
            identity: r.identity.clone(),
            session: Digest::from_bytes(session),
            members,
            grant,
            items: items as u32,
            attempt,
            issued_at: now,
            expires_at: now + self.config.sessions.ticket_ttl_secs,
            sequence,
            previous,
        }
        .sign(&self.keys.signing)
        .map_err(|e| refuse(RefusalKind::Internal, e.to_string()))?;
        let hash = ticket
            .hash()
            .map_err(|e| refuse(RefusalKind::Internal, e.to_string()))?;
        let cost = if attempt == 0 { checked.cost } else { 0 };
        let window = now / checked.identity.period_secs.max(1);
        let (tbytes, lbytes) = (enc(&ticket)?, enc(&next)?);
        let deferred = self.store().write(|tx| {
            // Checked before the transaction too (to refuse early); again here, where the
            // tickets of other copies of this request checked meanwhile are visible.
            if attempt == 0 && store::request_seen_in(tx.conn(), &checked.request)? {
                return Err(refuse(
                    RefusalKind::Replay,
                    "this request was already served",
                ));
            }
            let deferred = self.write_deferred(tx)?;
            store::insert_ticket(
                tx,
                &r.program,
                &r.identity,
                sequence,
                &hash,
                &tbytes,
                &checked.request,
                cost,
                window,
            )?;
            tx.put_meta("pool/ledger", &lbytes)?;
            tx.audit(Event::Evaluation {
                request: checked.request,
                ticket: hash,
                package: checked.program.id,
                identity: r.identity.clone(),
                members,
                items: items as u32,
                cost,
            })?;
            // The client's signature and rate, checked meanwhile, before the commit.
            confirm()?;
            Ok::<_, Refusal>(deferred)
        })?;
        self.forget_deferred(deferred);
        for kind in [PoolKind::Triples, PoolKind::Bits] {
            if next.available(kind) < self.pool_target(kind) {
                self.low[pool_slot(kind)].notify_one();
            }
        }
        *ledger = next;
        // What the check saw, plus this request (a second query per evaluation would only
        // add requests that raced it).
        let spent = checked.spent.saturating_add(checked.cost);
        self.metrics
            .budget_remaining
            .get_or_create(&IdentityLabel {
                program: r.program.clone(),
                identity: r.identity.clone(),
            })
            .set(checked.identity.budget.saturating_sub(spent) as i64);
        Ok(ticket)
    }

    fn link(&self, p: PartyIndex) -> Option<&CustodianLink> {
        self.custodians.iter().find(|c| c.index == p)
    }

    fn step_deadline(&self) -> Duration {
        Duration::from_millis(self.config.sessions.round_timeout_ms)
    }

    /// Starts the session at one custodian, resending the chain it missed on a gap.
    async fn start_at(
        &self,
        p: PartyIndex,
        req: &SignedRequest,
        ticket: &SignedTicket,
        encoded: &Bytes,
    ) -> Result<(PartyIndex, SessionEvent), (PartyIndex, CallError)> {
        let link = self
            .link(p)
            .ok_or_else(|| (p, CallError::Unreachable("no such custodian".into())))?;
        let mut start = encoded.clone();
        for _ in 0..2 {
            match link
                .peer
                .post_encoded::<SessionEvent>("/v1/sessions", start.clone(), self.step_deadline())
                .await
            {
                Err(CallError::Refused(r)) if r.kind == RefusalKind::ChainGap => {
                    let from = r.chain_head.unwrap_or(0) + 1;
                    let t = &ticket.ticket;
                    let rows = store::chain_from(&self.store(), &t.program, &t.identity, from)
                        .map_err(|e| (p, CallError::BadAnswer(e.to_string())))?;
                    let chain: Vec<SignedTicket> = rows
                        .iter()
                        .map(|b| dec::<SignedTicket>(b))
                        .filter(|s| s.as_ref().map_or(true, |s| s.ticket.sequence < t.sequence))
                        .collect::<Result<_, StoreError>>()
                        .map_err(|e| (p, CallError::BadAnswer(e.to_string())))?;
                    start = encode_start(req, ticket, &chain).map_err(|e| (p, e))?;
                }
                other => return other.map(|e| (p, e)).map_err(|e| (p, e)),
            }
        }
        Err((
            p,
            CallError::Refused(refuse(
                RefusalKind::ChainGap,
                "the chain could not be brought up to date",
            )),
        ))
    }

    /// Runs one attempt: start at every member, then rounds through the king until the
    /// members deliver; reconstructs each item's granted outputs.
    async fn run(
        &self,
        req: &SignedRequest,
        ticket: &SignedTicket,
        checked: &Checked,
    ) -> Result<(Delivered, u32), Failure> {
        let t = &ticket.ticket;
        let members: Vec<PartyIndex> = t.members.iter().collect();
        let t_start = Instant::now();
        // Every member is sent the same start (unless it missed part of the chain).
        let encoded = encode_start(req, ticket, &[])
            .map_err(|e| Failure::Final(refuse(RefusalKind::Internal, e.to_string())))?;
        let encoded = &encoded;
        let starts = members.iter().map(|p| async move {
            let t = Instant::now();
            let r = self.start_at(*p, req, ticket, encoded).await;
            tracing::debug!(custodian = %p, start_us = t.elapsed().as_micros() as u64, "start answered");
            r
        });
        let mut events = gather(futures::future::join_all(starts).await)?;
        tracing::debug!(starts_us = t_start.elapsed().as_micros() as u64, "starts");
        let items = t.items as usize;
        let item_sessions: Vec<Digest> = ticket
            .item_sessions()
            .map_err(|e| Failure::Final(refuse(RefusalKind::Internal, e.to_string())))?;
        let mut kings: Vec<KingSession> = item_sessions
            .iter()
            .map(|s| KingSession::new(*s, t.members, self.mpc.degree()))
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::Final(refuse(RefusalKind::Internal, e.to_string())))?;
        let mut rounds = 0u32;
        loop {
            let all_rounds = events.values().all(|e| matches!(e, SessionEvent::Round(_)));
            let all_done = events.values().all(|e| matches!(e, SessionEvent::Done(_)));
            if all_done {
                let outputs = self.reconstruct(&events, &item_sessions, t.members, checked)?;
                return Ok((Delivered::Revealed(outputs), rounds));
            }
            if events
                .values()
                .all(|e| matches!(e, SessionEvent::Sealed(_)))
            {
                let sealed = events
                    .iter()
                    .filter_map(|(p, e)| match e {
                        SessionEvent::Sealed(c) => Some(SealedDelivery {
                            custodian: p.get(),
                            ciphertext: c.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                return Ok((Delivered::Sealed(sealed), rounds));
            }
            if !all_rounds {
                return Err(Failure::Final(refuse(
                    RefusalKind::SessionFailed,
                    "custodians disagree on the session's progress",
                )));
            }
            let mut opened = vec![None; items];
            for (p, e) in &events {
                let SessionEvent::Round(msgs) = e else {
                    continue;
                };
                for msg in msgs {
                    if msg.from != *p {
                        return Err(Failure::custodians(
                            PartySet::EMPTY.with(*p),
                            refuse(RefusalKind::SessionFailed, "a custodian spoke for another"),
                        ));
                    }
                    let b = item_sessions
                        .iter()
                        .position(|s| *s == msg.session)
                        .ok_or_else(|| {
                            Failure::custodians(
                                PartySet::EMPTY.with(*p),
                                refuse(RefusalKind::SessionFailed, "a message for an unknown item"),
                            )
                        })?;
                    match kings[b].receive(msg.clone()) {
                        Ok(Some(o)) => opened[b] = Some(o),
                        Ok(None) => {}
                        Err(e) => return Err(king_failure(e, *p)),
                    }
                }
            }
            let opened: Vec<_> = opened.into_iter().flatten().collect();
            rounds += 1;
            let input = RoundInput {
                session: t.session,
                opened,
            };
            let calls = members.iter().map(|p| {
                let input = &input;
                async move {
                    let link = self
                        .link(*p)
                        .ok_or_else(|| (*p, CallError::Unreachable("no such custodian".into())))?;
                    link.peer
                        .post::<_, SessionEvent>("/v1/sessions/round", input, self.step_deadline())
                        .await
                        .map(|e| (*p, e))
                        .map_err(|e| (*p, e))
                }
            });
            let t_round = Instant::now();
            events = gather(futures::future::join_all(calls).await)?;
            tracing::debug!(round_us = t_round.elapsed().as_micros() as u64, "round");
        }
    }

    fn reconstruct(
        &self,
        events: &BTreeMap<PartyIndex, SessionEvent>,
        item_sessions: &[Digest],
        members: PartySet,
        checked: &Checked,
    ) -> Result<Vec<Vec<RevealedOutput>>, Failure> {
        let mut layout = None;
        let mut collectors: Vec<OutputCollector> = item_sessions
            .iter()
            .map(|s| {
                OutputCollector::new(SessionConfig {
                    committee: self.mpc,
                    session: *s,
                    members,
                })
            })
            .collect();
        let mut values = vec![None; item_sessions.len()];
        for (p, e) in events {
            let SessionEvent::Done(d) = e else { continue };
            if layout.as_ref().is_some_and(|l| *l != d.layout)
                || d.items.len() != item_sessions.len()
            {
                return Err(Failure::custodians(
                    PartySet::EMPTY.with(*p),
                    refuse(
                        RefusalKind::SessionFailed,
                        "a custodian delivered a different output layout",
                    ),
                ));
            }
            layout = Some(d.layout.clone());
            for (b, msg) in d.items.iter().enumerate() {
                if msg.from != *p {
                    return Err(Failure::custodians(
                        PartySet::EMPTY.with(*p),
                        refuse(RefusalKind::SessionFailed, "a custodian spoke for another"),
                    ));
                }
                match collectors[b].receive(msg.clone()) {
                    Ok(Some(v)) => values[b] = Some(v),
                    Ok(None) => {}
                    Err(e) => return Err(king_failure(e, *p)),
                }
            }
        }
        let layout = layout.unwrap_or_default();
        let scale = |name: &str| {
            checked
                .program
                .manifest
                .schema
                .outputs
                .iter()
                .find(|o| o.name == name)
                .map_or(0, |o| o.scale)
        };
        values
            .into_iter()
            .map(|v| {
                let v = v.ok_or_else(|| {
                    Failure::Final(refuse(
                        RefusalKind::SessionFailed,
                        "an item was not revealed",
                    ))
                })?;
                RevealedOutput::split(&layout, &v, scale).ok_or_else(|| {
                    Failure::Final(refuse(
                        RefusalKind::SessionFailed,
                        "outputs do not match their layout",
                    ))
                })
            })
            .collect()
    }

    fn answer(
        &self,
        checked: &Checked,
        ticket: &SignedTicket,
        delivered: Delivered,
        rounds: u32,
    ) -> Result<EvalResponse, Refusal> {
        let (outputs, sealed) = match delivered {
            Delivered::Revealed(o) => (o, Vec::new()),
            Delivered::Sealed(s) => (Vec::new(), s),
        };
        let t = &ticket.ticket;
        let hash = ticket
            .hash()
            .map_err(|e| refuse(RefusalKind::Internal, e.to_string()))?;
        self.defer_audit(Event::Answered {
            ticket: hash,
            rounds,
        });
        let receipt = Receipt {
            request: checked.request,
            ticket: hash,
            package: t.package,
            session: t.session,
            members: t.members,
            outputs: Receipt::outputs_hash(&(&outputs, &sealed))
                .map_err(|e| refuse(RefusalKind::Internal, e.to_string()))?,
            cost: checked.cost,
            rounds,
            issued_at: qvm_node::now_secs(),
        }
        .sign(&self.keys.signing)
        .map_err(|e| refuse(RefusalKind::Internal, e.to_string()))?;
        Ok(EvalResponse {
            outputs,
            sealed,
            receipt,
        })
    }
}

/// A session start in its canonical encoding, encoded from borrowed parts.
fn encode_start(
    request: &SignedRequest,
    ticket: &SignedTicket,
    chain: &[SignedTicket],
) -> Result<Bytes, CallError> {
    let start = StartSessionRef {
        request,
        ticket,
        chain,
    };
    to_canonical(&start)
        .map(Bytes::from)
        .map_err(|e| CallError::BadAnswer(e.to_string()))
}

/// Collects the members' answers; failures name the custodians to retry without, unless
/// a custodian refused for the client's fault.
fn gather(
    answers: Vec<Result<(PartyIndex, SessionEvent), (PartyIndex, CallError)>>,
) -> Result<BTreeMap<PartyIndex, SessionEvent>, Failure> {
    let mut events = BTreeMap::new();
    let (mut failed, mut lagging) = (PartySet::EMPTY, PartySet::EMPTY);
    let mut reason = None;
    for a in answers {
        match a {
            Ok((p, e)) => {
                events.insert(p, e);
            }
            Err((_, CallError::Refused(r))) if r.kind.is_client_fault() => {
                return Err(Failure::Final(r));
            }
            Err((p, e)) => {
                if matches!(&e, CallError::Refused(r) if r.kind.is_disagreement()) {
                    lagging = lagging.with(p);
                } else {
                    failed = failed.with(p);
                }
                reason = Some(match e {
                    CallError::Refused(r) => {
                        Refusal::new(r.kind, format!("custodian {p}: {}", r.message))
                    }
                    e => refuse(RefusalKind::Unavailable, format!("custodian {p}: {e}")),
                });
            }
        }
    }
    match reason {
        Some(reason) => Err(Failure::Custodians {
            excluded: failed.iter().chain(lagging.iter()).collect(),
            faulty: failed,
            reason,
        }),
        None => Ok(events),
    }
}

fn king_failure(e: qvm_mpc::Error, from: PartyIndex) -> Failure {
    let culprits = match &e {
        qvm_mpc::Error::Inconsistent { culprits } => culprits.iter().copied().collect(),
        _ => PartySet::EMPTY.with(from),
    };
    Failure::custodians(culprits, refuse(RefusalKind::SessionFailed, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(i: u32) -> PartyIndex {
        PartyIndex::new(i).expect("a valid index")
    }

    #[test]
    fn a_custodian_without_the_version_is_skipped_but_not_quarantined() {
        let answers = vec![
            Err((
                party(1),
                CallError::Refused(Refusal::new(RefusalKind::NotActive, "not yet")),
            )),
            Err((party(2), CallError::Unreachable("deadline".into()))),
        ];
        let Err(Failure::Custodians {
            excluded, faulty, ..
        }) = gather(answers)
        else {
            panic!("expected a retry without custodians 1 and 2");
        };
        assert_eq!(excluded, PartySet::EMPTY.with(party(1)).with(party(2)));
        assert_eq!(faulty, PartySet::EMPTY.with(party(2)));
    }

    #[test]
    fn a_custodian_refusing_a_ticket_is_skipped_but_not_quarantined() {
        let answers = vec![
            Ok((party(1), SessionEvent::Round(Vec::new()))),
            Err((
                party(3),
                CallError::Refused(Refusal::new(
                    RefusalKind::ItemsUsed,
                    "the ticket grants items already used or retired here",
                )),
            )),
        ];
        let Err(Failure::Custodians {
            excluded, faulty, ..
        }) = gather(answers)
        else {
            panic!("expected a retry without custodian 3");
        };
        assert_eq!(excluded, PartySet::EMPTY.with(party(3)));
        assert_eq!(faulty, PartySet::EMPTY);
    }

    #[test]
    fn a_client_fault_at_a_custodian_ends_the_request() {
        let answers = vec![Err((
            party(3),
            CallError::Refused(Refusal::new(RefusalKind::BudgetExhausted, "spent")),
        ))];
        assert!(matches!(
            gather(answers),
            Err(Failure::Final(r)) if r.kind == RefusalKind::BudgetExhausted
        ));
    }
}
