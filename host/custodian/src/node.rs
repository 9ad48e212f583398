//! The custodian's state and what it does outside sessions: startup and recovery,
//! committee setup, offline batches, packages, approvals and activation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use qvm_api::audit::Event;
use qvm_api::wire::{ControlBody, Health, Proposal, Refusal, RefusalKind, pool_slot};
use qvm_core::encoding::{Digest, to_canonical};
use qvm_core::pairwise::PairwiseKey;
use qvm_core::prss::setup::{SealedPrssKey, deal, receive};
use qvm_core::prss::{PrssKey, PrssKeyring};
use qvm_core::{PartyIndex, PartySet};
use qvm_mpc::SharedVec;
use qvm_mpc::msgs::{OpenedMsg, ShareMsg};
use qvm_mpc::offline::{BatchRecord, OfflineBatch, catch_up};
use qvm_mpc::pool::{Pool, PoolKind};
use qvm_package::approval::{Approval, Certificate, Decision};
use qvm_package::committee::Committee;
use qvm_package::keys::KeySet;
use qvm_package::manifest::{Bundle, Manifest, Package};
use qvm_package::verify::{AsCustodian, verify};
use qvm_runtime::{Limits, MpcBackend, Program, Runtime, RuntimeConfig};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::session::{ItemLink, Sessions};
use crate::store::{CustodianReads, CustodianWrites, PackageRow, Store, StoreError, dec, enc};
use qvm_node::store::Cached;

/// The runtime type of a custodian's program instances.
pub type CustodianRuntime = Runtime<MpcBackend<ItemLink>>;

/// Whether a batch record for `spec` extends `pool` (`false`: its items are already
/// there). A record beyond the pool's end is refused: the coordinator catches a custodian
/// up in order, so a gap is records still to come.
fn pool_continues_at(pool: &Pool, spec: &qvm_mpc::offline::BatchSpec) -> Result<bool, Refusal> {
    let end = pool.end(spec.kind);
    if spec.start > end {
        return Err(Refusal::new(
            RefusalKind::BadControl,
            format!("the {} pool ends at {end}, not {}", spec.kind, spec.start),
        ));
    }
    Ok(spec.start == end)
}

/// The most items an offline batch may have.
pub const MAX_BATCH_ITEMS: u32 = qvm_api::MAX_OFFLINE_BATCH;

/// Refuses a batch of no items or more than [`MAX_BATCH_ITEMS`].
fn check_batch_size(spec: &qvm_mpc::offline::BatchSpec) -> Result<(), Refusal> {
    if spec.count == 0 || spec.count > MAX_BATCH_ITEMS {
        return Err(Refusal::new(
            RefusalKind::BadControl,
            format!("a batch has 1..={MAX_BATCH_ITEMS} items"),
        ));
    }
    Ok(())
}

/// The key that seals secret material at rest: derived from the custodian's
/// key-agreement key (HKDF-SHA256, its own domain), so the database alone opens nothing.
pub struct NodeKey(PairwiseKey);

impl core::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}

impl NodeKey {
    fn derive(keys: &KeySet, index: u8) -> Result<NodeKey, StartError> {
        let secret = keys
            .agreement
            .as_ref()
            .ok_or_else(|| StartError::Keys("a custodian needs a key-agreement key".into()))?;
        let ikm = secret.to_bytes();
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"qvm/node-seal/v1"), ikm.as_ref());
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(&[index], okm.as_mut())
            .map_err(|_| StartError::Keys("key derivation failed".into()))?;
        Ok(NodeKey(PairwiseKey::from_bytes(*okm)))
    }

    /// Seals `plaintext` for storage under `label`.
    pub fn seal(&self, label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Refusal> {
        self.0
            .seal(label, plaintext, &mut OsRng)
            .map_err(|e| internal(e.to_string()))
    }

    /// Opens what [`NodeKey::seal`] sealed under `label`.
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        self.0
            .open(label, sealed)
            .map_err(|_| Refusal::new(RefusalKind::Storage, "sealed material does not open"))
    }
}

/// Why a custodian cannot start.
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
    /// The component runtime.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Recovery from the store failed.
    #[error("recovery: {0}")]
    Recovery(String),
}

/// An active program version, ready to run.
pub struct Active {
    /// Package id.
    pub id: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The loaded component.
    pub program: Program<MpcBackend<ItemLink>>,
    /// This custodian's shares of the secrets (shared with every session under the
    /// version rather than copied into each).
    pub secrets: Arc<HashMap<String, SharedVec>>,
}

impl core::fmt::Debug for Active {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Active")
            .field("id", &self.id)
            .field("program", &self.manifest.program)
            .field("version", &self.manifest.version)
            .finish_non_exhaustive()
    }
}

/// A refusal for an internal failure.
pub fn internal(msg: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Internal, msg)
}

/// The custodian.
pub struct Node {
    /// Its index.
    pub index: PartyIndex,
    /// "custodian-i".
    pub name: String,
    pub(crate) keys: KeySet,
    /// The committee.
    pub committee: Committee,
    /// Its id.
    pub committee_id: Digest,
    /// The MPC view of it.
    pub mpc: qvm_mpc::Committee,
    pub(crate) node_key: NodeKey,
    pub(crate) pairwise: BTreeMap<PartyIndex, PairwiseKey>,
    store: Mutex<Store>,
    keyring: RwLock<Option<Arc<PrssKeyring>>>,
    pool: Mutex<Pool>,
    /// Grants waiting for expiry, and the pool bases batch records were last pruned at.
    retirements: Mutex<qvm_mpc::pool::Retirements>,
    pruned_at: Mutex<[u64; 2]>,
    offline: Mutex<HashMap<Digest, OfflineBatch>>,
    programs: RwLock<HashMap<String, Arc<Active>>>,
    manifests: RwLock<HashMap<Digest, Arc<Manifest>>>,
    /// Running sessions.
    pub sessions: Sessions,
    /// The component host.
    pub runtime: Arc<CustodianRuntime>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Cleared when a write fails for lack of space; see [`Health::writable`].
    writable: std::sync::atomic::AtomicBool,
    /// Held while a version is being activated, so that a second push of its certificate
    /// (the coordinator pushes again when the first push outlived its deadline) answers
    /// only once the version is loaded and can serve, not as soon as the database says
    /// "active".
    activating: Mutex<()>,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const KEYRING: &str = "prss/keyring";
const DEALT: &str = "prss/dealt";
const DEALT_EPOCH: &str = "prss/dealt-epoch";
/// The key and size of the write that checks for space after a write failed for lack of it.
const PROBE: &str = "storage/probe";
const PROBE_BYTES: usize = 64 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct Dealt {
    epoch: u64,
    own: Vec<(PartySet, [u8; 32])>,
    shipments: Vec<SealedPrssKey>,
}

impl Drop for Dealt {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.own.iter_mut().for_each(|(_, k)| k.zeroize());
    }
}

fn label(kind: &str, id: &Digest) -> Vec<u8> {
    let mut l = kind.as_bytes().to_vec();
    l.extend_from_slice(id.as_bytes());
    l
}

impl Node {
    /// Opens the custodian: keys, committee, store; recovers keyring, pools and active
    /// programs from the store.
    pub fn open(config: &Config) -> Result<Arc<Node>, StartError> {
        Node::open_inner(config, true)
    }

    /// Opens the custodian's state for an operator's command (`qvm custodian approve`)
    /// beside a running daemon: the store is shared safely between processes.
    pub fn open_offline(config: &Config) -> Result<Arc<Node>, StartError> {
        Node::open_inner(config, false)
    }

    fn open_inner(config: &Config, daemon: bool) -> Result<Arc<Node>, StartError> {
        let keys = KeySet::read(&config.keys).map_err(|e| StartError::Keys(e.to_string()))?;
        let text = std::fs::read_to_string(&config.committee)
            .map_err(|e| StartError::Committee(e.to_string()))?;
        let committee =
            Committee::from_json(&text).map_err(|e| StartError::Committee(e.to_string()))?;
        let me = committee
            .custodian(config.index)
            .ok_or_else(|| StartError::Committee(format!("no custodian {}", config.index)))?;
        let public = keys.public();
        if Some(me.agreement) != public.agreement || me.signing != public.signing {
            return Err(StartError::Keys(format!(
                "the keys in {} are not custodian {}'s in the committee",
                config.keys.display(),
                config.index
            )));
        }
        let committee_id = committee
            .id()
            .map_err(|e| StartError::Committee(e.to_string()))?;
        let mpc =
            qvm_mpc::Committee::new(committee_id, committee.n() as usize, committee.k as usize)
                .map_err(|e| StartError::Committee(e.to_string()))?;
        let index = PartyIndex::new(config.index as u32)
            .map_err(|e| StartError::Committee(e.to_string()))?;
        let agreement = keys
            .agreement
            .as_ref()
            .ok_or_else(|| StartError::Keys("no key-agreement key".into()))?;
        let mut pairwise = BTreeMap::new();
        for c in &committee.custodians {
            if c.index != config.index {
                let p = PartyIndex::new(c.index as u32)
                    .map_err(|e| StartError::Committee(e.to_string()))?;
                pairwise.insert(p, agreement.pairwise(&c.agreement, &committee_id));
            }
        }
        let node_key = NodeKey::derive(&keys, config.index)?;
        std::fs::create_dir_all(&config.data)
            .map_err(|e| StartError::Store(StoreError::Encoding(e.to_string())))?;
        let name = format!("custodian-{}", config.index);
        let mut store = Store::open(
            &config.data.join("custodian.db"),
            &name,
            keys.signing.clone(),
            crate::store::TABLES,
        )?;
        store.write(|tx| crate::store::migrate(tx))?;
        if daemon {
            store.audit(Event::Started { node: name.clone() })?;
        }
        if let Some(max) = config.store.max_bytes {
            let cap = store.set_quota(max)?;
            tracing::info!(node = %name, bytes = cap, "database quota");
        }
        let limits = Limits {
            fuel: config.limits.fuel,
            deadline: Duration::from_millis(config.limits.deadline_ms),
            memory_bytes: config.limits.memory_mib << 20,
            instances: config.limits.instances,
            ..Limits::default()
        };
        let runtime = Runtime::new(RuntimeConfig {
            limits,
            cache_dir: Some(config.data.join("cache")),
        })
        .map_err(|e| StartError::Runtime(e.to_string()))?;
        let node = Node {
            index,
            name,
            keys,
            committee,
            committee_id,
            mpc,
            node_key,
            pairwise,
            store: Mutex::new(store),
            keyring: RwLock::new(None),
            pool: Mutex::new(Pool::new()),
            retirements: Mutex::new(qvm_mpc::pool::Retirements::default()),
            pruned_at: Mutex::new([0; 2]),
            offline: Mutex::new(HashMap::new()),
            programs: RwLock::new(HashMap::new()),
            manifests: RwLock::new(HashMap::new()),
            sessions: Sessions::default(),
            runtime: Arc::new(runtime),
            metrics: crate::metrics::Metrics::default(),
            writable: std::sync::atomic::AtomicBool::new(true),
            activating: Mutex::new(()),
        };
        node.recover()?;
        Ok(Arc::new(node))
    }

    /// Rebuilds in-memory state from the store.
    fn recover(&self) -> Result<(), StartError> {
        let rec = |e: Refusal| StartError::Recovery(e.message);
        let sealed = self.store().meta(KEYRING)?;
        if let Some(sealed) = sealed {
            let bytes = self
                .node_key
                .open(KEYRING.as_bytes(), &sealed)
                .map_err(rec)?;
            let keys: Vec<(PartySet, [u8; 32])> = dec(&bytes)?;
            let ring = PrssKeyring::new(
                self.index,
                self.mpc.prss_params(),
                keys.into_iter().map(|(a, k)| (a, PrssKey::from_bytes(k))),
            )
            .map_err(|e| StartError::Recovery(e.to_string()))?;
            *self.keyring.write().map_err(|_| poisoned())? = Some(Arc::new(ring));
        }
        if let Some(ring) = self.keyring() {
            let records = self.store().batch_records()?;
            let mut pool = self.pool();
            for r in records {
                let record: BatchRecord = dec(&r)?;
                let produced = catch_up(&ring, &self.mpc, &record)
                    .map_err(|e| StartError::Recovery(e.to_string()))?;
                let kind = record.spec.kind;
                if record.spec.start > pool.end(kind) {
                    // This custodian pruned the batches below, every item in them used or
                    // retired.
                    pool.skip_to(kind, record.spec.start)
                        .map_err(|e| StartError::Recovery(e.to_string()))?;
                }
                pool.add(record.spec.start, produced)
                    .map_err(|e| StartError::Recovery(e.to_string()))?;
            }
            for (slot, start, end) in self.store().taken()? {
                let kind = if slot == pool_slot(PoolKind::Triples) {
                    PoolKind::Triples
                } else {
                    PoolKind::Bits
                };
                pool.mark_used(
                    kind,
                    qvm_mpc::pool::Range {
                        start,
                        count: end - start,
                    },
                );
            }
        }
        let rows = self.store().packages_in("active")?;
        let proposed = self.store().packages_in("proposed")?;
        let superseded = self.store().packages_in("superseded")?;
        for row in proposed
            .into_iter()
            .chain(superseded)
            .chain(rows.iter().cloned())
        {
            let pkg = Package::from_bytes(&row.package).map_err(StartError::Recovery)?;
            self.remember(row.id, pkg.manifest);
        }
        for row in rows {
            self.load_active(&row).map_err(rec)?;
        }
        Ok(())
    }

    /// The store (poisoning means a thread panicked mid-write; the transaction rolled
    /// back, so the store is still consistent).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn retirements(&self) -> MutexGuard<'_, qvm_mpc::pool::Retirements> {
        self.retirements.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn pruned_at(&self) -> MutexGuard<'_, [u64; 2]> {
        self.pruned_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The PRSS keyring, once committee setup is done.
    pub fn keyring(&self) -> Option<Arc<PrssKeyring>> {
        self.keyring.read().ok().and_then(|k| k.clone())
    }

    /// The active version of a program.
    pub fn active(&self, program: &str) -> Option<Arc<Active>> {
        self.programs.read().ok()?.get(program).cloned()
    }

    /// A manifest this custodian holds, by package id.
    pub fn manifest(&self, id: &Digest) -> Option<Arc<Manifest>> {
        self.manifests.read().ok()?.get(id).cloned()
    }

    fn remember(&self, id: Digest, manifest: Manifest) {
        if let Ok(mut m) = self.manifests.write() {
            m.insert(id, Arc::new(manifest));
        }
    }

    /// Runs `f` with the pool locked.
    pub fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        f(&mut self.pool())
    }

    /// Notes a refusal: one for lack of storage marks this custodian as unable to write.
    pub fn note(&self, r: &Refusal) {
        if r.kind == RefusalKind::Storage
            && self
                .writable
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(node = %self.name, reason = %r.message, "reporting itself unable to write");
        }
    }

    /// Whether it can write, probing the database again if a write failed before.
    fn writable(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.writable.load(Ordering::SeqCst) {
            return true;
        }
        // Room for new work, not for one more small row: a probe that must allocate
        // PROBE_BYTES of fresh pages (freed again in the same transaction, so the pages it
        // leaves on the free list are headroom for the next admissions).
        let ok = self
            .store()
            .write(|tx| {
                tx.put_meta(PROBE, &[0u8; PROBE_BYTES])?;
                tx.conn().exec("DELETE FROM meta WHERE key = ?1", [PROBE])?;
                Ok::<_, StoreError>(())
            })
            .is_ok();
        if ok {
            self.writable.store(true, Ordering::SeqCst);
            tracing::info!(node = %self.name, "the database takes writes again");
        }
        ok
    }

    /// The health report.
    pub fn health(&self) -> Result<Health, Refusal> {
        // Lock order: pool before store, everywhere; here one at a time.
        let (dealt, audit_entries) = {
            let store = self.store();
            let dealt: Option<u64> = store.meta(DEALT_EPOCH)?.map(|b| dec(&b)).transpose()?;
            (dealt, store.audit_len()?)
        };
        let pool = self.pool();
        let active = self
            .programs
            .read()
            .map_err(|_| internal("lock"))?
            .values()
            .map(|a| a.id)
            .collect();
        Ok(Health {
            index: self.index.get(),
            keyring: self.keyring().is_some(),
            dealt_epoch: dealt,
            pool_end: [pool.end(PoolKind::Triples), pool.end(PoolKind::Bits)],
            high_water: [
                pool.high_water(PoolKind::Triples),
                pool.high_water(PoolKind::Bits),
            ],
            active,
            audit_entries,
            writable: self.writable(),
        })
    }

    /// Handles a control message from the coordinator.
    pub fn control(&self, body: &ControlBody) -> Result<Vec<u8>, Refusal> {
        match body {
            ControlBody::SetupDeal { epoch } => encode(&self.setup_deal(*epoch)?),
            ControlBody::SetupReceive { epoch, shipments } => {
                self.setup_receive(*epoch, shipments)?;
                encode(&())
            }
            ControlBody::BatchStart { spec } => encode(&self.batch_start(spec)?),
            ControlBody::BatchRecord { record } => {
                self.batch_record(record)?;
                encode(&())
            }
            ControlBody::Propose { .. } => Err(Refusal::new(
                RefusalKind::BadControl,
                "proposals go to /v1/packages with the package",
            )),
        }
    }

    fn setup_deal(&self, epoch: u64) -> Result<Vec<SealedPrssKey>, Refusal> {
        if self.keyring().is_some() {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                "committee setup is already done",
            ));
        }
        let mut store = self.store();
        if let Some(sealed) = store.meta(DEALT)? {
            let bytes = self.node_key.open(DEALT.as_bytes(), &sealed)?;
            let dealt: Dealt = dec(&bytes)?;
            if dealt.epoch == epoch {
                return Ok(dealt.shipments.clone());
            }
        }
        let dealing = deal(
            &self.mpc.prss_params(),
            self.index,
            &self.committee_id,
            &self.pairwise,
            &mut OsRng,
        )
        .map_err(|e| internal(e.to_string()))?;
        let dealt = Dealt {
            epoch,
            own: dealing
                .own
                .iter()
                .map(|(a, k)| (*a, *k.as_bytes()))
                .collect(),
            shipments: dealing.shipments.clone(),
        };
        let bytes = Zeroizing::new(enc(&dealt)?);
        let sealed = self.node_key.seal(DEALT.as_bytes(), &bytes)?;
        store.write(|tx| {
            tx.put_meta(DEALT, &sealed)?;
            tx.put_meta(DEALT_EPOCH, &enc(&epoch)?)
        })?;
        Ok(dealing.shipments)
    }

    fn setup_receive(&self, epoch: u64, shipments: &[SealedPrssKey]) -> Result<(), Refusal> {
        if self.keyring().is_some() {
            return Ok(());
        }
        let mut store = self.store();
        let sealed = store
            .meta(DEALT)?
            .ok_or_else(|| Refusal::new(RefusalKind::BadControl, "no dealing for this epoch"))?;
        let dealt: Dealt = dec(&self.node_key.open(DEALT.as_bytes(), &sealed)?)?;
        if dealt.epoch != epoch {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                format!("dealt in epoch {}, not {epoch}", dealt.epoch),
            ));
        }
        let own = dealt
            .own
            .iter()
            .map(|(a, k)| (*a, PrssKey::from_bytes(*k)))
            .collect();
        let ring = receive(
            &self.mpc.prss_params(),
            self.index,
            &self.committee_id,
            &self.pairwise,
            own,
            shipments,
        )
        .map_err(|e| Refusal::new(RefusalKind::BadControl, e.to_string()))?;
        let keys: Vec<(PartySet, [u8; 32])> =
            ring.keys().map(|(a, k)| (a, *k.as_bytes())).collect();
        let bytes = Zeroizing::new(enc(&keys)?);
        let sealed = self.node_key.seal(KEYRING.as_bytes(), &bytes)?;
        store.write(|tx| {
            tx.put_meta(KEYRING, &sealed)?;
            tx.audit(Event::Setup { epoch })
        })?;
        *self.keyring.write().map_err(|_| poisoned_refusal())? = Some(Arc::new(ring));
        tracing::info!(node = %self.name, epoch, "committee setup done");
        Ok(())
    }

    fn batch_start(&self, spec: &qvm_mpc::offline::BatchSpec) -> Result<ShareMsg, Refusal> {
        let ring = self.keyring().ok_or_else(not_set_up)?;
        check_batch_size(spec)?;
        let end = self.pool().end(spec.kind);
        if spec.start != end {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                format!("the {} pool ends at {end}, not {}", spec.kind, spec.start),
            ));
        }
        if !self.store().write(|tx| tx.start_batch(&spec.id))? {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                "this batch id was used before",
            ));
        }
        let (batch, msg) = OfflineBatch::start(&ring, &self.mpc, *spec);
        let mut pending = self.offline.lock().map_err(|_| poisoned_refusal())?;
        // The coordinator runs one batch of a kind at a time and starts the next only where
        // this pool ends, so an earlier batch of this kind still here was abandoned (its
        // coordinator crashed, or a member failed it): its derived values (wiped on drop)
        // would otherwise stay for the life of the process. Should its record come after
        // all (a start given up on that arrived late), `catch_up` derives the same items.
        pending.retain(|_, b| b.spec().kind != spec.kind);
        pending.insert(spec.id, batch);
        self.metrics.offline_pending(pending.len());
        Ok(msg)
    }

    fn batch_record(&self, record: &BatchRecord) -> Result<(), Refusal> {
        let ring = self.keyring().ok_or_else(not_set_up)?;
        let spec = record.spec;
        // Before anything is derived for it: catching up allocates the batch's items.
        check_batch_size(&spec)?;
        if record.public.len() != spec.count as usize {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                format!(
                    "a batch record of {} items carries {} values",
                    spec.count,
                    record.public.len()
                ),
            ));
        }
        let mine = {
            let mut pending = self.offline.lock().map_err(|_| poisoned_refusal())?;
            let mine = pending.remove(&spec.id);
            self.metrics.offline_pending(pending.len());
            mine
        };
        if !pool_continues_at(&self.pool(), &spec)? {
            return Ok(());
        }
        // Derived without the pool's lock: admissions take their items under it, and
        // finishing (or, for a custodian outside the batch, deriving) a batch of tens of
        // thousands of items takes milliseconds.
        let produced = match mine {
            Some(batch) => {
                let opened = OpenedMsg {
                    session: spec.id,
                    round: 0,
                    values: record.public.clone(),
                };
                batch.finish(&opened).map(|(_, p, _)| p)
            }
            None => catch_up(&ring, &self.mpc, record),
        }
        .map_err(|e| Refusal::new(RefusalKind::BadControl, e.to_string()))?;
        let count = record.yield_count();
        let mut pool = self.pool();
        if !pool_continues_at(&pool, &spec)? {
            // Another copy of this record (a broadcast racing a catch-up) got here first.
            return Ok(());
        }
        self.store().write(|tx| {
            tx.insert_batch(pool_slot(spec.kind), spec.start, &spec.id, &enc(record)?)?;
            tx.audit(Event::Batch {
                kind: spec.kind.to_string(),
                start: spec.start,
                count,
            })
        })?;
        pool.add(spec.start, produced)
            .map_err(|e| internal(e.to_string()))?;
        Ok(())
    }

    /// Receives a proposed package: verifies it as this custodian (every check of
    /// DESIGN.md §7) and stores it with its bundle sealed under the node key.
    pub fn propose(&self, proposal: &Proposal) -> Result<Digest, Refusal> {
        let body = proposal.control.open(
            &self.committee.coordinator,
            self.index.get(),
            &self.committee_id,
        )?;
        let ControlBody::Propose {
            package,
            proposed_at,
        } = body
        else {
            return Err(Refusal::new(RefusalKind::BadControl, "not a proposal"));
        };
        let now = qvm_node::now_secs();
        if *proposed_at > now + qvm_api::MAX_CLOCK_SKEW_SECS
            || now > proposed_at.saturating_add(self.committee.proposal_ttl_secs)
        {
            return Err(Refusal::new(
                RefusalKind::Expired,
                "the proposal window is closed",
            ));
        }
        if self.store().package(package)?.is_some() {
            // Already received (the coordinator resends to nodes it thinks missed it).
            return Ok(*package);
        }
        let pkg = Package::from_bytes(&proposal.package)
            .map_err(|e| Refusal::new(RefusalKind::BadControl, e))?;
        let (verified, manifest) = self.verify_package(&proposal.package, &pkg.manifest)?;
        if verified.id != *package {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                "the package id does not match the proposal",
            ));
        }
        let bundle = verified
            .bundle
            .ok_or_else(|| internal("verified without a bundle"))?;
        let plain = Zeroizing::new(enc(&bundle)?);
        let sealed = self.node_key.seal(&label("bundle", package), &plain)?;
        let (program, version) = (manifest.program.clone(), manifest.version);
        self.store().write(|tx| {
            if tx.insert_package(
                package,
                &program,
                version,
                &proposal.package,
                &sealed,
                *proposed_at,
            )? {
                tx.audit(Event::Proposed {
                    package: *package,
                    program: program.clone(),
                    version,
                })?;
            }
            Ok::<_, StoreError>(())
        })?;
        self.remember(*package, manifest);
        tracing::info!(node = %self.name, package = %package, program = %program, version, "package proposed");
        Ok(*package)
    }

    fn verify_package(
        &self,
        bytes: &[u8],
        manifest: &Manifest,
    ) -> Result<(qvm_package::verify::Verified, Manifest), Refusal> {
        let previous = self.active(&manifest.program);
        let agreement = self
            .keys
            .agreement
            .as_ref()
            .ok_or_else(|| internal("no key-agreement key"))?;
        let verified = verify(
            bytes,
            &self.committee,
            previous.as_ref().map(|a| &a.manifest),
            Some(AsCustodian {
                index: self.index.get(),
                agreement,
            }),
        )
        .map_err(|e| Refusal::new(RefusalKind::BadControl, format!("verification: {e}")))?;
        Ok((verified, manifest.clone()))
    }

    /// The operator's decision on a proposed package: verifies it again, signs an
    /// approval (or a refusal) and records it. Returns the signed approval's encoding.
    pub fn decide(&self, package: &Digest, decision: Decision) -> Result<Vec<u8>, Refusal> {
        let row = self
            .store()
            .package(package)?
            .ok_or_else(|| Refusal::new(RefusalKind::UnknownProgram, "no such package"))?;
        let pkg = Package::from_bytes(&row.package).map_err(internal)?;
        if decision == Decision::Approve {
            self.verify_package(&row.package, &pkg.manifest)?;
        }
        let approved = decision == Decision::Approve;
        let signed = Approval::of(
            &pkg.manifest,
            self.index.get(),
            decision,
            qvm_node::now_secs(),
        )
        .and_then(|a| a.sign(&self.keys.signing))
        .map_err(|e| internal(e.to_string()))?;
        let bytes = enc(&signed)?;
        self.store().write(|tx| {
            tx.put_approval(package, &bytes)?;
            tx.audit(Event::Approval {
                package: *package,
                approved,
            })
        })?;
        Ok(bytes)
    }

    /// Activates a version on a certificate of K approvals, after checking it.
    pub fn activate(&self, package: &Digest, cert: &Certificate) -> Result<(), Refusal> {
        let _one_at_a_time = self.activating.lock().map_err(|_| poisoned_refusal())?;
        let row = self
            .store()
            .package(package)?
            .ok_or_else(|| Refusal::new(RefusalKind::UnknownProgram, "no such package"))?;
        if row.state == "active" {
            return Ok(());
        }
        let pkg = Package::from_bytes(&row.package).map_err(internal)?;
        let m = &pkg.manifest;
        if cert.package != *package {
            return Err(Refusal::new(
                RefusalKind::NotActive,
                "the certificate is for another package",
            ));
        }
        cert.check(m, &self.committee, row.proposed_at)
            .map_err(|e| Refusal::new(RefusalKind::NotActive, e.to_string()))?;
        if row.state != "proposed" {
            return Err(Refusal::new(
                RefusalKind::NotActive,
                format!("the package is {}", row.state),
            ));
        }
        let current = self.active(&m.program);
        if current.as_ref().map(|a| a.id) != m.previous {
            return Err(Refusal::new(
                RefusalKind::NotActive,
                "the package does not follow the active version",
            ));
        }
        let program = m.program.clone();
        self.store().write(|tx| {
            tx.activate(package, &program, &enc(cert)?)?;
            tx.audit(Event::Activated { package: *package })
        })?;
        let row = self
            .store()
            .package(package)?
            .ok_or_else(|| internal("package vanished"))?;
        self.load_active(&row)?;
        tracing::info!(node = %self.name, package = %package, program = %program, "activated");
        Ok(())
    }

    fn load_active(&self, row: &PackageRow) -> Result<(), Refusal> {
        let pkg = Package::from_bytes(&row.package).map_err(internal)?;
        let program = self
            .runtime
            .load(&pkg.component)
            .map_err(|e| internal(e.to_string()))?;
        let plain = self.node_key.open(&label("bundle", &row.id), &row.bundle)?;
        let bundle: Bundle = dec(&plain)?;
        let secrets = Arc::new(
            bundle
                .secrets
                .iter()
                .map(|(n, v)| (n.clone(), SharedVec::new(v.clone())))
                .collect(),
        );
        let active = Active {
            id: row.id,
            manifest: pkg.manifest,
            program,
            secrets,
        };
        self.programs
            .write()
            .map_err(|_| poisoned_refusal())?
            .insert(active.manifest.program.clone(), Arc::new(active));
        Ok(())
    }

    /// This custodian's signed approval of a package, if it decided.
    pub fn approval(&self, package: &Digest) -> Result<Option<Vec<u8>>, Refusal> {
        Ok(self.store().approval(package)?)
    }
}

fn not_set_up() -> Refusal {
    Refusal::new(
        RefusalKind::Unavailable,
        "committee setup (PRSS keys) is not done",
    )
}

fn poisoned() -> StartError {
    StartError::Recovery("a lock was poisoned".into())
}

fn poisoned_refusal() -> Refusal {
    internal("a lock was poisoned")
}

/// The canonical encoding of a control answer.
fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Refusal> {
    to_canonical(v).map_err(|e| internal(e.to_string()))
}
