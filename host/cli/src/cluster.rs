//! `qvm cluster up|down|deploy`: a local cluster on loopback — the coordinator and N
//! custodians as separate processes, with keys, committee and configs written to a
//! directory.
//!
//! ```text
//! DIR/keys/{coordinator,custodian-I,owner,client}/   key directories
//! DIR/committee.json                                 the committee (with custodian URLs)
//! DIR/coordinator.toml, DIR/custodian-I.toml         configs
//! DIR/data/…, DIR/logs/….log                         state and logs
//! DIR/cluster.json                                   URLs and process ids
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use qvm_package::committee::{Committee, Custodian, DEFAULT_PROPOSAL_TTL_SECS};
use qvm_package::keys::{KeySet, Role};
use qvm_package::policy::Policy;
use serde::{Deserialize, Serialize};

use crate::client::Client;

/// `qvm cluster …`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Write keys, committee and configs into DIR and start the coordinator and N
    /// custodians; returns once committee setup is done.
    Up(UpArgs),
    /// Stop the cluster's processes.
    Down(DirArg),
    /// Build a package from a directory (program.qvm, secrets.toml, policy.toml) for the
    /// cluster — with the cluster's client key as every identity's key — upload it, have
    /// K custodians approve it, and wait until it is active.
    Deploy(DeployArgs),
}

/// Arguments of `qvm cluster up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The cluster's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Custodians.
    #[arg(long, default_value_t = 3)]
    pub n: u8,
    /// Threshold.
    #[arg(long, default_value_t = 2)]
    pub k: u8,
    /// The coordinator's port; custodian i listens on port + i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// A cluster directory.
#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// The cluster's directory.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Arguments of `qvm cluster deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The cluster's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The package directory (one .qvm file, secrets.toml, policy.toml).
    pub package: PathBuf,
}

/// What `cluster.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    /// The coordinator's URL.
    pub coordinator: String,
    /// Custodian URLs, by index.
    pub custodians: Vec<String>,
    /// K.
    pub k: u8,
    /// Process ids: (name, pid).
    pub pids: Vec<(String, u32)>,
}

impl ClusterFile {
    /// Reads DIR/cluster.json.
    pub fn read(dir: &Path) -> anyhow::Result<ClusterFile> {
        let path = dir.join("cluster.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is the cluster up?)", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(
            dir.join("cluster.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes keys, committee and configs for a cluster of N custodians with threshold K.
pub fn write_layout(dir: &Path, n: u8, k: u8, port: u16) -> anyhow::Result<ClusterFile> {
    if dir.join("committee.json").exists() {
        bail!(
            "{} already holds a cluster (qvm cluster down, then remove it)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    let mut rng = rand_core::OsRng;
    let keys = dir.join("keys");
    let coordinator = KeySet::generate(Role::Coordinator, &mut rng);
    coordinator.write(&keys.join("coordinator"))?;
    KeySet::generate(Role::Owner, &mut rng).write(&keys.join("owner"))?;
    KeySet::generate(Role::Client, &mut rng).write(&keys.join("client"))?;
    let port_of =
        |i: u16| -> anyhow::Result<u16> { if port == 0 { free_port() } else { Ok(port + i) } };
    let coordinator_port = port_of(0)?;
    let mut custodians = Vec::new();
    let mut urls = Vec::new();
    for i in 1..=n {
        let ks = KeySet::generate(Role::Custodian, &mut rng);
        ks.write(&keys.join(format!("custodian-{i}")))?;
        let p = port_of(i as u16)?;
        let url = format!("http://127.0.0.1:{p}");
        let agreement = ks
            .public()
            .agreement
            .ok_or_else(|| anyhow!("a custodian key set has a key-agreement key"))?;
        custodians.push(Custodian {
            index: i,
            signing: ks.signing.verifying_key(),
            agreement,
            url: Some(url.clone()),
        });
        std::fs::write(
            dir.join(format!("custodian-{i}.toml")),
            format!(
                "index = {i}\nlisten = \"127.0.0.1:{p}\"\nkeys = \"keys/custodian-{i}\"\ncommittee = \"committee.json\"\ndata = \"data/custodian-{i}\"\n"
            ),
        )?;
        urls.push(url);
    }
    let committee = Committee::new(
        k,
        custodians,
        coordinator.signing.verifying_key(),
        DEFAULT_PROPOSAL_TTL_SECS,
    )?;
    std::fs::write(dir.join("committee.json"), committee.to_json()?)?;
    std::fs::write(
        dir.join("coordinator.toml"),
        format!(
            "listen = \"127.0.0.1:{coordinator_port}\"\nkeys = \"keys/coordinator\"\ncommittee = \"committee.json\"\ndata = \"data/coordinator\"\n"
        ),
    )?;
    Ok(ClusterFile {
        coordinator: format!("http://127.0.0.1:{coordinator_port}"),
        custodians: urls,
        k,
        pids: Vec::new(),
    })
}

/// Starts one daemon of the cluster in its own process group (so a Ctrl-C at the
/// terminal does not reach it), logging to DIR/logs/NAME.log.
pub fn spawn(dir: &Path, name: &str, role: &str, exe: &Path) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{name}.log")))?;
    let child = Command::new(exe)
        .args([role, "run", "--config"])
        .arg(dir.join(format!("{name}.toml")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(child.id())
}

/// Starts every daemon (this executable) and waits until committee setup is done.
pub async fn up(dir: &Path, n: u8, k: u8, port: u16) -> anyhow::Result<ClusterFile> {
    up_with(dir, n, k, port, &std::env::current_exe()?).await
}

/// Starts every daemon with the `qvm` executable `exe` and waits until committee setup is
/// done.
pub async fn up_with(
    dir: &Path,
    n: u8,
    k: u8,
    port: u16,
    exe: &Path,
) -> anyhow::Result<ClusterFile> {
    let mut file = write_layout(dir, n, k, port)?;
    for i in 1..=n {
        let name = format!("custodian-{i}");
        let pid = spawn(dir, &name, "custodian", exe)?;
        file.pids.push((name, pid));
    }
    let pid = spawn(dir, "coordinator", "coordinator", exe)?;
    file.pids.push(("coordinator".into(), pid));
    file.write(dir)?;
    wait_ready(&file, n as usize, Duration::from_secs(60)).await?;
    Ok(file)
}

/// Restarts daemon `name` (after it died), recording its new process id.
pub fn restart(dir: &Path, name: &str, exe: &Path) -> anyhow::Result<u32> {
    let role = if name == "coordinator" {
        "coordinator"
    } else {
        "custodian"
    };
    let pid = spawn(dir, name, role, exe)?;
    let mut file = ClusterFile::read(dir)?;
    file.pids.retain(|(n, _)| n != name);
    file.pids.push((name.to_string(), pid));
    file.write(dir)?;
    Ok(pid)
}

/// Waits until `n` custodians are healthy with their PRSS keys.
pub async fn wait_ready(file: &ClusterFile, n: usize, limit: Duration) -> anyhow::Result<()> {
    let client = Client::new(&file.coordinator)?;
    let t0 = Instant::now();
    loop {
        if let Ok(s) = client.status().await
            && s.custodians
                .iter()
                .filter(|c| c.healthy && c.keyring)
                .count()
                >= n
        {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("the cluster did not become ready within {limit:?} (see the logs)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the processes recorded in DIR/cluster.json (SIGTERM, then SIGKILL).
pub fn down(dir: &Path) -> anyhow::Result<()> {
    let file = ClusterFile::read(dir)?;
    for (_, pid) in &file.pids {
        signal(*pid, "TERM");
    }
    let t0 = Instant::now();
    while file.pids.iter().any(|(_, p)| alive(*p)) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid) in &file.pids {
        if alive(*pid) {
            signal(*pid, "KILL");
        }
    }
    Ok(())
}

/// Sends a signal with kill(1) (the crate forbids `unsafe`, so no direct syscall).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

/// A policy with every identity's key replaced by the cluster's client key.
pub fn cluster_policy(dir: &Path, mut policy: Policy) -> anyhow::Result<Policy> {
    let client = KeySet::read(&dir.join("keys/client"))?;
    for id in &mut policy.identities {
        id.key = client.signing.verifying_key();
    }
    Ok(policy)
}

/// Builds, uploads, approves (K custodians) and waits for activation. Returns the id.
pub async fn deploy(
    dir: &Path,
    source: &str,
    secrets: &str,
    policy: Policy,
    version: u64,
) -> anyhow::Result<String> {
    let file = ClusterFile::read(dir)?;
    let committee = Committee::from_json(&std::fs::read_to_string(dir.join("committee.json"))?)?;
    let owner = KeySet::read(&dir.join("keys/owner"))?;
    let client = Client::new(&file.coordinator)?;
    let previous = match qvm_lang::compile_ir(source) {
        Ok(ir) => client.program(&ir.name).await.ok(),
        Err(_) => None,
    };
    let previous_manifest = match &previous {
        Some(p) => Some(active_manifest(dir, &p.package)?),
        None => None,
    };
    // A program already deployed gets its next version, chained to the active one.
    let version = previous_manifest
        .as_ref()
        .map_or(version, |m| version.max(m.version + 1));
    let pkg = qvm_package::build::build(
        qvm_package::build::BuildRequest {
            source,
            secrets_toml: secrets,
            policy,
            committee: &committee,
            owner: &owner.signing,
            version,
            previous: previous_manifest.as_ref(),
        },
        &mut rand_core::OsRng,
    )?;
    let up = client.upload(pkg.to_bytes()?).await?;
    let id = up.id.to_hex();
    // The operators' decisions: K custodians approve.
    let t0 = Instant::now();
    let mut approved = 0;
    for i in 1..=committee.n() {
        if approved == committee.k {
            break;
        }
        let config = dir.join(format!("custodian-{i}.toml"));
        // The custodian must have received the proposal first.
        loop {
            match crate::daemons::decide(&config, &id, qvm_package::approval::Decision::Approve) {
                Ok(()) => {
                    approved += 1;
                    break;
                }
                Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    eprintln!("custodian {i} could not approve: {e:#}");
                    break;
                }
            }
        }
    }
    loop {
        if client.package(&id).await.is_ok_and(|s| s.state == "active") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("package {id} did not become active");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Interactive programs need pooled items: wait until the offline phase has made
    // enough for an evaluation.
    let cost = pkg.manifest.cost;
    loop {
        let program = client.program(&pkg.manifest.program).await?;
        if program.pools[0] >= cost.multiplications && program.pools[1] >= cost.random_bits {
            return Ok(id);
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!(
                "the offline phase did not fill the pools for `{}`",
                pkg.manifest.program
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The manifest of the active version of a program, from the cluster coordinator's store
/// (the owner needs it to chain the next version to it).
fn active_manifest(
    dir: &Path,
    id: &qvm_core::encoding::Digest,
) -> anyhow::Result<qvm_package::manifest::Manifest> {
    let conn = qvm_node::store::open_read_only(&dir.join("data/coordinator/coordinator.db"))?;
    let bytes = qvm_coordinator::store::package_bytes(&conn, id)?
        .ok_or_else(|| anyhow!("the coordinator does not hold package {id}"))?;
    Ok(qvm_package::manifest::Package::from_bytes(&bytes)
        .map_err(|e| anyhow!("package {id}: {e}"))?
        .manifest)
}

/// Reads a package directory: the one .qvm file, secrets.toml, policy.toml.
pub fn read_package_dir(path: &Path) -> anyhow::Result<(String, String, Policy)> {
    let mut source = None;
    for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "qvm") {
            source = Some(std::fs::read_to_string(&p)?);
        }
    }
    let source = source.ok_or_else(|| anyhow!("no .qvm file in {}", path.display()))?;
    let secrets = std::fs::read_to_string(path.join("secrets.toml"))?;
    let policy = Policy::from_toml(&std::fs::read_to_string(path.join("policy.toml"))?)?;
    Ok((source, secrets, policy))
}

/// Runs `qvm cluster …`.
pub fn run(cmd: ClusterCommand) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                match cmd {
                    ClusterCommand::Up(a) => {
                        let f = up(&a.dir, a.n, a.k, a.port).await?;
                        println!(
                            "cluster up: coordinator {} with {} custodians (K = {})",
                            f.coordinator, a.n, a.k
                        );
                        Ok(())
                    }
                    ClusterCommand::Down(a) => down(&a.dir),
                    ClusterCommand::Deploy(a) => {
                        let (source, secrets, policy) = read_package_dir(&a.package)?;
                        let policy = cluster_policy(&a.dir, policy)?;
                        let id = deploy(&a.dir, &source, &secrets, policy, 1).await?;
                        println!("package {id} is active");
                        Ok(())
                    }
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
