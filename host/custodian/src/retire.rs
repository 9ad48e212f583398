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
//! Once a ticket admitted or learned here has expired by this custodian's clock (the one
//! its admission checks use), the items below its grant can be retired
//! ([`qvm_mpc::pool::Retirements`] says why). A coordinator whose clock stepped back, or
//! restarted with a shorter TTL, could leave an older ticket valid past a newer one's
//! expiry: admission then refuses it (`items_used`, the pool no longer holds its items)
//! with nothing recorded — availability, never reuse.

use std::sync::Arc;
use std::time::Duration;

use qvm_api::wire::{Refusal, pool_slot};
use qvm_mpc::pool::{PoolGrant, PoolKind};

use crate::node::Node;
use crate::store::CustodianWrites;

/// How often [`run`] sweeps.
const SWEEP: Duration = Duration::from_secs(1);

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
