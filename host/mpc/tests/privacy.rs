//! What the king sees, and what t custodians see, does not depend on the secrets.
//!
//! For two very different secret vectors we run the same programs many times and collect
//! (a) every value the king opens and (b) every share a coalition of t custodians sends.
//! Each value is projected to one byte (its low byte, and its byte at bit 64) and the byte
//! histograms are tested against uniform with a chi-square test (255 degrees of freedom:
//! mean 255, standard deviation 22.6; the bound 420 is more than seven deviations out, so a
//! real dependence fails and chance does not), and against each other.

mod common;

use std::collections::BTreeMap;

use common::{fp, sim_with_pools};
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::online::{Op, OpCost};
use qvm_mpc::pool::PoolKind;
use qvm_mpc::sim::{Simulation, Transcript};

const BOUND: f64 = 420.0;

type Histogram = [u64; 256];

fn histogram(values: &[Fp], shift: u32) -> Histogram {
    let mut h = [0u64; 256];
    for v in values {
        h[((v.to_u128() >> shift) & 0xff) as usize] += 1;
    }
    h
}

fn chi_square_uniform(h: &Histogram) -> f64 {
    let total: u64 = h.iter().sum();
    let expected = total as f64 / 256.0;
    h.iter()
        .map(|o| (*o as f64 - expected).powi(2) / expected)
        .sum()
}

fn chi_square_two_sample(a: &Histogram, b: &Histogram) -> f64 {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let (ka, kb) = ((nb / na).sqrt(), (na / nb).sqrt());
    a.iter()
        .zip(b)
        .filter(|(x, y)| **x + **y > 0)
        .map(|(x, y)| (ka * *x as f64 - kb * *y as f64).powi(2) / (*x + *y) as f64)
        .sum()
}

/// Runs `sessions` batches of mul, LTZ, EQZ and TruncPr on `len` copies of `secret` and
/// returns the transcripts.
fn transcripts(
    k: usize,
    n: usize,
    seed: u64,
    secret: i128,
    sessions: usize,
) -> qvm_mpc::Result<Vec<Transcript>> {
    let len = 48;
    let ops = |x: &qvm_mpc::SharedVec| {
        vec![
            Op::Mul {
                x: x.clone(),
                y: x.clone(),
            },
            Op::Ltz {
                x: x.clone(),
                k: 32,
            },
            Op::Eqz {
                x: x.clone(),
                k: 32,
            },
            Op::TruncPr {
                x: x.clone(),
                k: 32,
                m: 8,
            },
        ]
    };
    let probe = qvm_mpc::SharedVec::new(vec![Fp::ZERO; len]);
    let cost = ops(&probe)
        .iter()
        .map(Op::cost)
        .fold(OpCost::default(), |a, c| OpCost {
            triples: a.triples + c.triples,
            bits: a.bits + c.bits,
            rounds: a.rounds.max(c.rounds),
            elements: a.elements + c.elements,
        });
    let mut sim: Simulation =
        sim_with_pools(k, n, seed, (cost.triples * sessions as u64) as u32, 0)?;
    while sim.ledger().available(PoolKind::Bits) < cost.bits * sessions as u64 {
        sim.offline(PoolKind::Bits, (cost.bits * sessions as u64) as u32)?;
    }
    let mut out = Vec::new();
    for _ in 0..sessions {
        let shared = sim.share(&vec![fp(secret); len])?;
        let mut s = sim.session(sim.committee().all(), cost)?;
        s.batch(|p| ops(&shared[p.get() as usize - 1]))?;
        out.push(s.transcript.clone());
    }
    Ok(out)
}

/// Whether both samples look uniform, and alike, in both projections.
fn verdict(a: &[Fp], b: &[Fp]) -> Result<(), String> {
    for shift in [0, 64] {
        let (ha, hb) = (histogram(a, shift), histogram(b, shift));
        let (ca, cb, cab) = (
            chi_square_uniform(&ha),
            chi_square_uniform(&hb),
            chi_square_two_sample(&ha, &hb),
        );
        if ca >= BOUND || cb >= BOUND || cab >= BOUND {
            return Err(format!(
                "byte at {shift}: chi2 {ca:.0}, {cb:.0}, between {cab:.0}"
            ));
        }
    }
    Ok(())
}

fn check(label: &str, a: &[Fp], b: &[Fp]) {
    if let Err(e) = verdict(a, b) {
        panic!("{label}: {e}");
    }
}

/// The test has power: had the king been sent shares of the secrets themselves (a protocol
/// that forgot its masks), the same check would fail.
#[test]
fn the_check_catches_an_unmasked_opening() -> qvm_mpc::Result<()> {
    let mut sim = Simulation::new(2, 3, 51)?;
    let mut king_sees = |secret: i128| -> qvm_mpc::Result<Vec<Fp>> {
        let shared = sim.share(&vec![fp(secret); 30_000])?;
        let points: BTreeMap<PartyIndex, qvm_mpc::SharedVec> = sim
            .committee()
            .all()
            .iter()
            .map(|p| (p, shared[p.get() as usize - 1].clone()))
            .collect();
        qvm_mpc::sim::open(&points, 1)
    };
    let (a, b) = (king_sees(0)?, king_sees(-(1i128 << 31))?);
    assert!(verdict(&a, &b).is_err());
    // And a sample of uniform elements passes.
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(5);
    let u: Vec<Fp> = (0..30_000).map(|_| Fp::random(&mut rng)).collect();
    let v: Vec<Fp> = (0..30_000).map(|_| Fp::random(&mut rng)).collect();
    assert!(verdict(&u, &v).is_ok());
    Ok(())
}

fn opened(ts: &[Transcript]) -> Vec<Fp> {
    ts.iter()
        .flat_map(|t| t.opened.iter().flat_map(|o| o.values.iter().copied()))
        .collect()
}

fn sent_by(ts: &[Transcript], coalition: PartySet) -> Vec<Fp> {
    ts.iter()
        .flat_map(|t| {
            t.shares
                .iter()
                .filter(|m| coalition.contains(m.from))
                .flat_map(|m| m.shares.iter().copied())
        })
        .collect()
}

#[test]
fn the_kings_view_does_not_depend_on_the_secrets() -> qvm_mpc::Result<()> {
    let small = transcripts(2, 3, 11, 0, 4)?;
    let large = transcripts(2, 3, 12, -(1i128 << 31), 4)?;
    let (a, b) = (opened(&small), opened(&large));
    assert!(a.len() > 30_000, "{} values", a.len());
    check("king (2,3)", &a, &b);
    Ok(())
}

#[test]
fn a_coalition_of_t_sees_nothing_of_the_secrets() -> qvm_mpc::Result<()> {
    let one = |i: u32| PartyIndex::new(i).expect("valid");
    let small = transcripts(3, 5, 21, 1, 2)?;
    let large = transcripts(3, 5, 22, (1i128 << 31) - 1, 2)?;
    let coalition: PartySet = [one(2), one(5)].into_iter().collect();
    let mut a = sent_by(&small, coalition);
    let mut b = sent_by(&large, coalition);
    a.extend(opened(&small));
    b.extend(opened(&large));
    check("coalition {2,5} of (3,5)", &a, &b);
    Ok(())
}

#[test]
fn offline_publications_are_uniform() -> qvm_mpc::Result<()> {
    let mut sim = Simulation::new(3, 5, 31)?;
    let d1 = sim.offline(PoolKind::Triples, 20_000)?.public;
    let d2 = sim.offline(PoolKind::Triples, 20_000)?.public;
    check("offline D", &d1, &d2);
    Ok(())
}

#[test]
fn masked_outputs_reveal_the_output_and_nothing_else() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(3, 5, 41, 10, 0)?;
    let q: PartySet = [1u32, 3, 4, 5]
        .into_iter()
        .map(|i| PartyIndex::new(i).expect("ok"))
        .collect();
    let ys: Vec<Fp> = (0..4000)
        .map(|i| fp(if i % 2 == 0 { 0 } else { (1i128 << 40) + i }))
        .collect();
    let shared = sim.share(&ys)?;
    let mut s = sim.session(q, OpCost::default())?;
    let outputs: BTreeMap<PartyIndex, qvm_mpc::SharedVec> = q
        .iter()
        .map(|p| (p, shared[p.get() as usize - 1].clone()))
        .collect();
    // Each custodian's masked shares look uniform whether the output is 0 or large.
    let mut collector = qvm_mpc::output::OutputCollector::new(*s.config());
    let mut revealed = None;
    for p in q.iter() {
        let custodian = s.custodian_mut(p).expect("member");
        let msg = custodian.output_message(&[&outputs[&p]])?;
        // Masks are drawn once per session: a second delivery would reuse them.
        assert_eq!(
            custodian.output_message(&[&outputs[&p]]).err(),
            Some(qvm_mpc::Error::OutputsDelivered)
        );
        let zeros: Vec<Fp> = msg.masked.iter().step_by(2).copied().collect();
        let large: Vec<Fp> = msg.masked.iter().skip(1).step_by(2).copied().collect();
        check(&format!("masked output of {p}"), &zeros, &large);
        // Unmasked shares of the zeros would be a degree-2 sharing of 0; masked ones are not.
        assert_ne!(msg.masked[0], outputs[&p].as_slice()[0]);
        revealed = collector.receive(msg)?;
    }
    assert_eq!(revealed, Some(ys));
    let mut s = sim.session(q, OpCost::default())?;
    // Without every member's message nothing is revealed.
    let mut partial = outputs.clone();
    partial.remove(&PartyIndex::new(4)?);
    assert!(matches!(
        s.reveal(&partial),
        Err(qvm_mpc::Error::Missing { .. })
    ));
    Ok(())
}

#[test]
fn outputs_delivered_together_get_distinct_masks() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 7, 0, 0)?;
    let q = PartySet::first(2);
    let shared = sim.share(&[fp(5)])?;
    let mut s = sim.session(q, OpCost::default())?;
    let p = PartyIndex::new(1)?;
    let y = &shared[0];
    let msg = s
        .custodian_mut(p)
        .expect("member")
        .output_message(&[y, y])?;
    // Equal shares, different masks: the coordinator cannot subtract one from the other.
    assert_eq!(msg.masked.len(), 2);
    assert_ne!(msg.masked[0], msg.masked[1]);
    Ok(())
}
