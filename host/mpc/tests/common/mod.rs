//! Helpers shared by the MPC integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;

use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::Result;
use qvm_mpc::online::{Op, OpCost};
use qvm_mpc::pool::PoolKind;
use qvm_mpc::shares::SharedVec;
use qvm_mpc::sim::{OnlineSession, Simulation, open};

/// A simulation with at least `triples` triples and `bits` bits pooled.
pub fn sim_with_pools(
    k: usize,
    n: usize,
    seed: u64,
    triples: u32,
    bits: u32,
) -> Result<Simulation> {
    let mut sim = Simulation::new(k, n, seed)?;
    if triples > 0 {
        sim.offline(PoolKind::Triples, triples)?;
    }
    if bits > 0 {
        sim.offline(PoolKind::Bits, bits)?;
    }
    Ok(sim)
}

/// The centered field element of a small signed integer.
pub fn fp(v: i128) -> Fp {
    Fp::from_i128(v).expect("in range")
}

/// Runs one op (built per party from that party's shares of each input vector) and opens
/// the result.
pub fn run_op(
    sim: &mut Simulation,
    members: PartySet,
    inputs: &[Vec<Fp>],
    make: impl Fn(Vec<SharedVec>) -> Op,
) -> Result<(Vec<Fp>, OnlineSession)> {
    let shared: Vec<Vec<SharedVec>> = inputs.iter().map(|v| sim.share(v)).collect::<Result<_>>()?;
    let per_party = |p: PartyIndex| -> Vec<SharedVec> {
        shared
            .iter()
            .map(|s| s[p.get() as usize - 1].clone())
            .collect()
    };
    let cost: OpCost = make(per_party(PartyIndex::new(1)?)).cost();
    let mut session = sim.session(members, cost)?;
    let results = session.batch(|p| vec![make(per_party(p))])?;
    let first: BTreeMap<PartyIndex, SharedVec> = results
        .into_iter()
        .map(|(p, mut r)| (p, r.remove(0)))
        .collect();
    let degree = sim.committee().degree();
    Ok((open(&first, degree)?, session))
}
