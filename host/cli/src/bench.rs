//! `qvm bench`: load a cluster with signed requests and report latency and throughput,
//! with every control on (client signatures, tickets, chains, durable budgets and audit
//! entries at the coordinator and every custodian of the session).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qvm_api::request::{Input, InputField, InputValue, Real};
use qvm_coordinator::api::ProgramStatus;
use qvm_package::keys::KeySet;
use qvm_package::policy::{Degrade, Identity, Policy};
use rand_chacha::ChaCha8Rng;
use rand_core::{OsRng, RngCore, SeedableRng};

use crate::client::{Client, sign};
use crate::cluster::{self, ClusterFile};

/// The identity `qvm bench` evaluates as.
pub const BENCH_IDENTITY: &str = "bench";

/// Arguments of `qvm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster's directory (`qvm cluster up`).
    #[arg(long)]
    cluster: PathBuf,
    /// The program: a directory under packages/ (deployed with a `bench` identity if it is
    /// not active yet) or a path to a package directory.
    #[arg(long)]
    program: String,
    /// Inputs per request (a batch runs as vectors in the rounds of one evaluation).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How long to measure, seconds (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Runs `qvm bench`.
pub fn run(args: Args) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(bench(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn package_dir(program: &str) -> PathBuf {
    let p = PathBuf::from(program);
    if p.is_dir() {
        p
    } else {
        PathBuf::from("packages").join(program)
    }
}

/// Deploys the program with a `bench` identity unless it is active already.
async fn ensure_deployed(args: &Args, client: &Client) -> anyhow::Result<ProgramStatus> {
    let dir = package_dir(&args.program);
    let (source, secrets, _) = cluster::read_package_dir(&dir)?;
    let ir = qvm_lang::compile_ir(&source)
        .map_err(|e| anyhow::anyhow!("{}", e.render("program", &source)))?;
    if let Ok(p) = client.program(&ir.name).await {
        return Ok(p);
    }
    let key = KeySet::read(&args.cluster.join("keys/client"))?;
    let policy = Policy {
        identities: vec![Identity {
            name: BENCH_IDENTITY.into(),
            key: key.signing.verifying_key(),
            budget: u64::MAX / 4,
            period_secs: 86_400,
            rate_per_minute: 100_000_000,
            burst: 1_000_000,
            outputs: ir.outputs.iter().map(|(n, _)| n.clone()).collect(),
            reveal_to_client: false,
        }],
        degrade: Degrade::default(),
    };
    cluster::deploy(&args.cluster, &source, &secrets, policy, 1).await?;
    Ok(client.program(&ir.name).await?)
}

/// Random inputs within the declared bounds, from a seeded generator: drawing each of a
/// batch's thousands of values from the OS (one system call each) took a tenth of the
/// machine the cluster under test runs on.
fn random_input(p: &ProgramStatus, rng: &mut ChaCha8Rng) -> Input {
    p.schema
        .inputs
        .iter()
        .map(|d| {
            let (lo, hi) = d.bounds.unwrap_or((0, 0));
            let unit = (1u128 << d.scale) as f64;
            let (lo, hi) = (lo as f64 / unit, hi as f64 / unit);
            let draw = |rng: &mut ChaCha8Rng| {
                lo + (hi - lo) * (rng.next_u32() as f64 / u32::MAX as f64) * 0.9
            };
            let value = match (d.ty.as_str(), d.vector) {
                ("bool", false) => InputValue::Boolean(rng.next_u32() & 1 == 1),
                ("bool", true) => {
                    InputValue::Booleans((0..d.len).map(|_| rng.next_u32() & 1 == 1).collect())
                }
                ("int", false) => InputValue::Int(draw(rng).round() as i64),
                ("int", true) => {
                    InputValue::Ints((0..d.len).map(|_| draw(rng).round() as i64).collect())
                }
                (_, false) => InputValue::Real(Real(draw(rng))),
                (_, true) => InputValue::Reals((0..d.len).map(|_| Real(draw(rng))).collect()),
            };
            InputField {
                name: d.name.clone(),
                value,
            }
        })
        .collect()
}

/// Waits (up to [`SETTLE_MAX`]) until the offline phase is idle — the pool levels the
/// coordinator reports stop changing — so the measurement does not share the cores with a
/// fresh cluster, or a previous run, refilling its pools.
async fn settle(client: &Client) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut last = client.status().await?.pools;
    while t0.elapsed() < SETTLE_MAX {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = client.status().await?.pools;
        if now == last {
            return Ok(t0.elapsed().saturating_sub(SETTLE_POLL));
        }
        last = now;
    }
    Ok(t0.elapsed())
}

/// The longest [`settle`] waits.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// How often [`settle`] polls; longer than an offline batch takes on an idle cluster.
const SETTLE_POLL: Duration = Duration::from_millis(300);

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn bench(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency are at least 1");
    }
    let file = ClusterFile::read(&args.cluster)?;
    let client = Client::new(&file.coordinator)?;
    let program = Arc::new(ensure_deployed(&args, &client).await?);
    let key = Arc::new(KeySet::read(&args.cluster.join("keys/client")).context("client key")?);
    let waited = settle(&client).await?;
    if waited >= SETTLE_POLL {
        eprintln!(
            "waited {:.1} s for the offline phase to settle",
            waited.as_secs_f64()
        );
    }
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs(args.seconds);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, program, key) = (client.clone(), Arc::clone(&program), Arc::clone(&key));
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(OsRng.next_u64());
            let mut samples = Vec::new();
            let mut errors = Vec::new();
            let mut dry = 0usize;
            let mut rounds = 0;
            while t0.elapsed() < warmup + measure {
                let inputs = (0..batch)
                    .map(|_| random_input(&program, &mut rng))
                    .collect();
                let req = sign(&key.signing, &program, BENCH_IDENTITY, inputs)?;
                let t = Instant::now();
                let r = client.eval(&req).await;
                let took = t.elapsed();
                if t0.elapsed() < warmup {
                    continue;
                }
                match r {
                    Ok(resp) => {
                        rounds = resp.receipt.receipt.rounds;
                        samples.push(took);
                    }
                    // A dry pool refills in the background: back off a little. Counted
                    // apart: it is the offline phase not keeping up, not a failure.
                    Err(crate::client::ClientError::Refused(r))
                        if r.kind == qvm_api::wire::RefusalKind::PoolDry =>
                    {
                        dry += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Ok::<_, anyhow::Error>((samples, errors, dry, rounds))
        }));
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let (mut dry, mut rounds) = (0, 0);
    for t in tasks {
        let (s, e, d, r) = t.await??;
        samples.extend(s);
        errors.extend(e);
        dry += d;
        rounds = rounds.max(r);
    }
    samples.sort();
    let secs = measure.as_secs_f64();
    let requests = samples.len() as f64 / secs;
    println!(
        "{} on {} (K = {}, N = {}): batch {}, concurrency {}, {} s",
        program.name,
        file.coordinator,
        file.k,
        file.custodians.len(),
        args.batch,
        args.concurrency,
        args.seconds
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms; {} rounds per request",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        rounds
    );
    println!(
        "  throughput {:.0} requests/s, {:.0} evaluations/s; {} errors; {} refused pool_dry and retried",
        requests,
        requests * args.batch as f64,
        errors.len(),
        dry
    );
    if let Some(e) = errors.first() {
        println!("  first error: {e}");
    }
    Ok(())
}
