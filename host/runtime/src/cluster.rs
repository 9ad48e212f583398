//! An in-process cluster: K custodian instances of one component, each on its own shares
//! through an [`MpcBackend`], rounds carried to a king task over channels, outputs masked
//! by the custodians and reconstructed. For tests, benchmarks and `qvm demo`: the daemons
//! run the same pieces with the network in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use qvm_core::{Fp, PartyIndex};
use qvm_mpc::SharedVec;
use qvm_mpc::king::KingSession;
use qvm_mpc::msgs::{OpenedMsg, ShareMsg};
use qvm_mpc::online::{CustodianSession, SessionConfig};
use qvm_mpc::output::OutputCollector;
use tokio::sync::{broadcast, mpsc};

use crate::{
    BackendError, BoxFuture, Field, MpcBackend, Program, Runtime, RuntimeError, Transport,
};

/// A custodian's link to the king task.
pub struct ChannelTransport {
    to_king: mpsc::Sender<ShareMsg>,
    from_king: broadcast::Receiver<OpenedMsg>,
}

impl Transport for ChannelTransport {
    fn exchange(&mut self, msg: ShareMsg) -> BoxFuture<'_, Result<OpenedMsg, BackendError>> {
        Box::pin(async move {
            let round = msg.round;
            self.to_king
                .send(msg)
                .await
                .map_err(|e| BackendError::Interaction(e.to_string()))?;
            loop {
                let opened = self
                    .from_king
                    .recv()
                    .await
                    .map_err(|e| BackendError::Interaction(e.to_string()))?;
                if opened.round == round {
                    return Ok(opened);
                }
            }
        })
    }
}

/// Why a cluster run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A custodian's instance failed.
    #[error("custodian {0}: {1}")]
    Custodian(PartyIndex, RuntimeError),
    /// The MPC engine refused something (the king, output masking or reconstruction).
    #[error(transparent)]
    Mpc(#[from] qvm_mpc::Error),
    /// A task did not finish.
    #[error("a task failed: {0}")]
    Task(String),
}

/// What a cluster run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOutcome {
    /// The revealed outputs, by name, in the program's order.
    pub outputs: Vec<(String, Vec<Fp>)>,
    /// Rounds the king ran.
    pub rounds: u32,
}

/// The runtime type of a cluster's custodians.
pub type ClusterRuntime = Runtime<MpcBackend<ChannelTransport>>;

/// Runs `program` on `input` with every custodian of the session concurrently.
/// `secrets(p)` gives custodian p's shares of each secret.
pub async fn run(
    rt: Arc<ClusterRuntime>,
    program: &Program<MpcBackend<ChannelTransport>>,
    config: SessionConfig,
    custodians: BTreeMap<PartyIndex, CustodianSession>,
    mut king: KingSession,
    secrets: impl Fn(PartyIndex) -> HashMap<String, SharedVec>,
    input: Vec<Field>,
) -> Result<ClusterOutcome, ClusterError> {
    let (to_king, mut king_rx) = mpsc::channel::<ShareMsg>(64);
    let (king_tx, _) = broadcast::channel::<OpenedMsg>(64);
    let king_out = king_tx.clone();
    let king_task = tokio::spawn(async move {
        let mut rounds = 0u32;
        while let Some(msg) = king_rx.recv().await {
            if let Some(opened) = king.receive(msg)? {
                rounds += 1;
                let _ = king_out.send(opened);
            }
        }
        Ok::<_, qvm_mpc::Error>(rounds)
    });
    let mut tasks = Vec::new();
    for (p, session) in custodians {
        let transport = ChannelTransport {
            to_king: to_king.clone(),
            from_king: king_tx.subscribe(),
        };
        let backend = MpcBackend::new(session, secrets(p), transport);
        let (rt, program, input) = (Arc::clone(&rt), program.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let (result, backend) = rt.run(&program, backend, input).await;
            let outputs = result.map_err(|e| ClusterError::Custodian(p, e))?;
            let masked = outputs
                .iter()
                .map(|(name, v)| Ok((name.clone(), backend.session().output_message(v)?)))
                .collect::<Result<Vec<_>, qvm_mpc::Error>>()?;
            Ok::<_, ClusterError>(masked)
        }));
    }
    drop(to_king);
    let mut names: Vec<String> = Vec::new();
    let mut collectors: Vec<OutputCollector> = Vec::new();
    let mut revealed: Vec<Option<Vec<Fp>>> = Vec::new();
    for task in tasks {
        let masked = task
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))??;
        for (i, (name, msg)) in masked.into_iter().enumerate() {
            if i == collectors.len() {
                names.push(name);
                collectors.push(OutputCollector::new(config));
                revealed.push(None);
            }
            revealed[i] = collectors[i].receive(msg)?;
        }
    }
    let rounds = king_task
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))??;
    let outputs = names
        .into_iter()
        .zip(revealed)
        .map(|(n, v)| {
            v.map(|v| (n, v))
                .ok_or_else(|| ClusterError::Task("an output was not revealed".into()))
        })
        .collect::<Result<_, _>>()?;
    Ok(ClusterOutcome { outputs, rounds })
}
