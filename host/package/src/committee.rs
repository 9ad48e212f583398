//! Committees: `qvm committee init`. The committee id is the hash of the committee's
//! canonical encoding.

use qvm_core::encoding::{Digest, Domain, hash};
use qvm_core::pairwise::KeyAgreementPublic;
use qvm_core::sign::VerifyingKey;
use qvm_lang::cost::Class;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const COMMITTEE: Domain = Domain::new("qvm/committee/v1");

/// Default time a proposal stays open for approvals: seven days.
pub const DEFAULT_PROPOSAL_TTL_SECS: u64 = 7 * 24 * 3600;

/// One custodian of a committee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Custodian {
    /// Its index (its shares' evaluation point), 1..=N.
    pub index: u8,
    /// Its approval and message signing key.
    pub signing: VerifyingKey,
    /// Its key-agreement key (bundles are sealed to it; pairwise keys derive from it).
    pub agreement: KeyAgreementPublic,
    /// Where it listens, if known.
    #[serde(default)]
    pub url: Option<String>,
}

/// A committee of N custodians with threshold K and a coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committee {
    /// Threshold K.
    pub k: u8,
    /// The custodians, by index 1..=N.
    pub custodians: Vec<Custodian>,
    /// The coordinator's signing key.
    pub coordinator: VerifyingKey,
    /// How long a proposed version stays open for approvals.
    pub proposal_ttl_secs: u64,
}

impl Committee {
    /// A committee; custodians must have the indices 1..=N, each once, and 1 ≤ K ≤ N.
    pub fn new(
        k: u8,
        mut custodians: Vec<Custodian>,
        coordinator: VerifyingKey,
        proposal_ttl_secs: u64,
    ) -> Result<Committee> {
        custodians.sort_by_key(|c| c.index);
        for (i, c) in custodians.iter().enumerate() {
            if c.index as usize != i + 1 {
                return Err(Error::Committee(format!(
                    "custodian indices must be 1..={} each once (found {})",
                    custodians.len(),
                    c.index
                )));
            }
        }
        let n = custodians.len();
        if k == 0 || k as usize > n || n > qvm_core::party::MAX_PARTIES as usize {
            return Err(Error::Committee(format!(
                "need 1 <= K <= N <= 64, got K = {k}, N = {n}"
            )));
        }
        qvm_core::prss::PrssParams::new(n, k as usize - 1)?;
        Ok(Committee {
            k,
            custodians,
            coordinator,
            proposal_ttl_secs,
        })
    }

    /// N.
    pub fn n(&self) -> u8 {
        self.custodians.len() as u8
    }

    /// The committee id: SHA-256 over its canonical encoding.
    pub fn id(&self) -> Result<Digest> {
        Ok(hash(COMMITTEE, self)?)
    }

    /// A custodian by index.
    pub fn custodian(&self, index: u8) -> Option<&Custodian> {
        self.custodians.iter().find(|c| c.index == index)
    }

    /// Whether this committee can run a program of `class`: interactive programs need the
    /// offline phase, so N ≥ 2K − 1.
    pub fn check_class(&self, class: Class) -> core::result::Result<(), String> {
        let need = class.min_n(self.k as usize);
        if (self.n() as usize) < need {
            return Err(format!(
                "the program is {class:?} and needs N >= {need} custodians for K = {}, this committee has N = {}",
                self.k,
                self.n()
            ));
        }
        Ok(())
    }

    /// Reads a committee file (JSON), checking it.
    pub fn from_json(text: &str) -> Result<Committee> {
        let c: Committee = serde_json::from_str(text).map_err(|e| Error::Malformed {
            what: "committee.json",
            detail: e.to_string(),
        })?;
        Committee::new(c.k, c.custodians, c.coordinator, c.proposal_ttl_secs)
    }

    /// The committee file (JSON).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Malformed {
            what: "committee.json",
            detail: e.to_string(),
        })
    }
}
