//! Pool marks: what each custodian tells the others about the pooled items it has used
//! (DESIGN.md §4, "compares marks with the others through signed gossip").
//!
//! A Beaver triple or random bit used in two sessions leaks a difference of secrets to
//! whoever opens both, and only the coordinator decides which items a ticket grants. Each
//! custodian refuses a grant that overlaps one it has recorded; with N ≤ 2K − 1 any two
//! session sets share a custodian, so that alone stops reuse. With N > 2K − 1 two
//! session sets can be disjoint, so custodians also pull each other's records, signed by
//! the custodian that admitted them: a learned range is refused at admission like an own
//! one, and two different tickets for overlapping items are evidence that the coordinator
//! handed items out twice — an alarm.
//!
//! The exchange is a pull: custodian *i* asks custodian *j* for the tickets with pooled
//! items *j* admitted after a cursor, and *j* answers with [`SignedPoolMarks`]. Each
//! ticket carries the coordinator's signature, so a corrupt custodian can report only
//! grants the coordinator made: it cannot block a pool by claiming items it never had.
//! Entries are idempotent, so a replayed or repeated answer changes nothing; a custodian
//! that was down resumes from its stored cursor.
//!
//! The question is signed too ([`SignedMarksQuery`]): marks name which identities queried
//! which programs and when, metadata only the committee's custodians may read.

use qvm_core::encoding::Digest;
use qvm_core::sign::{Signature, SigningKey, VerifyingKey};
use qvm_core::{PartyIndex, PartySet};
use qvm_mpc::pool::PoolKind;
use serde::{Deserialize, Serialize};

use crate::ticket::{SignedTicket, Ticket};
use crate::wire::{Refusal, RefusalKind};
use crate::{Error, MAX_CLOCK_SKEW_SECS, POOL_MARKS, POOL_MARKS_QUERY};

/// The most tickets one answer carries; the puller asks again from `next`.
pub const MAX_MARKS: usize = 1_000;

/// The highest pool index a range may reach: item indices are stored as SQLite's signed
/// 64-bit integers, and no pool comes near it.
pub const MAX_ITEM: u64 = i64::MAX as u64;

/// A range of a pool that a custodian admitted, and the ticket that granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenRange {
    /// The pool.
    pub kind: PoolKind,
    /// First item.
    pub start: u64,
    /// One past the last item.
    pub end: u64,
    /// The hash of the ticket that granted it.
    pub ticket: Digest,
}

/// The tickets with pooled items that custodian `from` admitted after cursor `after`, up
/// to cursor `next`. Tickets rather than bare ranges: the coordinator's signature on each
/// proves the items were granted, so a lying custodian cannot make the others refuse
/// items nobody used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMarks {
    /// The committee.
    pub committee: Digest,
    /// The custodian that admitted them.
    pub from: u8,
    /// The cursor asked for.
    pub after: u64,
    /// The cursor to ask from next time (`after` when there was nothing new).
    pub next: u64,
    /// The tickets, in the order the custodian admitted them.
    pub tickets: Vec<SignedTicket>,
}

/// [`PoolMarks`] with the admitting custodian's signature under [`POOL_MARKS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPoolMarks {
    /// The marks.
    pub marks: PoolMarks,
    /// The signature of custodian `marks.from`.
    pub signature: Signature,
}

impl PoolMarks {
    /// Signs it with the custodian's key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedPoolMarks, Error> {
        let signature = key.sign(POOL_MARKS, &self)?;
        Ok(SignedPoolMarks {
            marks: self,
            signature,
        })
    }
}

/// Custodian `from` asks custodian `to` for its marks after cursor `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarksQuery {
    /// The committee.
    pub committee: Digest,
    /// The asking custodian.
    pub from: u8,
    /// The custodian asked.
    pub to: u8,
    /// The cursor.
    pub after: u64,
    /// When it was asked, Unix seconds: a captured question is answered only within the
    /// clock skew allowed.
    pub issued_at: u64,
}

/// [`MarksQuery`] with the asking custodian's signature under [`POOL_MARKS_QUERY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMarksQuery {
    /// The question.
    pub query: MarksQuery,
    /// The signature of custodian `query.from`.
    pub signature: Signature,
}

impl MarksQuery {
    /// Signs it with the asking custodian's key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedMarksQuery, Error> {
        let signature = key.sign(POOL_MARKS_QUERY, &self)?;
        Ok(SignedMarksQuery {
            query: self,
            signature,
        })
    }
}

impl SignedMarksQuery {
    /// Checks that another custodian of `committee` (whose key `key_of` gives) asked
    /// custodian `me` recently, and returns the cursor asked for.
    pub fn open<'k>(
        &self,
        me: u8,
        committee: &Digest,
        now: u64,
        key_of: impl Fn(u8) -> Option<&'k VerifyingKey>,
    ) -> Result<u64, Refusal> {
        let bad = |why: &str| Refusal::new(RefusalKind::BadControl, why);
        let q = &self.query;
        if &q.committee != committee || q.to != me {
            return Err(bad(
                "a pool-marks question for another committee or custodian",
            ));
        }
        let key = key_of(q.from)
            .filter(|_| q.from != me)
            .ok_or_else(|| bad("a pool-marks question from no other custodian of the committee"))?;
        key.verify(POOL_MARKS_QUERY, q, &self.signature)
            .map_err(|_| bad("a pool-marks question not signed by the custodian it names"))?;
        if q.issued_at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
            return Err(Refusal::new(
                RefusalKind::Expired,
                "a pool-marks question asked too long ago (or in the future)",
            ));
        }
        Ok(q.after)
    }
}

/// The pooled ranges `ticket` grants, each with `hash`, the signed ticket's hash.
pub fn ranges(ticket: &Ticket, hash: Digest) -> Vec<TakenRange> {
    let g = &ticket.grant;
    [(PoolKind::Triples, g.triples), (PoolKind::Bits, g.bits)]
        .into_iter()
        .filter(|(_, r)| r.count > 0)
        .map(|(kind, r)| TakenRange {
            kind,
            start: r.start,
            end: r.end(),
            ticket: hash,
        })
        .collect()
}

/// Who must have signed pool marks: the custodian that sends them, and the coordinator
/// for every ticket in them.
#[derive(Debug, Clone, Copy)]
pub struct MarkKeys<'a> {
    /// The sending custodian's key.
    pub custodian: &'a VerifyingKey,
    /// The coordinator's key.
    pub coordinator: &'a VerifyingKey,
}

impl SignedPoolMarks {
    /// Checks that custodian `from` of `committee` signed these marks, answering the
    /// question asked (cursor `after`), that the coordinator signed every ticket in them
    /// and named `from` in its session set, and that every range is within
    /// [`MAX_ITEM`]; returns the ranges the tickets grant, each with its ticket's session
    /// set (a custodian in it may still admit the same ticket itself).
    ///
    /// A ticket whose hash `known` accepts was checked before (the caller admitted or
    /// learned it): its signature is not verified again, the most common case for a
    /// custodian that served the same sessions.
    pub fn open(
        &self,
        keys: MarkKeys<'_>,
        from: u8,
        committee: &Digest,
        after: u64,
        known: impl Fn(&Digest) -> bool,
    ) -> Result<Vec<(TakenRange, PartySet)>, Refusal> {
        let bad = |why: String| Refusal::new(RefusalKind::BadControl, why);
        keys.custodian
            .verify(POOL_MARKS, &self.marks, &self.signature)
            .map_err(|_| bad("pool marks not signed by the custodian they name".into()))?;
        let m = &self.marks;
        if m.from != from || &m.committee != committee {
            return Err(bad("pool marks from another custodian or committee".into()));
        }
        // A page with tickets moves the cursor on: a peer cannot keep the puller busy
        // with the same page.
        let moved = m.next > m.after || m.tickets.is_empty();
        if m.after != after || m.next < m.after || !moved || m.tickets.len() > MAX_MARKS {
            return Err(bad(
                "pool marks that do not answer the question asked".into()
            ));
        }
        let member = PartyIndex::new(from as u32).map_err(|e| bad(e.to_string()))?;
        let mut ranges = Vec::with_capacity(2 * m.tickets.len());
        for t in &m.tickets {
            let hash = t.hash().map_err(|e| bad(e.to_string()))?;
            if !known(&hash) {
                t.verify(keys.coordinator).map_err(|_| {
                    bad("pool marks with a ticket the coordinator did not sign".into())
                })?;
            }
            if !t.ticket.members.contains(member) {
                return Err(bad(format!(
                    "pool marks with a ticket whose session set leaves out custodian {from}"
                )));
            }
            for r in self::ranges(&t.ticket, hash) {
                if r.end > MAX_ITEM {
                    return Err(bad(format!(
                        "pool marks with a grant beyond item {MAX_ITEM}"
                    )));
                }
                ranges.push((r, t.ticket.members));
            }
        }
        Ok(ranges)
    }
}

#[cfg(test)]
mod tests {
    use qvm_core::PartySet;
    use qvm_mpc::pool::{PoolGrant, Range};

    use super::*;

    fn ticket(coordinator: &SigningKey, members: PartySet, triples: u64) -> SignedTicket {
        Ticket {
            request: Digest::from_bytes([3; 32]),
            package: Digest::from_bytes([4; 32]),
            program: "p".into(),
            identity: "a".into(),
            session: Digest::from_bytes([5; 32]),
            members,
            grant: PoolGrant {
                triples: Range {
                    start: 10,
                    count: triples,
                },
                bits: Range { start: 7, count: 2 },
            },
            items: 1,
            attempt: 0,
            issued_at: 1,
            expires_at: 2,
            sequence: 1,
            previous: Digest::default(),
        }
        .sign(coordinator)
        .expect("signs")
    }

    fn marks(from: u8, tickets: Vec<SignedTicket>) -> PoolMarks {
        PoolMarks {
            committee: Digest::from_bytes([7; 32]),
            from,
            after: 3,
            next: 5,
            tickets,
        }
    }

    #[test]
    fn questions_open_only_from_another_member_recently() {
        let asker = SigningKey::generate(&mut rand_core::OsRng);
        let me = SigningKey::generate(&mut rand_core::OsRng);
        let (ak, mk) = (asker.verifying_key(), me.verifying_key());
        let committee = Digest::from_bytes([7; 32]);
        let keys = |i: u8| match i {
            1 => Some(&ak),
            2 => Some(&mk),
            _ => None,
        };
        let query = |from, to, issued_at| MarksQuery {
            committee,
            from,
            to,
            after: 42,
            issued_at,
        };
        let now = 1_000_000;
        let ok = query(1, 2, now).sign(&asker).expect("signs");
        assert_eq!(ok.open(2, &committee, now, keys), Ok(42));
        let kind =
            |s: &SignedMarksQuery, me: u8, c: &Digest| s.open(me, c, now, keys).map_err(|r| r.kind);
        // Asked of another custodian, in another committee.
        assert_eq!(kind(&ok, 3, &committee), Err(RefusalKind::BadControl));
        let elsewhere = Digest::from_bytes([8; 32]);
        assert_eq!(kind(&ok, 2, &elsewhere), Err(RefusalKind::BadControl));
        // Signed by someone else than the custodian it names; by no member; by itself.
        let forged = query(1, 2, now).sign(&me).expect("signs");
        assert_eq!(kind(&forged, 2, &committee), Err(RefusalKind::BadControl));
        let stranger = query(9, 2, now).sign(&asker).expect("signs");
        assert_eq!(kind(&stranger, 2, &committee), Err(RefusalKind::BadControl));
        let own = query(2, 2, now).sign(&me).expect("signs");
        assert_eq!(kind(&own, 2, &committee), Err(RefusalKind::BadControl));
        // Altered after signing (another cursor).
        let mut altered = ok.clone();
        altered.query.after = 0;
        assert_eq!(kind(&altered, 2, &committee), Err(RefusalKind::BadControl));
        // Asked too long ago, or from the future, beyond the clock skew.
        let skew = MAX_CLOCK_SKEW_SECS;
        for t in [now - skew - 1, now + skew + 1] {
            let stale = query(1, 2, t).sign(&asker).expect("signs");
            assert_eq!(kind(&stale, 2, &committee), Err(RefusalKind::Expired));
        }
        let edge = query(1, 2, now - skew).sign(&asker).expect("signs");
        assert_eq!(kind(&edge, 2, &committee), Ok(42));
    }

    #[test]
    fn marks_open_only_for_their_signer_committee_question_and_tickets() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let coordinator = SigningKey::generate(&mut rand_core::OsRng);
        let other = SigningKey::generate(&mut rand_core::OsRng);
        let (vk, ck) = (key.verifying_key(), coordinator.verifying_key());
        let committee = Digest::from_bytes([7; 32]);
        let t = ticket(&coordinator, PartySet::first(2), 10);
        let signed = marks(2, vec![t.clone()]).sign(&key).expect("signs");
        let keys = MarkKeys {
            custodian: &vk,
            coordinator: &ck,
        };
        let none = |_: &Digest| false;
        let opened = signed.open(keys, 2, &committee, 3, none).expect("opens");
        assert!(opened.iter().all(|(_, m)| *m == PartySet::first(2)));
        let ranges: Vec<TakenRange> = opened.into_iter().map(|(r, _)| r).collect();
        let hash = t.hash().expect("hash");
        assert_eq!(
            ranges,
            vec![
                TakenRange {
                    kind: PoolKind::Triples,
                    start: 10,
                    end: 20,
                    ticket: hash
                },
                TakenRange {
                    kind: PoolKind::Bits,
                    start: 7,
                    end: 9,
                    ticket: hash
                }
            ]
        );
        // Another custodian's key, another sender, committee or cursor.
        let ok = |s: &SignedPoolMarks, from| s.open(keys, from, &committee, 3, none).is_ok();
        let stranger = other.verifying_key();
        let wrong = MarkKeys {
            custodian: &stranger,
            coordinator: &ck,
        };
        assert!(signed.open(wrong, 2, &committee, 3, none).is_err());
        assert!(!ok(&signed, 3));
        let elsewhere = Digest::from_bytes([8; 32]);
        assert!(signed.open(keys, 2, &elsewhere, 3, none).is_err());
        assert!(signed.open(keys, 2, &committee, 0, none).is_err());
        // Altered after signing.
        let mut altered = signed.clone();
        altered.marks.next = 9;
        assert!(!ok(&altered, 2));
        // Signed by the custodian, but a ticket the coordinator did not sign (a range
        // made up to block a pool), or one whose session set leaves the custodian out.
        let forged = ticket(&other, PartySet::first(2), 10);
        let forged_marks = marks(2, vec![forged.clone()]).sign(&key).expect("signs");
        assert!(!ok(&forged_marks, 2));
        // Unless the caller knows the ticket already (it checked it when it admitted it).
        let hash = forged.hash().expect("hash");
        assert!(
            forged_marks
                .open(keys, 2, &committee, 3, |h| *h == hash)
                .is_ok()
        );
        let outside = marks(3, vec![t.clone()]).sign(&key).expect("signs");
        assert!(!ok(&outside, 3));
        let mut back = marks(2, vec![t.clone()]);
        back.next = 1;
        assert!(!ok(&back.sign(&key).expect("signs"), 2));
        // Tickets, and the cursor stays put: the same page again and again.
        let mut stuck = marks(2, vec![t]);
        stuck.next = stuck.after;
        assert!(!ok(&stuck.sign(&key).expect("signs"), 2));
        // A grant reaching past the storable indices (a coordinator's, relayed).
        let mut huge = ticket(&coordinator, PartySet::first(2), 10).ticket;
        huge.grant.triples.start = u64::MAX - 5;
        let huge = huge.sign(&coordinator).expect("signs");
        assert!(!ok(&marks(2, vec![huge]).sign(&key).expect("signs"), 2));
        // A ticket with no triples grants only its bits.
        let bits_only = ticket(&coordinator, PartySet::first(2), 0);
        assert_eq!(super::ranges(&bits_only.ticket, Digest::default()).len(), 1);
    }
}
