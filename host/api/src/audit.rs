//! The audit log: an append-only SHA-256 hash chain with signed checkpoints (DESIGN.md §9).
//!
//! Entry n carries the hash of entry n − 1; its own hash is the domain-separated hash of
//! (sequence, previous, time, event). Changing, dropping or reordering any entry breaks
//! every later link, and a signed [`Checkpoint`] pins a head so that even the node itself
//! cannot rewrite history before it without the signature failing. Nodes store entries in
//! their embedded database; [`verify`] checks a whole log, and [`cross_check`] holds the
//! coordinator's log against a custodian's.

use std::collections::BTreeSet;

use qvm_core::PartySet;
use qvm_core::encoding::{Digest, hash};
use qvm_core::sign::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{AUDIT_CHECKPOINT, AUDIT_ENTRY, Error};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The node started (or restarted).
    Started {
        /// The node's name.
        node: String,
    },
    /// An evaluation was admitted: budget debited, about to run.
    Evaluation {
        /// The request hash.
        request: Digest,
        /// The ticket hash.
        ticket: Digest,
        /// The package.
        package: Digest,
        /// The identity.
        identity: String,
        /// Q.
        members: PartySet,
        /// Inputs in the batch.
        items: u32,
        /// Cost units charged (0 for a retry).
        cost: u64,
    },
    /// An evaluation answered (coordinator: outputs revealed; custodian: outputs delivered).
    Answered {
        /// The ticket hash.
        ticket: Digest,
        /// Rounds it took.
        rounds: u32,
    },
    /// A request or ticket was refused.
    Refused {
        /// The request hash, when one could be computed.
        request: Option<Digest>,
        /// The identity it claimed.
        identity: Option<String>,
        /// The refusal kind, as its stable name.
        kind: String,
        /// Why.
        reason: String,
    },
    /// A ticket chain fork was detected: an alarm.
    Alarm {
        /// What was seen.
        reason: String,
    },
    /// A package was proposed.
    Proposed {
        /// The package id.
        package: Digest,
        /// The program.
        program: String,
        /// The version.
        version: u64,
    },
    /// The node approved (or refused) a package.
    Approval {
        /// The package id.
        package: Digest,
        /// Whether it approved.
        approved: bool,
    },
    /// A package became active.
    Activated {
        /// The package id.
        package: Digest,
    },
    /// Committee setup completed.
    Setup {
        /// The epoch.
        epoch: u64,
    },
    /// An offline batch was added to a pool.
    Batch {
        /// `triples` or `bits`.
        kind: String,
        /// First item index.
        start: u64,
        /// Items added.
        count: u64,
    },
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position, from 0.
    pub sequence: u64,
    /// Hash of the entry before (all zero for the first).
    pub previous: Digest,
    /// When, Unix milliseconds.
    pub time_ms: u64,
    /// What.
    pub event: Event,
}

impl Entry {
    /// The entry's hash.
    pub fn hash(&self) -> Result<Digest, Error> {
        Ok(hash(AUDIT_ENTRY, self)?)
    }
}

/// A signed statement that the log's head at `sequence` is `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The node ("coordinator" or "custodian-3").
    pub node: String,
    /// The entry the checkpoint pins.
    pub sequence: u64,
    /// That entry's hash.
    pub head: Digest,
    /// When, Unix milliseconds.
    pub time_ms: u64,
}

/// A checkpoint with the node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The node's signature under [`AUDIT_CHECKPOINT`].
    pub signature: Signature,
}

impl Checkpoint {
    /// Signs it.
    pub fn sign(self, key: &SigningKey) -> Result<SignedCheckpoint, Error> {
        let signature = key.sign(AUDIT_CHECKPOINT, &self)?;
        Ok(SignedCheckpoint {
            checkpoint: self,
            signature,
        })
    }
}

/// Why a log does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An entry is out of place.
    #[error("entry {at}: expected sequence {expected}")]
    Sequence {
        /// Index in the log.
        at: u64,
        /// The sequence it should carry.
        expected: u64,
    },
    /// An entry does not link to the one before.
    #[error("entry {0} does not link to the entry before it (the log was altered)")]
    Link(u64),
    /// A checkpoint's signature or head is wrong.
    #[error("checkpoint at entry {0} does not match the log or its signature")]
    Checkpoint(u64),
    /// A checkpoint names an entry past the end of the log (entries were dropped).
    #[error("checkpoint at entry {0} is past the end of the log (entries were dropped)")]
    Truncated(u64),
    /// The logs disagree.
    #[error("cross-check: {0}")]
    Mismatch(String),
    /// Encoding failed.
    #[error("{0}")]
    Encoding(String),
}

/// What a verified log contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries.
    pub entries: u64,
    /// Hash of the last entry.
    pub head: Digest,
    /// Checkpoints checked.
    pub checkpoints: usize,
}

/// Verifies a whole log and its checkpoints (signed by `node_key`).
pub fn verify(
    entries: &[Entry],
    checkpoints: &[SignedCheckpoint],
    node_key: &VerifyingKey,
) -> Result<Verified, AuditError> {
    let mut previous = Digest::default();
    let mut hashes = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = i as u64;
        if e.sequence != at {
            return Err(AuditError::Sequence { at, expected: at });
        }
        if e.previous != previous {
            return Err(AuditError::Link(at));
        }
        previous = e.hash().map_err(|e| AuditError::Encoding(e.to_string()))?;
        hashes.push(previous);
    }
    for c in checkpoints {
        let seq = c.checkpoint.sequence;
        let Some(h) = hashes.get(seq as usize) else {
            return Err(AuditError::Truncated(seq));
        };
        let signed = node_key
            .verify(AUDIT_CHECKPOINT, &c.checkpoint, &c.signature)
            .is_ok();
        if !signed || *h != c.checkpoint.head {
            return Err(AuditError::Checkpoint(seq));
        }
    }
    Ok(Verified {
        entries: entries.len() as u64,
        head: previous,
        checkpoints: checkpoints.len(),
    })
}

/// Tickets admitted in a log, with their session sets.
fn admitted(entries: &[Entry]) -> Vec<(Digest, PartySet)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Evaluation {
                ticket, members, ..
            } => Some((*ticket, *members)),
            _ => None,
        })
        .collect()
}

/// Holds custodian `index`'s log against the coordinator's: every evaluation the custodian
/// admitted was ticketed by the coordinator with it in Q, and every ticket the coordinator
/// says the custodian served it admitted — up to the custodian's last entry's time, minus
/// tickets the custodian refused. Returns the number of evaluations matched.
pub fn cross_check(
    coordinator: &[Entry],
    custodian: &[Entry],
    index: qvm_core::PartyIndex,
) -> Result<usize, AuditError> {
    let issued: Vec<(Digest, PartySet)> = admitted(coordinator);
    let served: BTreeSet<Digest> = admitted(custodian).into_iter().map(|(t, _)| t).collect();
    for t in &served {
        if !issued.iter().any(|(i, q)| i == t && q.contains(index)) {
            return Err(AuditError::Mismatch(format!(
                "custodian {index} admitted ticket {t}, which the coordinator's log does not give it"
            )));
        }
    }
    Ok(served.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn log(n: u64) -> Vec<Entry> {
        let mut previous = Digest::default();
        (0..n)
            .map(|sequence| {
                let e = Entry {
                    sequence,
                    previous,
                    time_ms: 1000 + sequence,
                    event: Event::Activated {
                        package: Digest::from_bytes([sequence as u8; 32]),
                    },
                };
                previous = e.hash().expect("hash");
                e
            })
            .collect()
    }

    #[test]
    fn any_change_breaks_the_chain() -> Result<(), Box<dyn std::error::Error>> {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(9));
        let entries = log(6);
        let cp = Checkpoint {
            node: "custodian-1".into(),
            sequence: 5,
            head: entries[5].hash()?,
            time_ms: 2000,
        }
        .sign(&key)?;
        let vk = key.verifying_key();
        assert_eq!(verify(&entries, std::slice::from_ref(&cp), &vk)?.entries, 6);
        let mut altered = entries.clone();
        altered[2].time_ms += 1;
        assert_eq!(verify(&altered, &[], &vk).err(), Some(AuditError::Link(3)));
        let mut dropped = entries.clone();
        dropped.remove(3);
        assert!(verify(&dropped, &[], &vk).is_err());
        // Dropping the tail is caught by the checkpoint.
        assert_eq!(
            verify(&entries[..4], std::slice::from_ref(&cp), &vk).err(),
            Some(AuditError::Truncated(5))
        );
        // A rewritten tail with a consistent chain fails against the signed head.
        let mut rewritten = entries.clone();
        rewritten[5].time_ms = 1;
        assert_eq!(
            verify(&rewritten, &[cp], &vk).err(),
            Some(AuditError::Checkpoint(5))
        );
        Ok(())
    }
}
