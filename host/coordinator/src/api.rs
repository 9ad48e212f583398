//! The coordinator's client API (JSON over HTTP/1.1 or HTTP/2; a signed request may also
//! come in its canonical encoding). `docs/openapi.json` describes it; a test holds the
//! server to it.
//!
//! | method | path | |
//! |---|---|---|
//! | POST | `/v1/packages` | upload a package file (octet-stream) → `{id, program, version, state}` |
//! | GET | `/v1/packages/{id}` | a package's state and approvals so far |
//! | GET | `/v1/programs` | active programs |
//! | GET | `/v1/programs/{name}` | one program: version, schema, cost, pools |
//! | POST | `/v1/eval` | a signed request → outputs and the receipt |
//! | GET | `/v1/status` | custodians' health and pool levels |
//! | GET | `/healthz`, `/metrics` | liveness, Prometheus |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use qvm_api::request::{CANONICAL_MEDIA_TYPE, SignedRequest};
use qvm_api::wire::{Refusal, RefusalKind};
use qvm_core::encoding::{Digest, from_canonical};
use qvm_mpc::pool::PoolKind;
use qvm_package::manifest::{CostSummary, Schema};
use serde::{Deserialize, Serialize};

use crate::coordinator::Coordinator;
use crate::eval::EvalResponse;

/// A JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The refusal kind.
    pub kind: RefusalKind,
    /// What happened.
    pub message: String,
}

/// A refusal as a JSON response.
pub struct JsonRefusal(pub Refusal);

impl From<Refusal> for JsonRefusal {
    fn from(r: Refusal) -> JsonRefusal {
        JsonRefusal(r)
    }
}

impl IntoResponse for JsonRefusal {
    fn into_response(self) -> Response {
        (
            qvm_node::http::status(self.0.kind),
            Json(ApiError {
                kind: self.0.kind,
                message: self.0.message,
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, JsonRefusal>;

/// An uploaded package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// Package id.
    pub id: Digest,
    /// Program.
    pub program: String,
    /// Version.
    pub version: u64,
    /// `proposed` or `active`.
    pub state: String,
}

/// A package's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStatus {
    /// Package id.
    pub id: Digest,
    /// `proposed` or `active`.
    pub state: String,
    /// Approvals collected.
    pub approvals: usize,
    /// Approvals needed (K).
    pub needed: usize,
    /// Refusals: custodian index and reason.
    pub refusals: Vec<(u8, String)>,
}

/// An active program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// Name.
    pub name: String,
    /// Active version.
    pub version: u64,
    /// Its package id.
    pub package: Digest,
    /// Inputs and outputs.
    pub schema: Schema,
    /// Cost per evaluation.
    pub cost: CostSummary,
    /// Items available per pool: triples, bits.
    pub pools: [u64; 2],
    /// The identities of its policy and their keys (public, from the manifest).
    pub identities: Vec<(String, qvm_core::sign::VerifyingKey)>,
}

/// One custodian's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodianStatus {
    /// Index.
    pub index: u8,
    /// Healthy.
    pub healthy: bool,
    /// PRSS keys held.
    pub keyring: bool,
    /// Pool ends: triples, bits.
    pub pool_end: [u64; 2],
    /// Whether it can record new work (false: its disk or quota is full).
    pub writable: bool,
}

/// The cluster's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// K.
    pub k: u8,
    /// N.
    pub n: u8,
    /// Custodians.
    pub custodians: Vec<CustodianStatus>,
    /// Items available per pool: triples, bits.
    pub pools: [u64; 2],
    /// Active programs.
    pub programs: Vec<String>,
}

/// The router.
pub fn router(c: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/packages", post(upload))
        .route("/v1/packages/{id}", get(package))
        .route("/v1/programs", get(programs))
        .route("/v1/programs/{name}", get(program))
        .route("/v1/eval", post(eval))
        .route("/v1/status", get(status))
        .layer(DefaultBodyLimit::max(qvm_node::http::MAX_BODY))
        .with_state(c)
}

async fn metrics(State(c): State<Arc<Coordinator>>) -> String {
    c.metrics.render()
}

async fn upload(State(c): State<Arc<Coordinator>>, body: Bytes) -> ApiResult<Uploaded> {
    let (id, m) = c.upload(body.to_vec()).await?;
    let state = c.package_status(&id).map_or("proposed".into(), |s| s.0);
    Ok(Json(Uploaded {
        id,
        program: m.program,
        version: m.version,
        state,
    }))
}

async fn package(
    State(c): State<Arc<Coordinator>>,
    Path(id): Path<String>,
) -> ApiResult<PackageStatus> {
    let id = Digest::from_hex(&id)
        .map_err(|_| Refusal::new(RefusalKind::UnknownProgram, "not a package id"))?;
    let (state, approvals, refusals) = c
        .package_status(&id)
        .ok_or_else(|| Refusal::new(RefusalKind::UnknownProgram, "no such package"))?;
    Ok(Json(PackageStatus {
        id,
        state,
        approvals,
        needed: c.committee.k as usize,
        refusals,
    }))
}

fn pools(c: &Coordinator) -> [u64; 2] {
    let l = c.ledger();
    [l.available(PoolKind::Triples), l.available(PoolKind::Bits)]
}

fn program_status(c: &Coordinator, name: &str) -> Result<ProgramStatus, Refusal> {
    let a = c.active(name).ok_or_else(|| {
        Refusal::new(
            RefusalKind::UnknownProgram,
            format!("no active version of `{name}`"),
        )
    })?;
    Ok(ProgramStatus {
        name: a.manifest.program.clone(),
        version: a.manifest.version,
        package: a.id,
        schema: a.manifest.schema.clone(),
        cost: a.manifest.cost,
        pools: pools(c),
        identities: a
            .manifest
            .policy
            .identities
            .iter()
            .map(|i| (i.name.clone(), i.key))
            .collect(),
    })
}

async fn programs(State(c): State<Arc<Coordinator>>) -> ApiResult<Vec<ProgramStatus>> {
    let mut names: Vec<String> = c
        .actives()
        .iter()
        .map(|a| a.manifest.program.clone())
        .collect();
    names.sort();
    Ok(Json(
        names
            .iter()
            .map(|n| program_status(&c, n))
            .collect::<Result<_, _>>()?,
    ))
}

async fn program(
    State(c): State<Arc<Coordinator>>,
    Path(name): Path<String>,
) -> ApiResult<ProgramStatus> {
    Ok(Json(program_status(&c, &name)?))
}

async fn eval(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EvalResponse>, JsonRefusal> {
    let canonical = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == CANONICAL_MEDIA_TYPE);
    let req: SignedRequest = if canonical {
        from_canonical(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
    .map_err(|e| Refusal::new(RefusalKind::InvalidInput, format!("malformed request: {e}")))?;
    Ok(Json(c.evaluate(req).await?))
}

async fn status(State(c): State<Arc<Coordinator>>) -> (StatusCode, Json<Status>) {
    let custodians = c
        .custodians
        .iter()
        .map(|l| {
            let s = l.state();
            CustodianStatus {
                index: l.index.get(),
                healthy: s.healthy,
                keyring: s.report.as_ref().is_some_and(|r| r.keyring),
                pool_end: s.report.as_ref().map_or([0, 0], |r| r.pool_end),
                writable: s.report.as_ref().is_some_and(|r| r.writable),
            }
        })
        .collect();
    let mut programs: Vec<String> = c
        .actives()
        .iter()
        .map(|a| a.manifest.program.clone())
        .collect();
    programs.sort();
    (
        StatusCode::OK,
        Json(Status {
            k: c.committee.k,
            n: c.committee.n(),
            custodians,
            pools: pools(&c),
            programs,
        }),
    )
}
