//! A client of the coordinator's API (what `qvm eval`, `qvm cluster` and `qvm bench` use).

use std::time::Duration;

use anyhow::{Context, anyhow};
use qvm_api::request::{CANONICAL_MEDIA_TYPE, EvalRequest, Input, SignedRequest};
use qvm_coordinator::api::{ApiError, PackageStatus, ProgramStatus, Status, Uploaded};
use qvm_coordinator::eval::EvalResponse;
use qvm_core::sign::SigningKey;
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator refused, with a reason.
    #[error("refused ({}): {}", .0.kind.as_str(), .0.message)]
    Refused(ApiError),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The coordinator's client API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the coordinator at `base`.
    pub fn new(base: &str) -> anyhow::Result<Client> {
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    async fn answer<T: DeserializeOwned>(
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let resp = resp.context("the coordinator is unreachable")?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the answer")?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&bytes).context("decoding the answer")?);
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => Err(ClientError::Refused(e)),
            Err(_) => Err(anyhow!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)).into()),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::answer(self.http.get(format!("{}{path}", self.base)).send().await).await
    }

    /// A program's status.
    pub async fn program(&self, name: &str) -> Result<ProgramStatus, ClientError> {
        self.get(&format!("/v1/programs/{name}")).await
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/status").await
    }

    /// The coordinator's Prometheus metrics, as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    /// A package's status.
    pub async fn package(&self, id: &str) -> Result<PackageStatus, ClientError> {
        self.get(&format!("/v1/packages/{id}")).await
    }

    /// Uploads a package.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Uploaded, ClientError> {
        Self::answer(
            self.http
                .post(format!("{}/v1/packages", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes)
                .send()
                .await,
        )
        .await
    }

    /// Sends a signed request, in its canonical encoding (a batch's inputs are mostly
    /// numbers, which the coordinator decodes far faster than from JSON).
    pub async fn eval(&self, req: &SignedRequest) -> Result<EvalResponse, ClientError> {
        let body = qvm_core::encoding::to_canonical(req).context("encoding the request")?;
        Self::answer(
            self.http
                .post(format!("{}/v1/eval", self.base))
                .header(reqwest::header::CONTENT_TYPE, CANONICAL_MEDIA_TYPE)
                .body(body)
                .send()
                .await,
        )
        .await
    }
}

/// The identity of `program`'s policy that `key` speaks for.
pub fn identity_of(program: &ProgramStatus, key: &SigningKey) -> anyhow::Result<String> {
    let vk = key.verifying_key();
    program
        .identities
        .iter()
        .find(|(_, k)| *k == vk)
        .map(|(n, _)| n.clone())
        .ok_or_else(|| {
            anyhow!(
                "this key is not an identity in the policy of `{}`",
                program.name
            )
        })
}

/// A fresh signed request.
pub fn sign(
    key: &SigningKey,
    program: &ProgramStatus,
    identity: &str,
    inputs: Vec<Input>,
) -> anyhow::Result<SignedRequest> {
    sign_with(key, None, program, identity, inputs)
}

/// A fresh signed request that asks for outputs sealed to `reveal_to` where the identity's
/// policy says so.
pub fn sign_with(
    key: &SigningKey,
    reveal_to: Option<qvm_core::pairwise::KeyAgreementPublic>,
    program: &ProgramStatus,
    identity: &str,
    inputs: Vec<Input>,
) -> anyhow::Result<SignedRequest> {
    let mut nonce = vec![0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    Ok(EvalRequest {
        program: program.name.clone(),
        version: program.version,
        identity: identity.to_string(),
        inputs,
        nonce,
        issued_at: qvm_node::now_secs(),
        reveal_to,
    }
    .sign(key)?)
}

/// Opens deliveries sealed to the client (identities with `reveal_to_client`) and
/// reconstructs each input's outputs: the coordinator never saw them.
pub fn open_sealed(
    resp: &EvalResponse,
    agreement: &qvm_core::pairwise::KeyAgreementSecret,
    program: &ProgramStatus,
) -> anyhow::Result<Vec<Vec<qvm_api::request::RevealedOutput>>> {
    use std::collections::BTreeMap;

    use qvm_api::wire::{Delivery, reveal_aad};
    use qvm_core::{Fp, PartyIndex};

    let members = resp.receipt.receipt.members;
    let ticket_session = resp.receipt.receipt.session;
    let ticket = resp.receipt.receipt.ticket;
    let session_of = |b: u32| qvm_api::ticket::item_session(&ticket, b);
    let mut layout = Vec::new();
    let mut items: Vec<BTreeMap<PartyIndex, Vec<Fp>>> = Vec::new();
    for s in &resp.sealed {
        let aad = reveal_aad(&ticket_session, s.custodian)?;
        let plain = qvm_core::ecies::open(agreement, &aad, &s.ciphertext).map_err(|_| {
            anyhow!(
                "custodian {}'s delivery does not open with this key",
                s.custodian
            )
        })?;
        let d: Delivery = qvm_core::encoding::from_canonical(&plain)?;
        let from = PartyIndex::new(s.custodian as u32)?;
        if items.is_empty() {
            items = vec![BTreeMap::new(); d.items.len()];
            layout = d.layout.clone();
        }
        if d.layout != layout || d.items.len() != items.len() {
            anyhow::bail!("custodian {} delivered another layout", s.custodian);
        }
        for (b, msg) in d.items.into_iter().enumerate() {
            if msg.session != session_of(b as u32)? || msg.from != from {
                anyhow::bail!(
                    "custodian {} delivered another session's shares",
                    s.custodian
                );
            }
            items[b].insert(from, msg.masked);
        }
    }
    let scale = |name: &str| {
        program
            .schema
            .outputs
            .iter()
            .find(|o| o.name == name)
            .map_or(0, |o| o.scale)
    };
    items
        .iter()
        .map(|shares| {
            let values = qvm_mpc::output::reconstruct(members, shares)?;
            qvm_api::request::RevealedOutput::split(&layout, &values, scale)
                .ok_or_else(|| anyhow!("the delivery does not match its layout"))
        })
        .collect()
}
