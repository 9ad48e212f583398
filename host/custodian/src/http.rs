//! The custodian's API (node-to-node, canonical bodies), over HTTP/2 and framed channels.
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/healthz` | liveness |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/v1/health` | → `Health` |
//! | POST | `/v1/control` | `SignedControl` → per action |
//! | POST | `/v1/packages` | `Proposal` → package id |
//! | GET | `/v1/packages/{id}/approval` | → `SignedApproval` (404 until the operator decides) |
//! | POST | `/v1/packages/{id}/certificate` | `Certificate` → () |
//! | POST | `/v1/sessions` | `StartSession` → `SessionEvent` |
//! | POST | `/v1/sessions/round` | `RoundInput` → `SessionEvent` |
//! | POST | `/v1/pool-marks` | `SignedMarksQuery` (another custodian's) → `SignedPoolMarks`: the tickets with pooled items it admitted after the cursor |
//! | GET | `/v1/channel` | upgrade to a framed channel whose calls reach the POST routes above (`qvm_node::channel`) |

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use qvm_api::marks::{SignedMarksQuery, SignedPoolMarks};
use qvm_api::wire::{
    Health, Proposal, Refusal, RefusalKind, RoundInput, SessionEvent, SignedControl, StartSession,
};
use qvm_core::encoding::Digest;
use qvm_node::http::{Bcs, CONTENT_TYPE, MAX_BODY, Reply};
use qvm_package::approval::Certificate;

use crate::node::Node;
use crate::session;

/// The router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .route("/v1/control", post(control))
        .route("/v1/packages", post(propose))
        .route("/v1/packages/{id}/approval", get(approval))
        .route("/v1/packages/{id}/certificate", post(certificate))
        .route("/v1/sessions", post(start))
        .route("/v1/sessions/round", post(round))
        .route("/v1/pool-marks", post(pool_marks))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

async fn metrics(State(node): State<Arc<Node>>) -> String {
    node.metrics.render()
}

async fn health(State(node): State<Arc<Node>>) -> Reply<Health> {
    Ok(Bcs(node.health()?))
}

async fn blocking<T: Send + 'static>(
    node: Arc<Node>,
    f: impl FnOnce(&Node) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(move || {
        let r = f(&node);
        if let Err(e) = &r {
            node.note(e);
        }
        r
    })
    .await
    .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))?
}

async fn control(State(node): State<Arc<Node>>, Bcs(msg): Bcs<SignedControl>) -> Response {
    let result = blocking(node, move |n| {
        let body = msg.open(&n.committee.coordinator, n.index.get(), &n.committee_id)?;
        n.control(body)
    })
    .await;
    match result {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(r) => qvm_node::http::refusal_response(&r),
    }
}

async fn propose(State(node): State<Arc<Node>>, Bcs(p): Bcs<Proposal>) -> Reply<Digest> {
    Ok(Bcs(blocking(node, move |n| n.propose(&p)).await?))
}

fn parse_id(id: &str) -> Result<Digest, Refusal> {
    Digest::from_hex(id).map_err(|_| Refusal::new(RefusalKind::UnknownProgram, "not a package id"))
}

async fn approval(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    let result = parse_id(&id).and_then(|id| node.approval(&id));
    match result {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Ok(None) => qvm_node::http::refusal_response(&Refusal::new(
            RefusalKind::UnknownProgram,
            "the operator has not decided on this package",
        )),
        Err(r) => qvm_node::http::refusal_response(&r),
    }
}

async fn certificate(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Bcs(cert): Bcs<Certificate>,
) -> Reply<()> {
    let id = parse_id(&id)?;
    blocking(node, move |n| n.activate(&id, &cert)).await?;
    Ok(Bcs(()))
}

async fn start(State(node): State<Arc<Node>>, Bcs(s): Bcs<StartSession>) -> Reply<SessionEvent> {
    Ok(Bcs(session::start(node, s).await?))
}

async fn round(State(node): State<Arc<Node>>, Bcs(r): Bcs<RoundInput>) -> Reply<SessionEvent> {
    Ok(Bcs(session::round(node, r).await?))
}

async fn pool_marks(
    State(node): State<Arc<Node>>,
    Bcs(query): Bcs<SignedMarksQuery>,
) -> Reply<SignedPoolMarks> {
    Ok(Bcs(blocking(node, move |n| n.pool_marks(&query)).await?))
}
