//! Output delivery with pairwise masks (DESIGN.md §4).
//!
//! Before custodian i ∈ Q hands over its share y_i of an output, it adds
//! m_i = λ_i⁻¹ · Σ_{j∈Q, j≠i} ±PRF(k_ij, ticket)(item, index), the sign + when i < j and −
//! otherwise, with λ_i the Lagrange coefficient of i at 0 over Q. Then
//! Σ_i λ_i (y_i + m_i) = y + Σ_{i<j} (PRF_ij − PRF_ij) = y: whoever reconstructs (the
//! coordinator, or the client for reveal-to-client policies) learns y, and each masked
//! share on its own is uniformly random, so nothing about any custodian's share leaks,
//! across any number of sessions (the PRF is keyed per ticket, and each item of a batch
//! and each output element is its own PRF input).

use std::collections::BTreeMap;

use qvm_core::encoding::Digest;
use qvm_core::pairwise::PairwiseKey;
use qvm_core::prf::{FieldPrf, PrfInput};
use qvm_core::shamir::Lagrange;
use qvm_core::{Fp, PartyIndex, PartySet};

use crate::committee::Committee;
use crate::msgs::OutputMsg;
use crate::online::SessionConfig;
use crate::{Error, Result};

/// HKDF salt of output-mask keys.
const MASK_SALT: &[u8] = b"qvm/output-mask/v2";
/// PRF kind of output masks.
const KIND_OUTPUT: u8 = 1;

/// λ_i(0)⁻¹ over `members`, for member `me` (from the process-wide cache: every item of a
/// batch is a session over the same members).
fn lagrange_inverse_at_zero(members: PartySet, me: PartyIndex) -> Result<Fp> {
    let inverses = Lagrange::shared().inverse_coefficients(members, 0)?;
    let pos = members
        .iter()
        .position(|p| p == me)
        .ok_or(Error::NotInSession(me))?;
    Ok(inverses[pos])
}

/// One custodian's output-mask PRFs for one ticket's session: one per other member of Q,
/// each with the sign of its term. Derived once for the whole batch — an HKDF per member
/// per item had been a tenth of a custodian's work per item of a local-only batch — and
/// the item's index goes into the PRF input instead, so no two items share a mask.
pub struct MaskKeys {
    lambda_inv: Fp,
    prfs: Vec<(bool, FieldPrf)>,
}

impl core::fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MaskKeys({} peers, <redacted>)", self.prfs.len())
    }
}

impl MaskKeys {
    /// Custodian `me`'s mask keys among `members`, bound to `ticket`: the hash of the
    /// coordinator's ticket, which custodians never admit twice (replays are refused and
    /// chains cannot fork), so a coordinator reusing a session id still gets fresh masks.
    pub fn derive(
        committee: &Committee,
        ticket: &Digest,
        members: PartySet,
        me: PartyIndex,
        pairwise: &BTreeMap<PartyIndex, PairwiseKey>,
    ) -> Result<MaskKeys> {
        let lambda_inv = lagrange_inverse_at_zero(members, me)?;
        let prfs = members
            .without(me)
            .iter()
            .map(|j| {
                let key = pairwise.get(&j).ok_or(Error::MissingPairwiseKey(j))?;
                let prf = FieldPrf::derive(
                    key.as_bytes(),
                    MASK_SALT,
                    &[committee.id().as_bytes(), ticket.as_bytes()],
                );
                Ok((me < j, prf))
            })
            .collect::<Result<_>>()?;
        Ok(MaskKeys { lambda_inv, prfs })
    }

    /// Masked output shares y_i + m_i of batch item `item`.
    pub fn mask(&self, item: u32, outputs: &[Fp]) -> Vec<Fp> {
        outputs
            .iter()
            .enumerate()
            .map(|(e, y)| {
                let input = PrfInput::new(KIND_OUTPUT, u64::from(item), e as u32);
                let sum: Fp = self
                    .prfs
                    .iter()
                    .map(|(plus, prf)| {
                        let v = prf.element(input);
                        if *plus { v } else { -v }
                    })
                    .sum();
                *y + self.lambda_inv * sum
            })
            .collect()
    }
}

/// Reconstructs outputs from every member's masked shares: Σ λ_i (y_i + m_i).
pub fn reconstruct(members: PartySet, masked: &BTreeMap<PartyIndex, Vec<Fp>>) -> Result<Vec<Fp>> {
    let missing: Vec<PartyIndex> = members.iter().filter(|p| !masked.contains_key(p)).collect();
    if !missing.is_empty() {
        return Err(Error::Missing { missing, round: 0 });
    }
    let coeffs = Lagrange::shared().coefficients(members, 0);
    let rows: Vec<&Vec<Fp>> = members.iter().filter_map(|p| masked.get(&p)).collect();
    let len = rows.first().map_or(0, |r| r.len());
    if let Some((p, r)) = masked.iter().find(|(_, r)| r.len() != len) {
        return Err(Error::WrongLength {
            expected: len,
            got: r.len(),
            from: Some(*p),
        });
    }
    Ok((0..len)
        .map(|e| coeffs.iter().zip(&rows).map(|(c, r)| *c * r[e]).sum())
        .collect())
}

/// Collects output messages of one session and reconstructs once all members answered.
#[derive(Debug)]
pub struct OutputCollector {
    config: SessionConfig,
    received: BTreeMap<PartyIndex, Vec<Fp>>,
}

impl OutputCollector {
    /// A collector for the session.
    pub fn new(config: SessionConfig) -> OutputCollector {
        OutputCollector {
            config,
            received: BTreeMap::new(),
        }
    }

    /// Takes one message; returns the outputs when the last member's arrives. Messages for
    /// another session, from strangers, or repeated are refused.
    pub fn receive(&mut self, msg: OutputMsg) -> Result<Option<Vec<Fp>>> {
        if msg.session != self.config.session {
            return Err(Error::WrongSession {
                expected: self.config.session,
                got: msg.session,
            });
        }
        if !self.config.members.contains(msg.from) {
            return Err(Error::NotAMember(msg.from));
        }
        if self.received.contains_key(&msg.from) {
            return Err(Error::Duplicate(msg.from));
        }
        self.received.insert(msg.from, msg.masked);
        if self.received.len() < self.config.members.len() {
            return Ok(None);
        }
        reconstruct(self.config.members, &self.received).map(Some)
    }

    /// Members whose outputs have not arrived.
    pub fn waiting_for(&self) -> Vec<PartyIndex> {
        self.config
            .members
            .iter()
            .filter(|p| !self.received.contains_key(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::committee::Committee;
    use qvm_core::encoding::Digest;
    use qvm_core::pairwise::KeyAgreementSecret;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Every custodian's pairwise keys in a committee of `n`.
    fn keys(n: usize, committee: &Digest) -> Vec<BTreeMap<PartyIndex, PairwiseKey>> {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let secrets: Vec<_> = (0..n)
            .map(|_| KeyAgreementSecret::generate(&mut rng))
            .collect();
        let party = |i: usize| PartyIndex::new(i as u32 + 1).expect("index");
        (0..n)
            .map(|i| {
                (0..n)
                    .filter(|j| *j != i)
                    .map(|j| {
                        (
                            party(j),
                            secrets[i].pairwise(&secrets[j].public(), committee),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn masks_cancel_and_differ_per_item_and_ticket() -> Result<()> {
        let committee = Committee::new(Digest::from_bytes([3; 32]), 5, 3)?;
        let pairwise = keys(5, &committee.id());
        let members = PartySet::first(3);
        // Shares of y = (7, 11) on degree-2 polynomials, one per member.
        let y = [Fp::from(7u64), Fp::from(11u64)];
        let share = |p: PartyIndex, e: usize| {
            let x = Fp::from(u64::from(p.get()));
            y[e] + Fp::from(5u64) * x + Fp::from(2u64) * x * x
        };
        let masked = |s: u8, item: u32| -> Result<BTreeMap<PartyIndex, Vec<Fp>>> {
            members
                .iter()
                .map(|p| {
                    let ticket = Digest::from_bytes([s; 32]);
                    let keys = MaskKeys::derive(
                        &committee,
                        &ticket,
                        members,
                        p,
                        &pairwise[p.get() as usize - 1],
                    )?;
                    Ok((p, keys.mask(item, &[share(p, 0), share(p, 1)])))
                })
                .collect()
        };
        let (a0, a1, b0) = (masked(1, 0)?, masked(1, 1)?, masked(2, 0)?);
        for m in [&a0, &a1, &b0] {
            assert_eq!(reconstruct(members, m)?, y.to_vec());
        }
        for p in members.iter() {
            assert_ne!(a0[&p], a1[&p], "items of one session share no mask");
            assert_ne!(a0[&p], b0[&p], "tickets share no mask");
            assert_ne!(
                a0[&p],
                vec![share(p, 0), share(p, 1)],
                "the share is masked"
            );
        }
        Ok(())
    }
}
