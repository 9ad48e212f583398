//! The host side of the `quorumvm:program/shares` interface: handles in a resource table,
//! local ops applied here, secrets and interactive ops sent to the backend.
//!
//! A guest error (wrong lengths, unknown secret, bad parameter) is returned to the guest as
//! a `share-error`; exceeding the host's limits is a trap that ends the instance.

use qvm_core::Fp;
use qvm_mpc::SharedVec;
use qvm_mpc::online::Op;
use wasmtime::component::{Resource, ResourceTable};

use crate::Limits;
use crate::backend::Backend;
use crate::bindings::quorumvm::program::shares::{self, ShareError};
use crate::bindings::quorumvm::program::types;
use crate::error::BackendError;

/// An error of a host share operation: for the guest to handle, or a trap.
#[derive(Debug)]
pub enum HostError {
    /// Returned to the guest as a `share-error`.
    Guest(ShareError),
    /// Ends the instance.
    Trap(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(e: wasmtime::component::ResourceTableError) -> HostError {
        HostError::Trap(e.into())
    }
}

impl From<BackendError> for HostError {
    fn from(e: BackendError) -> HostError {
        HostError::Guest(match e {
            BackendError::InvalidParameter(m) | BackendError::OutOfRange(m) => {
                ShareError::InvalidParameter(m)
            }
            other => ShareError::InteractionFailed(other.to_string()),
        })
    }
}

/// Which host limit a trap came from, so the runtime can report it precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// Guest memory or tables.
    Memory,
    /// Live share vectors held by the host for the guest.
    HostElements,
}

/// What a store holds: the guest's handles, the backend, and the limits.
pub struct HostState<B: Backend> {
    pub(crate) table: ResourceTable,
    pub(crate) backend: B,
    pub(crate) limits: Limits,
    /// Elements across all live handles.
    live_elements: usize,
    pub(crate) tripped: Option<Tripped>,
}

impl<B: Backend> HostState<B> {
    pub(crate) fn new(backend: B, limits: Limits) -> HostState<B> {
        HostState {
            table: ResourceTable::new(),
            backend,
            limits,
            live_elements: 0,
            tripped: None,
        }
    }

    /// Stores a vector and hands the guest a handle, within the host's limits.
    fn push(&mut self, v: SharedVec) -> Result<Resource<SharedVec>, HostError> {
        if v.len() > self.limits.max_vector_len {
            return Err(HostError::Guest(ShareError::TooLong(
                self.limits.max_vector_len as u32,
            )));
        }
        if self.live_elements + v.len() > self.limits.max_live_elements {
            self.tripped = Some(Tripped::HostElements);
            return Err(HostError::Trap(wasmtime::Error::msg(format!(
                "the program holds more than {} secret-shared elements",
                self.limits.max_live_elements
            ))));
        }
        self.live_elements += v.len();
        Ok(self.table.push(v)?)
    }

    fn get(&self, r: &Resource<SharedVec>) -> Result<&SharedVec, HostError> {
        Ok(self.table.get(r)?)
    }

    /// The host's copy of a handle's vector, for a backend op.
    fn take_copy(&self, r: &Resource<SharedVec>) -> Result<SharedVec, HostError> {
        Ok(self.get(r)?.clone())
    }

    /// Runs one interactive op and hands back its result.
    async fn interactive(&mut self, op: Op) -> Result<Resource<SharedVec>, HostError> {
        let mut out = self.backend.run(vec![op]).await?;
        let v = out
            .pop()
            .ok_or_else(|| HostError::Trap(wasmtime::Error::msg("backend returned no result")))?;
        self.push(v)
    }

    /// Takes an output's vector out of the table (ending the guest's handle).
    pub(crate) fn take_output(
        &mut self,
        r: Resource<SharedVec>,
    ) -> Result<SharedVec, wasmtime::Error> {
        let v = self.table.delete(r)?;
        self.live_elements -= v.len();
        Ok(v)
    }
}

fn public(values: &[i64]) -> Vec<Fp> {
    values.iter().map(|v| Fp::from(*v)).collect()
}

fn guest_error(e: qvm_mpc::Error, left: usize, right: usize) -> HostError {
    match e {
        qvm_mpc::Error::OpParams(_) => {
            HostError::Guest(ShareError::LengthMismatch((left as u32, right as u32)))
        }
        other => HostError::Guest(ShareError::InvalidParameter(other.to_string())),
    }
}

fn bits(k: u8, m: Option<u8>) -> Result<(u32, u32), HostError> {
    let (k, m) = (k as u32, m.unwrap_or(0) as u32);
    if k == 0 || k > qvm_mpc::MAX_K {
        return Err(HostError::Guest(ShareError::InvalidParameter(format!(
            "bits = {k} outside 1..=64"
        ))));
    }
    Ok((k, m))
}

impl<B: Backend> shares::HostShared for HostState<B> {
    fn len(&mut self, this: Resource<SharedVec>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.len() as u32)
    }

    fn slice(
        &mut self,
        this: Resource<SharedVec>,
        start: u32,
        end: u32,
    ) -> Result<Resource<SharedVec>, HostError> {
        let v = self.get(&this)?;
        if start > end || end as usize > v.len() {
            return Err(HostError::Guest(ShareError::OutOfRange));
        }
        let s = v
            .slice(start as usize, end as usize)
            .map_err(|_| HostError::Guest(ShareError::OutOfRange))?;
        self.push(s)
    }

    fn concat(
        &mut self,
        this: Resource<SharedVec>,
        other: Resource<SharedVec>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let v = SharedVec::concat(&[self.get(&this)?, self.get(&other)?]);
        self.push(v)
    }

    fn broadcast(
        &mut self,
        this: Resource<SharedVec>,
        n: u32,
    ) -> Result<Resource<SharedVec>, HostError> {
        if n as usize > self.limits.max_vector_len {
            return Err(HostError::Guest(ShareError::TooLong(
                self.limits.max_vector_len as u32,
            )));
        }
        let v = self
            .get(&this)?
            .broadcast(n as usize)
            .map_err(|_| HostError::Guest(ShareError::OutOfRange))?;
        self.push(v)
    }

    fn add(
        &mut self,
        this: Resource<SharedVec>,
        other: Resource<SharedVec>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (a, b) = (self.get(&this)?, self.get(&other)?);
        let v = a.add(b).map_err(|e| guest_error(e, a.len(), b.len()))?;
        self.push(v)
    }

    fn sub(
        &mut self,
        this: Resource<SharedVec>,
        other: Resource<SharedVec>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (a, b) = (self.get(&this)?, self.get(&other)?);
        let v = a.sub(b).map_err(|e| guest_error(e, a.len(), b.len()))?;
        self.push(v)
    }

    fn neg(&mut self, this: Resource<SharedVec>) -> wasmtime::Result<Resource<SharedVec>> {
        let v = self.table.get(&this)?.neg();
        self.push(v).map_err(trap)
    }

    fn add_public(
        &mut self,
        this: Resource<SharedVec>,
        values: Vec<i64>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let a = self.get(&this)?;
        let v = a
            .add_public(&public(&values))
            .map_err(|e| guest_error(e, a.len(), values.len()))?;
        self.push(v)
    }

    fn mul_public(
        &mut self,
        this: Resource<SharedVec>,
        values: Vec<i64>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let a = self.get(&this)?;
        let v = a
            .mul_public(&public(&values))
            .map_err(|e| guest_error(e, a.len(), values.len()))?;
        self.push(v)
    }

    fn scale(
        &mut self,
        this: Resource<SharedVec>,
        factor: i64,
    ) -> wasmtime::Result<Resource<SharedVec>> {
        let v = self.table.get(&this)?.scale(Fp::from(factor));
        self.push(v).map_err(trap)
    }

    fn dot_public(
        &mut self,
        this: Resource<SharedVec>,
        values: Vec<i64>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let a = self.get(&this)?;
        let v = a
            .dot_public(&public(&values))
            .map_err(|e| guest_error(e, a.len(), values.len()))?;
        self.push(v)
    }

    fn sum(&mut self, this: Resource<SharedVec>) -> wasmtime::Result<Resource<SharedVec>> {
        let v = self.table.get(&this)?.sum();
        self.push(v).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<SharedVec>) -> wasmtime::Result<()> {
        let v = self.table.delete(rep)?;
        self.live_elements -= v.len();
        Ok(())
    }
}

/// A host error where only a trap is possible.
fn trap(e: HostError) -> wasmtime::Error {
    match e {
        HostError::Trap(t) => t,
        HostError::Guest(g) => wasmtime::Error::msg(format!("{g:?}")),
    }
}

impl<B: Backend> shares::Host for HostState<B> {
    fn secret(&mut self, name: String) -> Result<Resource<SharedVec>, HostError> {
        let v = self
            .backend
            .secret(&name)
            .ok_or(HostError::Guest(ShareError::UnknownSecret(name)))?;
        self.push(v)
    }

    async fn mul(
        &mut self,
        x: Resource<SharedVec>,
        y: Resource<SharedVec>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (x, y) = (self.take_copy(&x)?, self.take_copy(&y)?);
        if x.len() != y.len() {
            return Err(HostError::Guest(ShareError::LengthMismatch((
                x.len() as u32,
                y.len() as u32,
            ))));
        }
        self.interactive(Op::Mul { x, y }).await
    }

    async fn ltz(
        &mut self,
        x: Resource<SharedVec>,
        k: u8,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (k, _) = bits(k, None)?;
        let x = self.take_copy(&x)?;
        self.interactive(Op::Ltz { x, k }).await
    }

    async fn eqz(
        &mut self,
        x: Resource<SharedVec>,
        k: u8,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (k, _) = bits(k, None)?;
        let x = self.take_copy(&x)?;
        self.interactive(Op::Eqz { x, k }).await
    }

    async fn trunc(
        &mut self,
        x: Resource<SharedVec>,
        k: u8,
        m: u8,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (k, m) = bits(k, Some(m))?;
        let x = self.take_copy(&x)?;
        self.interactive(Op::TruncPr { x, k, m }).await
    }

    async fn select(
        &mut self,
        c: Resource<SharedVec>,
        x: Resource<SharedVec>,
        y: Resource<SharedVec>,
    ) -> Result<Resource<SharedVec>, HostError> {
        let (c, x, y) = (
            self.take_copy(&c)?,
            self.take_copy(&x)?,
            self.take_copy(&y)?,
        );
        if c.len() != x.len() || x.len() != y.len() {
            return Err(HostError::Guest(ShareError::LengthMismatch((
                c.len() as u32,
                x.len().max(y.len()) as u32,
            ))));
        }
        self.interactive(Op::Select { c, x, y }).await
    }

    fn random(&mut self, len: u32) -> Result<Resource<SharedVec>, HostError> {
        if len as usize > self.limits.max_vector_len {
            return Err(HostError::Guest(ShareError::TooLong(
                self.limits.max_vector_len as u32,
            )));
        }
        let v = self.backend.random(len as usize);
        self.push(v)
    }

    async fn random_bits(&mut self, len: u32) -> Result<Resource<SharedVec>, HostError> {
        if len as usize > self.limits.max_vector_len {
            return Err(HostError::Guest(ShareError::TooLong(
                self.limits.max_vector_len as u32,
            )));
        }
        self.interactive(Op::RandomBits { len: len as usize }).await
    }

    fn convert_share_error(&mut self, err: HostError) -> wasmtime::Result<ShareError> {
        match err {
            HostError::Guest(e) => Ok(e),
            HostError::Trap(t) => Err(t),
        }
    }
}

impl<B: Backend> types::Host for HostState<B> {}
