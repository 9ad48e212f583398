//! Wire messages between the custodians and the king.
//!
//! Every interactive round is one [`ShareMsg`] from each custodian of the session set to the
//! king and one [`OpenedMsg`] back; the king never learns what the values mean. Outputs are
//! one [`OutputMsg`] per custodian. Messages carry the session id and round number so a
//! party can refuse a message meant for another session or round.

use core::fmt;

use qvm_core::encoding::Digest;
use qvm_core::{Fp, PartyIndex};
use serde::{Deserialize, Serialize};

/// A custodian's shares of the values to open in one round.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMsg {
    /// The session (online evaluation or offline batch).
    pub session: Digest,
    /// The round, counted from 0 within the session.
    pub round: u32,
    /// The sender.
    pub from: PartyIndex,
    /// Its shares, one per value to open.
    #[serde(with = "qvm_core::field::fp_vec")]
    pub shares: Vec<Fp>,
}

/// The values the king opened in one round.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedMsg {
    /// The session.
    pub session: Digest,
    /// The round these values answer.
    pub round: u32,
    /// The opened values, in the order of the shares.
    #[serde(with = "qvm_core::field::fp_vec")]
    pub values: Vec<Fp>,
}

/// A custodian's masked output shares (DESIGN.md §4: y_i + m_i).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputMsg {
    /// The session.
    pub session: Digest,
    /// The sender.
    pub from: PartyIndex,
    /// Masked shares, one per output element.
    #[serde(with = "qvm_core::field::fp_vec")]
    pub masked: Vec<Fp>,
}

impl fmt::Debug for ShareMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShareMsg({}, round {}, from {:?}, {} shares)",
            self.session,
            self.round,
            self.from,
            self.shares.len()
        )
    }
}

impl fmt::Debug for OpenedMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenedMsg({}, round {}, {} values)",
            self.session,
            self.round,
            self.values.len()
        )
    }
}

impl fmt::Debug for OutputMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OutputMsg({}, from {:?}, {} values)",
            self.session,
            self.from,
            self.masked.len()
        )
    }
}

/// Bytes a field element takes on the wire (its canonical encoding).
pub const FIELD_BYTES: u64 = qvm_core::field::BYTES as u64;
