//! Messages between the coordinator and a custodian. Bodies are the canonical encoding
//! (`application/octet-stream`); refusals are [`Refusal`] in the same encoding, with an
//! HTTP status that says whose fault it is.
//!
//! An evaluation session is request/response, round by round: `start` carries the signed
//! request, the ticket and the tickets of the chain this custodian missed, and answers with
//! the first [`SessionEvent`]; each `round` carries the king's openings and answers with the
//! next event, until [`SessionEvent::Done`]. Between rounds the custodian's component
//! instances stay suspended inside their interactive host call.

use qvm_core::encoding::Digest;
use qvm_core::prss::setup::SealedPrssKey;
use qvm_core::sign::{Signature, SigningKey, VerifyingKey};
use qvm_mpc::msgs::{OpenedMsg, OutputMsg, ShareMsg};
use qvm_mpc::offline::{BatchRecord, BatchSpec};
use qvm_mpc::pool::PoolKind;
use serde::{Deserialize, Serialize};

use crate::request::SignedRequest;
use crate::ticket::SignedTicket;
use crate::{CONTROL, Error};

/// Starts a session at a custodian of Q.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSession {
    /// The client's signed request.
    pub request: SignedRequest,
    /// The coordinator's ticket for this attempt.
    pub ticket: SignedTicket,
    /// Earlier tickets of the chain this custodian has not seen, in order.
    pub chain: Vec<SignedTicket>,
}

/// A [`StartSession`] borrowed for encoding: the same bytes, without copying the request
/// (a batch's request is hundreds of kilobytes, and the coordinator sends one start per
/// member of Q).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StartSessionRef<'a> {
    /// The client's signed request.
    pub request: &'a SignedRequest,
    /// The coordinator's ticket for this attempt.
    pub ticket: &'a SignedTicket,
    /// Earlier tickets of the chain the custodian has not seen, in order.
    pub chain: &'a [SignedTicket],
}

/// The king's openings for one round of a session: one per batch item still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundInput {
    /// The ticket's session id.
    pub session: Digest,
    /// One per item, in item order.
    pub opened: Vec<OpenedMsg>,
}

/// What a custodian answers at each step of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// Shares to open this round, one message per batch item, in item order.
    Round(Vec<ShareMsg>),
    /// The session finished: masked output shares.
    Done(Delivery),
    /// The session finished, and the identity's outputs are for the client only: the
    /// [`Delivery`], encoded and sealed (ECIES) to the request's `reveal_to` key with
    /// [`reveal_aad`].
    Sealed(#[serde(with = "qvm_core::encoding::bytes_serde")] Vec<u8>),
}

/// The associated data of a custodian's sealed delivery: the session and the custodian, so
/// a delivery cannot be passed off as another custodian's or another session's.
pub fn reveal_aad(session: &Digest, custodian: u8) -> Result<Vec<u8>, Error> {
    Ok(qvm_core::encoding::to_canonical(&(
        crate::REVEAL.as_str(),
        session,
        custodian,
    ))?)
}

/// A custodian's masked outputs for every item of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The granted outputs, in the program's order, with their lengths: each item's
    /// message is their concatenation.
    pub layout: Vec<(String, u32)>,
    /// One message per item (masks drawn once per item session).
    pub items: Vec<OutputMsg>,
}

/// Why a custodian (or the coordinator) refused. The kind is stable; the message explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalKind {
    /// The client's signature does not verify.
    BadClientSignature,
    /// The identity is not in the program's policy.
    UnknownIdentity,
    /// No such program, or not that version.
    UnknownProgram,
    /// The version has no valid activation certificate.
    NotActive,
    /// The request or ticket is outside its time window.
    Expired,
    /// The request was already served.
    Replay,
    /// The ticket is malformed, unsigned, or does not match the request.
    BadTicket,
    /// The ticket chain has a gap (the coordinator should send the missing tickets).
    ChainGap,
    /// The ticket chain forks: a coordinator is splitting a budget.
    ChainFork,
    /// An input is missing, of the wrong type or out of its declared bounds.
    InvalidInput,
    /// The identity's budget would be exceeded.
    BudgetExhausted,
    /// The identity's rate limit was hit.
    RateLimited,
    /// A pool of pooled items is dry (interactive programs wait for the offline phase).
    PoolDry,
    /// Too few custodians are healthy to serve.
    Unavailable,
    /// A control message is malformed or not from the coordinator.
    BadControl,
    /// The node cannot record the evaluation durably (audit log or store failed).
    Storage,
    /// The session failed while running.
    SessionFailed,
    /// Anything else.
    Internal,
    /// The ticket grants pooled items this custodian holds used (under another ticket) or
    /// retired: its coordinator's grant is stale or granted twice; a fresh grant can serve.
    ItemsUsed,
}

impl RefusalKind {
    /// Whether the refusal is the client's own doing (no retry elsewhere helps).
    pub fn is_client_fault(self) -> bool {
        matches!(
            self,
            RefusalKind::BadClientSignature
                | RefusalKind::UnknownIdentity
                | RefusalKind::UnknownProgram
                | RefusalKind::Expired
                | RefusalKind::Replay
                | RefusalKind::InvalidInput
                | RefusalKind::BudgetExhausted
                | RefusalKind::RateLimited
        )
    }

    /// Whether a custodian refused because its view differs from the coordinator's (the
    /// version is not active there yet; the ticket grants pooled items it holds used or
    /// retired), not because it failed: the coordinator retries without it but keeps it in
    /// service. Other ticket refusals (`bad_ticket`: not signed by the coordinator, not for
    /// this request) say the custodian is misconfigured or worse, and quarantine it.
    pub fn is_disagreement(self) -> bool {
        matches!(self, RefusalKind::NotActive | RefusalKind::ItemsUsed)
    }

    /// A stable lower-case name (metrics labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::BadClientSignature => "bad_client_signature",
            RefusalKind::UnknownIdentity => "unknown_identity",
            RefusalKind::UnknownProgram => "unknown_program",
            RefusalKind::NotActive => "not_active",
            RefusalKind::Expired => "expired",
            RefusalKind::Replay => "replay",
            RefusalKind::BadTicket => "bad_ticket",
            RefusalKind::ChainGap => "chain_gap",
            RefusalKind::ChainFork => "chain_fork",
            RefusalKind::InvalidInput => "invalid_input",
            RefusalKind::BudgetExhausted => "budget_exhausted",
            RefusalKind::RateLimited => "rate_limited",
            RefusalKind::PoolDry => "pool_dry",
            RefusalKind::Unavailable => "unavailable",
            RefusalKind::BadControl => "bad_control",
            RefusalKind::Storage => "storage",
            RefusalKind::SessionFailed => "session_failed",
            RefusalKind::Internal => "internal",
            RefusalKind::ItemsUsed => "items_used",
        }
    }
}

/// A refusal with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct Refusal {
    /// The kind.
    pub kind: RefusalKind,
    /// What happened, for a human.
    pub message: String,
    /// For [`RefusalKind::ChainGap`]: the custodian's chain head.
    pub chain_head: Option<u64>,
}

impl Refusal {
    /// A refusal.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            chain_head: None,
        }
    }
}

/// A coordinator's control message to one custodian.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// The custodian it is for (a message for another is refused), or
    /// [`EVERY_CUSTODIAN`] for a batch record, which every custodian stores alike.
    pub to: u8,
    /// The committee.
    pub committee: Digest,
    /// What to do.
    pub body: ControlBody,
}

/// The control actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlBody {
    /// PRSS setup, step 1: deal the keys of the subsets you lead (answer: your shipments).
    SetupDeal {
        /// The setup epoch.
        epoch: u64,
    },
    /// PRSS setup, step 2: the shipments addressed to you.
    SetupReceive {
        /// The setup epoch.
        epoch: u64,
        /// Sealed keys from the other dealers.
        shipments: Vec<SealedPrssKey>,
    },
    /// Offline batch, step 1: your degree-2t shares (answer: a `ShareMsg`).
    BatchStart {
        /// The batch.
        spec: BatchSpec,
    },
    /// Offline batch, step 2 (members), or catch-up (the others): the published values.
    BatchRecord {
        /// The record.
        record: BatchRecord,
    },
    /// A package is proposed (the package bytes travel in the request body beside it).
    Propose {
        /// The package id.
        package: Digest,
        /// When the proposal window opened, Unix seconds.
        proposed_at: u64,
    },
}

/// A control message with the coordinator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedControl {
    /// The message.
    pub control: Control,
    /// The coordinator's signature under [`CONTROL`].
    pub signature: Signature,
}

impl Control {
    /// Signs it.
    pub fn sign(self, key: &SigningKey) -> Result<SignedControl, Error> {
        let signature = key.sign(CONTROL, &self)?;
        Ok(SignedControl {
            control: self,
            signature,
        })
    }
}

/// The address of a control message for every custodian: only a batch record, the same
/// for all, is sent so — one signature over its 131 KB instead of one per custodian.
pub const EVERY_CUSTODIAN: u8 = 0;

impl SignedControl {
    /// Checks the signature and that it is for custodian `me` of `committee` (or, for a
    /// batch record, for every custodian).
    pub fn open(
        &self,
        coordinator: &VerifyingKey,
        me: u8,
        committee: &Digest,
    ) -> Result<&ControlBody, Refusal> {
        coordinator
            .verify(CONTROL, &self.control, &self.signature)
            .map_err(|_| Refusal::new(RefusalKind::BadControl, "not signed by the coordinator"))?;
        let for_me = self.control.to == me
            || (self.control.to == EVERY_CUSTODIAN
                && matches!(self.control.body, ControlBody::BatchRecord { .. }));
        if !for_me || &self.control.committee != committee {
            return Err(Refusal::new(
                RefusalKind::BadControl,
                "the message is for another custodian or committee",
            ));
        }
        Ok(&self.control.body)
    }
}

/// A custodian's health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Its index.
    pub index: u8,
    /// Whether it holds its PRSS keys (committee setup done).
    pub keyring: bool,
    /// Setup epoch it dealt in, if any.
    pub dealt_epoch: Option<u64>,
    /// One past the last item of each pool (triples, bits).
    pub pool_end: [u64; 2],
    /// High-water marks of each pool (triples, bits).
    pub high_water: [u64; 2],
    /// Active package ids.
    pub active: Vec<Digest>,
    /// Audit entries so far.
    pub audit_entries: u64,
    /// Whether it can record new work: false once a write failed for lack of space (a
    /// full disk or its quota), until a probe write succeeds. The coordinator leaves a
    /// custodian that cannot write out of sessions and offline batches.
    pub writable: bool,
}

/// The pool index of a kind in [`Health`] arrays.
pub fn pool_slot(kind: PoolKind) -> usize {
    kind.slot()
}

/// A package upload to a custodian: the control message and the package bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The signed [`ControlBody::Propose`].
    pub control: SignedControl,
    /// The package file.
    #[serde(with = "qvm_core::encoding::bytes_serde")]
    pub package: Vec<u8>,
}

#[cfg(test)]
mod control_tests {
    use super::*;
    use qvm_mpc::offline::BatchSpec;

    fn signed(to: u8, body: ControlBody, key: &SigningKey) -> SignedControl {
        Control {
            to,
            committee: Digest::from_bytes([7; 32]),
            body,
        }
        .sign(key)
        .expect("signs")
    }

    #[test]
    fn only_a_batch_record_may_be_addressed_to_every_custodian() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let vk = key.verifying_key();
        let committee = Digest::from_bytes([7; 32]);
        let record = ControlBody::BatchRecord {
            record: BatchRecord {
                spec: BatchSpec {
                    id: Digest::from_bytes([1; 32]),
                    kind: PoolKind::Triples,
                    count: 1,
                    start: 0,
                },
                public: vec![qvm_core::Fp::ONE],
            },
        };
        for me in [1, 2, 5] {
            assert!(
                signed(EVERY_CUSTODIAN, record.clone(), &key)
                    .open(&vk, me, &committee)
                    .is_ok()
            );
        }
        let deal = ControlBody::SetupDeal { epoch: 1 };
        let err = signed(EVERY_CUSTODIAN, deal.clone(), &key)
            .open(&vk, 1, &committee)
            .expect_err("a setup message names its custodian");
        assert_eq!(err.kind, RefusalKind::BadControl);
        assert!(
            signed(1, deal.clone(), &key)
                .open(&vk, 1, &committee)
                .is_ok()
        );
        assert!(signed(2, deal, &key).open(&vk, 1, &committee).is_err());
        assert!(signed(2, record, &key).open(&vk, 1, &committee).is_err());
    }
}

#[cfg(test)]
mod start_tests {
    use super::*;
    use crate::ticket::Ticket;
    use qvm_core::encoding::{from_canonical, to_canonical};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn a_borrowed_start_encodes_as_the_owned_one() -> Result<(), Box<dyn std::error::Error>> {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(5));
        let request = crate::request::tests::request().sign(&key)?;
        let ticket = |sequence| {
            Ticket {
                request: request.hash().expect("hash"),
                package: Digest::default(),
                program: "p".into(),
                identity: "id".into(),
                session: Digest::from_bytes([sequence as u8; 32]),
                members: qvm_core::PartySet::first(2),
                grant: qvm_mpc::pool::PoolGrant::default(),
                items: 1,
                attempt: 0,
                issued_at: 7,
                expires_at: 37,
                sequence,
                previous: Digest::default(),
            }
            .sign(&key)
        };
        let owned = StartSession {
            request: request.clone(),
            ticket: ticket(2)?,
            chain: vec![ticket(1)?],
        };
        let borrowed = StartSessionRef {
            request: &owned.request,
            ticket: &owned.ticket,
            chain: &owned.chain,
        };
        let bytes = to_canonical(&borrowed)?;
        assert_eq!(bytes, to_canonical(&owned)?);
        assert_eq!(from_canonical::<StartSession>(&bytes)?, owned);
        Ok(())
    }
}
