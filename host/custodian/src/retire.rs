//! Retiring pooled items no ticket can grant any more, and pruning the batch records
//! whose items are all gone.
//!
//! A pool is a run of items from its base; an item that is never used pins every item
//! after it in memory, and every batch record from its batch on stays in the database
//! (and is replayed at each restart). Items go unused here when a session granted them
//! but never reached this custodian — failed over to another set, or a coordinator that
//! crashed after granting — and, with gossip off, whenever this custodian was not in the
//! session set.
//!
//! The coordinator allocates items in order and every ticket it signs expires
//! `ticket_ttl_secs` after issue, so once a ticket granting items from `s` has expired
//! (by this custodian's clock, the one its admission checks use), so has every ticket
//! granting items below `s`: they were allocated, and so issued, before it. Those items
//! can be retired. Tickets issued within the same second may be allocated out of order,
//! hence [`MARGIN_SECS`]. A coordinator restarted with a shorter TTL could leave an older
//! ticket valid past a newer one's expiry: its session is then refused here as reusing
//! items, and retried with a fresh grant — availability, never reuse.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use qvm_api::wire::Refusal;
use qvm_api::wire::pool_slot;
use qvm_mpc::pool::{PoolGrant, PoolKind};

use crate::node::Node;
use crate::store::CustodianWrites;

/// How often [`run`] sweeps.
const SWEEP: Duration = Duration::from_secs(1);

/// Seconds past a ticket's expiry before the items below its grant are retired.
pub const MARGIN_SECS: u64 = 5;

/// Grants seen (admitted here or learned from another custodian), waiting for expiry:
/// (when to retire, the first item of each pool the grant names, 0 for none).
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
        let at = expires_at.saturating_add(MARGIN_SECS);
        let mut starts = [0; 2];
        for (kind, r) in [
            (PoolKind::Triples, grant.triples),
            (PoolKind::Bits, grant.bits),
        ] {
            if r.count > 0 {
                starts[pool_slot(kind)] = r.start;
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

/// Retires what is due and prunes batch records once a second, until the process ends.
pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = Arc::clone(&node);
        let swept = tokio::task::spawn_blocking(move || n.sweep(qvm_node::now_secs())).await;
        match swept {
            Ok(Ok(_)) => {}
            Ok(Err(r)) => {
                tracing::warn!(node = %node.name, reason = %r.message, "pool sweep failed")
            }
            Err(e) => tracing::warn!(node = %node.name, error = %e, "pool sweep failed"),
        }
    }
}

impl Node {
    /// Notes the grant of a ticket admitted here or learned from another custodian.
    pub fn note_grant(&self, expires_at: u64, grant: &PoolGrant) {
        self.retirements().note(expires_at, grant);
    }

    /// Retires the items due at `now` (Unix seconds), then deletes the batch records
    /// wholly below each pool's base; returns how many it deleted.
    pub fn sweep(&self, now: u64) -> Result<usize, Refusal> {
        let below = self.retirements().due(now);
        let bases = self.with_pool(|pool| {
            [PoolKind::Triples, PoolKind::Bits].map(|kind| {
                let x = below[pool_slot(kind)];
                if x > 0 {
                    pool.retire_below(kind, x);
                }
                let base = pool.base(kind);
                let held = pool.end(kind).saturating_sub(base);
                self.metrics.pool_held(&kind.to_string(), held);
                base
            })
        });
        let mut pruned = self.pruned_at();
        if bases == *pruned {
            return Ok(0);
        }
        let n = self.store().write(|tx| {
            let mut n = 0;
            for kind in [PoolKind::Triples, PoolKind::Bits] {
                n += tx.prune_batches(pool_slot(kind), bases[pool_slot(kind)])?;
            }
            Ok::<_, Refusal>(n)
        })?;
        *pruned = bases;
        self.metrics.pruned(n as u64);
        if n > 0 {
            tracing::debug!(node = %self.name, batches = n, ?bases, "pruned used batch records");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use qvm_mpc::pool::Range;

    use super::*;

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
        assert_eq!(r.due(100 + MARGIN_SECS), [0, 0]);
        assert_eq!(r.due(101 + MARGIN_SECS), [80, 20]);
        assert_eq!(r.due(102 + MARGIN_SECS), [200, 200]);
        assert_eq!(r.due(10_000), [0, 0]);
        assert!(r.pending.is_empty());
    }
}
