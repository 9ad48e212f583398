//! The coordinator's tickets and each identity's ticket chain (DESIGN.md §8 step 2–3).
//!
//! Every ticket of one (program, identity) pair names its sequence number and the hash of
//! the previous ticket, so the tickets form a hash chain. A custodian keeps the head it
//! last saw and accepts a new ticket only as an extension of it; the coordinator sends the
//! tickets the custodian missed (sessions it was not part of) along with the new one. So
//! every custodian counts every evaluation of the identity against the budget, and a
//! coordinator that shows two custodians different histories (to spend a budget twice) is
//! caught as a fork by any custodian that sees both: with N ≤ 2K − 1 any two session sets
//! share one.

use qvm_core::PartySet;
use qvm_core::encoding::{Digest, hash};
use qvm_core::sign::{Signature, SigningKey, VerifyingKey};
use qvm_mpc::pool::{PoolGrant, Range};
use serde::{Deserialize, Serialize};

use crate::{Error, ITEM_SESSION, TICKET};

/// What the coordinator signs for one attempt at a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The signed request's hash.
    pub request: Digest,
    /// The package (program version) to run.
    pub package: Digest,
    /// The program's name (the chain is per program and identity).
    pub program: String,
    /// The identity.
    pub identity: String,
    /// The session id (fresh per attempt).
    pub session: Digest,
    /// Q, the custodians that run it.
    pub members: PartySet,
    /// Pooled items for all the batch's items, item after item.
    pub grant: PoolGrant,
    /// Inputs in the batch.
    pub items: u32,
    /// 0 for the first attempt at the request, then 1, 2… for retries with another Q
    /// (a retry is charged nothing: the first attempt was).
    pub attempt: u32,
    /// Issued, Unix seconds.
    pub issued_at: u64,
    /// No custodian starts the session after this, Unix seconds.
    pub expires_at: u64,
    /// Position in the identity's chain, from 1.
    pub sequence: u64,
    /// Hash of the previous ticket in the chain (all zero for the first).
    pub previous: Digest,
}

/// The MPC session id of batch item `item` of the ticket whose hash is `ticket`.
///
/// Why the ticket's hash and not its session id: the session id is whatever the
/// coordinator wrote, and a hostile one could write the same id twice — the PRSS values
/// of the two sessions would then repeat, and the difference of two openings masked by
/// the same randomness would reveal the difference of two secret intermediates. A
/// custodian never admits the same ticket twice (replays are refused, chains cannot
/// fork), so its hash never names two sessions.
pub fn item_session(ticket: &Digest, item: u32) -> Result<Digest, Error> {
    Ok(hash(ITEM_SESSION, &(ticket, item))?)
}

/// A ticket with the coordinator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTicket {
    /// The ticket.
    pub ticket: Ticket,
    /// The coordinator's signature under [`TICKET`].
    pub signature: Signature,
}

impl Ticket {
    /// Signs the ticket.
    pub fn sign(self, key: &SigningKey) -> Result<SignedTicket, Error> {
        let signature = key.sign(TICKET, &self)?;
        Ok(SignedTicket {
            ticket: self,
            signature,
        })
    }

    /// The pooled items of batch item `item`, when each item needs `triples` triples and
    /// `bits` bits: consecutive slices of the ticket's grant.
    pub fn item_grant(&self, item: u32, triples: u64, bits: u64) -> Option<PoolGrant> {
        let slice = |r: Range, per: u64| {
            let total = per.checked_mul(self.items as u64)?;
            (r.count == total && item < self.items).then(|| Range {
                start: r.start + per * item as u64,
                count: per,
            })
        };
        Some(PoolGrant {
            triples: slice(self.grant.triples, triples)?,
            bits: slice(self.grant.bits, bits)?,
        })
    }
}

impl SignedTicket {
    /// Checks the coordinator's signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        key.verify(TICKET, &self.ticket, &self.signature)
            .map_err(|_| Error::Signature("ticket"))
    }

    /// The ticket's hash: the next ticket's `previous`.
    pub fn hash(&self) -> Result<Digest, Error> {
        Ok(hash(TICKET, self)?)
    }

    /// The session ids of the ticket's batch items ([`item_session`]): each item is its
    /// own MPC session (its own PRSS context, output masks and king), all advancing in
    /// the same rounds.
    pub fn item_sessions(&self) -> Result<Vec<Digest>, Error> {
        let ticket = self.hash()?;
        (0..self.ticket.items)
            .map(|b| item_session(&ticket, b))
            .collect()
    }
}

/// The last ticket a custodian accepted in a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its sequence number (0: none yet).
    pub sequence: u64,
    /// Its hash (all zero: none yet).
    pub hash: Digest,
}

/// Why tickets do not extend a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Tickets are missing between the head and the first one given.
    #[error("ticket chain gap: the head is at {head}, the next ticket given is {got}")]
    Gap {
        /// The custodian's head.
        head: u64,
        /// The first sequence number given.
        got: u64,
    },
    /// A ticket claims a position already taken by another ticket, or does not link to its
    /// predecessor: two histories of one identity exist.
    #[error("ticket chain fork at sequence {sequence}: a coordinator is splitting a budget")]
    Fork {
        /// Where the histories split.
        sequence: u64,
    },
    /// A ticket is for another chain or not signed by the coordinator.
    #[error("ticket {sequence} in the chain is invalid: {reason}")]
    Invalid {
        /// The ticket's sequence number.
        sequence: u64,
        /// Why.
        reason: String,
    },
}

impl ChainHead {
    /// The head after `ticket` (whose hash is `hash`, its signature already checked), if it
    /// is the next ticket of the chain.
    pub fn accept(&self, ticket: &Ticket, hash: Digest) -> Result<ChainHead, ChainError> {
        let seq = ticket.sequence;
        if seq <= self.sequence {
            return Err(ChainError::Fork { sequence: seq });
        }
        if seq > self.sequence + 1 {
            return Err(ChainError::Gap {
                head: self.sequence,
                got: seq,
            });
        }
        if ticket.previous != self.hash {
            return Err(ChainError::Fork { sequence: seq });
        }
        Ok(ChainHead {
            sequence: seq,
            hash,
        })
    }
}

/// Checks that `tickets` (in order) extend the chain from `head`, each signed by
/// `coordinator` and of the same program and identity; returns the new head. Tickets at or
/// below the head are refused as forks unless `known` says the custodian already holds
/// that exact ticket (then they are skipped).
pub fn extend(
    head: ChainHead,
    tickets: &[SignedTicket],
    coordinator: &VerifyingKey,
    known: impl Fn(u64, &Digest) -> bool,
) -> Result<ChainHead, ChainError> {
    let mut head = head;
    let Some(first) = tickets.first() else {
        return Ok(head);
    };
    let (program, identity) = (&first.ticket.program, &first.ticket.identity);
    for t in tickets {
        let seq = t.ticket.sequence;
        let invalid = |reason: &str| ChainError::Invalid {
            sequence: seq,
            reason: reason.into(),
        };
        t.verify(coordinator)
            .map_err(|_| invalid("bad coordinator signature"))?;
        if &t.ticket.program != program || &t.ticket.identity != identity {
            return Err(invalid("another program or identity"));
        }
        let h = t.hash().map_err(|e| invalid(&e.to_string()))?;
        if seq <= head.sequence && known(seq, &h) {
            continue;
        }
        head = head.accept(&t.ticket, h)?;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn chain(key: &SigningKey, n: u64, salt: u8) -> Vec<SignedTicket> {
        let mut previous = Digest::default();
        (1..=n)
            .map(|sequence| {
                let t = Ticket {
                    request: Digest::from_bytes([salt; 32]),
                    package: Digest::default(),
                    program: "p".into(),
                    identity: "id".into(),
                    session: Digest::from_bytes([sequence as u8; 32]),
                    members: PartySet::first(2),
                    grant: PoolGrant::default(),
                    items: 1,
                    attempt: 0,
                    issued_at: 10,
                    expires_at: 40,
                    sequence,
                    previous,
                }
                .sign(key)
                .expect("sign");
                previous = t.hash().expect("hash");
                t
            })
            .collect()
    }

    #[test]
    fn tickets_reusing_a_session_id_get_their_own_item_sessions() -> Result<(), Error> {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(4));
        let (a, b) = (chain(&key, 1, 1), chain(&key, 1, 2));
        assert_eq!(a[0].ticket.session, b[0].ticket.session);
        let (sa, sb) = (a[0].item_sessions()?, b[0].item_sessions()?);
        assert_eq!(sa.len(), 1);
        assert_ne!(sa, sb);
        assert_eq!(sa[0], item_session(&a[0].hash()?, 0)?);
        assert_ne!(item_session(&a[0].hash()?, 1)?, sa[0]);
        Ok(())
    }

    #[test]
    fn extends_skips_known_and_refuses_gaps_and_forks() {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(3));
        let vk = key.verifying_key();
        let a = chain(&key, 4, 1);
        let none = |_: u64, _: &Digest| false;
        let head = extend(ChainHead::default(), &a[..2], &vk, none).expect("extends");
        assert_eq!(head.sequence, 2);
        assert_eq!(
            extend(head, &a[3..], &vk, none),
            Err(ChainError::Gap { head: 2, got: 4 })
        );
        let hashes: Vec<Digest> = a.iter().map(|t| t.hash().expect("hash")).collect();
        let known = |s: u64, h: &Digest| hashes.get(s as usize - 1) == Some(h);
        assert_eq!(extend(head, &a[1..], &vk, known).map(|h| h.sequence), Ok(4));
        // Another history of the same identity: refused wherever it diverges.
        let b = chain(&key, 4, 2);
        assert_eq!(
            extend(head, &b[1..], &vk, known),
            Err(ChainError::Fork { sequence: 2 })
        );
        assert_eq!(
            extend(head, &b[2..], &vk, known),
            Err(ChainError::Fork { sequence: 3 })
        );
        // Not the coordinator's signature.
        let other = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(4));
        assert!(matches!(
            extend(head, &a[2..], &other.verifying_key(), none),
            Err(ChainError::Invalid { sequence: 3, .. })
        ));
    }

    #[test]
    fn item_grants_slice_the_ticket_grant() {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(5));
        let mut t = chain(&key, 1, 0).remove(0).ticket;
        t.items = 3;
        t.grant = PoolGrant {
            triples: Range {
                start: 100,
                count: 30,
            },
            bits: Range { start: 7, count: 6 },
        };
        let g = t.item_grant(2, 10, 2).expect("slice");
        assert_eq!((g.triples.start, g.triples.count), (120, 10));
        assert_eq!((g.bits.start, g.bits.count), (11, 2));
        assert_eq!(t.item_grant(3, 10, 2), None);
        assert_eq!(t.item_grant(0, 11, 2), None);
    }
}
