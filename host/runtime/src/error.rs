//! The error types of `qvm-runtime`.

/// Why a program could not be loaded or run. A failed run never takes the host down: the
/// store is dropped and the runtime goes on serving other instances.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The bytes are not a valid component.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component imports something outside the `quorumvm:program` world (WASI, say).
    #[error("component imports `{0}`, which is outside the quorumvm:program world")]
    ForbiddenImport(String),
    /// The component does not fit the world (missing `run`, wrong signature).
    #[error("component does not implement the quorumvm:program world: {0}")]
    WorldMismatch(String),
    /// The run used up its fuel (the deterministic instruction budget).
    #[error("the program ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    /// The run passed its wall-clock deadline (epoch interruption).
    #[error("the program passed its deadline")]
    Deadline,
    /// The program tried to grow memory or tables past the limit.
    #[error("the program exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The program trapped (unreachable, out-of-bounds access, a forged or dropped handle,
    /// a stack overflow, an invalid value across the boundary).
    #[error("the program trapped: {0}")]
    Trap(String),
    /// The program returned an error.
    #[error("the program failed: {0}")]
    Program(String),
    /// The program returned more outputs, or longer ones, than allowed.
    #[error("the program's outputs are too large: {0}")]
    OutputTooLarge(String),
    /// Two outputs share a name.
    #[error("the program returned output `{0}` twice")]
    DuplicateOutput(String),
    /// The host could not set up the engine or an instance.
    #[error("runtime setup failed: {0}")]
    Setup(String),
}

/// Why a backend could not run an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The operation's parameters are invalid (bounds, lengths): the guest gets an error.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A value lies outside the bound the operation was promised (plaintext backend only:
    /// under MPC the bound cannot be checked, which is why the compiler proves it).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// The threshold computation failed (a custodian, the king, the transport, a pool).
    #[error("interaction failed: {0}")]
    Interaction(String),
}

impl From<qvm_mpc::Error> for BackendError {
    fn from(e: qvm_mpc::Error) -> BackendError {
        match e {
            qvm_mpc::Error::OpParams(m) => BackendError::InvalidParameter(m),
            other => BackendError::Interaction(other.to_string()),
        }
    }
}
