//! Random well-typed programs give the same outputs through the plaintext IR evaluator and
//! through the MPC engine (all custodians and the king in `qvm_mpc::sim`), with any K of the
//! N custodians online.
//!
//! The MPC side interprets the IR the way a component does: public nodes in plain integers,
//! secret nodes as each custodian's shares, local ops share by share, interactive ones as
//! batches of the online protocols. Integer programs (scale 0) have no probabilistic
//! truncation, so the results must be equal exactly.

use std::collections::{BTreeMap, HashMap};

mod common;

use common::{program, values};
use proptest::prelude::*;
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_lang::cost::cost;
use qvm_lang::eval::evaluate;
use qvm_lang::ir::{Ir, Op, Vis};
use qvm_mpc::SharedVec;
use qvm_mpc::online::{Op as MpcOp, OpCost};
use qvm_mpc::pool::PoolKind;
use qvm_mpc::sim::{OnlineSession, Simulation, open};

#[derive(Clone)]
enum Val {
    Public(Vec<i128>),
    Secret(BTreeMap<PartyIndex, SharedVec>),
}

fn fp(v: i128) -> Fp {
    Fp::from_i128(v).expect("in range")
}

fn fps(v: &[i128]) -> Vec<Fp> {
    v.iter().map(|x| fp(*x)).collect()
}

struct Mpc<'a> {
    session: &'a mut OnlineSession,
    members: PartySet,
}

impl Mpc<'_> {
    fn per_party(&self, f: impl Fn(PartyIndex) -> SharedVec) -> Val {
        Val::Secret(self.members.iter().map(|p| (p, f(p))).collect())
    }

    fn interactive(&mut self, make: impl Fn(PartyIndex) -> MpcOp) -> Val {
        let out = self.session.batch(|p| vec![make(p)]).expect("batch");
        Val::Secret(out.into_iter().map(|(p, mut r)| (p, r.remove(0))).collect())
    }
}

fn lift(v: &Val, members: PartySet) -> BTreeMap<PartyIndex, SharedVec> {
    match v {
        // A public value as a degree-0 sharing: every custodian holds the value itself.
        Val::Public(x) => members
            .iter()
            .map(|p| (p, SharedVec::new(fps(x))))
            .collect(),
        Val::Secret(s) => s.clone(),
    }
}

fn run_mpc(
    ir: &Ir,
    sim: &mut Simulation,
    members: PartySet,
    inputs: &HashMap<String, Vec<i128>>,
    secrets: &HashMap<String, Vec<i128>>,
) -> Vec<(String, Vec<i128>)> {
    let c = cost(ir);
    let mut session = sim
        .session(
            members,
            OpCost {
                triples: c.multiplications,
                bits: c.random_bits,
                rounds: c.rounds,
                elements: c.elements_sent,
            },
        )
        .expect("session");
    let shared: HashMap<String, Vec<SharedVec>> = secrets
        .iter()
        .map(|(n, v)| (n.clone(), sim.share(&fps(v)).expect("share")))
        .collect();
    let mut m = Mpc {
        session: &mut session,
        members,
    };
    let mut vals: Vec<Val> = Vec::with_capacity(ir.nodes.len());
    for node in &ir.nodes {
        let get = |id: &usize| vals[*id].clone();
        let v = match &node.op {
            Op::Input(n) => Val::Public(inputs[n].clone()),
            Op::Secret(n) => m.per_party(|p| shared[n][p.get() as usize - 1].clone()),
            Op::Const(c) => Val::Public(c.clone()),
            Op::Add(a, b) | Op::Sub(a, b) => {
                let sub = matches!(node.op, Op::Sub(..));
                match (get(a), get(b)) {
                    (Val::Public(x), Val::Public(y)) => Val::Public(
                        x.iter()
                            .zip(&y)
                            .map(|(x, y)| if sub { x - y } else { x + y })
                            .collect(),
                    ),
                    (x, y) => {
                        let (x, y) = (lift(&x, members), lift(&y, members));
                        m.per_party(|p| {
                            if sub {
                                x[&p].sub(&y[&p]).expect("len")
                            } else {
                                x[&p].add(&y[&p]).expect("len")
                            }
                        })
                    }
                }
            }
            Op::Neg(a) => match get(a) {
                Val::Public(x) => Val::Public(x.iter().map(|x| -x).collect()),
                Val::Secret(s) => m.per_party(|p| s[&p].neg()),
            },
            Op::MulConst(a, c) => match get(a) {
                Val::Public(x) => Val::Public(x.iter().map(|x| x * c).collect()),
                Val::Secret(s) => m.per_party(|p| s[&p].scale(fp(*c))),
            },
            Op::Mul(a, b) => match (get(a), get(b)) {
                (Val::Public(x), Val::Public(y)) => {
                    Val::Public(x.iter().zip(&y).map(|(x, y)| x * y).collect())
                }
                (Val::Secret(s), Val::Public(c)) | (Val::Public(c), Val::Secret(s)) => {
                    m.per_party(|p| s[&p].mul_public(&fps(&c)).expect("len"))
                }
                (Val::Secret(x), Val::Secret(y)) => m.interactive(|p| MpcOp::Mul {
                    x: x[&p].clone(),
                    y: y[&p].clone(),
                }),
            },
            Op::Trunc(a, s) => match get(a) {
                Val::Public(x) => Val::Public(x.iter().map(|x| x >> s).collect()),
                Val::Secret(x) => {
                    let k = ir.nodes[*a].range.bits();
                    m.interactive(|p| MpcOp::TruncPr {
                        x: x[&p].clone(),
                        k,
                        m: *s,
                    })
                }
            },
            Op::Ltz(a, k) => match get(a) {
                Val::Public(x) => Val::Public(x.iter().map(|x| (*x < 0) as i128).collect()),
                Val::Secret(x) => m.interactive(|p| MpcOp::Ltz {
                    x: x[&p].clone(),
                    k: *k,
                }),
            },
            Op::Eqz(a, k) => match get(a) {
                Val::Public(x) => Val::Public(x.iter().map(|x| (*x == 0) as i128).collect()),
                Val::Secret(x) => m.interactive(|p| MpcOp::Eqz {
                    x: x[&p].clone(),
                    k: *k,
                }),
            },
            Op::Select(c, a, b) => match (get(c), get(a), get(b)) {
                (Val::Public(c), Val::Public(a), Val::Public(b)) => {
                    Val::Public((0..c.len()).map(|i| c[i] * (a[i] - b[i]) + b[i]).collect())
                }
                (c, a, b) => {
                    let (a, b) = (lift(&a, members), lift(&b, members));
                    let diff: BTreeMap<PartyIndex, SharedVec> = members
                        .iter()
                        .map(|p| (p, a[&p].sub(&b[&p]).expect("len")))
                        .collect();
                    let prod = match c {
                        Val::Public(c) => {
                            m.per_party(|p| diff[&p].mul_public(&fps(&c)).expect("len"))
                        }
                        Val::Secret(cs) if node.is_interactive(&ir.nodes) => {
                            m.interactive(|p| MpcOp::Mul {
                                x: cs[&p].clone(),
                                y: diff[&p].clone(),
                            })
                        }
                        Val::Secret(cs) => {
                            // a − b public: a local product.
                            let d = match (&vals[*a_id(&node.op)], &vals[*b_id(&node.op)]) {
                                (Val::Public(a), Val::Public(b)) => {
                                    a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>()
                                }
                                _ => unreachable!(
                                    "a select is local only when its branches are public"
                                ),
                            };
                            m.per_party(|p| cs[&p].mul_public(&fps(&d)).expect("len"))
                        }
                    };
                    let prod = lift(&prod, members);
                    m.per_party(|p| prod[&p].add(&b[&p]).expect("len"))
                }
            },
            Op::Sum(a) => match get(a) {
                Val::Public(x) => Val::Public(vec![x.iter().sum()]),
                Val::Secret(s) => m.per_party(|p| s[&p].sum()),
            },
            Op::Slice(a, st, en) => match get(a) {
                Val::Public(x) => Val::Public(x[*st as usize..*en as usize].to_vec()),
                Val::Secret(s) => {
                    m.per_party(|p| s[&p].slice(*st as usize, *en as usize).expect("in range"))
                }
            },
            Op::Broadcast(a, n) => match get(a) {
                Val::Public(x) => Val::Public(vec![x[0]; *n as usize]),
                Val::Secret(s) => m.per_party(|p| s[&p].broadcast(*n as usize).expect("length 1")),
            },
            Op::Concat(parts) => {
                if parts.iter().all(|i| matches!(vals[*i], Val::Public(_))) {
                    Val::Public(
                        parts
                            .iter()
                            .flat_map(|i| match &vals[*i] {
                                Val::Public(x) => x.clone(),
                                _ => Vec::new(),
                            })
                            .collect(),
                    )
                } else {
                    let lifted: Vec<_> = parts.iter().map(|i| lift(&vals[*i], members)).collect();
                    m.per_party(|p| {
                        SharedVec::concat(&lifted.iter().map(|l| &l[&p]).collect::<Vec<_>>())
                    })
                }
            }
        };
        // The IR's secrecy is exactly what the interpreter computed on shares.
        assert_eq!(
            matches!(v, Val::Secret(_)),
            node.vis == Vis::Secret,
            "{:?}",
            node.op
        );
        vals.push(v);
    }
    ir.outputs
        .iter()
        .map(|(n, id)| {
            let v = match &vals[*id] {
                Val::Public(x) => x.clone(),
                Val::Secret(s) => open(s, sim.committee().degree())
                    .expect("consistent")
                    .iter()
                    .map(|f| f.to_i128())
                    .collect(),
            };
            (n.clone(), v)
        })
        .collect()
}

fn a_id(op: &Op) -> &usize {
    match op {
        Op::Select(_, a, _) => a,
        _ => unreachable!(),
    }
}

fn b_id(op: &Op) -> &usize {
    match op {
        Op::Select(_, _, b) => b,
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mpc_equals_the_evaluator(
        src in program(),
        x in values(3), s in values(3), t in -20i128..=20, f in 0i128..=1,
        committee in prop::sample::select(vec![(2usize, 3usize), (3, 5)]),
        seed in any::<u64>(),
    ) {
        let ir = match qvm_lang::compile_ir(&src) {
            Ok(ir) => ir,
            Err(e) => {
                let text = e.render("r.qvm", &src);
                // The generator only writes well-typed programs; the range analysis may still
                // refuse one that could overflow.
                prop_assert!(text.contains("may overflow"), "{}", text);
                return Ok(());
            }
        };
        let inputs = HashMap::from([("x".to_string(), x), ("f".to_string(), vec![f])]);
        let secrets = HashMap::from([("s".to_string(), s), ("t".to_string(), vec![t])]);
        let expected = evaluate(&ir, &inputs, &secrets).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let (k, n) = committee;
        let c = cost(&ir);
        let mut sim = Simulation::new(k, n, seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if c.multiplications > 0 {
            sim.offline(PoolKind::Triples, c.multiplications as u32).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        while sim.ledger().available(PoolKind::Bits) < c.random_bits {
            sim.offline(PoolKind::Bits, (c.random_bits + 8) as u32).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        // Only K custodians online: the last K of the committee.
        let members: PartySet = (n - k + 1..=n).map(|i| PartyIndex::new(i as u32).expect("index")).collect();
        let got = run_mpc(&ir, &mut sim, members, &inputs, &secrets);
        prop_assert_eq!(got, expected, "{}", src);
    }
}
