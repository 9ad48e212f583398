//! Faults injected through the simulation hooks: corrupted, missing, duplicated, replayed
//! and delayed messages; bad king messages; pool reuse, dry pools, exhausted grants;
//! custodians down between the offline and online phases.

mod common;

use common::{fp, run_op, sim_with_pools};
use qvm_core::encoding::Digest;
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::Error;
use qvm_mpc::msgs::OpenedMsg;
use qvm_mpc::online::{Op, Step};
use qvm_mpc::pool::{PoolGrant, PoolKind, Range};
use qvm_mpc::sim::{Fault, FaultRule, Simulation};

fn p(i: u32) -> PartyIndex {
    PartyIndex::new(i).expect("valid index")
}

fn ltz_session(
    sim: &mut Simulation,
    members: PartySet,
    xs: &[i128],
) -> qvm_mpc::Result<(qvm_mpc::sim::OnlineSession, Vec<qvm_mpc::SharedVec>)> {
    let shared = sim.share(&xs.iter().map(|v| fp(*v)).collect::<Vec<_>>())?;
    let cost = Op::Ltz {
        x: shared[0].clone(),
        k: 16,
    }
    .cost();
    Ok((sim.session(members, cost)?, shared))
}

fn run_ltz(
    session: &mut qvm_mpc::sim::OnlineSession,
    shared: &[qvm_mpc::SharedVec],
) -> qvm_mpc::Result<()> {
    session
        .batch(|q| {
            vec![Op::Ltz {
                x: shared[q.get() as usize - 1].clone(),
                k: 16,
            }]
        })
        .map(|_| ())
}

#[test]
fn corrupted_share_is_detected_and_named_with_redundancy() -> qvm_mpc::Result<()> {
    // (3,5) with all five online: two redundant shares per value, one liar is named.
    let mut sim = sim_with_pools(3, 5, 1, 500, 500)?;
    let (mut s, shared) = ltz_session(&mut sim, PartySet::first(5), &[-3, 4])?;
    s.inject(FaultRule {
        from: p(4),
        round: 1,
        fault: Fault::Corrupt,
    });
    assert_eq!(
        run_ltz(&mut s, &shared),
        Err(Error::Inconsistent {
            culprits: vec![p(4)]
        })
    );

    // (2,3) with all three online: one redundant share, detected but not attributable.
    let mut sim = sim_with_pools(2, 3, 2, 500, 500)?;
    let (mut s, shared) = ltz_session(&mut sim, PartySet::first(3), &[-3, 4])?;
    s.inject(FaultRule {
        from: p(2),
        round: 0,
        fault: Fault::Corrupt,
    });
    assert_eq!(
        run_ltz(&mut s, &shared),
        Err(Error::InconsistentUnattributed)
    );

    // With exactly K online there is no redundancy: nothing to check, no false alarm.
    let mut sim = sim_with_pools(2, 3, 3, 500, 500)?;
    let (mut s, shared) = ltz_session(&mut sim, PartySet::first(2), &[-3, 4])?;
    run_ltz(&mut s, &shared)?;
    Ok(())
}

#[test]
fn a_missing_message_stalls_only_its_session() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 4, 1000, 1000)?;
    let (mut a, shared_a) = ltz_session(&mut sim, PartySet::first(3), &[-1, 1])?;
    let (mut b, shared_b) = ltz_session(&mut sim, PartySet::first(3), &[5, -5])?;
    a.inject(FaultRule {
        from: p(3),
        round: 2,
        fault: Fault::Drop,
    });
    let err = run_ltz(&mut a, &shared_a).expect_err("stalls");
    assert_eq!(
        err,
        Error::Missing {
            missing: vec![p(3)],
            round: 2
        }
    );
    assert_eq!(err.culprits(), vec![p(3)]);
    run_ltz(&mut b, &shared_b)?;
    Ok(())
}

#[test]
fn duplicated_replayed_and_delayed_messages() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 5, 1000, 1000)?;
    let (mut s, shared) = ltz_session(&mut sim, PartySet::first(3), &[-7, 0, 7])?;
    s.inject(FaultRule {
        from: p(1),
        round: 0,
        fault: Fault::Duplicate,
    });
    s.inject(FaultRule {
        from: p(2),
        round: 1,
        fault: Fault::Replay,
    });
    s.inject(FaultRule {
        from: p(3),
        round: 2,
        fault: Fault::Delay,
    });
    let out = s.batch(|q| {
        vec![Op::Ltz {
            x: shared[q.get() as usize - 1].clone(),
            k: 16,
        }]
    })?;
    assert_eq!(
        s.rejected,
        vec![
            Error::Duplicate(p(1)),
            Error::WrongRound {
                expected: 2,
                got: 1
            }
        ]
    );
    let first: std::collections::BTreeMap<_, _> =
        out.into_iter().map(|(q, mut r)| (q, r.remove(0))).collect();
    let opened = qvm_mpc::sim::open(&first, 1)?;
    assert_eq!(opened, vec![Fp::ONE, Fp::ZERO, Fp::ZERO]);
    Ok(())
}

#[test]
fn custodians_refuse_bad_king_messages() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 6, 100, 0)?;
    let shared = sim.share(&[fp(3), fp(-4)])?;
    let op = |q: PartyIndex| Op::Mul {
        x: shared[q.get() as usize - 1].clone(),
        y: shared[q.get() as usize - 1].clone(),
    };
    let mut s = sim.session(PartySet::first(2), op(p(1)).cost())?;
    let mut msgs = Vec::new();
    for q in [p(1), p(2)] {
        let c = s.custodian_mut(q).expect("member");
        assert!(matches!(
            c.on_opened(&OpenedMsg {
                session: Digest::default(),
                round: 0,
                values: vec![]
            }),
            Err(Error::NotWaiting)
        ));
        match c.run(vec![op(q)])? {
            Step::Send(m) => msgs.push(m),
            Step::Done(_) => panic!("a product needs a round"),
        }
        assert_eq!(c.run(vec![op(q)]).err(), Some(Error::Busy));
    }
    let mut opened = None;
    for m in msgs {
        opened = s.king_mut().receive(m)?;
    }
    let opened = opened.expect("both shares arrived");
    let c = s.custodian_mut(p(1)).expect("member");
    let wrong_session = OpenedMsg {
        session: Digest::from_bytes([9; 32]),
        ..opened.clone()
    };
    assert!(matches!(
        c.on_opened(&wrong_session),
        Err(Error::WrongSession { .. })
    ));
    let wrong_round = OpenedMsg {
        round: 1,
        ..opened.clone()
    };
    assert_eq!(
        c.on_opened(&wrong_round).err(),
        Some(Error::WrongRound {
            expected: 0,
            got: 1
        })
    );
    let mut short = opened.clone();
    short.values.pop();
    assert_eq!(
        c.on_opened(&short).err(),
        Some(Error::WrongLength {
            expected: 4,
            got: 3,
            from: None
        })
    );
    // The refusals changed nothing: the real message completes the batch.
    assert!(matches!(c.on_opened(&opened)?, Step::Done(_)));
    // A replay after completion is refused.
    assert_eq!(c.on_opened(&opened).err(), Some(Error::NotWaiting));
    Ok(())
}

#[test]
fn pool_reuse_is_refused_and_a_dry_pool_says_so() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 7, 10, 0)?;
    let grant = PoolGrant {
        triples: Range { start: 0, count: 5 },
        ..PoolGrant::default()
    };
    sim.session_with_grant(PartySet::first(3), grant)?;
    // The same items again, or overlapping ones: refused at every custodian.
    let again = PoolGrant {
        triples: Range { start: 4, count: 2 },
        ..PoolGrant::default()
    };
    assert_eq!(
        sim.session_with_grant(PartySet::first(3), again).err(),
        Some(Error::PoolReuse {
            pool: PoolKind::Triples,
            start: 4,
            high_water: 5
        })
    );
    // The ledger hands out fresh ranges only, and says when a pool is dry.
    let x = sim.share(&[fp(1); 20])?;
    let cost = Op::Mul {
        x: x[0].clone(),
        y: x[0].clone(),
    }
    .cost();
    assert_eq!(
        sim.session(PartySet::first(3), cost).err(),
        Some(Error::PoolDry {
            pool: PoolKind::Triples,
            needed: 20,
            available: 10
        })
    );
    let bits = Op::TruncPr {
        x: x[0].clone(),
        k: 20,
        m: 4,
    }
    .cost();
    assert!(matches!(
        sim.session(PartySet::first(3), bits),
        Err(Error::PoolDry {
            pool: PoolKind::Bits,
            ..
        })
    ));
    Ok(())
}

#[test]
fn a_session_cannot_use_more_than_its_grant() -> qvm_mpc::Result<()> {
    let mut sim = sim_with_pools(2, 3, 8, 100, 100)?;
    let x = sim.share(&[fp(1), fp(2)])?;
    let small = Op::Mul {
        x: x[0].clone(),
        y: x[0].clone(),
    }
    .cost();
    let mut s = sim.session(PartySet::first(2), small)?;
    let err = s.batch(|q| {
        vec![
            Op::Mul {
                x: x[q.get() as usize - 1].clone(),
                y: x[q.get() as usize - 1].clone()
            };
            2
        ]
    });
    assert_eq!(
        err.err(),
        Some(Error::GrantExhausted {
            pool: PoolKind::Triples
        })
    );
    // The failed session accepts nothing more.
    assert_eq!(
        s.custodian_mut(p(1)).expect("member").run(vec![]).err(),
        Some(Error::Failed)
    );
    Ok(())
}

#[test]
fn custodians_down_between_offline_and_online() -> qvm_mpc::Result<()> {
    // (2,5): the offline phase needs 3 custodians. 4 and 5 are down for the first batches
    // and catch up from the public records; then 1, 2, 3 go down and 4 and 5 evaluate.
    let mut sim = Simulation::new(2, 5, 9)?;
    sim.take_down(p(4));
    sim.take_down(p(5));
    sim.offline(PoolKind::Triples, 300)?;
    sim.offline(PoolKind::Bits, 300)?;
    assert_eq!(sim.pool(p(4)).end(PoolKind::Triples), 0);
    sim.bring_up(p(4))?;
    sim.bring_up(p(5))?;
    assert_eq!(sim.pool(p(5)).end(PoolKind::Triples), 300);
    for q in [p(1), p(2), p(3)] {
        sim.take_down(q);
    }
    assert!(matches!(
        sim.offline(PoolKind::Triples, 10),
        Err(Error::TooFewMembers {
            members: 2,
            needed: 3
        })
    ));
    let q: PartySet = [p(4), p(5)].into_iter().collect();
    let xs = [-9i128, 0, 9];
    let (got, _) = run_op(
        &mut sim,
        q,
        &[xs.iter().map(|v| fp(*v)).collect()],
        |mut v| Op::Ltz {
            x: v.remove(0),
            k: 8,
        },
    )?;
    assert_eq!(got, vec![Fp::ONE, Fp::ZERO, Fp::ZERO]);
    let (sq, _) = run_op(
        &mut sim,
        q,
        &[
            xs.iter().map(|v| fp(*v)).collect(),
            xs.iter().map(|v| fp(*v)).collect(),
        ],
        |mut v| {
            let y = v.pop().expect("two");
            Op::Mul {
                x: v.pop().expect("two"),
                y,
            }
        },
    )?;
    assert_eq!(sq, vec![fp(81), fp(0), fp(81)]);
    // A session cannot include a custodian that is down.
    assert!(sim.session(PartySet::first(2), Default::default()).is_err());
    Ok(())
}
