//! The coordinator's state, startup, custodian health, committee setup relay, the offline
//! phase, packages and the collection of approvals into certificates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use qvm_api::audit::Event;
use qvm_api::wire::{
    Control, ControlBody, EVERY_CUSTODIAN, Health, Proposal, Refusal, RefusalKind, pool_slot,
};
use qvm_core::encoding::Digest;
use qvm_core::prss::setup::SealedPrssKey;
use qvm_core::{PartyIndex, PartySet};
use qvm_mpc::msgs::ShareMsg;
use qvm_mpc::offline::{BatchRecord, BatchSpec, OfflineKing};
use qvm_mpc::pool::{PoolKind, PoolLedger};
use qvm_node::client::{CallError, Peer, http_client};
use qvm_package::approval::{Certificate, Decision, SignedApproval};
use qvm_package::committee::Committee;
use qvm_package::keys::KeySet;
use qvm_package::manifest::{Manifest, Package};
use qvm_package::verify::verify;
use rand_core::{OsRng, RngCore};

use crate::config::Config;
use crate::metrics::{Metrics, PoolLabel};
use crate::store::{self, Store, StoreError, dec, enc};

/// How often background loops look.
const TICK: Duration = Duration::from_millis(100);
/// How often batch records every custodian holds are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How long a completion entry may wait for a ticket transaction to carry it before the
/// background flush writes it on its own.
const DEFERRED_FLUSH: Duration = Duration::from_millis(20);
/// Deadline of health checks and control calls.
const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
const HEALTH_DEADLINE: Duration = Duration::from_millis(800);
/// Health checks a custodian may miss in a row before it is taken out of scheduling.
const MISSED_CHECKS: u32 = 3;
const LEDGER: &str = "pool/ledger";

/// Why the coordinator cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Key files.
    #[error("keys: {0}")]
    Keys(String),
    /// The committee file.
    #[error("committee: {0}")]
    Committee(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other.
    #[error("{0}")]
    Other(String),
}

/// What the coordinator knows of one custodian.
#[derive(Debug, Default, Clone)]
pub struct PeerState {
    /// Answering health checks and not failed in a session since.
    pub healthy: bool,
    /// Its last report.
    pub report: Option<Health>,
    /// Held unhealthy until then (after failing a session).
    pub quarantine_until: Option<Instant>,
    /// Health checks missed in a row.
    pub missed: u32,
}

/// One custodian, as the coordinator reaches it.
#[derive(Debug)]
pub struct CustodianLink {
    /// Its index.
    pub index: PartyIndex,
    /// Its HTTP client.
    pub peer: Peer,
    state: Mutex<PeerState>,
}

impl CustodianLink {
    /// Its state.
    pub fn state(&self) -> PeerState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut PeerState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Marks it failed (a session step failed or hung): out of scheduling until a health
    /// check succeeds after a short quarantine.
    pub fn fail(&self) {
        self.update(|s| {
            s.healthy = false;
            s.quarantine_until = Some(Instant::now() + Duration::from_millis(500));
        });
    }
}

/// An active program version.
#[derive(Debug)]
pub struct ActiveProgram {
    /// Package id.
    pub id: Digest,
    /// Its manifest.
    pub manifest: Manifest,
}

/// A package's state: `proposed` or `active`, approvals so far, refusals (custodian,
/// reason).
pub type PackageState = (String, usize, Vec<(u8, String)>);

/// A proposed version collecting approvals.
#[derive(Debug)]
struct Pending {
    manifest: Manifest,
    bytes: Vec<u8>,
    proposed_at: u64,
    proposed_to: HashSet<u8>,
    approvals: BTreeMap<u8, SignedApproval>,
    refused: BTreeMap<u8, String>,
    certificate: Option<Certificate>,
}

/// The coordinator.
pub struct Coordinator {
    /// Settings.
    pub config: Config,
    pub(crate) keys: KeySet,
    /// The committee.
    pub committee: Committee,
    /// Its id.
    pub committee_id: Digest,
    /// The MPC view of it.
    pub mpc: qvm_mpc::Committee,
    store: Mutex<Store>,
    /// The custodians.
    pub custodians: Vec<CustodianLink>,
    ledger: Mutex<PoolLedger>,
    /// The items below which batch records were pruned, per pool.
    pruned_below: Mutex<[u64; 2]>,
    programs: RwLock<HashMap<String, Arc<ActiveProgram>>>,
    pending: Mutex<HashMap<Digest, Pending>>,
    /// Serializes ticket issuance (chains, budgets, ledger).
    pub(crate) issuing: Mutex<()>,
    pub(crate) buckets: Mutex<HashMap<(String, String), (f64, u64)>>,
    /// Completion entries (`Answered`) not yet in the audit log: they ride in the next
    /// ticket's transaction, or a background flush after [`DEFERRED_FLUSH`] of quiet.
    deferred: Mutex<Vec<(std::time::Instant, Event)>>,
    /// The largest single request's need per pool (triples, bits): the offline phase keeps
    /// twice that available.
    pub(crate) demand: [std::sync::atomic::AtomicU64; 2],
    /// Wakes a pool's offline loop when a grant leaves the pool below its target, so a
    /// busy pool is refilled at once rather than at the loop's next tick (at 150
    /// risk-mlp evaluations/s a tick's worth of demand was most of the low-water mark).
    pub(crate) low: [tokio::sync::Notify; 2],
    /// Metrics.
    pub metrics: Metrics,
}

impl core::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

fn refusal(kind: RefusalKind, msg: impl Into<String>) -> Refusal {
    Refusal::new(kind, msg)
}

impl Coordinator {
    /// Opens the coordinator from its configuration.
    pub fn open(config: Config) -> Result<Arc<Coordinator>, StartError> {
        let keys = KeySet::read(&config.keys).map_err(|e| StartError::Keys(e.to_string()))?;
        let text = std::fs::read_to_string(&config.committee)
            .map_err(|e| StartError::Committee(e.to_string()))?;
        let committee =
            Committee::from_json(&text).map_err(|e| StartError::Committee(e.to_string()))?;
        if committee.coordinator != keys.signing.verifying_key() {
            return Err(StartError::Keys(
                "these keys are not the committee's coordinator's".into(),
            ));
        }
        let committee_id = committee
            .id()
            .map_err(|e| StartError::Committee(e.to_string()))?;
        let mpc =
            qvm_mpc::Committee::new(committee_id, committee.n() as usize, committee.k as usize)
                .map_err(|e| StartError::Committee(e.to_string()))?;
        let http = http_client().map_err(|e| StartError::Other(e.to_string()))?;
        let mut custodians = Vec::new();
        for c in &committee.custodians {
            let url = c.url.as_deref().ok_or_else(|| {
                StartError::Committee(format!("custodian {} has no URL", c.index))
            })?;
            custodians.push(CustodianLink {
                index: PartyIndex::new(c.index as u32)
                    .map_err(|e| StartError::Committee(e.to_string()))?,
                peer: Peer::new(url, http.clone()),
                state: Mutex::new(PeerState::default()),
            });
        }
        std::fs::create_dir_all(&config.data).map_err(|e| StartError::Other(e.to_string()))?;
        let mut db = Store::open(
            &config.data.join("coordinator.db"),
            "coordinator",
            keys.signing.clone(),
            store::TABLES,
        )?;
        db.audit(Event::Started {
            node: "coordinator".into(),
        })?;
        if let Some(max) = config.store.max_bytes {
            let cap = db.set_quota(max)?;
            tracing::info!(bytes = cap, "database quota");
        }
        let ledger = match db.meta(LEDGER)? {
            Some(b) => dec(&b)?,
            None => PoolLedger::new(),
        };
        let coordinator = Coordinator {
            config,
            keys,
            committee,
            committee_id,
            mpc,
            store: Mutex::new(db),
            custodians,
            ledger: Mutex::new(ledger),
            pruned_below: Mutex::new([0; 2]),
            programs: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            issuing: Mutex::new(()),
            buckets: Mutex::new(HashMap::new()),
            deferred: Mutex::new(Vec::new()),
            demand: Default::default(),
            low: Default::default(),
            metrics: Metrics::default(),
        };
        coordinator.recover()?;
        Ok(Arc::new(coordinator))
    }

    fn recover(&self) -> Result<(), StartError> {
        let store = self.store();
        for row in store::packages_in(&store, "active")? {
            let pkg = Package::from_bytes(&row.package).map_err(StartError::Other)?;
            self.set_active(row.id, pkg.manifest);
        }
        for row in store::packages_in(&store, "proposed")? {
            let pkg = Package::from_bytes(&row.package).map_err(StartError::Other)?;
            self.pending_map().insert(
                row.id,
                Pending {
                    manifest: pkg.manifest,
                    bytes: row.package,
                    proposed_at: row.proposed_at,
                    proposed_to: HashSet::new(),
                    approvals: BTreeMap::new(),
                    refused: BTreeMap::new(),
                    certificate: None,
                },
            );
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an audit entry that need not be durable before the answer (an evaluation's
    /// completion: its `Evaluation` entry was durable before any custodian saw the ticket).
    pub(crate) fn defer_audit(&self, event: Event) {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((std::time::Instant::now(), event));
    }

    /// Appends the queued entries inside a transaction that commits anyway; returns how
    /// many, to [`Coordinator::forget_deferred`] once it has committed (a transaction that
    /// fails, on a full disk say, leaves them queued). Callers hold the store, so no other
    /// writer takes the same entries.
    pub(crate) fn write_deferred(
        &self,
        tx: &mut qvm_node::store::Tx<'_>,
    ) -> Result<usize, StoreError> {
        let events: Vec<Event> = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        let n = events.len();
        for e in events {
            tx.audit(e)?;
        }
        Ok(n)
    }

    /// Drops the first `n` queued entries, committed by [`Coordinator::write_deferred`].
    pub(crate) fn forget_deferred(&self, n: usize) {
        let mut queue = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(queue.len());
        queue.drain(..n);
    }

    /// Writes the queued entries if the oldest has waited `after` (background flush; zero
    /// at shutdown). Under load, ticket transactions carry them long before that.
    pub fn flush_deferred(&self, after: Duration) -> Result<(), StoreError> {
        let due = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .is_some_and(|(t, _)| t.elapsed() >= after);
        if !due {
            return Ok(());
        }
        let mut store = self.store();
        let n = store.write(|tx| self.write_deferred(tx))?;
        self.forget_deferred(n);
        Ok(())
    }

    /// Deletes the batch records every custodian holds (by its last health report):
    /// they are kept only for custodians that catch up, which they do in order. Returns
    /// how many went.
    pub fn prune_records(&self) -> Result<usize, Refusal> {
        // A custodian not heard from since this process started may need any record.
        let held = self
            .custodians
            .iter()
            .map(|c| c.state().report.map(|h| h.pool_end))
            .collect::<Option<Vec<_>>>()
            .and_then(|ends| {
                let min = |slot: usize| ends.iter().map(|e| e[slot]).min();
                Some([min(0)?, min(1)?])
            })
            .unwrap_or([0; 2]);
        let mut below = self.pruned_below.lock().unwrap_or_else(|p| p.into_inner());
        let next = [0, 1].map(|i| below[i].max(held[i]));
        if next == *below {
            return Ok(0);
        }
        let n = self.store().write(|tx| {
            let mut n = 0;
            for (slot, x) in next.iter().enumerate() {
                n += store::prune_batches(tx, slot, *x)?;
            }
            Ok::<_, Refusal>(n)
        })?;
        *below = next;
        if n > 0 {
            tracing::debug!(records = n, below = ?next, "pruned batch records");
        }
        Ok(n)
    }

    /// The pool ledger.
    pub fn ledger(&self) -> MutexGuard<'_, PoolLedger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_map(&self) -> MutexGuard<'_, HashMap<Digest, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active version of a program.
    pub fn active(&self, program: &str) -> Option<Arc<ActiveProgram>> {
        self.programs.read().ok()?.get(program).cloned()
    }

    /// Every active program.
    pub fn actives(&self) -> Vec<Arc<ActiveProgram>> {
        self.programs
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    fn set_active(&self, id: Digest, manifest: Manifest) {
        if let Ok(mut p) = self.programs.write() {
            p.insert(
                manifest.program.clone(),
                Arc::new(ActiveProgram { id, manifest }),
            );
        }
    }

    /// Package state by id: `proposed` (with approvals so far), `active` or unknown.
    pub fn package_status(&self, id: &Digest) -> Option<PackageState> {
        if self.actives().iter().any(|a| a.id == *id) {
            return Some(("active".into(), self.committee.k as usize, Vec::new()));
        }
        self.pending_map().get(id).map(|p| {
            (
                "proposed".into(),
                p.approvals.len(),
                p.refused.iter().map(|(i, r)| (*i, r.clone())).collect(),
            )
        })
    }

    /// Signs a control message for custodian `to`.
    pub fn control(
        &self,
        to: u8,
        body: ControlBody,
    ) -> Result<qvm_api::wire::SignedControl, Refusal> {
        Control {
            to,
            committee: self.committee_id,
            body,
        }
        .sign(&self.keys.signing)
        .map_err(|e| refusal(RefusalKind::Internal, e.to_string()))
    }

    /// Healthy custodians (and their last reports).
    pub fn healthy(&self) -> Vec<(&CustodianLink, Health)> {
        self.custodians
            .iter()
            .filter_map(|c| {
                let s = c.state();
                match (s.healthy, s.report) {
                    (true, Some(r)) => Some((c, r)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Spawns the background loops.
    pub fn spawn_background(self: &Arc<Self>) {
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                c.check_health().await;
                tokio::time::sleep(TICK).await;
            }
        });
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PRUNE_EVERY).await;
                let c = Arc::clone(&c);
                let pruned = tokio::task::spawn_blocking(move || c.prune_records()).await;
                if let Ok(Err(e)) = pruned {
                    tracing::warn!(error = %e, "cannot prune batch records");
                }
            }
        });
        // One offline loop per pool: a batch alternates between work at the custodians
        // (deriving, recording) and at the king (opening: a square root per bit), so with
        // two loops one pool's opening overlaps the other's custodian work. (Measured with
        // the PRSS and square-root batching in place: credit-score batches 675-750 ->
        // 850-1150 evaluations/s; before them, two loops had served fewer.)
        for kind in [PoolKind::Triples, PoolKind::Bits] {
            let c = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    if let Err(e) = c.refill(kind).await {
                        tracing::warn!(error = %e, pool = %kind, "offline phase");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    tokio::select! {
                        _ = c.low[pool_slot(kind)].notified() => {}
                        _ = tokio::time::sleep(TICK) => {}
                    }
                }
            });
        }
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DEFERRED_FLUSH).await;
                let c = Arc::clone(&c);
                let flushed =
                    tokio::task::spawn_blocking(move || c.flush_deferred(DEFERRED_FLUSH)).await;
                if let Ok(Err(e)) = flushed {
                    tracing::error!(error = %e, "cannot write completion entries to the audit log");
                }
            }
        });
        let c = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = c.maintain().await {
                    tracing::warn!(error = %e, "background work");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tokio::time::sleep(TICK).await;
            }
        });
    }

    async fn check_health(&self) {
        let checks = self.custodians.iter().map(|c| async move {
            let report = c.peer.get::<Health>("/v1/health", HEALTH_DEADLINE).await;
            (c, report)
        });
        for (c, report) in futures::future::join_all(checks).await {
            c.update(|s| match report {
                Ok(r) => {
                    s.missed = 0;
                    let quarantined = s.quarantine_until.is_some_and(|t| Instant::now() < t);
                    if !s.healthy && !quarantined {
                        tracing::info!(custodian = %c.index, "healthy");
                    }
                    s.healthy = !quarantined;
                    if s.healthy {
                        s.quarantine_until = None;
                    }
                    s.report = Some(r);
                }
                Err(e) => {
                    // A busy custodian may miss one check; a dead or stalled one misses
                    // them all. (A failed session step marks it at once.)
                    s.missed += 1;
                    if s.healthy && s.missed >= MISSED_CHECKS {
                        tracing::warn!(custodian = %c.index, error = %e, "unhealthy");
                        s.healthy = false;
                    }
                }
            });
        }
        self.metrics.healthy.set(self.healthy().len() as i64);
        let ledger = self.ledger().clone();
        for kind in [PoolKind::Triples, PoolKind::Bits] {
            self.metrics
                .pool_available
                .get_or_create(&PoolLabel {
                    pool: kind.to_string(),
                })
                .set(ledger.available(kind) as i64);
        }
    }

    /// One pass of background work: setup, catch-up, proposals, certificates, offline.
    async fn maintain(&self) -> Result<(), Refusal> {
        self.setup().await?;
        self.catch_up().await?;
        self.collect_approvals().await?;
        self.push_actives().await
    }

    /// Committee setup (DESIGN.md §3): once every custodian is up and none holds keys,
    /// relay each dealer's sealed PRSS keys to their recipients.
    async fn setup(&self) -> Result<(), Refusal> {
        let healthy = self.healthy();
        if healthy.len() < self.custodians.len() || healthy.iter().any(|(_, h)| h.keyring) {
            return Ok(());
        }
        let epoch = 1;
        tracing::info!("committee setup: dealing PRSS keys");
        let mut shipments: Vec<SealedPrssKey> = Vec::new();
        for c in &self.custodians {
            let msg = self.control(c.index.get(), ControlBody::SetupDeal { epoch })?;
            let dealt: Vec<SealedPrssKey> = c
                .peer
                .post("/v1/control", &msg, CONTROL_DEADLINE)
                .await
                .map_err(call)?;
            shipments.extend(dealt);
        }
        for c in &self.custodians {
            let mine: Vec<SealedPrssKey> = shipments
                .iter()
                .filter(|s| s.to == c.index)
                .cloned()
                .collect();
            let msg = self.control(
                c.index.get(),
                ControlBody::SetupReceive {
                    epoch,
                    shipments: mine,
                },
            )?;
            c.peer
                .post::<_, ()>("/v1/control", &msg, CONTROL_DEADLINE)
                .await
                .map_err(call)?;
        }
        self.store().audit(Event::Setup { epoch })?;
        tracing::info!("committee setup done");
        Ok(())
    }

    /// Sends batch records to custodians whose pools are behind the ledger.
    async fn catch_up(&self) -> Result<(), Refusal> {
        let produced = {
            let l = self.ledger();
            [
                l.next_batch_start(PoolKind::Triples),
                l.next_batch_start(PoolKind::Bits),
            ]
        };
        for (c, h) in self.healthy() {
            if !h.keyring {
                continue;
            }
            for kind in [PoolKind::Triples, PoolKind::Bits] {
                let slot = pool_slot(kind);
                if h.pool_end[slot] >= produced[slot] {
                    continue;
                }
                let records = store::records_covering(&self.store(), slot, h.pool_end[slot], 16)?;
                for r in records {
                    let record: BatchRecord = dec(&r)?;
                    if record.spec.start < h.pool_end[slot] {
                        continue;
                    }
                    let msg = self.control(c.index.get(), ControlBody::BatchRecord { record })?;
                    c.peer
                        .post::<_, ()>("/v1/control", &msg, CONTROL_DEADLINE)
                        .await
                        .map_err(call)?;
                }
            }
        }
        Ok(())
    }

    /// Brings custodians that missed an activation up to date: the proposal, then the
    /// certificate.
    async fn push_actives(&self) -> Result<(), Refusal> {
        for (c, h) in self.healthy() {
            for a in self.actives() {
                if h.active.contains(&a.id) {
                    continue;
                }
                let Some((bytes, proposed_at, cert)) =
                    store::package_with_certificate(&self.store(), &a.id)?
                else {
                    continue;
                };
                let control = self.control(
                    c.index.get(),
                    ControlBody::Propose {
                        package: a.id,
                        proposed_at,
                    },
                )?;
                let proposal = Proposal {
                    control,
                    package: bytes,
                };
                let pushed = async {
                    c.peer
                        .post::<_, Digest>("/v1/packages", &proposal, CONTROL_DEADLINE)
                        .await?;
                    let cert: Certificate =
                        dec(&cert).map_err(|e| CallError::BadAnswer(e.to_string()))?;
                    c.peer
                        .post::<_, ()>(
                            &format!("/v1/packages/{}/certificate", a.id),
                            &cert,
                            CONTROL_DEADLINE,
                        )
                        .await
                };
                if let Err(e) = pushed.await {
                    tracing::warn!(custodian = %c.index, package = %a.id, error = %e, "cannot bring up to date");
                }
            }
        }
        Ok(())
    }

    /// Runs offline batches while a pool is below its low-water mark and 2K − 1
    /// custodians are up with their keys.
    async fn refill(&self, kind: PoolKind) -> Result<(), Refusal> {
        if !self.mpc.supports_interactive() {
            return Ok(());
        }
        let target = self.pool_target(kind);
        for _ in 0..64 {
            if self.ledger().available(kind) >= target {
                break;
            }
            if !self.refill_once(kind).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The level the offline phase keeps a pool at: the configured low-water mark, and
    /// twice the largest request seen.
    pub(crate) fn pool_target(&self, kind: PoolKind) -> u64 {
        let demand = self.demand[pool_slot(kind)].load(std::sync::atomic::Ordering::Relaxed);
        self.config.offline.low_water.max(2 * demand)
    }

    /// Items in the next batch of `kind`: the configured size, or a multiple of it up to
    /// four times while the pool is that far below its target. Why: a batch costs round
    /// trips, a signature over its record and fsyncs whatever its size, so a pool drained
    /// by batch requests refills faster in big batches (credit-score batches of 100 at 2 of
    /// 3: 938–950 evaluations/s with 8 192 items a batch, 1 162–1 288 with 32 768), while
    /// single requests, which drain it slowly, keep the shorter pauses of small ones
    /// (credit-score p99 10 ms with 8 192, 15 ms with 32 768).
    fn batch_size(&self, kind: PoolKind) -> u32 {
        let base = self
            .config
            .offline
            .batch
            .clamp(1, qvm_api::MAX_OFFLINE_BATCH);
        let deficit = self
            .pool_target(kind)
            .saturating_sub(self.ledger().available(kind));
        let multiple = (deficit / u64::from(base)).clamp(1, 4) as u32;
        base.saturating_mul(multiple)
            .min(qvm_api::MAX_OFFLINE_BATCH)
    }

    /// One batch of `kind`; false if too few custodians are ready.
    async fn refill_once(&self, kind: PoolKind) -> Result<bool, Refusal> {
        {
            let start = self.ledger().next_batch_start(kind);
            // Members: custodians whose pools are complete up to the ledger.
            let ready: Vec<&CustodianLink> = self
                .healthy()
                .into_iter()
                .filter(|(_, h)| h.keyring && h.writable && h.pool_end[pool_slot(kind)] == start)
                .map(|(c, _)| c)
                .take(self.mpc.offline_quorum())
                .collect();
            if ready.len() < self.mpc.offline_quorum() {
                return Ok(false);
            }
            self.run_batch(kind, start, &ready).await?;
        }
        Ok(true)
    }

    async fn run_batch(
        &self,
        kind: PoolKind,
        start: u64,
        members: &[&CustodianLink],
    ) -> Result<(), Refusal> {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let spec = BatchSpec {
            id: Digest::from_bytes(id),
            kind,
            count: self.batch_size(kind),
            start,
        };
        let set: PartySet = members.iter().map(|c| c.index).collect();
        let king = OfflineKing::new(&self.mpc, spec, set)
            .map_err(|e| refusal(RefusalKind::Internal, e.to_string()))?;
        let calls = members.iter().map(|c| async move {
            let msg = self.control(c.index.get(), ControlBody::BatchStart { spec })?;
            c.peer
                .post::<_, ShareMsg>("/v1/control", &msg, CONTROL_DEADLINE)
                .await
                .map_err(|e| {
                    c.fail();
                    call(e)
                })
        });
        let t0 = std::time::Instant::now();
        let answers = futures::future::join_all(calls).await;
        let t_shares = t0.elapsed();
        // Opening a batch (interpolation, and a square root per bit) and recording it take
        // milliseconds of CPU and an fsync: off the async workers, so sessions in flight
        // keep being served meanwhile.
        let (record, count) =
            qvm_node::blocking_here(|| self.open_batch(kind, king, answers, start))?;
        let t_open = t0.elapsed();
        // Members finish; the others catch up from the record. One message for all: each
        // signature hashes the whole record.
        let msg = self.control(EVERY_CUSTODIAN, ControlBody::BatchRecord { record })?;
        let msg = &msg;
        let sends = self.custodians.iter().map(|c| {
            async move {
                c.peer
                    .post::<_, ()>("/v1/control", msg, CONTROL_DEADLINE)
                    .await
                    .map_err(call)?;
                // Its pool now ends after this batch (the next health report says so too).
                c.update(|s| {
                    if let Some(h) = &mut s.report {
                        h.pool_end[pool_slot(kind)] =
                            h.pool_end[pool_slot(kind)].max(start + count);
                    }
                });
                Ok::<(), Refusal>(())
            }
        });
        for r in futures::future::join_all(sends).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "a custodian will catch up later");
            }
        }
        tracing::debug!(
            pool = %kind,
            start,
            count,
            shares_us = t_shares.as_micros() as u64,
            open_us = (t_open - t_shares).as_micros() as u64,
            record_us = (t0.elapsed() - t_open).as_micros() as u64,
            "offline batch"
        );
        Ok(())
    }

    /// The king's side of a batch once the members answered: opens it and records it
    /// (with the pool ledger and an audit entry) before anyone may use its items.
    fn open_batch(
        &self,
        kind: PoolKind,
        mut king: OfflineKing,
        answers: Vec<Result<ShareMsg, Refusal>>,
        start: u64,
    ) -> Result<(BatchRecord, u64), Refusal> {
        let mut published = None;
        for answer in answers {
            if let Some(done) = king
                .receive(answer?)
                .map_err(|e| refusal(RefusalKind::Internal, e.to_string()))?
            {
                published = Some(done);
            }
        }
        let (_, record) =
            published.ok_or_else(|| refusal(RefusalKind::Internal, "the batch did not open"))?;
        let count = record.yield_count();
        let mut ledger = self.ledger();
        let mut next = ledger.clone();
        next.record(kind, count);
        let bytes = enc(&record)?;
        let ledger_bytes = enc(&next)?;
        self.store().write(|tx| {
            store::insert_batch(tx, pool_slot(kind), start, &bytes)?;
            tx.put_meta(LEDGER, &ledger_bytes)?;
            tx.audit(Event::Batch {
                kind: kind.to_string(),
                start,
                count,
            })
        })?;
        *ledger = next;
        Ok((record, count))
    }

    /// Receives a package from its owner: verifies it, records the proposal and forwards
    /// it to every custodian.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<(Digest, Manifest), Refusal> {
        let pkg = Package::from_bytes(&bytes).map_err(|e| refusal(RefusalKind::InvalidInput, e))?;
        let previous = self.active(&pkg.manifest.program);
        let verified = verify(
            &bytes,
            &self.committee,
            previous.as_ref().map(|a| &a.manifest),
            None,
        )
        .map_err(|e| refusal(RefusalKind::InvalidInput, format!("verification: {e}")))?;
        let id = verified.id;
        let m = pkg.manifest;
        let proposed_at = qvm_node::now_secs();
        let new = self.store().write(|tx| {
            let new = store::insert_package(tx, &id, &m.program, m.version, &bytes, proposed_at)?;
            if new {
                tx.audit(Event::Proposed {
                    package: id,
                    program: m.program.clone(),
                    version: m.version,
                })?;
            }
            Ok::<_, StoreError>(new)
        })?;
        if new {
            self.pending_map().insert(
                id,
                Pending {
                    manifest: m.clone(),
                    bytes,
                    proposed_at,
                    proposed_to: HashSet::new(),
                    approvals: BTreeMap::new(),
                    refused: BTreeMap::new(),
                    certificate: None,
                },
            );
            tracing::info!(package = %id, program = %m.program, version = m.version, "proposed");
        }
        self.propose_all().await;
        Ok((id, m))
    }

    /// Forwards pending proposals to custodians that do not have them yet.
    async fn propose_all(&self) {
        let work: Vec<(Digest, Vec<u8>, u64, HashSet<u8>)> = self
            .pending_map()
            .iter()
            .map(|(id, p)| (*id, p.bytes.clone(), p.proposed_at, p.proposed_to.clone()))
            .collect();
        for (id, bytes, proposed_at, done) in work {
            let sends = self
                .custodians
                .iter()
                .filter(|c| !done.contains(&c.index.get()) && c.state().healthy)
                .map(|c| {
                    let bytes = bytes.clone();
                    async move {
                        let control = self.control(
                            c.index.get(),
                            ControlBody::Propose {
                                package: id,
                                proposed_at,
                            },
                        )?;
                        c.peer
                            .post::<_, Digest>(
                                "/v1/packages",
                                &Proposal {
                                    control,
                                    package: bytes,
                                },
                                CONTROL_DEADLINE,
                            )
                            .await
                            .map_err(call)?;
                        Ok::<u8, Refusal>(c.index.get())
                    }
                });
            for r in futures::future::join_all(sends).await {
                match r {
                    Ok(i) => {
                        if let Some(p) = self.pending_map().get_mut(&id) {
                            p.proposed_to.insert(i);
                        }
                    }
                    Err(e) => tracing::warn!(package = %id, error = %e, "proposal not delivered"),
                }
            }
        }
    }

    /// Collects custodians' approvals; with K, builds the certificate, activates and
    /// pushes it to every custodian (again to those that missed it).
    async fn collect_approvals(&self) -> Result<(), Refusal> {
        self.propose_all().await;
        let ids: Vec<Digest> = self.pending_map().keys().copied().collect();
        for id in ids {
            let asks: Vec<&CustodianLink> = {
                let map = self.pending_map();
                let Some(p) = map.get(&id) else { continue };
                self.custodians
                    .iter()
                    .filter(|c| {
                        let i = c.index.get();
                        p.proposed_to.contains(&i)
                            && !p.approvals.contains_key(&i)
                            && !p.refused.contains_key(&i)
                    })
                    .collect()
            };
            let path = format!("/v1/packages/{id}/approval");
            let answers = futures::future::join_all(asks.iter().map(|c| {
                let path = path.clone();
                async move {
                    (
                        c.index.get(),
                        c.peer.get::<SignedApproval>(&path, HEALTH_DEADLINE).await,
                    )
                }
            }))
            .await;
            let ready = {
                let mut map = self.pending_map();
                let Some(p) = map.get_mut(&id) else { continue };
                for (i, a) in answers {
                    let Ok(a) = a else { continue };
                    if a.approval.custodian != i {
                        continue;
                    }
                    match &a.approval.decision {
                        Decision::Approve => {
                            p.approvals.insert(i, a);
                        }
                        Decision::Refuse(reason) => {
                            p.refused.insert(i, reason.clone());
                        }
                    }
                }
                if p.certificate.is_none() && p.approvals.len() >= self.committee.k as usize {
                    let cert = Certificate {
                        package: id,
                        approvals: p.approvals.values().cloned().collect(),
                    };
                    if cert
                        .check(&p.manifest, &self.committee, p.proposed_at)
                        .is_ok()
                    {
                        p.certificate = Some(cert);
                    }
                }
                p.certificate.clone().map(|c| (c, p.manifest.clone()))
            };
            let Some((cert, manifest)) = ready else {
                continue;
            };
            self.activate(id, manifest, cert).await?;
        }
        Ok(())
    }

    async fn activate(
        &self,
        id: Digest,
        manifest: Manifest,
        cert: Certificate,
    ) -> Result<(), Refusal> {
        let path = format!("/v1/packages/{id}/certificate");
        let pushes = self.custodians.iter().map(|c| {
            let (path, cert) = (path.clone(), cert.clone());
            async move {
                let r = c.peer.post::<_, ()>(&path, &cert, CONTROL_DEADLINE).await;
                if r.is_ok() {
                    c.update(|s| {
                        if let Some(h) = &mut s.report {
                            h.active.push(id);
                        }
                    });
                }
                r
            }
        });
        let delivered = futures::future::join_all(pushes)
            .await
            .iter()
            .filter(|r| r.is_ok())
            .count();
        if delivered < self.committee.k as usize {
            // Not enough custodians can serve it yet; try again later.
            return Ok(());
        }
        let bytes = enc(&cert)?;
        let program = manifest.program.clone();
        self.store().write(|tx| {
            store::activate(tx, &id, &program, &bytes)?;
            tx.audit(Event::Activated { package: id })
        })?;
        self.set_active(id, manifest);
        self.pending_map().remove(&id);
        tracing::info!(package = %id, program = %program, "active");
        Ok(())
    }
}

/// A failed call as a refusal.
pub fn call(e: CallError) -> Refusal {
    match e {
        CallError::Refused(r) => r,
        e => refusal(RefusalKind::Unavailable, e.to_string()),
    }
}
