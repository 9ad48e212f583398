//! Where share operations run: the [`Backend`] trait, the in-process [`PlaintextBackend`]
//! (tests and the owner's what-if runs) and the [`MpcBackend`] that drives a custodian's
//! `qvm-mpc` session through a [`Transport`] to the king.
//!
//! Local operations never reach a backend: they are linear, so the host applies them to
//! whatever vectors the backend hands out — plaintext values or a custodian's shares — with
//! the same code. Only secrets, randomness and interactive ops are the backend's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use qvm_core::Fp;
use qvm_mpc::SharedVec;
use qvm_mpc::msgs::{OpenedMsg, ShareMsg};
use qvm_mpc::online::{CustodianSession, Op, Step};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::error::BackendError;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What serves a program's secrets and interactive operations.
pub trait Backend: Send {
    /// The secret parameter `name`, if the program has one.
    fn secret(&self, name: &str) -> Option<SharedVec>;
    /// `len` fresh uniformly random elements (no interaction).
    fn random(&mut self, len: usize) -> SharedVec;
    /// Runs a batch of ops; interactive ones take rounds (the guest waits, suspended).
    fn run(&mut self, ops: Vec<Op>) -> BoxFuture<'_, Result<Vec<SharedVec>, BackendError>>;
}

/// Plain values in place of shares: the reference semantics of every op, on one machine.
///
/// Truncation rounds down here, where the MPC protocol rounds up with probability equal to
/// the dropped fraction; every op checks that its inputs lie in the declared bound and
/// fails with [`BackendError::OutOfRange`] otherwise, so a what-if run catches a bound the
/// MPC run would silently violate.
pub struct PlaintextBackend {
    secrets: HashMap<String, Vec<Fp>>,
    rng: ChaCha20Rng,
}

impl core::fmt::Debug for PlaintextBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut names: Vec<&String> = self.secrets.keys().collect();
        names.sort();
        f.debug_struct("PlaintextBackend")
            .field("secrets", &names)
            .finish_non_exhaustive()
    }
}

impl PlaintextBackend {
    /// A backend with these plaintext secrets, drawing randomness from `seed`.
    pub fn new(secrets: HashMap<String, Vec<Fp>>, seed: u64) -> PlaintextBackend {
        PlaintextBackend {
            secrets,
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    fn bit(&mut self) -> Fp {
        Fp::from(self.rng.next_u32() & 1)
    }
}

/// Checks every value lies in [−2^(k−1), 2^(k−1)).
fn in_range(x: &[Fp], k: u32, op: &str) -> Result<(), BackendError> {
    let half = 1i128 << (k - 1);
    match x
        .iter()
        .map(|v| v.to_i128())
        .find(|v| *v < -half || *v >= half)
    {
        Some(v) => Err(BackendError::OutOfRange(format!(
            "{op}: {v} is outside the {k}-bit bound"
        ))),
        None => Ok(()),
    }
}

fn eval_plain(op: Op, rng: &mut PlaintextBackend) -> Result<Vec<Fp>, BackendError> {
    op.validate()?;
    Ok(match op {
        Op::Mul { x, y } => x
            .as_slice()
            .iter()
            .zip(y.as_slice())
            .map(|(a, b)| *a * *b)
            .collect(),
        Op::Select { c, x, y } => {
            let (c, x, y) = (c.as_slice(), x.as_slice(), y.as_slice());
            (0..c.len()).map(|i| c[i] * (x[i] - y[i]) + y[i]).collect()
        }
        Op::Ltz { x, k } => {
            in_range(x.as_slice(), k, "ltz")?;
            x.as_slice()
                .iter()
                .map(|v| Fp::from(v.to_i128() < 0))
                .collect()
        }
        Op::Eqz { x, k } => {
            in_range(x.as_slice(), k, "eqz")?;
            x.as_slice()
                .iter()
                .map(|v| Fp::from(*v == Fp::ZERO))
                .collect()
        }
        Op::TruncPr { x, k, m } => {
            in_range(x.as_slice(), k, "trunc")?;
            x.as_slice()
                .iter()
                .map(|v| {
                    Fp::from_i128(v.to_i128() >> m)
                        .map_err(|e| BackendError::OutOfRange(e.to_string()))
                })
                .collect::<Result<_, _>>()?
        }
        Op::Mod2m { x, k, m } => {
            in_range(x.as_slice(), k, "mod2m")?;
            x.as_slice()
                .iter()
                .map(|v| Fp::from_u128_reduced(v.to_i128().rem_euclid(1i128 << m) as u128))
                .collect()
        }
        Op::RandomBits { len } => (0..len).map(|_| rng.bit()).collect(),
    })
}

impl Backend for PlaintextBackend {
    fn secret(&self, name: &str) -> Option<SharedVec> {
        self.secrets.get(name).map(|v| SharedVec::new(v.clone()))
    }

    fn random(&mut self, len: usize) -> SharedVec {
        SharedVec::new((0..len).map(|_| Fp::random(&mut self.rng)).collect())
    }

    fn run(&mut self, ops: Vec<Op>) -> BoxFuture<'_, Result<Vec<SharedVec>, BackendError>> {
        let results = ops
            .into_iter()
            .map(|op| eval_plain(op, self).map(SharedVec::new))
            .collect();
        Box::pin(async move { results })
    }
}

/// Carries a custodian's round messages to the king and brings back its answer.
pub trait Transport: Send {
    /// Sends this round's shares and waits for the opened values.
    fn exchange(&mut self, msg: ShareMsg) -> BoxFuture<'_, Result<OpenedMsg, BackendError>>;
}

/// A custodian's shares and its `qvm-mpc` session, rounds carried by a [`Transport`].
pub struct MpcBackend<T: Transport> {
    session: CustodianSession,
    /// Shared by every session of the version (each batch item is one): read-only.
    secrets: Arc<HashMap<String, SharedVec>>,
    transport: T,
}

impl<T: Transport> core::fmt::Debug for MpcBackend<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MpcBackend")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> MpcBackend<T> {
    /// A backend over `session`, with this custodian's shares of each secret.
    pub fn new(
        session: CustodianSession,
        secrets: Arc<HashMap<String, SharedVec>>,
        transport: T,
    ) -> MpcBackend<T> {
        MpcBackend {
            session,
            secrets,
            transport,
        }
    }

    /// The session (for its counters and output masking).
    pub fn session(&self) -> &CustodianSession {
        &self.session
    }

    /// The session, mutably (output masking happens once per session).
    pub fn session_mut(&mut self) -> &mut CustodianSession {
        &mut self.session
    }
}

impl<T: Transport> Backend for MpcBackend<T> {
    fn secret(&self, name: &str) -> Option<SharedVec> {
        self.secrets.get(name).cloned()
    }

    fn random(&mut self, len: usize) -> SharedVec {
        self.session.random(len)
    }

    fn run(&mut self, ops: Vec<Op>) -> BoxFuture<'_, Result<Vec<SharedVec>, BackendError>> {
        Box::pin(async move {
            let mut step = self.session.run(ops)?;
            loop {
                match step {
                    Step::Done(results) => return Ok(results),
                    Step::Send(msg) => {
                        let opened = self.transport.exchange(msg).await?;
                        step = self.session.on_opened(&opened)?;
                    }
                }
            }
        })
    }
}
