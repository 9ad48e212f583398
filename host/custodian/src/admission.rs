//! Every check of DESIGN.md §8 step 3, before any work: the ticket's signature and fit to
//! the request, expiry, the active version, the identity and the client's signature, the
//! inputs, then — in one durable transaction — the ticket chain, replay, budget, rate and
//! the pooled items. The budget debit and the audit entry commit together before the
//! component runs; a refusal that is the client's fault spends nothing.

use std::sync::Arc;

use qvm_api::audit::Event;
use qvm_api::request::check_input;
use qvm_api::ticket::{ChainError, ChainHead, SignedTicket, extend};
use qvm_api::wire::{Refusal, RefusalKind, StartSession, pool_slot};
use qvm_api::{MAX_ATTEMPTS, MAX_BATCH, MAX_CLOCK_SKEW_SECS};
use qvm_core::encoding::Digest;
use qvm_mpc::pool::{Material, PoolGrant, PoolKind};
use qvm_package::policy::Identity;

use crate::node::{Active, Node, internal};
use crate::store::{CustodianWrites, StoreError, Tx, now_ms};

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
}

fn refuse(kind: RefusalKind, msg: impl Into<String>) -> Refusal {
    Refusal::new(kind, msg)
}

/// Runs the checks and, if all pass, commits the admission.
pub fn admit(node: &Node, start: &StartSession) -> Result<Admitted, Refusal> {
    let result = check_and_commit(node, start);
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
        tracing::info!(node = %node.name, kind = r.kind.as_str(), reason = %r.message, "refused");
    }
    result
}

fn check_and_commit(node: &Node, start: &StartSession) -> Result<Admitted, Refusal> {
    let (signed, req) = (&start.ticket, &start.request.request);
    let t = &signed.ticket;
    // The ticket: the coordinator's, for this request, with this custodian in Q.
    signed.verify(&node.committee.coordinator).map_err(|_| {
        refuse(
            RefusalKind::BadTicket,
            "the ticket is not signed by the coordinator",
        )
    })?;
    let request_hash = start
        .request
        .hash()
        .map_err(|e| refuse(RefusalKind::BadTicket, e.to_string()))?;
    if t.request != request_hash
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
    start.request.verify(&identity.key).map_err(|_| {
        refuse(
            RefusalKind::BadClientSignature,
            "the client's signature does not verify",
        )
    })?;
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
    // The durable part, with the pool locked so the items checked are the items taken.
    node.with_pool(|pool| {
        for kind in [PoolKind::Triples, PoolKind::Bits] {
            let r = match kind {
                PoolKind::Triples => t.grant.triples,
                PoolKind::Bits => t.grant.bits,
            };
            if r.count > 0 && r.end() > pool.end(kind) {
                return Err(refuse(
                    RefusalKind::PoolDry,
                    format!(
                        "this custodian's {kind} pool ends at {}, the ticket needs up to {}",
                        pool.end(kind),
                        r.end()
                    ),
                ));
            }
        }
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
        node.store()
            .write(|tx| commit(node, tx, start, &identity, &ticket_hash, &cost))?;
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
    })
}

/// The transaction: chain, replay, budget, rate, high-water marks, audit entry.
fn commit(
    node: &Node,
    tx: &mut Tx<'_>,
    start: &StartSession,
    identity: &Identity,
    ticket_hash: &Digest,
    cost: &dyn Fn(&SignedTicket) -> Result<u64, Refusal>,
) -> Result<(), Refusal> {
    let t = &start.ticket.ticket;
    let (program, who) = (t.program.as_str(), t.identity.as_str());
    let head = tx
        .chain_head(program, who)?
        .map(|(sequence, hash)| ChainHead { sequence, hash })
        .unwrap_or_default();
    let mut tickets: Vec<SignedTicket> = start.chain.clone();
    tickets.push(start.ticket.clone());
    // Known tickets at or below the head are skipped; looked up before the closure so
    // the closure does not borrow the transaction.
    let mut known = Vec::new();
    for s in &tickets {
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
    if is_known(t.sequence, ticket_hash) {
        return Err(refuse(
            RefusalKind::Replay,
            "this ticket was already served",
        ));
    }
    match extend(head, &tickets, &node.committee.coordinator, is_known) {
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
            return Err(refuse(RefusalKind::ChainFork, e.to_string()));
        }
        Err(e) => return Err(refuse(RefusalKind::BadTicket, e.to_string())),
    }
    let window = |s: &SignedTicket| s.ticket.issued_at / identity.period_secs.max(1);
    // Tickets this custodian missed: recorded (and counted against the budget) as served
    // by others.
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
                window(s),
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
    // Budget.
    let charge = cost(&start.ticket)?;
    let spent = tx.spent(program, who, window(&start.ticket))?;
    if spent.saturating_add(charge) > identity.budget {
        return Err(refuse(
            RefusalKind::BudgetExhausted,
            format!(
                "budget: {spent} of {} cost units spent this period, this request costs {charge}",
                identity.budget
            ),
        ));
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
    // Pooled items: never below the high-water marks.
    for (kind, r) in [
        (PoolKind::Triples, t.grant.triples),
        (PoolKind::Bits, t.grant.bits),
    ] {
        if r.count == 0 {
            continue;
        }
        let mark = tx.high_water(pool_slot(kind))?;
        if r.start < mark {
            return Err(refuse(
                RefusalKind::BadTicket,
                format!("the ticket reuses {kind} below the high-water mark {mark}"),
            ));
        }
        tx.raise_high_water(pool_slot(kind), r.end())?;
    }
    tx.insert_ticket(
        program,
        who,
        t.sequence,
        ticket_hash,
        &t.request,
        t.attempt,
        charge,
        window(&start.ticket),
        true,
    )?;
    tx.audit(Event::Evaluation {
        request: t.request,
        ticket: *ticket_hash,
        package: t.package,
        identity: who.to_string(),
        members: t.members,
        items: t.items,
        cost: charge,
    })
    .map_err(|e: StoreError| -> Refusal { e.into() })?;
    Ok(())
}
