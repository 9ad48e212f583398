//! Shared helpers of the cluster tests: a local cluster of real processes started by the
//! `qvm` binary, stopped (and its processes killed) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use qvm_lang::ast::Scalar;
use qvm_lang::ir::Ir;

/// Budget, rate per minute and burst that a test's load never reaches.
pub const GENEROUS: (u64, u32, u32) = (100_000_000, 60_000, 10_000);

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Runs `qvm` with arguments: (exit code, stdout, stderr).
pub fn qvm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qvm"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("qvm runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A package's program, compiled, and its example secrets as scaled integers.
pub fn program(name: &str) -> (Ir, HashMap<String, Vec<i128>>) {
    let dir = root().join("packages").join(name);
    let src = std::fs::read_to_string(dir.join(format!("{name}.qvm"))).expect("source");
    let ir = qvm_lang::compile_ir(&src).expect("compiles");
    let text = std::fs::read_to_string(dir.join("secrets.toml")).expect("secrets");
    let secrets = qvm_package::build::read_secrets(&ir, &text)
        .expect("secrets")
        .into_iter()
        .map(|(n, v)| (n, v.iter().map(|x| x.to_i128()).collect()))
        .collect();
    (ir, secrets)
}

/// Inputs spread over their declared bounds (`variant` moves them), as `--input`
/// arguments and as the evaluator's scaled integers.
pub fn inputs(ir: &Ir, variant: i128) -> (Vec<String>, HashMap<String, Vec<i128>>) {
    let mut args = Vec::new();
    let mut scaled = HashMap::new();
    for p in &ir.inputs {
        let unit = if p.ty == Scalar::Fixed { 65536.0 } else { 1.0 };
        let reals: Vec<f64> = (0..p.len as i128)
            .map(|i| {
                ((p.range.lo + (p.range.hi - p.range.lo) * ((i + variant) % 7 + 1) / 9) as f64
                    / unit)
                    .round()
            })
            .collect();
        scaled.insert(
            p.name.clone(),
            qvm_lang::eval::scale_values(ir, p, &reals).expect("scales"),
        );
        let list: Vec<String> = reals.iter().map(f64::to_string).collect();
        args.push(format!("{}=[{}]", p.name, list.join(",")));
    }
    (args, scaled)
}

/// Checks a JSON evaluation answer against the plaintext evaluator.
pub fn assert_matches(ir: &Ir, json: &str, want: &[(String, Vec<i128>)]) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let row = v["outputs"][0].as_array().expect("one item");
    for o in row {
        let name = o["name"].as_str().expect("name");
        let got: Vec<i128> = o["raw"]
            .as_array()
            .expect("raw")
            .iter()
            .map(|x| x.as_i64().expect("small") as i128)
            .collect();
        let (_, w) = want
            .iter()
            .find(|(n, _)| n == name)
            .expect("granted output");
        let node = ir
            .outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| &ir.nodes[*id])
            .expect("output");
        // Probabilistic truncation may round up where the evaluator rounds down.
        let tolerance = if node.ty == Scalar::Bool {
            0
        } else {
            1i128 << node.scale.saturating_sub(4)
        };
        for (g, w) in got.iter().zip(w) {
            assert!((g - w).abs() <= tolerance, "{}.{name}: {g} vs {w}", ir.name);
        }
    }
}

/// The plaintext run of `packages/NAME` on `input`, with its example secrets.
pub fn expected(name: &str, input: &qvm_api::request::Input) -> Vec<(String, Vec<i128>)> {
    let dir = root().join("packages").join(name);
    let src = std::fs::read_to_string(dir.join(format!("{name}.qvm"))).expect("source");
    let secrets = std::fs::read_to_string(dir.join("secrets.toml")).expect("secrets");
    qvm::examples::plaintext(&src, &secrets, input).expect("evaluates")
}

/// One cluster test at a time: each starts N + 1 processes, and failover timing tests
/// must not compete for two cores.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A cluster driven through the `qvm` library (client, deploy) with processes started from
/// the `qvm` binary; stopped when dropped.
pub struct Live {
    /// The directory.
    pub dir: tempfile::TempDir,
    /// URLs and process ids.
    pub file: qvm::cluster::ClusterFile,
    /// The coordinator's client API.
    pub client: qvm::client::Client,
    /// A runtime to drive async calls from a test.
    pub rt: tokio::runtime::Runtime,
    _lock: std::sync::MutexGuard<'static, ()>,
}

/// The `qvm` binary under test.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qvm"))
}

impl Live {
    /// Starts N custodians with threshold K and the coordinator.
    pub fn up(k: u8, n: u8) -> Live {
        let lock = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let file = rt
            .block_on(qvm::cluster::up_with(dir.path(), n, k, 0, &exe()))
            .unwrap_or_else(|e| panic!("cluster up: {e:#}"));
        let client = qvm::client::Client::new(&file.coordinator).expect("client");
        Live {
            dir,
            file,
            client,
            rt,
            _lock: lock,
        }
    }

    /// Starts the cluster with `qvm cluster up` (the operator's command) instead.
    pub fn up_cli(k: u8, n: u8) -> Live {
        let lock = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().to_str().expect("utf-8");
        let (code, out, err) = qvm(&[
            "cluster",
            "up",
            "--dir",
            d,
            "--n",
            &n.to_string(),
            "--k",
            &k.to_string(),
        ]);
        assert_eq!(code, 0, "cluster up: {out}{err}");
        let file = qvm::cluster::ClusterFile::read(dir.path()).expect("cluster.json");
        Live {
            client: qvm::client::Client::new(&file.coordinator).expect("client"),
            file,
            dir,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
            _lock: lock,
        }
    }

    /// The directory as a string.
    pub fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8")
    }

    /// `qvm cluster deploy` of `packages/NAME` (its policy, with the cluster's client key).
    pub fn deploy_cli(&self, name: &str) {
        let pkg = root().join("packages").join(name);
        let (code, out, err) = qvm(&[
            "cluster",
            "deploy",
            "--dir",
            self.path(),
            pkg.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "deploy {name}: {out}{err}{}", self.logs());
    }

    /// `qvm eval --json` with these `--input` arguments: (exit code, JSON or error text).
    pub fn eval_cli(&self, program: &str, inputs: &[String]) -> (i32, String) {
        let key = self.dir.path().join("keys/client");
        let mut args = vec![
            "eval".to_string(),
            "--coordinator".into(),
            self.file.coordinator.clone(),
            "--key".into(),
            key.to_str().expect("utf-8").into(),
            "--program".into(),
            program.into(),
            "--json".into(),
        ];
        for i in inputs {
            args.push("--input".into());
            args.push(i.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = qvm(&refs);
        (code, if code == 0 { out } else { err })
    }

    /// The cluster's client key.
    pub fn client_key(&self) -> qvm_package::keys::KeySet {
        qvm_package::keys::KeySet::read(&self.dir.path().join("keys/client")).expect("client key")
    }

    /// A key set of the cluster (`coordinator`, `owner`, `custodian-I`).
    pub fn keys(&self, name: &str) -> qvm_package::keys::KeySet {
        qvm_package::keys::KeySet::read(&self.dir.path().join("keys").join(name)).expect("keys")
    }

    /// Deploys `packages/NAME` with `policy` and waits until it can serve.
    pub fn deploy(&self, name: &str, policy: qvm_package::policy::Policy) -> String {
        let dir = root().join("packages").join(name);
        let src = std::fs::read_to_string(dir.join(format!("{name}.qvm"))).expect("source");
        let secrets = std::fs::read_to_string(dir.join("secrets.toml")).expect("secrets");
        self.rt
            .block_on(qvm::cluster::deploy(
                self.dir.path(),
                &src,
                &secrets,
                policy,
                1,
            ))
            .unwrap_or_else(|e| panic!("deploy {name}: {e:#}{}", self.logs()))
    }

    /// Deploys a package for one identity holding the cluster's client key, with its
    /// budget, rate per minute, burst and granted outputs.
    pub fn deploy_for(
        &self,
        name: &str,
        identity: &str,
        limits: (u64, u32, u32),
        outputs: &[&str],
    ) -> String {
        let key = self.client_key();
        let (budget, per_minute, burst) = limits;
        self.deploy(
            name,
            qvm::examples::policy(vec![qvm::examples::identity(
                &key, identity, budget, per_minute, burst, outputs,
            )]),
        )
    }

    /// Custodian `i`'s Prometheus text.
    pub fn custodian_metrics(&self, i: usize) -> String {
        self.rt.block_on(async {
            reqwest::get(format!("{}/metrics", self.file.custodians[i - 1]))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        })
    }

    /// A program's status.
    pub fn program(&self, name: &str) -> qvm_coordinator::api::ProgramStatus {
        self.rt
            .block_on(self.client.program(name))
            .expect("program")
    }

    /// Signs and evaluates.
    pub fn eval(
        &self,
        program: &qvm_coordinator::api::ProgramStatus,
        identity: &str,
        inputs: Vec<qvm_api::request::Input>,
    ) -> Result<qvm_coordinator::eval::EvalResponse, qvm::client::ClientError> {
        let key = self.client_key();
        let req = qvm::client::sign(&key.signing, program, identity, inputs).expect("signs");
        self.rt.block_on(self.client.eval(&req))
    }

    /// A daemon's process id.
    pub fn pid(&self, name: &str) -> u32 {
        qvm::cluster::ClusterFile::read(self.dir.path())
            .expect("cluster.json")
            .pids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .expect("pid")
    }

    /// Sends a signal to a daemon.
    pub fn signal(&self, name: &str, sig: &str) {
        qvm::cluster::signal(self.pid(name), sig);
    }

    /// Every daemon's log tail.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                out.push_str(&format!("\n== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The coordinator's status.
    pub fn status(&self) -> qvm_coordinator::api::Status {
        self.rt
            .block_on(self.client.status())
            .unwrap_or_else(|e| panic!("status: {e}{}", self.logs()))
    }

    /// Waits until the coordinator sees custodian `index` as healthy (or not).
    pub fn wait_health(&self, index: u8, healthy: bool, limit: std::time::Duration) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if let Ok(s) = self.rt.block_on(self.client.status())
                && s.custodians
                    .iter()
                    .any(|c| c.index == index && c.healthy == healthy)
            {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// A coordinator metric's value (the sum over its label sets).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.rt.block_on(self.client.metrics()).expect("metrics");
        metric(&text, name)
    }

    /// A custodian's database, read-only.
    pub fn custodian_db(&self, index: u8) -> rusqlite::Connection {
        qvm_node::store::open_read_only(
            &self
                .dir
                .path()
                .join(format!("data/custodian-{index}/custodian.db")),
        )
        .expect("db")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = qvm::cluster::down(self.dir.path());
    }
}

#[allow(unused_imports)]
pub use qvm::examples::{credit, identity, linear, policy, reals};

/// Asserts a refusal of this kind; returns its message.
pub fn refused(
    r: Result<qvm_coordinator::eval::EvalResponse, qvm::client::ClientError>,
    kind: qvm_api::wire::RefusalKind,
) -> String {
    match r {
        Err(qvm::client::ClientError::Refused(e)) if e.kind == kind => e.message,
        Err(e) => panic!("expected {}, got {e}", kind.as_str()),
        Ok(_) => panic!("expected {}, the request was served", kind.as_str()),
    }
}

/// The sum of a metric's samples (every label set) in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
