//! `qvm keygen`, `qvm committee init`, `qvm package build|inspect|verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use qvm_package::committee::{Committee, Custodian, DEFAULT_PROPOSAL_TTL_SECS};
use qvm_package::keys::{KeySet, Role, read_public};
use qvm_package::manifest::{Manifest, Package};
use qvm_package::policy::Policy;
use qvm_package::verify::{AsCustodian, verify};

/// `qvm keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The role the keys are for.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The directory to write (private keys with mode 0600, and public.json).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Owner,
    Custodian,
    Client,
    Coordinator,
}

/// `qvm committee init`.
#[derive(Debug, clap::Args)]
pub struct CommitteeArgs {
    /// Threshold K.
    #[arg(long)]
    k: u8,
    /// A custodian: INDEX=PUBLIC_JSON[@URL].
    #[arg(long = "custodian", value_name = "INDEX=PUBLIC_JSON[@URL]")]
    custodians: Vec<String>,
    /// The coordinator's public.json.
    #[arg(long)]
    coordinator: PathBuf,
    /// How long a proposed version stays open for approvals, in seconds.
    #[arg(long, default_value_t = DEFAULT_PROPOSAL_TTL_SECS)]
    proposal_ttl: u64,
    /// Where to write committee.json.
    #[arg(long)]
    out: PathBuf,
}

/// `qvm package …`.
#[derive(Debug, clap::Subcommand)]
pub enum PackageCommand {
    /// Compile, share the secrets, seal a bundle per custodian, sign the manifest.
    Build(BuildArgs),
    /// Print the manifest.
    Inspect {
        /// The package file.
        package: PathBuf,
    },
    /// Every check a custodian makes before approving.
    Verify(VerifyArgs),
    /// What changed between two versions: source, schema, cost, policy (no secret).
    Diff {
        /// The old version.
        old: PathBuf,
        /// The new version.
        new: PathBuf,
    },
}

/// `qvm package build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[arg(long)]
    source: PathBuf,
    #[arg(long)]
    secrets: PathBuf,
    #[arg(long)]
    policy: PathBuf,
    #[arg(long)]
    committee: PathBuf,
    /// The owner's key directory.
    #[arg(long)]
    owner_key: PathBuf,
    #[arg(long)]
    version: u64,
    /// The previous version's package.
    #[arg(long)]
    previous: Option<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

/// `qvm package verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    package: PathBuf,
    #[arg(long)]
    committee: PathBuf,
    /// Verify as this custodian (its key directory): also open its bundle.
    #[arg(long)]
    as_custodian: Option<PathBuf>,
    /// The active version it should follow.
    #[arg(long)]
    previous: Option<PathBuf>,
}

/// Prints an error and exits 2, or exits 0.
pub fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_package(path: &Path) -> anyhow::Result<(Vec<u8>, Package)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let pkg = Package::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((bytes, pkg))
}

/// Runs `qvm keygen`.
pub fn keygen(args: KeygenArgs) -> ExitCode {
    exit((|| {
        let role = match args.role {
            RoleArg::Owner => Role::Owner,
            RoleArg::Custodian => Role::Custodian,
            RoleArg::Client => Role::Client,
            RoleArg::Coordinator => Role::Coordinator,
        };
        KeySet::generate(role, &mut rand_core::OsRng).write(&args.out)?;
        eprintln!("wrote {:?} keys to {}", role, args.out.display());
        Ok(())
    })())
}

/// Runs `qvm committee init`.
pub fn committee(args: CommitteeArgs) -> ExitCode {
    exit((|| {
        let mut custodians = Vec::new();
        for spec in &args.custodians {
            let (index, rest) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("`{spec}`: write INDEX=PUBLIC_JSON[@URL]"))?;
            let (path, url) = match rest.split_once('@') {
                Some((p, u)) => (p, Some(u.to_string())),
                None => (rest, None),
            };
            let public = read_public(Path::new(path))?;
            if public.role != Role::Custodian {
                bail!("{path} holds {:?} keys, not a custodian's", public.role);
            }
            let agreement = public
                .agreement
                .ok_or_else(|| anyhow!("{path} has no key-agreement key"))?;
            custodians.push(Custodian {
                index: index.parse().with_context(|| format!("index `{index}`"))?,
                signing: public.signing,
                agreement,
                url,
            });
        }
        let coordinator = read_public(&args.coordinator)?;
        if coordinator.role != Role::Coordinator {
            bail!(
                "{} holds {:?} keys, not the coordinator's",
                args.coordinator.display(),
                coordinator.role
            );
        }
        let c = Committee::new(args.k, custodians, coordinator.signing, args.proposal_ttl)?;
        std::fs::write(&args.out, c.to_json()? + "\n")
            .with_context(|| format!("writing {}", args.out.display()))?;
        eprintln!(
            "committee {} (K = {}, N = {}) written to {}",
            c.id()?,
            c.k,
            c.n(),
            args.out.display()
        );
        Ok(())
    })())
}

/// Runs `qvm package …`.
pub fn package(cmd: PackageCommand) -> ExitCode {
    exit(match cmd {
        PackageCommand::Build(a) => build(a),
        PackageCommand::Inspect { package } => inspect(&package),
        PackageCommand::Verify(a) => verify_cmd(a),
        PackageCommand::Diff { old, new } => (|| {
            let (_, old) = read_package(&old)?;
            let (_, new) = read_package(&new)?;
            print!("{}", qvm_package::diff::diff(&old.manifest, &new.manifest));
            Ok(())
        })(),
    })
}

/// The manifest of the previous version's package, when one is named.
fn read_previous(path: Option<&Path>) -> anyhow::Result<Option<Manifest>> {
    Ok(path.map(read_package).transpose()?.map(|(_, p)| p.manifest))
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let source = read(&a.source)?;
    let secrets = zeroize::Zeroizing::new(read(&a.secrets)?);
    let policy = Policy::from_toml(&read(&a.policy)?)?;
    let committee = Committee::from_json(&read(&a.committee)?)?;
    let owner = KeySet::read(&a.owner_key)?;
    let previous = read_previous(a.previous.as_deref())?;
    let req = qvm_package::build::BuildRequest {
        source: &source,
        secrets_toml: &secrets,
        policy,
        committee: &committee,
        owner: &owner.signing,
        version: a.version,
        previous: previous.as_ref(),
    };
    let pkg = qvm_package::build::build(req, &mut rand_core::OsRng)?;
    let bytes = pkg.to_bytes()?;
    std::fs::write(&a.output, &bytes).with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "package {} ({} v{}), {} bytes, built in {:.0} ms",
        pkg.manifest.id()?,
        pkg.manifest.program,
        pkg.manifest.version,
        bytes.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn describe(m: &Manifest) -> anyhow::Result<String> {
    let mut s = String::new();
    use std::fmt::Write;
    writeln!(s, "package    {}", m.id()?)?;
    writeln!(s, "program    {} version {}", m.program, m.version)?;
    writeln!(
        s,
        "previous   {}",
        m.previous.map_or("none".to_string(), |p| p.to_hex())
    )?;
    writeln!(s, "committee  {} (K = {}, N = {})", m.committee, m.k, m.n)?;
    writeln!(s, "owner      {}", hex(&m.owner.to_sec1_bytes()))?;
    writeln!(s, "component  {}", m.component)?;
    for (what, fields) in [
        ("input", &m.schema.inputs),
        ("secret", &m.schema.secrets),
        ("output", &m.schema.outputs),
    ] {
        for f in fields {
            writeln!(
                s,
                "{what:<10} {}: {}[{}] scale {}",
                f.name, f.ty, f.len, f.scale
            )?;
        }
    }
    let c = &m.cost;
    writeln!(
        s,
        "cost       {} rounds, {} multiplications, {} comparisons, {} bytes/custodian, {} units{}",
        c.rounds,
        c.multiplications,
        c.comparisons,
        c.bytes_per_custodian,
        c.cost_units,
        if c.interactive {
            ", interactive"
        } else {
            ", local-only"
        }
    )?;
    for id in &m.policy.identities {
        writeln!(
            s,
            "identity   {}: budget {} per {} s, {} per minute (burst {}), outputs {:?}{}",
            id.name,
            id.budget,
            id.period_secs,
            id.rate_per_minute,
            id.burst,
            id.outputs,
            if id.reveal_to_client {
                ", revealed to the client"
            } else {
                ""
            }
        )?;
    }
    Ok(s)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    let (_, pkg) = read_package(path)?;
    print!("{}", describe(&pkg.manifest)?);
    Ok(())
}

fn verify_cmd(a: VerifyArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&a.package).with_context(|| format!("reading {}", a.package.display()))?;
    let committee = Committee::from_json(&read(&a.committee)?)?;
    let previous = read_previous(a.previous.as_deref())?;
    let keys = a.as_custodian.as_deref().map(KeySet::read).transpose()?;
    let custodian = match &keys {
        None => None,
        Some(k) => {
            let agreement = k
                .agreement
                .as_ref()
                .ok_or_else(|| anyhow!("not a custodian's keys"))?;
            let index = committee
                .custodians
                .iter()
                .find(|c| c.signing == k.signing.verifying_key())
                .map(|c| c.index)
                .ok_or_else(|| anyhow!("these keys are not a custodian of the committee"))?;
            Some(AsCustodian { index, agreement })
        }
    };
    let v = verify(&bytes, &committee, previous.as_ref(), custodian)
        .map_err(|e| anyhow!("refused: {e}"))?;
    println!(
        "verified package {}{}",
        v.id,
        if v.bundle.is_some() {
            " and this custodian's bundle"
        } else {
            ""
        }
    );
    Ok(())
}
