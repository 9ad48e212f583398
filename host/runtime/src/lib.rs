//! QuorumVM's component host (DESIGN.md §5).
//!
//! Runs program components — built by the DSL compiler or any component toolchain against
//! `wit/program.wit` — on wasmtime, on one custodian's shares (or, for tests and the owner's
//! what-if runs, on plain values). The guest never sees a share: it holds handles into a
//! host resource table and every share operation is a host call; interactive ops await
//! network rounds while the guest is suspended (async host functions on tokio).
//!
//! What a hostile component can do is bounded:
//!
//! - **no WASI, no other imports**: a component importing anything but the
//!   `quorumvm:program` interfaces is refused at load, with the import named;
//! - **fuel** (deterministic instruction budget) and an **epoch deadline** (wall clock,
//!   including time spent waiting for rounds);
//! - **memory, table and instance limits** (a pooling allocator sized explicitly, and a
//!   store limiter), and limits on the vectors the host holds for the guest;
//! - **determinism**: NaN canonicalization on, relaxed SIMD off and threads not compiled in
//!   (wasmtime's `threads` feature is not enabled), so every
//!   custodian computes the same public values.
//!
//! A failure ends that instance only; the [`Runtime`] goes on serving others. Compiled
//! components are cached on disk by wasmtime's cache, keyed by the component bytes and the
//! engine's compilation settings.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod backend;
mod bindings;
pub mod cluster;
mod error;
mod host;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use qvm_mpc::SharedVec;
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

pub use backend::{Backend, BoxFuture, MpcBackend, PlaintextBackend, Transport};
pub use bindings::{Field, Value};
pub use error::{BackendError, RuntimeError};
use host::{HostState, Tripped};

/// The interfaces a component may import: the world's own.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "quorumvm:program/shares@0.1.0",
    "quorumvm:program/types@0.1.0",
];

/// Resource limits of every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per run (roughly, wasm instructions).
    pub fuel: u64,
    /// Wall-clock budget per run.
    pub deadline: Duration,
    /// Linear memory per instance, bytes.
    pub memory_bytes: usize,
    /// Table elements per table.
    pub table_elements: usize,
    /// Concurrent instances the pooling allocator holds.
    pub instances: u32,
    /// Elements of one shared vector.
    pub max_vector_len: usize,
    /// Elements across all vectors the host holds for one instance.
    pub max_live_elements: usize,
    /// Outputs one run may return.
    pub max_outputs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: 1_000_000_000,
            deadline: Duration::from_secs(30),
            memory_bytes: 64 << 20,
            table_elements: 10_000,
            instances: 64,
            max_vector_len: 1 << 20,
            max_live_elements: 1 << 24,
            max_outputs: 1024,
        }
    }
}

/// How often the epoch ticks: the deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine settings.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Instance limits.
    pub limits: Limits,
    /// Where to cache compiled components (none: compile every load).
    pub cache_dir: Option<PathBuf>,
}

/// A loaded program: compiled, checked against the world, pre-linked (`InstancePre`), so
/// each run only instantiates.
pub struct Program<B: Backend + 'static> {
    pre: bindings::ProgramPre<StoreData<B>>,
}

impl<B: Backend + 'static> Clone for Program<B> {
    fn clone(&self) -> Self {
        Program {
            pre: self.pre.clone(),
        }
    }
}

impl<B: Backend + 'static> core::fmt::Debug for Program<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Program").finish_non_exhaustive()
    }
}

/// The result of a run: named output vectors (the backend's shares or plain values).
pub type Outputs = Vec<(String, SharedVec)>;

/// The input of [`Runtime::run_each`] that failed, why, and its backend.
pub struct ItemFailure<B> {
    /// Its position among the inputs.
    pub index: usize,
    /// What went wrong.
    pub error: RuntimeError,
    /// The backend it ran with.
    pub backend: B,
}

impl<B> core::fmt::Debug for ItemFailure<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ItemFailure")
            .field("index", &self.index)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Ticks the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The component host for programs whose share operations run on backend `B`.
pub struct Runtime<B: Backend + 'static> {
    engine: Engine,
    linker: Linker<StoreData<B>>,
    limits: Limits,
    _ticker: Ticker,
}

impl<B: Backend + 'static> core::fmt::Debug for Runtime<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn setup(e: impl core::fmt::Display) -> RuntimeError {
    RuntimeError::Setup(e.to_string())
}

/// Bytes of a freed memory or table slot reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 4 << 20;

/// The engine configuration: components, async, fuel and epochs, determinism, pooling.
fn engine_config(config: &RuntimeConfig) -> Result<Config, RuntimeError> {
    let limits = config.limits;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(limits.instances)
        .total_core_instances(limits.instances * 4)
        .total_memories(limits.instances * 2)
        .total_tables(limits.instances * 2)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(4)
        .total_stacks(limits.instances)
        // Reset a freed slot by rewriting the pages it dirtied (found with the PAGEMAP_SCAN
        // ioctl where the kernel has it) instead of `madvise`: every instance is short-lived,
        // and each `madvise` cost a TLB shootdown across the process's threads — a sixth of
        // a custodian's CPU under a batch load — plus page faults when the slot was reused.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .max_wasm_stack(512 << 10)
        .async_stack_size(2 << 20)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = &config.cache_dir {
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        c.cache(Some(Cache::new(cache).map_err(setup)?));
    }
    Ok(c)
}

impl<B: Backend + 'static> Runtime<B> {
    /// An engine with these limits (and a thread that ticks its epoch).
    pub fn new(config: RuntimeConfig) -> Result<Runtime<B>, RuntimeError> {
        let engine = Engine::new(&engine_config(&config)?).map_err(setup)?;
        let mut linker = Linker::new(&engine);
        bindings::Program::add_to_linker::<_, wasmtime::component::HasSelf<HostState<B>>>(
            &mut linker,
            |s: &mut StoreData<B>| &mut s.host,
        )
        .map_err(setup)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name("qvm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })
            .map_err(setup)?;
        Ok(Runtime {
            engine,
            linker,
            limits: config.limits,
            _ticker: Ticker {
                stop,
                handle: Some(handle),
            },
        })
    }

    /// Compiles (or loads from the cache) a component and checks it against the world:
    /// only the world's imports, and a `run` export of the right type.
    pub fn load(&self, bytes: &[u8]) -> Result<Program<B>, RuntimeError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        for (name, item) in component.component_type().imports(&self.engine) {
            let allowed = ALLOWED_IMPORTS.contains(&name)
                && matches!(item.ty, ComponentItem::ComponentInstance(_));
            if !allowed {
                return Err(RuntimeError::ForbiddenImport(name.to_string()));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WorldMismatch(format!("{e:#}")))?;
        let pre = bindings::ProgramPre::new(pre)
            .map_err(|e| RuntimeError::WorldMismatch(format!("{e:#}")))?;
        Ok(Program { pre })
    }

    /// Runs `program` on one input with `backend`; returns the named outputs and the
    /// backend (whose session produces the masked output shares).
    pub async fn run(
        &self,
        program: &Program<B>,
        backend: B,
        input: Vec<bindings::Field>,
    ) -> (Result<Outputs, RuntimeError>, B) {
        let (store, result) = match self.instantiate(program, backend).await {
            Ok((mut store, instance)) => {
                let result = self.call(&mut store, &instance, &input).await;
                (store, result)
            }
            Err((store, e)) => (store, Err(e)),
        };
        let result = result.map_err(|e| classify(e, store.data(), self.limits));
        (result.and_then(|r| r), store.into_data().host.backend)
    }

    /// Runs `program` on each input in turn, in one instance, each input with its own
    /// backend (a fresh handle table, fuel and deadline per input), and stops at the first
    /// failure. For the inputs of one batch request of a program without interactive
    /// operations: instantiating and tearing down an instance per input was most of such
    /// an input's cost, and sequential runs lose nothing when no input waits for rounds.
    /// The inputs all come from one client, so whatever a program keeps in its memory
    /// between runs stays within that client's request.
    pub async fn run_each(
        &self,
        program: &Program<B>,
        items: Vec<(B, Vec<bindings::Field>)>,
    ) -> Result<Vec<(Outputs, B)>, ItemFailure<B>> {
        let mut pending = items.into_iter().enumerate();
        let Some((_, (backend, mut input))) = pending.next() else {
            return Ok(Vec::new());
        };
        let mut done = Vec::with_capacity(pending.len() + 1);
        let (mut store, mut instance) = match self.instantiate(program, backend).await {
            Ok(ready) => ready,
            Err((store, e)) => return Err(self.item_failed(0, store, e)),
        };
        let mut index = 0;
        loop {
            let result = match self.fresh_budget(&mut store) {
                Ok(()) => self.call(&mut store, &instance, &input).await,
                Err(e) => Err(e),
            };
            let outputs = match result {
                Ok(Ok(outputs)) => outputs,
                Ok(Err(error)) => {
                    let backend = store.into_data().host.backend;
                    return Err(ItemFailure {
                        index,
                        error,
                        backend,
                    });
                }
                Err(e) => return Err(self.item_failed(index, store, e)),
            };
            let Some((next_index, (backend, next))) = pending.next() else {
                done.push((outputs, store.into_data().host.backend));
                return Ok(done);
            };
            if store.data().limiter.memory_bytes > self.limits.memory_bytes / 2 {
                // A heap that only grows (the compiler's guests bump-allocate their input
                // and never free) would carry every input into the next run: past half
                // the limit, the next input gets a fresh instance, so an input that fits
                // alone fits in a batch too.
                done.push((outputs, store.into_data().host.backend));
                (store, instance) = match self.instantiate(program, backend).await {
                    Ok(ready) => ready,
                    Err((store, e)) => return Err(self.item_failed(next_index, store, e)),
                };
            } else {
                let fresh = HostState::new(backend, self.limits);
                let used = core::mem::replace(&mut store.data_mut().host, fresh);
                done.push((outputs, used.backend));
            }
            (index, input) = (next_index, next);
        }
    }

    /// A store for `backend` with `program` instantiated in it.
    async fn instantiate(
        &self,
        program: &Program<B>,
        backend: B,
    ) -> Result<(Store<StoreData<B>>, bindings::Program), (Store<StoreData<B>>, wasmtime::Error)>
    {
        let mut store = Store::new(&self.engine, StoreData::new(backend, self.limits));
        store.limiter(|s| &mut s.limiter);
        let instance = match self.fresh_budget(&mut store) {
            Ok(()) => program.pre.instantiate_async(&mut store).await,
            Err(e) => Err(e),
        };
        match instance {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err((store, e)),
        }
    }

    /// Fuel and an epoch deadline for one run.
    fn fresh_budget(&self, store: &mut Store<StoreData<B>>) -> wasmtime::Result<()> {
        store.set_fuel(self.limits.fuel)?;
        let ticks = (self.limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok(())
    }

    fn item_failed(
        &self,
        index: usize,
        store: Store<StoreData<B>>,
        e: wasmtime::Error,
    ) -> ItemFailure<B> {
        let error = classify(e, store.data(), self.limits);
        let backend = store.into_data().host.backend;
        ItemFailure {
            index,
            error,
            backend,
        }
    }

    /// One call of the `run` export, its outputs taken out of the handle table.
    async fn call(
        &self,
        store: &mut Store<StoreData<B>>,
        instance: &bindings::Program,
        input: &[bindings::Field],
    ) -> wasmtime::Result<Result<Outputs, RuntimeError>> {
        let outputs = match instance.call_run(&mut *store, input).await? {
            Ok(outputs) => outputs,
            Err(e) => return Ok(Err(RuntimeError::Program(program_error(e)))),
        };
        Ok(self.collect(store, outputs))
    }

    /// Takes the output vectors out of the table, checking names and sizes.
    fn collect(
        &self,
        store: &mut Store<StoreData<B>>,
        outputs: Vec<bindings::Output>,
    ) -> Result<Outputs, RuntimeError> {
        if outputs.len() > self.limits.max_outputs {
            return Err(RuntimeError::OutputTooLarge(format!(
                "{} outputs, at most {}",
                outputs.len(),
                self.limits.max_outputs
            )));
        }
        let mut out: Outputs = Vec::with_capacity(outputs.len());
        for o in outputs {
            if out.iter().any(|(n, _)| *n == o.name) {
                return Err(RuntimeError::DuplicateOutput(o.name));
            }
            let v = store
                .data_mut()
                .host
                .take_output(o.value)
                .map_err(|e| RuntimeError::Trap(format!("{e:#}")))?;
            out.push((o.name, v));
        }
        Ok(out)
    }
}

fn program_error(e: bindings::ProgramError) -> String {
    match e {
        bindings::ProgramError::InvalidInput(m) => format!("invalid input: {m}"),
        bindings::ProgramError::Share(s) => format!("share operation failed: {s:?}"),
    }
}

/// Turns a trap into the runtime error that says what happened.
fn classify<B: Backend>(e: wasmtime::Error, data: &StoreData<B>, limits: Limits) -> RuntimeError {
    let tripped = if data.limiter.tripped {
        Some(Tripped::Memory)
    } else {
        data.host.tripped
    };
    match (e.downcast_ref::<Trap>(), tripped) {
        (Some(Trap::OutOfFuel), _) => RuntimeError::OutOfFuel(limits.fuel),
        (Some(Trap::Interrupt), _) => RuntimeError::Deadline,
        (_, Some(Tripped::Memory)) => RuntimeError::MemoryLimit(limits.memory_bytes),
        (_, Some(Tripped::HostElements)) => {
            RuntimeError::MemoryLimit(limits.max_live_elements * qvm_core::field::BYTES)
        }
        _ => RuntimeError::Trap(format!("{e:#}")),
    }
}

/// A store's data: the host state and the memory limiter.
struct StoreData<B: Backend> {
    host: HostState<B>,
    limiter: Limiter,
}

impl<B: Backend> StoreData<B> {
    fn new(backend: B, limits: Limits) -> StoreData<B> {
        StoreData {
            host: HostState::new(backend, limits),
            limiter: Limiter {
                limits,
                tripped: false,
                memory_bytes: 0,
            },
        }
    }
}

/// Denies growth past the limits, trapping (a bomb ends the instance at once).
struct Limiter {
    limits: Limits,
    tripped: bool,
    /// The largest linear memory granted so far, bytes.
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.tripped = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes",
                self.limits.memory_bytes
            )));
        }
        self.memory_bytes = self.memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            self.tripped = true;
            return Err(wasmtime::Error::msg(format!(
                "table limit of {} elements",
                self.limits.table_elements
            )));
        }
        Ok(true)
    }
}
