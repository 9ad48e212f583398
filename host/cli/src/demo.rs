//! `qvm demo`: the whole workflow on a local cluster, on embedded defaults, narrated.
//!
//! 1. a 3-of-5 cluster comes up: the coordinator and five custodians as separate
//!    processes on loopback, committee setup (PRSS keys) relayed by the coordinator;
//! 2. the owner builds the `credit-score` and `risk-mlp` packages; three custodians
//!    approve each; the coordinator collects the approvals into activation certificates;
//! 3. evaluations through the coordinator equal the plaintext run of the same program;
//! 4. a forged request, a replayed request, an exhausted budget and a rate limit are each
//!    refused with their reason;
//! 5. two custodians are killed (SIGKILL) and evaluations are still served; a third is
//!    killed and the refusal names the shortfall;
//! 6. every node's audit log verifies and the custodians' logs match the coordinator's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use qvm_api::wire::RefusalKind;
use qvm_package::keys::KeySet;

use crate::client::{Client, ClientError, sign};
use crate::cluster::{self, ClusterFile};
use crate::examples::{credit, identity, mlp, plaintext, policy, reals};

const CREDIT: &str = include_str!("../../../packages/credit-score/credit-score.qvm");
const CREDIT_SECRETS: &str = include_str!("../../../packages/credit-score/secrets.toml");
const MLP: &str = include_str!("../../../packages/risk-mlp/risk-mlp.qvm");
const MLP_SECRETS: &str = include_str!("../../../packages/risk-mlp/secrets.toml");

/// Arguments of `qvm demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the cluster's directory here (default: a temporary directory, removed).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs `qvm demo`.
pub fn run(args: Args) -> ExitCode {
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => match tempfile::tempdir() {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(demo(&dir)));
    let _ = cluster::down(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn expect_refusal(
    r: Result<qvm_coordinator::eval::EvalResponse, ClientError>,
    kind: RefusalKind,
) -> anyhow::Result<String> {
    match r {
        Err(ClientError::Refused(e)) if e.kind == kind => Ok(e.message),
        Err(e) => bail!("expected a {} refusal, got: {e}", kind.as_str()),
        Ok(_) => bail!(
            "expected a {} refusal, the request was served",
            kind.as_str()
        ),
    }
}

/// Two evaluations as `identity` are served; the third is refused with `kind`.
async fn third_refused(
    client: &Client,
    key: &KeySet,
    program: &qvm_coordinator::api::ProgramStatus,
    identity: &str,
    kind: RefusalKind,
) -> anyhow::Result<String> {
    let request = || sign(&key.signing, program, identity, vec![credit(2.0)]);
    for _ in 0..2 {
        client.eval(&request()?).await?;
    }
    expect_refusal(client.eval(&request()?).await, kind)
}

async fn demo(dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    step(
        1,
        "A 3-of-5 cluster: the coordinator and five custodians, each its own process",
    );
    let file: ClusterFile = cluster::up(dir, 5, 3, 0).await?;
    println!(
        "   coordinator {}, custodians {}",
        file.coordinator,
        file.custodians.join(" ")
    );
    println!(
        "   committee setup done: every custodian holds its PRSS keys ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );

    step(
        2,
        "The owner builds credit-score and risk-mlp; three custodians approve each",
    );
    let client_key = KeySet::read(&dir.join("keys/client"))?;
    let credit_policy = policy(vec![
        identity(
            &client_key,
            "analyst",
            1_000_000,
            6_000,
            1_000,
            &["score", "band", "approve"],
        ),
        identity(&client_key, "trial", 18, 6_000, 1_000, &["approve"]),
        identity(&client_key, "bursty", 1_000_000, 1, 2, &["band"]),
    ]);
    let mlp_policy = policy(vec![identity(
        &client_key,
        "analyst",
        1_000_000,
        6_000,
        1_000,
        &["risk", "high"],
    )]);
    for (source, secrets, granted) in [
        (CREDIT, CREDIT_SECRETS, credit_policy),
        (MLP, MLP_SECRETS, mlp_policy),
    ] {
        let t = Instant::now();
        let id = cluster::deploy(dir, source, secrets, granted, 1).await?;
        println!(
            "   package {id}: built, proposed, approved by 3 custodians, active ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    let client = Client::new(&file.coordinator)?;
    let credit_p = client.program("credit_score").await?;
    let mlp_p = client.program("risk_mlp").await?;
    println!(
        "   credit_score: {} rounds, {} multiplications per evaluation; risk_mlp: {} rounds, {} multiplications",
        credit_p.cost.rounds,
        credit_p.cost.multiplications,
        mlp_p.cost.rounds,
        mlp_p.cost.multiplications
    );

    step(
        3,
        "Evaluations through the coordinator equal the plaintext run",
    );
    for (program, source, secrets, input) in [
        (&credit_p, CREDIT, CREDIT_SECRETS, credit(0.0)),
        (&credit_p, CREDIT, CREDIT_SECRETS, credit(-12.0)),
        (&mlp_p, MLP, MLP_SECRETS, mlp(0.0)),
        (&mlp_p, MLP, MLP_SECRETS, mlp(3.0)),
    ] {
        let t = Instant::now();
        let resp = client
            .eval(&sign(
                &client_key.signing,
                program,
                "analyst",
                vec![input.clone()],
            )?)
            .await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let want = plaintext(source, secrets, &input)?;
        let mut shown = Vec::new();
        for o in &resp.outputs[0] {
            let (_, w) = want
                .iter()
                .find(|(n, _)| *n == o.name)
                .ok_or_else(|| anyhow!("output {}", o.name))?;
            let tolerance = if o.scale == 0 {
                0
            } else {
                1i128 << o.scale.saturating_sub(4)
            };
            if o.raw.iter().zip(w).any(|(g, w)| (g - w).abs() > tolerance) {
                bail!(
                    "{}: {} = {:?} differs from the plaintext run {:?}",
                    program.name,
                    o.name,
                    o.raw,
                    w
                );
            }
            shown.push(format!(
                "{} = {}",
                o.name,
                o.reals()
                    .iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let r = &resp.receipt.receipt;
        println!(
            "   {}: {}   (plaintext agrees; custodians {:?}, {} rounds, {ms:.1} ms)",
            program.name,
            shown.join("  "),
            r.members,
            r.rounds
        );
    }
    println!("   threshold results equal the plaintext reference");

    step(4, "Requests the custodians refuse");
    let mut forged = sign(&client_key.signing, &credit_p, "analyst", vec![credit(0.0)])?;
    forged.request.inputs[0][0].value = reals(&[999.0; 12]);
    let why = expect_refusal(client.eval(&forged).await, RefusalKind::BadClientSignature)?;
    println!("   a request altered after signing: refused ({why})");
    let once = sign(&client_key.signing, &credit_p, "analyst", vec![credit(1.0)])?;
    client.eval(&once).await?;
    let why = expect_refusal(client.eval(&once).await, RefusalKind::Replay)?;
    println!("   the same signed request sent again: refused ({why})");
    let why = third_refused(
        &client,
        &client_key,
        &credit_p,
        "trial",
        RefusalKind::BudgetExhausted,
    )
    .await?;
    println!("   `trial` after two evaluations: refused ({why})");
    let why = third_refused(
        &client,
        &client_key,
        &credit_p,
        "bursty",
        RefusalKind::RateLimited,
    )
    .await?;
    println!("   `bursty` (1 per minute, burst 2) a third time at once: refused ({why})");

    step(5, "Custodians fail");
    let pid = |name: &str| {
        file.pids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .context("pid")
    };
    for name in ["custodian-4", "custodian-5"] {
        cluster::signal(pid(name)?, "KILL");
    }
    println!("   custodians 4 and 5 killed (SIGKILL)");
    for (program, input) in [(&credit_p, credit(4.0)), (&mlp_p, mlp(5.0))] {
        let resp = client
            .eval(&sign(&client_key.signing, program, "analyst", vec![input])?)
            .await?;
        println!(
            "   {} still served by custodians {:?} (pooled items made before the failure)",
            program.name, resp.receipt.receipt.members
        );
    }
    cluster::signal(pid("custodian-3")?, "KILL");
    println!("   custodian 3 killed too");
    let why = expect_refusal(
        client
            .eval(&sign(
                &client_key.signing,
                &credit_p,
                "analyst",
                vec![credit(5.0)],
            )?)
            .await,
        RefusalKind::Unavailable,
    )?;
    println!("   refused: {why}");

    step(6, "Audit logs");
    for line in crate::audit::verify_cluster(dir)? {
        println!("   {line}");
    }
    println!(
        "   every log verifies: hash chains, signed checkpoints, custodians against the coordinator"
    );
    println!("\ndemo done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
