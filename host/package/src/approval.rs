//! Approvals and activation certificates (DESIGN.md §7): a version is active once K
//! distinct custodians of its committee have approved exactly its package id.

use qvm_core::encoding::{Digest, Domain};
use qvm_core::sign::{Signature, SigningKey};
use serde::{Deserialize, Serialize};

use crate::committee::Committee;
use crate::manifest::Manifest;

/// Domain of approval signatures.
pub const APPROVAL: Domain = Domain::new("qvm/approval/v1");

/// A custodian's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Approve the version.
    Approve,
    /// Refuse it, saying why.
    Refuse(String),
}

/// What a custodian signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The package id.
    pub package: Digest,
    /// The program's name.
    pub program: String,
    /// Its version.
    pub version: u64,
    /// The committee id.
    pub committee: Digest,
    /// The custodian's index.
    pub custodian: u8,
    /// Approve or refuse.
    pub decision: Decision,
    /// When it was signed (seconds since the epoch).
    pub issued_at: u64,
}

/// An approval with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedApproval {
    /// The approval.
    pub approval: Approval,
    /// The custodian's signature.
    pub signature: Signature,
}

impl Approval {
    /// An approval (or refusal) of a manifest.
    pub fn of(
        manifest: &Manifest,
        custodian: u8,
        decision: Decision,
        issued_at: u64,
    ) -> qvm_core::Result<Approval> {
        Ok(Approval {
            package: manifest.id()?,
            program: manifest.program.clone(),
            version: manifest.version,
            committee: manifest.committee,
            custodian,
            decision,
            issued_at,
        })
    }

    /// Signs it with the custodian's key.
    pub fn sign(self, key: &SigningKey) -> qvm_core::Result<SignedApproval> {
        let signature = key.sign(APPROVAL, &self)?;
        Ok(SignedApproval {
            approval: self,
            signature,
        })
    }
}

/// Why a certificate is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Fewer than K distinct custodians validly approved.
    #[error("{valid} valid approval(s) from distinct custodians, {needed} needed")]
    NotEnough {
        /// Valid approvals counted.
        valid: usize,
        /// K.
        needed: usize,
    },
}

/// K approvals of one package by one committee: the activation certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The package id.
    pub package: Digest,
    /// The approvals.
    pub approvals: Vec<SignedApproval>,
}

impl Certificate {
    /// Checks the certificate for `manifest` under `committee`: counts approvals that are
    /// signed by the custodian they name, approve, name exactly this package, program,
    /// version and committee, and were issued within the proposal window that opened at
    /// `proposed_at`; each custodian counts once. Valid with at least K.
    pub fn check(
        &self,
        manifest: &Manifest,
        committee: &Committee,
        proposed_at: u64,
    ) -> Result<(), CertificateError> {
        let (Ok(id), Ok(cid)) = (manifest.id(), committee.id()) else {
            return Err(CertificateError::NotEnough {
                valid: 0,
                needed: committee.k as usize,
            });
        };
        let deadline = proposed_at.saturating_add(committee.proposal_ttl_secs);
        let mut counted: Vec<u8> = Vec::new();
        for s in &self.approvals {
            let a = &s.approval;
            let ok = self.package == id
                && a.package == id
                && a.program == manifest.program
                && a.version == manifest.version
                && a.committee == cid
                && a.decision == Decision::Approve
                && (proposed_at..=deadline).contains(&a.issued_at)
                && !counted.contains(&a.custodian)
                && committee
                    .custodian(a.custodian)
                    .is_some_and(|c| c.signing.verify(APPROVAL, a, &s.signature).is_ok());
            if ok {
                counted.push(a.custodian);
            }
        }
        if counted.len() >= committee.k as usize {
            Ok(())
        } else {
            Err(CertificateError::NotEnough {
                valid: counted.len(),
                needed: committee.k as usize,
            })
        }
    }
}
