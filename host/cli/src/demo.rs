//! `qvm demo`: the whole workflow on one machine, on the embedded credit-score example.
//!
//! 1. compile the program to a component;
//! 2. Shamir-share its secrets among N custodians (the owner's step);
//! 3. run the offline phase (Beaver triples, random bits) among the custodians;
//! 4. each of K custodians runs the component on its shares in its own instance of the
//!    component host, the interactive rounds going through the king (the coordinator's
//!    side of `qvm-mpc`) over in-process channels;
//! 5. the custodians mask their output shares; the coordinator reconstructs the outputs;
//! 6. the same component on plain values (the owner's what-if) gives the reference.
//!
//! Everything is in one process: the daemons that put each custodian on its own machine
//! are the next step of the project.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::SharedVec;
use qvm_mpc::online::OpCost;
use qvm_mpc::pool::PoolKind;
use qvm_mpc::sim::Simulation;
use qvm_runtime::cluster::{self, ClusterRuntime};
use qvm_runtime::{Field, PlaintextBackend, Runtime, RuntimeConfig, Value};

const SOURCE: &str = include_str!("../../../packages/credit-score/credit-score.qvm");
const SECRETS: &str = include_str!("../../../packages/credit-score/secrets.toml");

/// Arguments of `qvm demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Threshold K.
    #[arg(long, default_value_t = 2)]
    k: usize,
    /// Custodians N (at least 2K − 1: the program is interactive).
    #[arg(long, default_value_t = 3)]
    n: usize,
}

pub fn run(args: Args) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(demo(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn show(v: &[Fp], scale: u32) -> String {
    let f = |x: &Fp| {
        if scale == 0 {
            x.to_i128().to_string()
        } else {
            format!("{}", x.to_i128() as f64 / (1u128 << scale) as f64)
        }
    };
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    // 1. Compile.
    let ir = qvm_lang::compile_ir(SOURCE)
        .map_err(|e| anyhow!("{}", e.render("credit-score.qvm", SOURCE)))?;
    let component = qvm_lang::emit::emit(&ir)?;
    let cost = qvm_lang::cost::cost(&ir);
    println!(
        "compiled `{}`: {} bytes, {:?}, {} rounds, {} multiplications, {} comparisons ({:.1} ms)",
        ir.name,
        component.len(),
        cost.class,
        cost.rounds,
        cost.multiplications,
        cost.comparisons,
        t0.elapsed().as_secs_f64() * 1e3
    );

    // 2. Share the secrets among N custodians.
    let mut sim = Simulation::new(args.k, args.n, 2026)?;
    let plain: HashMap<String, Vec<Fp>> = qvm_package::build::read_secrets(&ir, SECRETS)?
        .into_iter()
        .collect();
    let mut shared = HashMap::new();
    for (name, values) in &plain {
        shared.insert(name.clone(), sim.share(values)?);
    }
    println!(
        "shared {} secrets among {} custodians (threshold {})",
        ir.secrets.len(),
        args.n,
        args.k
    );

    // 3. Offline phase.
    let t = Instant::now();
    sim.offline(PoolKind::Triples, cost.multiplications as u32)?;
    while sim.ledger().available(PoolKind::Bits) < cost.random_bits {
        sim.offline(PoolKind::Bits, cost.random_bits as u32 + 16)?;
    }
    println!(
        "offline phase: {} triples, {} random bits ({:.1} ms)",
        cost.multiplications,
        cost.random_bits,
        t.elapsed().as_secs_f64() * 1e3
    );

    // 4. K custodians evaluate, rounds through the king.
    let input = vec![
        Field {
            name: "features".into(),
            value: Value::Reals(vec![
                10.0, 4.0, 1.5, 2.0, 0.0, 3.0, 1.0, 0.5, 2.5, 8.0, -4.0, 6.0,
            ]),
        },
        Field {
            name: "boundaries".into(),
            value: Value::Reals(vec![0.0, 5.0, 10.0, 20.0]),
        },
    ];
    let members: PartySet = (1..=args.k)
        .map(|i| PartyIndex::new(i as u32))
        .collect::<Result<_, _>>()?;
    let grant = OpCost {
        triples: cost.multiplications,
        bits: cost.random_bits,
        rounds: cost.rounds,
        elements: cost.elements_sent,
    };
    let (config, custodians, king) = sim.session(members, grant)?.into_parts();
    let t = Instant::now();
    let rt: Arc<ClusterRuntime> = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let program = rt.load(&component)?;
    let secrets = |p: PartyIndex| -> HashMap<String, SharedVec> {
        shared
            .iter()
            .map(|(n, s)| (n.clone(), s[p.get() as usize - 1].clone()))
            .collect()
    };
    // 5. The custodians mask their output shares; the coordinator reconstructs.
    let outcome = cluster::run(
        rt,
        &program,
        config,
        custodians,
        king,
        secrets,
        input.clone(),
    )
    .await?;
    println!(
        "evaluated under MPC by custodians {members:?}: {} rounds through the king ({:.1} ms)",
        outcome.rounds,
        t.elapsed().as_secs_f64() * 1e3
    );

    // 6. The owner's what-if on plain values, for comparison.
    let plain_rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default())?;
    let plain_program = plain_rt.load(&component)?;
    let (reference, _) = plain_rt
        .run(&plain_program, PlaintextBackend::new(plain, 0), input)
        .await;
    let reference = reference?;
    let mut agree = true;
    for (i, (name, id)) in ir.outputs.iter().enumerate() {
        let scale = ir.nodes[*id].scale;
        let got = outcome
            .outputs
            .get(i)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("output `{name}` not revealed"))?;
        let want = reference[i].1.as_slice();
        agree &= got.as_slice() == want;
        println!(
            "  {name} = {}   (plaintext: {})",
            show(&got, scale),
            show(want, scale)
        );
    }
    if !agree {
        anyhow::bail!("the threshold result differs from the plaintext reference");
    }
    println!(
        "threshold result equals the plaintext reference; total {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
