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
        let backend = MpcBackend::new(session, Arc::new(secrets(p)), transport);
        let (rt, program, input) = (Arc::clone(&rt), program.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let (result, mut backend) = rt.run(&program, backend, input).await;
            let outputs = result.map_err(|e| ClusterError::Custodian(p, e))?;
            let names: Vec<(String, usize)> =
                outputs.iter().map(|(n, v)| (n.clone(), v.len())).collect();
            let all: Vec<&SharedVec> = outputs.iter().map(|(_, v)| v).collect();
            let msg = backend.session_mut().output_message(&all)?;
            Ok::<_, ClusterError>((names, msg))
        }));
    }
    drop(to_king);
    let mut layout: Vec<(String, usize)> = Vec::new();
    let mut collector = OutputCollector::new(config);
    let mut revealed = None;
    for task in tasks {
        let (names, msg) = task
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))??;
        layout = names;
        revealed = collector.receive(msg)?;
    }
    let rounds = king_task
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))??;
    let values = revealed.ok_or_else(|| ClusterError::Task("no output was revealed".into()))?;
    let outputs = split_outputs(&layout, &values)
        .ok_or_else(|| ClusterError::Task("the outputs' lengths disagree".into()))?;
    Ok(ClusterOutcome { outputs, rounds })
}

/// Splits the concatenated revealed outputs by the lengths of the named outputs.
pub fn split_outputs(layout: &[(String, usize)], values: &[Fp]) -> Option<Vec<(String, Vec<Fp>)>> {
    let mut rest = values;
    let mut out = Vec::with_capacity(layout.len());
    for (name, len) in layout {
        let (head, tail) = (rest.get(..*len)?, rest.get(*len..)?);
        out.push((name.clone(), head.to_vec()));
        rest = tail;
    }
    rest.is_empty().then_some(out)
}
