//! The error type of `qvm-mpc`.

use qvm_core::PartyIndex;
use qvm_core::encoding::Digest;

use crate::pool::PoolKind;

/// Everything that can go wrong in a session. Errors that blame custodians carry their
/// indices; [`Error::culprits`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the cryptographic core.
    #[error(transparent)]
    Core(#[from] qvm_core::Error),
    /// A message for another session.
    #[error("message for session {got}, this is session {expected}")]
    WrongSession {
        /// This session.
        expected: Digest,
        /// The message's session.
        got: Digest,
    },
    /// A message for a round other than the current one (replayed, stale or early).
    #[error("message for round {got}, expected round {expected}")]
    WrongRound {
        /// The round this party is in.
        expected: u32,
        /// The message's round.
        got: u32,
    },
    /// A message with the wrong number of values.
    #[error("message carries {got} values, expected {expected}")]
    WrongLength {
        /// Values expected.
        expected: usize,
        /// Values received.
        got: usize,
        /// Who sent it, when it came from a custodian.
        from: Option<PartyIndex>,
    },
    /// A message from a custodian outside the session set.
    #[error("custodian {0} is not a member of this session")]
    NotAMember(PartyIndex),
    /// A second message from one custodian in one round.
    #[error("custodian {0} already sent its message for this round")]
    Duplicate(PartyIndex),
    /// A message arrived while nothing was waiting for one.
    #[error("no round is in progress")]
    NotWaiting,
    /// A session's outputs were already masked once: masking twice would reuse the masks,
    /// and the difference of two masked messages would reveal a difference of shares.
    #[error("the session's outputs were already delivered")]
    OutputsDelivered,
    /// A batch was started while another is in progress.
    #[error("a batch is already in progress")]
    Busy,
    /// The session failed earlier and accepts nothing more.
    #[error("the session has failed and accepts no more messages")]
    Failed,
    /// Shares that should lie on one polynomial do not, and the culprits are known.
    #[error("inconsistent shares: custodian(s) {culprits:?} sent values off the polynomial")]
    Inconsistent {
        /// The custodians whose shares are wrong.
        culprits: Vec<PartyIndex>,
    },
    /// Shares are inconsistent but too few are redundant to tell who is at fault.
    #[error("inconsistent shares, too little redundancy to tell which custodian is at fault")]
    InconsistentUnattributed,
    /// Custodians that did not answer before the deadline.
    #[error("no message from custodian(s) {missing:?} in round {round}")]
    Missing {
        /// Who is missing.
        missing: Vec<PartyIndex>,
        /// The round that stalled.
        round: u32,
    },
    /// The session set is too small for what was asked.
    #[error("{members} custodians take part, {needed} are needed")]
    TooFewMembers {
        /// Custodians in the set.
        members: usize,
        /// Custodians needed.
        needed: usize,
    },
    /// This custodian is not in the session set.
    #[error("custodian {0} is not in the session set")]
    NotInSession(PartyIndex),
    /// A grant overlaps items already used.
    #[error(
        "refused: {pool} items from {start} were already used (a used range ends at {high_water})"
    )]
    PoolReuse {
        /// Which pool.
        pool: PoolKind,
        /// The grant's first item.
        start: u64,
        /// The end of the used range the grant overlaps.
        high_water: u64,
    },
    /// Not enough pooled material.
    #[error(
        "the {pool} pool is dry: {needed} needed, {available} available; refill needs 2K-1 custodians up"
    )]
    PoolDry {
        /// Which pool.
        pool: PoolKind,
        /// Items needed.
        needed: u64,
        /// Items available.
        available: u64,
    },
    /// A session used more pooled items than its grant.
    #[error("the session's grant of {pool} is used up")]
    GrantExhausted {
        /// Which pool.
        pool: PoolKind,
    },
    /// Invalid op parameters (bounds, lengths).
    #[error("invalid op: {0}")]
    OpParams(String),
    /// A pairwise key that output masking needs is missing.
    #[error("no pairwise key for custodian {0}")]
    MissingPairwiseKey(PartyIndex),
    /// An offline batch record does not fit the pool (out of order or malformed).
    #[error("offline batch record does not fit: {0}")]
    BadBatch(&'static str),
}

impl Error {
    /// The custodians this error blames: the inconsistent, the missing, and senders of
    /// malformed messages.
    pub fn culprits(&self) -> Vec<PartyIndex> {
        match self {
            Error::Inconsistent { culprits } => culprits.clone(),
            Error::Missing { missing, .. } => missing.clone(),
            Error::WrongLength { from: Some(p), .. } => vec![*p],
            Error::Duplicate(p) | Error::NotAMember(p) => vec![*p],
            _ => Vec::new(),
        }
    }
}
