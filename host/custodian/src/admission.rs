//! Every check of DESIGN.md §8 step 3, before any work: the ticket's signature and fit to
//! the request, expiry, the active version, the identity and the client's signature, the
//! inputs, then — in one durable transaction — the ticket chain, replay, budget, rate and
//! the pooled items. The budget debit and the audit entry commit together before the
//! component runs; a refusal that is the client's fault spends nothing.

use std::sync::Arc;

use qvm_api::audit::Event;
use qvm_api::marks::ranges;
use qvm_api::request::check_input;
use qvm_api::ticket::{ChainError, ChainHead, SignedTicket, extend};
use qvm_api::wire::{Refusal, RefusalKind, StartSession};
use qvm_api::{MAX_ATTEMPTS, MAX_BATCH, MAX_CLOCK_SKEW_SECS};
use qvm_core::encoding::Digest;
use qvm_mpc::output::MaskKeys;
use qvm_mpc::pool::{Material, Pool, PoolGrant, PoolKind};
use qvm_package::policy::Identity;

use crate::node::{Active, Node, internal};
use crate::store::{CustodianWrites, Tx, enc, now_ms};

/// How long admission waits for a batch record the ticket's grant needs.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An admitted session, its budget debited and its audit entry durable.
pub struct Admitted {
    /// The version that runs.
    pub active: Arc<Active>,
    /// The identity's policy entry.
    pub identity: Identity,
    /// Pooled material per item.
    pub materials: Vec<Material>,
    /// The ticket's hash.
    pub ticket: Digest,
    /// This custodian's output-mask keys for the ticket's items.
    pub masks: Arc<MaskKeys>,
}

fn refuse(kind: RefusalKind, msg: impl Into<String>) -> Refusal {
    Refusal::new(kind, msg)
}

/// Runs the checks and, if all pass, commits the admission.
pub fn admit(node: &Node, start: &StartSession) -> Result<Admitted, Refusal> {
    let result = check_and_commit(node, start);
    if result.is_ok() {
        // The grants of this ticket and of the missed ones it carries (all checked now)
        // retire the items below them once expired (`retire`).
        for t in start.chain.iter().chain([&start.ticket]) {
            node.note_grant(t.ticket.expires_at, &t.ticket.grant);
        }
    }
    if let Err(r) = &result {
        if r.kind.is_client_fault() || r.kind == RefusalKind::ChainFork {
            let event = Event::Refused {
                request: start.request.hash().ok(),
                identity: Some(start.request.request.identity.clone()),
                kind: r.kind.as_str().into(),
                reason: r.message.clone(),
            };
            if let Err(e) = node.store().audit(event) {
                tracing::error!(node = %node.name, error = %e, "cannot record a refusal");
            }
        }
        node.metrics.refused(r.kind);
        node.note(r);
        tracing::info!(node = %node.name, kind = r.kind.as_str(), reason = %r.message, "refused");
    }
    result
}

fn check_and_commit(node: &Node, start: &StartSession) -> Result<Admitted, Refusal> {
    let (signed, req) = (&start.ticket, &start.request.request);
    let t = &signed.ticket;
    let t0 = std::time::Instant::now();
    // The ticket: the coordinator's, for this request, with this custodian in Q.
    signed.verify(&node.committee.coordinator).map_err(|_| {
        refuse(
            RefusalKind::BadTicket,
            "the ticket is not signed by the coordinator",
        )
    })?;
    let digested = start
        .request
        .digested()
        .map_err(|e| refuse(RefusalKind::BadTicket, e.to_string()))?;
    if t.request != digested.hash()
        || t.program != req.program
        || t.identity != req.identity
        || t.items as usize != req.inputs.len()
    {
        return Err(refuse(
            RefusalKind::BadTicket,
            "the ticket does not match the request",
        ));
    }
    if !t.members.contains(node.index) || node.mpc.check_members(t.members, node.mpc.k()).is_err() {
        return Err(refuse(
            RefusalKind::BadTicket,
            "the ticket's session set is invalid or omits this custodian",
        ));
    }
    // Time.
    let now = qvm_node::now_secs();
    if now > t.expires_at {
        return Err(refuse(RefusalKind::Expired, "the ticket expired"));
    }
    if req.issued_at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(refuse(
            RefusalKind::Expired,
            "the request is too old or from the future",
        ));
    }
    // The active version.
    if node.active(&req.program).is_none_or(|a| a.id != t.package)
        && node.manifest(&t.package).is_some()
    {
        return Err(refuse(
            RefusalKind::NotActive,
            format!(
                "package {} has no valid activation certificate here",
                t.package
            ),
        ));
    }
    let active = node.active(&req.program).ok_or_else(|| {
        refuse(
            RefusalKind::UnknownProgram,
            format!("no active version of `{}`", req.program),
        )
    })?;
    let m = &active.manifest;
    if m.version != req.version {
        return Err(refuse(
            RefusalKind::UnknownProgram,
            format!(
                "version {} of `{}` is not active (version {} is)",
                req.version, req.program, m.version
            ),
        ));
    }
    if t.package != active.id {
        return Err(refuse(
            RefusalKind::NotActive,
            "the ticket names a package that is not active here",
        ));
    }
    // The identity and its signature.
    let identity = m
        .policy
        .identities
        .iter()
        .find(|i| i.name == req.identity)
        .cloned()
        .ok_or_else(|| {
            refuse(
                RefusalKind::UnknownIdentity,
                format!("`{}` is not in the policy", req.identity),
            )
        })?;
    digested.verify(&identity.key).map_err(|_| {
        refuse(
            RefusalKind::BadClientSignature,
            "the client's signature does not verify",
        )
    })?;
    let t_verified = t0.elapsed();
    // Outputs for the client only need the client's key to seal them to.
    if identity.reveal_to_client && req.reveal_to.is_none() {
        return Err(refuse(
            RefusalKind::InvalidInput,
            "this identity's outputs are sealed to the client: the request must carry its key-agreement key (reveal_to)",
        ));
    }
    // Inputs.
    if req.inputs.is_empty() || req.inputs.len() > MAX_BATCH {
        return Err(refuse(
            RefusalKind::InvalidInput,
            format!("a request has 1..={MAX_BATCH} inputs"),
        ));
    }
    for (i, input) in req.inputs.iter().enumerate() {
        check_input(&m.schema, input)
            .map_err(|why| refuse(RefusalKind::InvalidInput, format!("item {i}: {why}")))?;
    }
    // Pooled items: each item's slice of the grant.
    let (per_t, per_b) = (m.cost.multiplications, m.cost.random_bits);
    let grants: Vec<PoolGrant> = (0..t.items)
        .map(|b| t.item_grant(b, per_t, per_b))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            refuse(
                RefusalKind::BadTicket,
                "the ticket's grant does not fit the program's cost",
            )
        })?;
    let ticket_hash = signed
        .hash()
        .map_err(|e| refuse(RefusalKind::BadTicket, e.to_string()))?;
    // Before the commit, so that nothing is charged for a session that could not deliver
    // (a pairwise key missing from the committee file).
    let masks = MaskKeys::derive(
        &node.mpc,
        &ticket_hash,
        t.members,
        node.index,
        &node.pairwise,
    )
    .map(Arc::new)
    .map_err(|e| internal(e.to_string()))?;
    // The coordinator grants items as soon as it has published a batch; the record may
    // still be on its way here. Wait a little for it rather than fail the session.
    // (A pool the grant takes nothing from is not waited for: a local-only program's
    // empty grant starts wherever the coordinator's allocation had got to.)
    let needed = [t.grant.triples, t.grant.bits].map(|r| if r.count > 0 { r.end() } else { 0 });
    let deadline = std::time::Instant::now() + POOL_WAIT;
    while std::time::Instant::now() < deadline
        && node.with_pool(|p| {
            p.end(PoolKind::Triples) < needed[0] || p.end(PoolKind::Bits) < needed[1]
        })
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The durable part, with the pool locked so the items checked are the items taken.
    node.with_pool(|pool| {
        let cost = |s: &SignedTicket| -> Result<u64, Refusal> {
            if s.ticket.attempt > 0 {
                return Ok(0);
            }
            let manifest = node.manifest(&s.ticket.package).ok_or_else(|| {
                refuse(
                    RefusalKind::BadTicket,
                    "a ticket in the chain names a package this custodian does not hold",
                )
            })?;
            Ok(manifest
                .cost
                .cost_units
                .saturating_mul(s.ticket.items as u64))
        };
        let t_commit = t0.elapsed();
        node.store()
            .write(|tx| commit(node, tx, start, &identity, &ticket_hash, &cost, pool))?;
        tracing::debug!(
            verify_us = t_verified.as_micros() as u64,
            checks_us = (t_commit - t_verified).as_micros() as u64,
            commit_us = (t0.elapsed() - t_commit).as_micros() as u64,
            "admission"
        );
        let materials = grants
            .iter()
            .map(|g| pool.take(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(format!("pool: {e}")))?;
        Ok(materials)
    })
    .map(|materials| Admitted {
        active,
        identity,
        materials,
        ticket: ticket_hash,
        masks,
    })
}

/// Why a ticket's items cannot be taken: not here yet (the record is late), or no longer
/// here — used under another ticket, or retired because tickets issued after this one
/// have expired (a coordinator whose clock stepped back).
fn pool_refusal(e: qvm_mpc::Error) -> Refusal {
    match e {
        qvm_mpc::Error::PoolDry { .. } => refuse(
            RefusalKind::PoolDry,
            format!("this custodian does not hold the ticket's items yet: {e}"),
        ),
        e => refuse(
            RefusalKind::ItemsUsed,
            format!("the ticket grants items already used or retired here: {e}"),
        ),
    }
}

/// The transaction: chain, replay, budget, rate, pooled ranges, audit entry.
fn commit(
    node: &Node,
    tx: &mut Tx<'_>,
    start: &StartSession,
    identity: &Identity,
    ticket_hash: &Digest,
    cost: &dyn Fn(&SignedTicket) -> Result<u64, Refusal>,
    pool: &Pool,
) -> Result<(), Refusal> {
    let t = &start.ticket.ticket;
    let (program, who) = (t.program.as_str(), t.identity.as_str());
    let charge = cost(&start.ticket)?;
    // A ticket this custodian first learned of through a later ticket's chain (concurrent
    // sessions arrive in any order) is served now; its cost was counted then.
    let late = match tx.ticket_served(program, who, t.sequence)? {
        None => false,
        Some(served) => {
            if tx.ticket_hash(program, who, t.sequence)?.as_ref() != Some(ticket_hash) {
                tracing::error!(node = %node.name, identity = who, "ALARM: chain fork at {}", t.sequence);
                node.metrics.alarm("chain_fork");
                return Err(refuse(
                    RefusalKind::ChainFork,
                    format!(
                        "ticket chain fork at sequence {}: a coordinator is splitting a budget",
                        t.sequence
                    ),
                ));
            }
            if served {
                return Err(refuse(
                    RefusalKind::Replay,
                    "this ticket was already served",
                ));
            }
            true
        }
    };
    if !late {
        extend_chain(node, tx, start, ticket_hash, identity, cost)?;
        let spent = tx.spent(program, who, window(identity, &start.ticket))?;
        if spent.saturating_add(charge) > identity.budget {
            return Err(refuse(
                RefusalKind::BudgetExhausted,
                format!(
                    "budget: {spent} of {} cost units spent this period, this request costs {charge}",
                    identity.budget
                ),
            ));
        }
    }
    // Rate: a token bucket per identity.
    let now = now_ms();
    let rate_per_ms = identity.rate_per_minute as f64 / 60_000.0;
    let burst = identity.burst as f64;
    let (tokens, updated) = tx.bucket(program, who)?.unwrap_or((burst, now));
    let tokens = (tokens + now.saturating_sub(updated) as f64 * rate_per_ms).min(burst);
    if t.attempt == 0 && tokens < 1.0 {
        return Err(refuse(
            RefusalKind::RateLimited,
            format!(
                "rate limit: {} per minute, burst {}",
                identity.rate_per_minute, identity.burst
            ),
        ));
    }
    let tokens = if t.attempt == 0 { tokens - 1.0 } else { tokens };
    tx.put_bucket(program, who, tokens, now)?;
    // Pooled items: held here (not used, not retired, not still on their way) — checked
    // after replay and forks, so those are named as such — and never handed out twice, in
    // whatever order sessions arrive. The signed ticket is kept beside them for the other
    // custodians' pulls (`crate::gossip`).
    pool.check_grant(&t.grant).map_err(pool_refusal)?;
    let granted = ranges(t, *ticket_hash);
    if !granted.is_empty() {
        let signed = enc(&start.ticket)?;
        for range in granted {
            if !tx.take_range(&range, &signed)? {
                return Err(refuse(
                    RefusalKind::ItemsUsed,
                    format!("the ticket grants {} that were already used", range.kind),
                ));
            }
        }
    }
    if late {
        tx.mark_served(program, who, t.sequence)?;
    } else {
        tx.insert_ticket(
            program,
            who,
            t.sequence,
            ticket_hash,
            &t.request,
            t.attempt,
            charge,
            window(identity, &start.ticket),
            true,
        )?;
    }
    tx.audit(Event::Evaluation {
        request: t.request,
        ticket: *ticket_hash,
        package: t.package,
        identity: who.to_string(),
        members: t.members,
        items: t.items,
        cost: charge,
    })?;
    Ok(())
}

/// Extends the identity's chain with the tickets this custodian missed (signatures
/// checked; recorded and counted against the budget as served by others) and the new one
/// (checked already), and refuses a replayed request.
fn extend_chain(
    node: &Node,
    tx: &mut Tx<'_>,
    start: &StartSession,
    ticket_hash: &Digest,
    identity: &Identity,
    cost: &dyn Fn(&SignedTicket) -> Result<u64, Refusal>,
) -> Result<(), Refusal> {
    let t = &start.ticket.ticket;
    let (program, who) = (t.program.as_str(), t.identity.as_str());
    let head = tx
        .chain_head(program, who)?
        .map(|(sequence, hash)| ChainHead { sequence, hash })
        .unwrap_or_default();
    // Missed tickets at or below the head that this custodian holds are skipped; looked
    // up first so the check does not borrow the transaction.
    let mut known = Vec::new();
    for s in &start.chain {
        if s.ticket.sequence <= head.sequence {
            known.push((
                s.ticket.sequence,
                tx.ticket_hash(program, who, s.ticket.sequence)?,
            ));
        }
    }
    let is_known = |seq: u64, h: &Digest| {
        known
            .iter()
            .any(|(s, k)| *s == seq && k.as_ref() == Some(h))
    };
    let extended = extend(head, &start.chain, &node.committee.coordinator, is_known)
        .and_then(|h| h.accept(t, *ticket_hash));
    match extended {
        Ok(_) => {}
        Err(ChainError::Gap { head, .. }) => {
            let mut r = refuse(
                RefusalKind::ChainGap,
                format!("the chain head here is {head}"),
            );
            r.chain_head = Some(head);
            return Err(r);
        }
        Err(e @ ChainError::Fork { .. }) => {
            tracing::error!(node = %node.name, identity = who, "ALARM: {e}");
            node.metrics.alarm("chain_fork");
            return Err(refuse(RefusalKind::ChainFork, e.to_string()));
        }
        Err(e) => return Err(refuse(RefusalKind::BadTicket, e.to_string())),
    }
    for s in &start.chain {
        if s.ticket.sequence > head.sequence {
            let h = s.hash().map_err(|e| internal(e.to_string()))?;
            tx.insert_ticket(
                program,
                who,
                s.ticket.sequence,
                &h,
                &s.ticket.request,
                s.ticket.attempt,
                cost(s)?,
                window(identity, s),
                false,
            )?;
        }
    }
    // Replay: the first attempt at a request appears once; a retry follows a first attempt.
    let attempts = tx.attempts(&t.request)?;
    let replay = match t.attempt {
        0 => attempts > 0,
        a => attempts == 0 || a >= MAX_ATTEMPTS,
    };
    if replay {
        return Err(refuse(
            RefusalKind::Replay,
            "this request was already served",
        ));
    }
    Ok(())
}

/// The budget window a ticket falls in.
fn window(identity: &Identity, s: &SignedTicket) -> u64 {
    s.ticket.issued_at / identity.period_secs.max(1)
}
