//! Pool-mark gossip (DESIGN.md §4; the messages are `qvm_api::marks`).
//!
//! Each custodian answers another custodian's signed question (`POST /v1/pool-marks`)
//! with the tickets with pooled items it admitted after a cursor, signed, and pulls the same from every other custodian of
//! the committee that has a URL, one task per peer, straight from the peer rather than
//! through the coordinator (whose misbehaviour this is meant to catch). What it learns goes into the
//! same table admission checks, so a ticket granting items another custodian has
//! already used is refused here too; a learned range that overlaps a range of another
//! ticket recorded here is an alarm: logged, counted, and written to the audit log
//! with both tickets.

use std::sync::Arc;
use std::time::Duration;

use qvm_api::audit::Event;
use qvm_api::marks::{
    MAX_MARKS, MarkKeys, MarksQuery, PoolMarks, SignedMarksQuery, SignedPoolMarks, TakenRange,
};
use qvm_api::wire::Refusal;
use qvm_core::PartySet;
use qvm_core::encoding::Digest;
use qvm_mpc::pool::Range;
use qvm_node::client::{CallError, Peer};

use crate::node::{Node, internal};
use crate::store::{CustodianReads, CustodianWrites, Learned, dec};

/// How long one pull may take before the peer counts as unreachable this time.
const PULL_DEADLINE: Duration = Duration::from_secs(2);

/// Pages pulled from one peer per interval: a peer far ahead is caught up over several
/// intervals rather than in one long burst of signature checks.
const PAGES: usize = 16;

/// The largest answer read: [`MAX_MARKS`] tickets of a few hundred bytes each, with
/// room for long program and identity names. A peer sending more is cut off.
const MAX_ANSWER_BYTES: usize = 4 << 20;

impl Node {
    /// The tickets with pooled items this custodian admitted after the cursor another
    /// custodian of the committee asked for, signed. Anyone else is refused: the tickets
    /// say which identities queried which programs, and when.
    pub fn pool_marks(&self, query: &SignedMarksQuery) -> Result<SignedPoolMarks, Refusal> {
        let key_of = |i: u8| {
            let c = self.committee.custodians.iter().find(|c| c.index == i);
            c.map(|c| &c.signing)
        };
        let asked = query.open(
            self.index.get(),
            &self.committee_id,
            qvm_node::now_secs(),
            key_of,
        );
        // Anyone who reaches the port can be refused, so a refusal is counted, not logged
        // above debug: a flood of them must not drown the log an operator pages on.
        let after = asked.inspect_err(|r| {
            self.metrics.marks_refused(r.kind);
            tracing::debug!(node = %self.name, reason = %r.message, "pool-marks question refused");
        })?;
        let rows = self.store().own_tickets_after(after, MAX_MARKS)?;
        let next = rows.last().map_or(after, |(id, _)| *id);
        let tickets = rows.iter().map(|(_, t)| dec(t)).collect::<Result<_, _>>()?;
        PoolMarks {
            committee: self.committee_id,
            from: self.index.get(),
            after,
            next,
            tickets,
        }
        .sign(&self.keys.signing)
        .map_err(|e| internal(e.to_string()))
    }

    /// Records the ranges custodian `from` admitted (from its checked marks, each with
    /// its ticket's session set) and moves the cursor to `next`, in one transaction;
    /// raises an alarm for each range that overlaps another ticket's. Returns how many
    /// ranges were new here.
    pub fn learn(
        &self,
        from: u8,
        taken: &[(TakenRange, PartySet)],
        next: u64,
    ) -> Result<usize, Refusal> {
        let mut new = Vec::new();
        let mut conflicts = Vec::new();
        self.store().write(|tx| {
            for (r, members) in taken {
                let mine = members.contains(self.index);
                match tx.learn_range(from, r, mine)? {
                    Learned::New => new.push((*r, mine)),
                    Learned::Known => {}
                    Learned::Conflict(known) => {
                        let reason = reuse_reason(from, r, &known);
                        tx.audit(Event::Alarm {
                            reason: reason.clone(),
                        })?;
                        conflicts.push(reason);
                    }
                }
            }
            tx.set_gossip_cursor(from, next)?;
            Ok::<_, Refusal>(())
        })?;
        for reason in &conflicts {
            tracing::error!(node = %self.name, custodian = from, "ALARM: {reason}");
            self.metrics.alarm("pool_reuse");
        }
        // Items another custodian used under a ticket that leaves this one out can never
        // be granted here: drop them from the pool. A ticket naming this custodian too is
        // one it may still admit (its start can arrive after the other member's marks).
        self.with_pool(|pool| {
            for (r, _) in new.iter().filter(|(_, mine)| !mine) {
                pool.mark_used(
                    r.kind,
                    Range {
                        start: r.start,
                        count: r.end - r.start,
                    },
                );
            }
        });
        self.metrics.learned(new.len() as u64);
        Ok(new.len())
    }
}

/// The alarm's words: which items, which tickets, who told.
fn reuse_reason(from: u8, r: &TakenRange, known: &[TakenRange]) -> String {
    let here: Vec<String> = known
        .iter()
        .map(|k| format!("{}..{} under ticket {}", k.start, k.end, k.ticket.to_hex()))
        .collect();
    format!(
        "pool reuse: custodian {from} admitted {} {}..{} under ticket {}, overlapping {} recorded here — the coordinator granted the same items twice",
        r.kind,
        r.start,
        r.end,
        r.ticket.to_hex(),
        here.join(", ")
    )
}

/// Pulls every other custodian's pool marks every `interval`, until the process ends.
pub async fn run(node: Arc<Node>, interval: Duration) {
    let http = match qvm_node::client::http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(node = %node.name, error = %e, "pool-mark gossip cannot start");
            return;
        }
    };
    let me = node.index.get();
    for c in &node.committee.custodians {
        let Some(url) = c.url.as_deref().filter(|_| c.index != me) else {
            continue;
        };
        let peer = Peer::new(url, http.clone());
        tokio::spawn(pull_loop(Arc::clone(&node), c.index, peer, interval));
    }
}

/// One peer: pull, learn, sleep. A peer that is down is logged once when it goes and once
/// when it comes back, not at every pull.
async fn pull_loop(node: Arc<Node>, from: u8, peer: Peer, interval: Duration) {
    let mut reachable = true;
    loop {
        tokio::time::sleep(interval).await;
        match pull(&node, from, &peer).await {
            Ok(()) if !reachable => {
                reachable = true;
                tracing::info!(node = %node.name, custodian = from, "pool marks reachable again");
            }
            Ok(()) => {}
            Err(e) if reachable => {
                reachable = false;
                tracing::warn!(node = %node.name, custodian = from, error = %e, "pool marks not pulled");
            }
            Err(_) => {}
        }
    }
}

/// Pulls until the peer has nothing newer than the cursor, at most [`PAGES`] pages.
async fn pull(node: &Arc<Node>, from: u8, peer: &Peer) -> Result<(), CallError> {
    let key = node
        .committee
        .custodians
        .iter()
        .find(|c| c.index == from)
        .map(|c| c.signing)
        .ok_or_else(|| CallError::BadAnswer(format!("custodian {from} is not in the committee")))?;
    for _ in 0..PAGES {
        let after = node.store().gossip_cursor(from).map_err(stored)?;
        let query = MarksQuery {
            committee: node.committee_id,
            from: node.index.get(),
            to: from,
            after,
            issued_at: qvm_node::now_secs(),
        }
        .sign(&node.keys.signing)
        .map_err(|e| CallError::BadAnswer(e.to_string()))?;
        let signed: SignedPoolMarks = peer
            .post_capped("/v1/pool-marks", &query, PULL_DEADLINE, MAX_ANSWER_BYTES)
            .await?;
        let full = signed.marks.tickets.len() == MAX_MARKS;
        if signed.marks.tickets.is_empty() && signed.marks.next == after {
            // Nothing new: no signature to check that matters, no transaction to commit.
            return Ok(());
        }
        let n = Arc::clone(node);
        // Checking the marks verifies a signature per ticket not recorded here already
        // (a store lookup each, which failing only means verifying): off the async
        // threads, and without holding the store during the verifications.
        tokio::task::spawn_blocking(move || {
            let keys = MarkKeys {
                custodian: &key,
                coordinator: &n.committee.coordinator,
            };
            let known = |h: &Digest| n.store().knows_ticket(h).unwrap_or(false);
            let taken = signed.open(keys, from, &n.committee_id, after, known)?;
            let learned = n.learn(from, &taken, signed.marks.next)?;
            for t in &signed.marks.tickets {
                n.note_grant(t.ticket.expires_at, &t.ticket.grant);
            }
            Ok::<_, Refusal>(learned)
        })
        .await
        .map_err(|e| CallError::BadAnswer(e.to_string()))?
        .map_err(CallError::Refused)?;
        if !full {
            return Ok(());
        }
    }
    Ok(())
}

fn stored(e: qvm_node::store::StoreError) -> CallError {
    CallError::Refused(Refusal::from(e))
}
