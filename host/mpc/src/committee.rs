//! A committee: N custodians with threshold K (DESIGN.md §1–§2).

use qvm_core::PartySet;
use qvm_core::encoding::Digest;
use qvm_core::party::MAX_PARTIES;
use qvm_core::prss::PrssParams;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// N custodians, any K of which evaluate; Shamir degree t = K − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Committee {
    id: Digest,
    parties: u8,
    k: u8,
}

impl Committee {
    /// A committee with id `id` (the hash of its canonical description), `n` custodians and
    /// threshold `k` (1 ≤ k ≤ n ≤ 64).
    pub fn new(id: Digest, n: usize, k: usize) -> Result<Committee> {
        if k == 0 || k > n || n > MAX_PARTIES as usize {
            return Err(Error::OpParams(format!(
                "a committee needs 1 <= K <= N <= {MAX_PARTIES}, got K = {k}, N = {n}"
            )));
        }
        PrssParams::new(n, k - 1)?;
        Ok(Committee {
            id,
            parties: n as u8,
            k: k as u8,
        })
    }

    /// The committee id.
    pub fn id(&self) -> Digest {
        self.id
    }

    /// N.
    pub fn n(&self) -> usize {
        self.parties as usize
    }

    /// K.
    pub fn k(&self) -> usize {
        self.k as usize
    }

    /// t = K − 1.
    pub fn degree(&self) -> usize {
        self.k as usize - 1
    }

    /// Custodians the offline phase needs: 2t + 1 = 2K − 1.
    pub fn offline_quorum(&self) -> usize {
        2 * self.degree() + 1
    }

    /// Whether the committee can run interactive programs at all (N ≥ 2K − 1).
    pub fn supports_interactive(&self) -> bool {
        self.n() >= self.offline_quorum()
    }

    /// All custodians.
    pub fn all(&self) -> PartySet {
        PartySet::first(self.parties)
    }

    /// The PRSS parameters (N, t).
    pub fn prss_params(&self) -> PrssParams {
        // Checked in `new`.
        PrssParams::new(self.n(), self.degree()).unwrap_or_else(|_| unreachable!())
    }

    /// Checks a session set: members of the committee, at least `needed` of them.
    pub fn check_members(&self, members: PartySet, needed: usize) -> Result<()> {
        if !members.is_subset(self.all()) {
            let stranger = members.difference(self.all()).iter().next();
            return Err(Error::NotAMember(
                stranger.unwrap_or_else(|| unreachable!()),
            ));
        }
        if members.len() < needed {
            return Err(Error::TooFewMembers {
                members: members.len(),
                needed,
            });
        }
        Ok(())
    }
}
