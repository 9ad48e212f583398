//! Every online op, run through the simulation, equals the plaintext result — for random
//! vectors across the whole allowed range including its bounds, for (K, N) ∈ {(2,3), (3,5),
//! (4,7)}, and with only K of the N custodians online.

mod common;

use common::{fp, run_op, sim_with_pools};
use proptest::prelude::*;
use qvm_core::{PartyIndex, PartySet};
use qvm_mpc::online::Op;
use qvm_mpc::shares::SharedVec;

const COMMITTEES: [(usize, usize); 3] = [(2, 3), (3, 5), (4, 7)];

/// Signed values in [−2^(k−1), 2^(k−1)), with the bounds and zero mixed in.
fn values(
    k: u32,
    len: impl Into<proptest::collection::SizeRange>,
) -> impl Strategy<Value = Vec<i128>> {
    let lo = -(1i128 << (k - 1));
    let hi = (1i128 << (k - 1)) - 1;
    proptest::collection::vec(
        prop_oneof![
            3 => lo..=hi,
            1 => Just(lo),
            1 => Just(hi),
            1 => Just(0i128),
            1 => Just(-1i128),
            1 => (-4i128..=4).prop_map(move |v| v.clamp(lo, hi)),
        ],
        len,
    )
}

/// A random K-subset of the committee (the online set Q).
fn quorum(k: usize, n: usize, seed: u64) -> PartySet {
    let mut all: Vec<u32> = (1..=n as u32).collect();
    let mut s = seed;
    for i in (1..all.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        all.swap(i, (s >> 33) as usize % (i + 1));
    }
    all[..k]
        .iter()
        .map(|i| PartyIndex::new(*i).expect("in range"))
        .collect()
}

/// A bit bound (the extremes 2 and 64 often) with values in its range.
fn bits_and_values() -> impl Strategy<Value = (u32, Vec<i128>)> {
    prop_oneof![Just(64u32), Just(2u32), 3u32..64].prop_flat_map(|k| (Just(k), values(k, 1..5)))
}

fn committee() -> impl Strategy<Value = (usize, usize)> {
    proptest::sample::select(COMMITTEES.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn mul_and_select((k, n) in committee(), seed in any::<u64>(), xs in values(64, 6), ys in values(60, 6), cs in proptest::collection::vec(0i128..=1, 6)) {
        let mut sim = sim_with_pools(k, n, seed, 64, 0)?;
        let q = quorum(k, n, seed);
        let (got, _) = run_op(&mut sim, q, &[xs.iter().map(|v| fp(*v)).collect(), ys.iter().map(|v| fp(*v)).collect()], |mut v| {
            let y = v.pop().expect("two"); let x = v.pop().expect("two");
            Op::Mul { x, y }
        })?;
        for i in 0..xs.len() {
            prop_assert_eq!(got[i].to_i128(), xs[i] * ys[i]);
        }
        let (got, _) = run_op(&mut sim, q, &[cs.iter().map(|v| fp(*v)).collect(), xs.iter().map(|v| fp(*v)).collect(), ys.iter().map(|v| fp(*v)).collect()], |mut v| {
            let y = v.pop().expect("three"); let x = v.pop().expect("three"); let c = v.pop().expect("three");
            Op::Select { c, x, y }
        })?;
        for i in 0..xs.len() {
            prop_assert_eq!(got[i].to_i128(), if cs[i] == 1 { xs[i] } else { ys[i] });
        }
    }

    #[test]
    fn ltz_and_eqz_are_exact((k, n) in committee(), seed in any::<u64>(), (kbits, xs) in bits_and_values()) {
        let mut sim = sim_with_pools(k, n, seed, 2000, 2000)?;
        let q = quorum(k, n, seed);
        let input = vec![xs.iter().map(|v| fp(*v)).collect()];
        let (got, _) = run_op(&mut sim, q, &input, |mut v| Op::Ltz { x: v.remove(0), k: kbits })?;
        for i in 0..xs.len() {
            prop_assert_eq!(got[i].to_i128(), (xs[i] < 0) as i128, "ltz({}) k={}", xs[i], kbits);
        }
        let (got, _) = run_op(&mut sim, q, &input, |mut v| Op::Eqz { x: v.remove(0), k: kbits })?;
        for i in 0..xs.len() {
            prop_assert_eq!(got[i].to_i128(), (xs[i] == 0) as i128, "eqz({}) k={}", xs[i], kbits);
        }
    }

    #[test]
    fn trunc_and_mod2m((k, n) in committee(), seed in any::<u64>(), xs in values(64, 4), m in 1u32..63) {
        let mut sim = sim_with_pools(k, n, seed, 2000, 1000)?;
        let q = quorum(k, n, seed);
        let input = vec![xs.iter().map(|v| fp(*v)).collect()];
        let (got, _) = run_op(&mut sim, q, &input, |mut v| Op::TruncPr { x: v.remove(0), k: 64, m })?;
        for i in 0..xs.len() {
            let floor = xs[i] >> m;
            let d = got[i].to_i128();
            prop_assert!(d == floor || d == floor + 1, "trunc({}, {}) = {} not within 1 of {}", xs[i], m, d, floor);
        }
        let (got, _) = run_op(&mut sim, q, &input, |mut v| Op::Mod2m { x: v.remove(0), k: 64, m })?;
        for i in 0..xs.len() {
            prop_assert_eq!(got[i].to_i128(), xs[i].rem_euclid(1i128 << m));
        }
    }
}

/// For (3,5), the online phase with every one of the ten 3-subsets as Q.
#[test]
fn every_quorum_of_three_of_five() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(3, 5, 42, 4000, 2200)?;
    let xs: Vec<i128> = vec![-(1 << 31), -5, -1, 0, 1, 7, (1 << 31) - 1];
    let ys: Vec<i128> = vec![3, -2, 9, 4, -1, 0, 1];
    for mask in 0u32..32 {
        if mask.count_ones() != 3 {
            continue;
        }
        let q: PartySet = (1..=5u32)
            .filter(|i| mask >> (i - 1) & 1 == 1)
            .map(|i| PartyIndex::new(i).expect("ok"))
            .collect();
        let (prod, _) = run_op(
            &mut sim,
            q,
            &[
                xs.iter().map(|v| fp(*v)).collect(),
                ys.iter().map(|v| fp(*v)).collect(),
            ],
            |mut v| {
                let y = v.pop().expect("two");
                Op::Mul {
                    x: v.pop().expect("two"),
                    y,
                }
            },
        )?;
        let (lt, _) = run_op(
            &mut sim,
            q,
            &[xs.iter().map(|v| fp(*v)).collect()],
            |mut v| Op::Ltz {
                x: v.remove(0),
                k: 32,
            },
        )?;
        for i in 0..xs.len() {
            assert_eq!(prod[i].to_i128(), xs[i] * ys[i], "{q:?}");
            assert_eq!(lt[i].to_i128(), (xs[i] < 0) as i128, "{q:?}");
        }
    }
    Ok(())
}

/// Several ops of different depth in one batch take the rounds of the deepest, and each
/// op's counters match its declared cost.
#[test]
fn a_batch_takes_the_rounds_of_its_deepest_op() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 7, 1000, 1000)?;
    let xs: Vec<qvm_core::Fp> = [-3i128, 0, 5].iter().map(|v| fp(*v)).collect();
    let shared = sim.share(&xs)?;
    let of = |p: PartyIndex| shared[p.get() as usize - 1].clone();
    let ops = |p: PartyIndex| {
        vec![
            Op::Mul { x: of(p), y: of(p) },
            Op::Ltz { x: of(p), k: 16 },
            Op::TruncPr {
                x: of(p),
                k: 16,
                m: 1,
            },
        ]
    };
    let p1 = PartyIndex::new(1)?;
    let costs: Vec<_> = ops(p1).iter().map(Op::cost).collect();
    let total = costs
        .iter()
        .fold(qvm_mpc::online::OpCost::default(), |a, c| {
            qvm_mpc::online::OpCost {
                triples: a.triples + c.triples,
                bits: a.bits + c.bits,
                rounds: a.rounds.max(c.rounds),
                elements: a.elements + c.elements,
            }
        });
    let mut session = sim.session(PartySet::first(3), total)?;
    let out = session.batch(ops)?;
    assert_eq!(out.len(), 3);
    assert_eq!(session.king_counters().rounds, total.rounds as u64);
    let custodian = session.custodian(p1).expect("member");
    let stats = custodian.stats();
    for (op, cost) in ops(p1).iter().zip(&costs) {
        let c = stats.get(op.kind());
        assert_eq!(c.rounds, cost.rounds as u64, "{:?}", op.kind());
        assert_eq!(c.sent, cost.elements, "{:?}", op.kind());
    }
    assert_eq!(
        custodian.unused(),
        (0, 0),
        "cost() predicts consumption exactly"
    );
    let _ = SharedVec::default();
    Ok(())
}
