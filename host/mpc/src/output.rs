//! Output delivery with pairwise masks (DESIGN.md §4).
//!
//! Before custodian i ∈ Q hands over its share y_i of an output, it adds
//! m_i = λ_i⁻¹ · Σ_{j∈Q, j≠i} ±PRF(k_ij, session, index), the sign + when i < j and −
//! otherwise, with λ_i the Lagrange coefficient of i at 0 over Q. Then
//! Σ_i λ_i (y_i + m_i) = y + Σ_{i<j} (PRF_ij − PRF_ij) = y: whoever reconstructs (the
//! coordinator, or the client for reveal-to-client policies) learns y, and each masked
//! share on its own is uniformly random, so nothing about any custodian's share leaks,
//! across any number of sessions (the PRF is keyed per session).

use std::collections::BTreeMap;

use qvm_core::pairwise::PairwiseKey;
use qvm_core::prf::{FieldPrf, PrfInput};
use qvm_core::shamir::Lagrange;
use qvm_core::{Fp, PartyIndex, PartySet};

use crate::msgs::OutputMsg;
use crate::online::SessionConfig;
use crate::{Error, Result};

/// HKDF salt of output-mask keys.
const MASK_SALT: &[u8] = b"qvm/output-mask/v1";
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

/// Custodian `me`'s masked output shares y_i + m_i.
pub fn mask(
    config: &SessionConfig,
    me: PartyIndex,
    pairwise: &BTreeMap<PartyIndex, PairwiseKey>,
    outputs: &[Fp],
) -> Result<Vec<Fp>> {
    let lambda_inv = lagrange_inverse_at_zero(config.members, me)?;
    let prfs: Vec<(bool, FieldPrf)> = config
        .members
        .without(me)
        .iter()
        .map(|j| {
            let key = pairwise.get(&j).ok_or(Error::MissingPairwiseKey(j))?;
            let prf = FieldPrf::derive(
                key.as_bytes(),
                MASK_SALT,
                &[config.committee.id().as_bytes(), config.session.as_bytes()],
            );
            Ok((me < j, prf))
        })
        .collect::<Result<_>>()?;
    Ok(outputs
        .iter()
        .enumerate()
        .map(|(e, y)| {
            let input = PrfInput::new(KIND_OUTPUT, 0, e as u32);
            let sum: Fp = prfs
                .iter()
                .map(|(plus, prf)| {
                    let v = prf.element(input);
                    if *plus { v } else { -v }
                })
                .sum();
            *y + lambda_inv * sum
        })
        .collect())
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
