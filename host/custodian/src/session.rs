//! Evaluation sessions: a batch's items run as concurrent component instances, each its own
//! MPC session, and their round messages travel together — one HTTP exchange per round
//! for the whole batch, so a batch costs the rounds of one evaluation.
//!
//! The coordinator drives a session request by request (`start`, then `round` until
//! `Done`); in between, the instances wait inside their interactive host calls. A
//! *combiner* task gathers each round's messages from the running items, hands them to
//! the waiting HTTP handler, and routes the king's openings back.
//!
//! A local-only program (no rounds) runs its batch's items one after another in one
//! instance instead (`Runtime::run_each`): instantiating per item was most of an item's
//! work there, and no item waits for another.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use qvm_api::request::{InputField, InputValue};
use qvm_api::wire::{Delivery, Refusal, RefusalKind, RoundInput, SessionEvent, StartSession};
use qvm_core::encoding::Digest;
use qvm_mpc::SharedVec;
use qvm_mpc::msgs::{OpenedMsg, OutputMsg, ShareMsg};
use qvm_mpc::online::{CustodianSession, SessionConfig};
use qvm_runtime::{BackendError, BoxFuture, Field, MpcBackend, Transport, Value};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use crate::admission::{Admitted, admit};
use crate::node::{Node, internal};

/// How long a session waits for the coordinator's next round.
const ROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// An item's link to the combiner (none for a local-only program's items, which run
/// without rounds).
pub struct ItemLink {
    item: u32,
    combiner: Option<(mpsc::Sender<ItemReport>, mpsc::Receiver<OpenedMsg>)>,
}

/// An item's granted outputs' layout and its masked output message.
type Delivered = (Vec<(String, u32)>, OutputMsg);

enum ItemReport {
    Round(u32, ShareMsg),
    Done(u32, Result<Delivered, String>),
}

impl Transport for ItemLink {
    fn exchange(&mut self, msg: ShareMsg) -> BoxFuture<'_, Result<OpenedMsg, BackendError>> {
        Box::pin(async move {
            let gone = || BackendError::Interaction("the session ended".into());
            let Some((to_combiner, from_combiner)) = &mut self.combiner else {
                return Err(BackendError::Interaction(
                    "the package declares a local-only program, which has no rounds".into(),
                ));
            };
            to_combiner
                .send(ItemReport::Round(self.item, msg))
                .await
                .map_err(|_| gone())?;
            from_combiner.recv().await.ok_or_else(gone)
        })
    }
}

/// A running session, as the HTTP handlers see it.
struct Handle {
    /// The hash of the ticket the session runs under.
    ticket: Digest,
    rounds: mpsc::Sender<RoundInput>,
    events: AsyncMutex<mpsc::Receiver<Result<SessionEvent, Refusal>>>,
}

/// The running sessions, by the ticket's session id.
#[derive(Default)]
pub struct Sessions {
    running: Mutex<HashMap<Digest, Arc<Handle>>>,
}

impl Sessions {
    fn insert(&self, id: Digest, h: Arc<Handle>) -> Result<(), Refusal> {
        let mut map = self.running.lock().map_err(|_| internal("lock"))?;
        if let Some(running) = map.get(&id) {
            // The same start again is a replay; another ticket naming a running session
            // is the coordinator's (or whoever sent it) fault, not the client's.
            return Err(if running.ticket == h.ticket {
                Refusal::new(RefusalKind::Replay, "this session is already running")
            } else {
                Refusal::new(
                    RefusalKind::BadTicket,
                    "another ticket's session with this id is already running here",
                )
            });
        }
        map.insert(id, h);
        Ok(())
    }

    fn get(&self, id: &Digest) -> Option<Arc<Handle>> {
        self.running.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &Digest) {
        if let Ok(mut map) = self.running.lock() {
            map.remove(id);
        }
    }
}

/// Converts a wire input to the guest ABI's.
pub fn to_fields(input: &[InputField]) -> Vec<Field> {
    input
        .iter()
        .map(|f| Field {
            name: f.name.clone(),
            value: match &f.value {
                InputValue::Int(x) => Value::Int(*x),
                InputValue::Real(x) => Value::Real(x.0),
                InputValue::Boolean(x) => Value::Boolean(*x),
                InputValue::Ints(x) => Value::Ints(x.clone()),
                InputValue::Reals(x) => Value::Reals(x.iter().map(|r| r.0).collect()),
                InputValue::Booleans(x) => Value::Booleans(x.clone()),
            },
        })
        .collect()
}

/// Admits a session and runs it to its first event.
pub async fn start(node: Arc<Node>, start: StartSession) -> Result<SessionEvent, Refusal> {
    let ring = node
        .keyring()
        .ok_or_else(|| Refusal::new(RefusalKind::Unavailable, "committee setup is not done"))?;
    let t0 = std::time::Instant::now();
    let session = start.ticket.ticket.session;
    let (round_tx, round_rx) = mpsc::channel(1);
    let (event_tx, event_rx) = mpsc::channel(1);
    let ticket = start
        .ticket
        .hash()
        .map_err(|e| Refusal::new(RefusalKind::BadTicket, e.to_string()))?;
    let handle = Arc::new(Handle {
        ticket,
        rounds: round_tx,
        events: AsyncMutex::new(event_rx),
    });
    // The session id is claimed before admission commits, so a start reusing the id of a
    // session still running here is refused before anything is charged or recorded.
    node.sessions.insert(session, Arc::clone(&handle))?;
    let admitted = qvm_node::blocking_here(|| admit(&node, &start))
        .and_then(|admitted| spawn_items(&node, &ring, &start, admitted, round_rx, event_tx));
    if let Err(r) = admitted {
        node.sessions.remove(&session);
        return Err(r);
    }
    tracing::debug!(node = %node.name, admit_us = t0.elapsed().as_micros() as u64, "admitted");
    node.metrics.session_started();
    let event = next_event(&node.sessions, session, &handle).await;
    tracing::debug!(node = %node.name, first_event_us = t0.elapsed().as_micros() as u64, "first event");
    event
}

/// Takes the king's openings for a round and returns the next event.
pub async fn round(node: Arc<Node>, input: RoundInput) -> Result<SessionEvent, Refusal> {
    let t0 = std::time::Instant::now();
    let session = input.session;
    let handle = node
        .sessions
        .get(&session)
        .ok_or_else(|| Refusal::new(RefusalKind::SessionFailed, "no such session here"))?;
    handle
        .rounds
        .send(input)
        .await
        .map_err(|_| Refusal::new(RefusalKind::SessionFailed, "the session ended"))?;
    let event = next_event(&node.sessions, session, &handle).await;
    tracing::debug!(round_us = t0.elapsed().as_micros() as u64, "round");
    event
}

/// Waits for the session's next event. A session that ends (anything but a round) leaves
/// the running set; so does one whose caller went away while waiting (its connection
/// dropped, so nobody will ask for the event buffered for it, or resume it).
async fn next_event(
    sessions: &Sessions,
    session: Digest,
    handle: &Handle,
) -> Result<SessionEvent, Refusal> {
    let mut leaving = Leaving {
        sessions,
        session,
        armed: true,
    };
    let event = handle.events.lock().await.recv().await.unwrap_or_else(|| {
        Err(Refusal::new(
            RefusalKind::SessionFailed,
            "the session ended",
        ))
    });
    leaving.armed = !matches!(event, Ok(SessionEvent::Round(_)));
    event
}

/// Removes a session from the running set when dropped, unless disarmed.
struct Leaving<'a> {
    sessions: &'a Sessions,
    session: Digest,
    armed: bool,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sessions.remove(&self.session);
        }
    }
}

fn spawn_items(
    node: &Arc<Node>,
    ring: &Arc<qvm_core::prss::PrssKeyring>,
    start: &StartSession,
    admitted: Admitted,
    round_rx: mpsc::Receiver<RoundInput>,
    event_tx: mpsc::Sender<Result<SessionEvent, Refusal>>,
) -> Result<(), Refusal> {
    let t = &start.ticket.ticket;
    let mut sessions = Vec::with_capacity(t.items as usize);
    let ticket = admitted.ticket;
    for (b, material) in admitted.materials.into_iter().enumerate() {
        let item_session = qvm_api::ticket::item_session(&ticket, b as u32)
            .map_err(|e| internal(e.to_string()))?;
        let config = SessionConfig {
            committee: node.mpc,
            session: item_session,
            members: t.members,
        };
        let mpc = CustodianSession::new(
            config,
            Arc::clone(ring),
            material,
            Arc::clone(&admitted.masks),
            b as u32,
        )
        .map_err(|e| internal(e.to_string()))?;
        sessions.push((item_session, mpc));
    }
    let ending = Ending {
        node: Arc::clone(node),
        session: t.session,
        seal_to: admitted
            .identity
            .reveal_to_client
            .then_some(start.request.request.reveal_to)
            .flatten(),
        granted: admitted.identity.outputs.clone(),
        events: event_tx,
    };
    let inputs = &start.request.request.inputs;
    let secrets = &admitted.active.secrets;
    let backend = |b: usize, mpc, combiner| {
        let link = ItemLink {
            item: b as u32,
            combiner,
        };
        MpcBackend::new(mpc, Arc::clone(secrets), link)
    };
    if !admitted.active.manifest.cost.interactive {
        let items = sessions
            .into_iter()
            .zip(inputs)
            .enumerate()
            .map(|(b, ((_, mpc), input))| (backend(b, mpc, None), to_fields(input)))
            .collect();
        tokio::spawn(run_local(Arc::clone(&admitted.active), items, ending));
        return Ok(());
    }
    let (report_tx, report_rx) = mpsc::channel(sessions.len().max(1) * 2);
    let mut to_items = Vec::with_capacity(sessions.len());
    for ((b, (item_session, mpc)), input) in sessions.into_iter().enumerate().zip(inputs) {
        let (tx, rx) = mpsc::channel(1);
        to_items.push((item_session, tx));
        let backend = backend(b, mpc, Some((report_tx.clone(), rx)));
        let (rt, program) = (Arc::clone(&node.runtime), admitted.active.program.clone());
        let (fields, granted) = (to_fields(input), ending.granted.clone());
        let reports = report_tx.clone();
        tokio::spawn(async move {
            let (result, mut backend) = rt.run(&program, backend, fields).await;
            let done = match result {
                Ok(outputs) => deliver(&outputs, &granted, &mut backend),
                Err(e) => Err(e.to_string()),
            };
            let _ = reports.send(ItemReport::Done(b as u32, done)).await;
        });
    }
    drop(report_tx);
    tokio::spawn(combine(ending, to_items, report_rx, round_rx));
    Ok(())
}

/// An item's masked shares of the outputs its identity is granted, and their layout.
fn deliver(
    outputs: &[(String, SharedVec)],
    granted: &[String],
    backend: &mut MpcBackend<ItemLink>,
) -> Result<Delivered, String> {
    let chosen: Vec<&(String, SharedVec)> = outputs
        .iter()
        .filter(|(n, _)| granted.contains(n))
        .collect();
    let layout = chosen
        .iter()
        .map(|(n, v)| (n.clone(), v.len() as u32))
        .collect();
    let vecs: Vec<&SharedVec> = chosen.iter().map(|(_, v)| v).collect();
    backend
        .session_mut()
        .output_message(&vecs)
        .map(|m| (layout, m))
        .map_err(|e| e.to_string())
}

/// Runs a local-only program's items one after another in one instance: no rounds.
async fn run_local(
    active: Arc<crate::node::Active>,
    items: Vec<(MpcBackend<ItemLink>, Vec<Field>)>,
    ending: Ending,
) {
    let rt = Arc::clone(&ending.node.runtime);
    let outcome = match rt.run_each(&active.program, items).await {
        Ok(ran) => ran
            .into_iter()
            .enumerate()
            .map(|(b, (outputs, mut backend))| {
                deliver(&outputs, &ending.granted, &mut backend)
                    .map_err(|e| format!("item {b}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>(),
        Err(f) => Err(format!("item {}: {}", f.index, f.error)),
    };
    let outcome = match outcome {
        Ok(done) => ending.delivery(done),
        Err(e) => Err(Refusal::new(RefusalKind::SessionFailed, e)),
    };
    ending.end(outcome).await;
}

/// How a session ends, whichever way it ran: its outputs delivered (or sealed to the
/// client), the metrics, and the last event for the coordinator.
struct Ending {
    node: Arc<Node>,
    session: Digest,
    seal_to: Option<qvm_core::pairwise::KeyAgreementPublic>,
    granted: Vec<String>,
    events: mpsc::Sender<Result<SessionEvent, Refusal>>,
}

impl Ending {
    /// The delivery of every item's outputs, in the clear for the coordinator or sealed.
    fn delivery(&self, done: Vec<Delivered>) -> Result<SessionEvent, Refusal> {
        let mut items = Vec::with_capacity(done.len());
        let mut layout = Vec::new();
        for (l, m) in done {
            layout = l;
            items.push(m);
        }
        let delivery = Delivery { layout, items };
        match &self.seal_to {
            Some(to) => seal(&self.node, &self.session, to, &delivery),
            None => Ok(SessionEvent::Done(delivery)),
        }
    }

    async fn end(self, outcome: Result<SessionEvent, Refusal>) {
        match &outcome {
            Ok(_) => self.node.metrics.session_done(),
            Err(r) => {
                self.node.metrics.refused(r.kind);
                tracing::warn!(node = %self.node.name, session = %self.session, reason = %r.message, "session failed");
            }
        }
        let _ = self.events.send(outcome).await;
    }
}

/// Seals a delivery to the client (outputs the coordinator must not see).
fn seal(
    node: &Node,
    session: &Digest,
    to: &qvm_core::pairwise::KeyAgreementPublic,
    delivery: &Delivery,
) -> Result<SessionEvent, Refusal> {
    let aad = qvm_api::wire::reveal_aad(session, node.index.get())
        .map_err(|e| internal(e.to_string()))?;
    let plain = qvm_core::encoding::to_canonical(delivery).map_err(|e| internal(e.to_string()))?;
    qvm_core::ecies::seal(to, &aad, &plain, &mut rand_core::OsRng)
        .map(SessionEvent::Sealed)
        .map_err(|e| internal(e.to_string()))
}

/// Gathers the items' round messages into one event per round and routes the openings.
async fn combine(
    ending: Ending,
    to_items: Vec<(Digest, mpsc::Sender<OpenedMsg>)>,
    mut reports: mpsc::Receiver<ItemReport>,
    mut rounds: mpsc::Receiver<RoundInput>,
) {
    let n = to_items.len();
    let mut running: Vec<bool> = vec![true; n];
    let mut done: Vec<Option<Delivered>> = vec![None; n];
    let fail = |msg: String| Err(Refusal::new(RefusalKind::SessionFailed, msg));
    let outcome = loop {
        // One report from every running item.
        let mut msgs: BTreeMap<u32, ShareMsg> = BTreeMap::new();
        let mut waiting = running.iter().filter(|r| **r).count();
        let mut failed = None;
        while waiting > 0 {
            match reports.recv().await {
                Some(ItemReport::Round(b, m)) => {
                    msgs.insert(b, m);
                }
                Some(ItemReport::Done(b, Ok(out))) => {
                    running[b as usize] = false;
                    done[b as usize] = Some(out);
                }
                Some(ItemReport::Done(b, Err(e))) => {
                    running[b as usize] = false;
                    failed = Some(format!("item {b}: {e}"));
                }
                None => {
                    failed = Some("an instance vanished".into());
                    break;
                }
            }
            waiting -= 1;
        }
        if let Some(e) = failed {
            break fail(e);
        }
        if msgs.is_empty() {
            match done
                .iter_mut()
                .map(Option::take)
                .collect::<Option<Vec<_>>>()
            {
                Some(done) => break ending.delivery(done),
                None => break fail("an item produced no output".into()),
            }
        }
        if ending
            .events
            .send(Ok(SessionEvent::Round(msgs.into_values().collect())))
            .await
            .is_err()
        {
            return;
        }
        // A coordinator that never comes back: give up after the instances' deadline.
        let input = match tokio::time::timeout(ROUND_WAIT, rounds.recv()).await {
            Ok(Some(input)) => input,
            _ => {
                ending.node.sessions.remove(&ending.session);
                tracing::warn!(node = %ending.node.name, session = %ending.session, "abandoned by the coordinator");
                return;
            }
        };
        for opened in input.opened {
            match to_items.iter().find(|(s, _)| *s == opened.session) {
                Some((_, tx)) => {
                    let _ = tx.send(opened).await;
                }
                None => {
                    let _ = ending
                        .events
                        .send(fail("an opening for an unknown item".into()))
                        .await;
                    return;
                }
            }
        }
    };
    ending.end(outcome).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(
        ticket: u8,
    ) -> (
        Arc<Handle>,
        mpsc::Sender<Result<SessionEvent, Refusal>>,
        mpsc::Receiver<RoundInput>,
    ) {
        let (round_tx, round_rx) = mpsc::channel(1);
        let (event_tx, event_rx) = mpsc::channel(1);
        let h = Arc::new(Handle {
            ticket: Digest::from_bytes([ticket; 32]),
            rounds: round_tx,
            events: AsyncMutex::new(event_rx),
        });
        (h, event_tx, round_rx)
    }

    #[tokio::test]
    async fn a_session_whose_caller_goes_away_leaves_the_running_set() {
        let sessions = Sessions::default();
        let id = Digest::from_bytes([1; 32]);
        let (h, events, _rounds) = handle(7);
        sessions.insert(id, Arc::clone(&h)).expect("inserts");
        // The caller waits, then goes away before the event comes.
        let waiting = next_event(&sessions, id, &h);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
        assert!(
            sessions.get(&id).is_none(),
            "left when its caller went away"
        );
        // A round keeps the session; its end removes it.
        sessions.insert(id, Arc::clone(&h)).expect("inserts again");
        events
            .send(Ok(SessionEvent::Round(Vec::new())))
            .await
            .expect("sends");
        assert!(next_event(&sessions, id, &h).await.is_ok());
        assert!(sessions.get(&id).is_some(), "a round keeps it running");
        events
            .send(Err(Refusal::new(RefusalKind::SessionFailed, "done")))
            .await
            .expect("sends");
        assert!(next_event(&sessions, id, &h).await.is_err());
        assert!(sessions.get(&id).is_none(), "its end removes it");
    }

    #[test]
    fn a_running_id_refuses_the_same_start_as_a_replay_and_another_as_a_bad_ticket() {
        let sessions = Sessions::default();
        let id = Digest::from_bytes([2; 32]);
        let (running, _e, _r) = handle(7);
        sessions.insert(id, running).expect("inserts");
        let (same, _e2, _r2) = handle(7);
        let (other, _e3, _r3) = handle(8);
        assert_eq!(
            sessions.insert(id, same).map_err(|r| r.kind),
            Err(RefusalKind::Replay)
        );
        assert_eq!(
            sessions.insert(id, other).map_err(|r| r.kind),
            Err(RefusalKind::BadTicket)
        );
    }
}
