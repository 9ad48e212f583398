//! The king: the coordinator's side of every interactive round (Damgård–Nielsen 2007 §3).
//!
//! Each custodian of the session set sends its shares of the values to open; the king
//! interpolates each value and sends the opened vector back. The values it opens are
//! uniformly masked (Beaver differences, DN07's D = ab − r) or statistically masked
//! (comparison and truncation masks), so it learns nothing about the secrets. When it holds
//! more shares than the degree needs it checks them; with 2e redundant shares it names up to
//! e custodians whose shares are off the polynomial (by elimination: the unique smallest set
//! whose removal leaves the rest consistent).

use std::collections::BTreeMap;

use qvm_core::encoding::Digest;
use qvm_core::shamir::Lagrange;
use qvm_core::{Fp, PartyIndex, PartySet};

use crate::msgs::{OpenedMsg, ShareMsg};
use crate::stats::Counters;
use crate::{Error, Result};

/// One session's rounds, king side.
#[derive(Debug)]
pub struct KingSession {
    session: Digest,
    members: PartySet,
    degree: usize,
    round: u32,
    received: BTreeMap<PartyIndex, Vec<Fp>>,
    expected_len: Option<usize>,
    failed: bool,
    /// λ_i(0) over the first degree+1 members.
    basis_at_zero: Vec<Fp>,
    /// For each member beyond the basis: λ_i(j) over the basis.
    checks: Vec<(usize, Vec<Fp>)>,
    counters: Counters,
}

impl KingSession {
    /// A king for `session` among `members`, opening sharings of degree `degree` (t online,
    /// 2t offline). Needs at least degree + 1 members.
    pub fn new(session: Digest, members: PartySet, degree: usize) -> Result<KingSession> {
        if members.len() <= degree {
            return Err(Error::TooFewMembers {
                members: members.len(),
                needed: degree + 1,
            });
        }
        let order: Vec<PartyIndex> = members.iter().collect();
        let basis: PartySet = order[..=degree].iter().copied().collect();
        let lagrange = Lagrange::shared();
        let basis_at_zero = lagrange.coefficients(basis, 0).to_vec();
        let checks = order[degree + 1..]
            .iter()
            .enumerate()
            .map(|(pos, j)| {
                (
                    degree + 1 + pos,
                    lagrange.coefficients(basis, j.get()).to_vec(),
                )
            })
            .collect();
        Ok(KingSession {
            session,
            members,
            degree,
            round: 0,
            received: BTreeMap::new(),
            expected_len: None,
            failed: false,
            basis_at_zero,
            checks,
            counters: Counters::default(),
        })
    }

    /// The session id.
    pub fn session(&self) -> Digest {
        self.session
    }

    /// The round being collected.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Field elements received and sent (sent counts one copy per custodian).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Custodians whose message for the current round has not arrived.
    pub fn waiting_for(&self) -> Vec<PartyIndex> {
        self.members
            .iter()
            .filter(|p| !self.received.contains_key(p))
            .collect()
    }

    /// The deadline passed: the session fails, naming the custodians that did not answer.
    pub fn expire(&mut self) -> Error {
        self.failed = true;
        Error::Missing {
            missing: self.waiting_for(),
            round: self.round,
        }
    }

    /// Takes one custodian's shares. Returns the opened values once every member has sent
    /// its shares for the round. A message for another session or round, from a stranger, a
    /// duplicate, or of the wrong length is refused and changes nothing; inconsistent shares
    /// fail the session, naming the culprits when the redundancy allows.
    pub fn receive(&mut self, msg: ShareMsg) -> Result<Option<OpenedMsg>> {
        self.check(&msg)?;
        self.expected_len.get_or_insert(msg.shares.len());
        self.counters.received += msg.shares.len() as u64;
        self.received.insert(msg.from, msg.shares);
        if self.received.len() < self.members.len() {
            return Ok(None);
        }
        let received = core::mem::take(&mut self.received);
        self.expected_len = None;
        let values = match self.open(&received) {
            Ok(v) => v,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let out = OpenedMsg {
            session: self.session,
            round: self.round,
            values,
        };
        self.counters.rounds += 1;
        self.counters.sent += (out.values.len() * self.members.len()) as u64;
        self.round += 1;
        Ok(Some(out))
    }

    fn check(&self, msg: &ShareMsg) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        if msg.session != self.session {
            return Err(Error::WrongSession {
                expected: self.session,
                got: msg.session,
            });
        }
        if !self.members.contains(msg.from) {
            return Err(Error::NotAMember(msg.from));
        }
        if msg.round != self.round {
            return Err(Error::WrongRound {
                expected: self.round,
                got: msg.round,
            });
        }
        if self.received.contains_key(&msg.from) {
            return Err(Error::Duplicate(msg.from));
        }
        match self.expected_len {
            Some(n) if n != msg.shares.len() => Err(Error::WrongLength {
                expected: n,
                got: msg.shares.len(),
                from: Some(msg.from),
            }),
            _ => Ok(()),
        }
    }

    /// Interpolates every value from the basis, checks the redundant shares.
    fn open(&self, received: &BTreeMap<PartyIndex, Vec<Fp>>) -> Result<Vec<Fp>> {
        let rows: Vec<&Vec<Fp>> = received.values().collect();
        let len = rows.first().map_or(0, |r| r.len());
        let basis = &rows[..=self.degree];
        let eval = |coeffs: &[Fp], e: usize| -> Fp {
            coeffs.iter().zip(basis).map(|(c, row)| *c * row[e]).sum()
        };
        let mut bad = Vec::new();
        let values = (0..len)
            .map(|e| {
                if self
                    .checks
                    .iter()
                    .any(|(pos, c)| eval(c, e) != rows[*pos][e])
                {
                    bad.push(e);
                }
                eval(&self.basis_at_zero, e)
            })
            .collect();
        if bad.is_empty() {
            return Ok(values);
        }
        Err(self.blame(received, &bad))
    }

    fn blame(&self, received: &BTreeMap<PartyIndex, Vec<Fp>>, bad: &[usize]) -> Error {
        let mut culprits = PartySet::EMPTY;
        for &e in bad {
            let points: Vec<(PartyIndex, Fp)> = received.iter().map(|(p, v)| (*p, v[e])).collect();
            match identify(&points, self.degree) {
                Some(set) => culprits = set.iter().fold(culprits, PartySet::with),
                None => return Error::InconsistentUnattributed,
            }
        }
        Error::Inconsistent {
            culprits: culprits.iter().collect(),
        }
    }
}

/// The smallest set of at most e = ⌊(n − d − 1)/2⌋ points whose removal leaves the rest on
/// one polynomial of degree d; `None` if there is none (too many errors to attribute).
/// With n ≥ d + 1 + 2e the answer is unique, so the named custodians really lied.
pub fn identify(points: &[(PartyIndex, Fp)], degree: usize) -> Option<PartySet> {
    let n = points.len();
    let max_errors = n.checked_sub(degree + 1)? / 2;
    let lagrange = Lagrange::new();
    for e in 1..=max_errors {
        for removed in combinations(n, e) {
            let kept: Vec<_> = points
                .iter()
                .enumerate()
                .filter(|(i, _)| !removed.contains(i))
                .map(|(_, p)| *p)
                .collect();
            if lagrange.is_consistent(&kept, degree).unwrap_or(false) {
                return Some(removed.iter().map(|i| points[*i].0).collect());
            }
        }
    }
    None
}

/// All e-element subsets of 0..n, as sorted index vectors.
fn combinations(n: usize, e: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, e: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == e {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, e, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, e, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvm_core::shamir::{ShamirParams, share};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn msgs(session: Digest, values: &[Fp], t: usize, n: usize, seed: u64) -> Vec<ShareMsg> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let params = ShamirParams::new(t, n).expect("valid");
        let per_value: Vec<_> = values.iter().map(|v| share(*v, params, &mut rng)).collect();
        PartyIndex::range(n as u8)
            .enumerate()
            .map(|(i, p)| ShareMsg {
                session,
                round: 0,
                from: p,
                shares: per_value.iter().map(|s| s[i].value()).collect(),
            })
            .collect()
    }

    #[test]
    fn opens_checks_and_names_liars() -> Result<()> {
        let sid = Digest::from_bytes([1; 32]);
        let values = vec![Fp::from(5u64), Fp::from(7u64), -Fp::ONE];
        // 2 of 7 at degree 1: 5 redundant shares, up to 2 liars named.
        let mut m = msgs(sid, &values, 1, 7, 1);
        m[2].shares[1] += Fp::ONE;
        m[5].shares[0] += Fp::ONE;
        let mut king = KingSession::new(sid, PartySet::first(7), 1)?;
        let mut result = Ok(None);
        for msg in m {
            result = king.receive(msg);
        }
        let err = result.expect_err("inconsistent");
        assert_eq!(
            err.culprits(),
            vec![PartyIndex::new(3)?, PartyIndex::new(6)?]
        );
        assert_eq!(
            king.receive(msgs(sid, &values, 1, 7, 1).remove(0)),
            Err(Error::Failed)
        );

        // Honest shares open.
        let mut king = KingSession::new(sid, PartySet::first(7), 1)?;
        let mut opened = None;
        for msg in msgs(sid, &values, 1, 7, 2) {
            opened = king.receive(msg)?;
        }
        assert_eq!(opened.map(|o| o.values), Some(values.clone()));
        assert_eq!(king.round(), 1);

        // One redundant share detects but cannot name.
        let mut m = msgs(sid, &values, 1, 3, 3);
        m[0].shares[0] += Fp::ONE;
        let mut king = KingSession::new(sid, PartySet::first(3), 1)?;
        let results: Vec<_> = m.into_iter().map(|x| king.receive(x)).collect();
        assert_eq!(results[2], Err(Error::InconsistentUnattributed));
        Ok(())
    }

    #[test]
    fn refuses_bad_messages_without_changing_state() -> Result<()> {
        let sid = Digest::from_bytes([1; 32]);
        let values = vec![Fp::from(9u64)];
        let m = msgs(sid, &values, 1, 3, 4);
        let mut king = KingSession::new(sid, PartySet::first(3), 1)?;
        assert_eq!(king.receive(m[0].clone())?, None);
        assert_eq!(
            king.receive(m[0].clone()),
            Err(Error::Duplicate(PartyIndex::new(1)?))
        );
        let mut other = m[1].clone();
        other.session = Digest::from_bytes([2; 32]);
        assert!(matches!(
            king.receive(other),
            Err(Error::WrongSession { .. })
        ));
        let mut late = m[1].clone();
        late.round = 1;
        assert_eq!(
            king.receive(late),
            Err(Error::WrongRound {
                expected: 0,
                got: 1
            })
        );
        let mut long = m[1].clone();
        long.shares.push(Fp::ONE);
        assert!(matches!(king.receive(long), Err(Error::WrongLength { .. })));
        let mut stranger = m[1].clone();
        stranger.from = PartyIndex::new(9)?;
        assert_eq!(
            king.receive(stranger),
            Err(Error::NotAMember(PartyIndex::new(9)?))
        );
        assert_eq!(
            king.waiting_for(),
            vec![PartyIndex::new(2)?, PartyIndex::new(3)?]
        );
        assert_eq!(king.receive(m[1].clone())?, None);
        assert_eq!(king.receive(m[2].clone())?.map(|o| o.values), Some(values));
        Ok(())
    }
}
