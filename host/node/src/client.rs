//! The client between nodes: framed channels for calls ([`crate::channel`]), cleartext
//! HTTP/2 with prior knowledge for reads and as the fallback (on the private network between
//! them; one HTTP/2 connection per peer, multiplexed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use qvm_api::wire::{Refusal, RefusalKind};
use qvm_core::encoding::{from_canonical, to_canonical};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{ChannelError, Channels};
use crate::http::CONTENT_TYPE;

/// Why a call to another node failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The peer answered with a refusal.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The peer could not be reached, hung past the deadline, or broke the connection.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered something undecodable.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl CallError {
    /// The refusal, if the peer refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            CallError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// A client for one peer: POSTs go over framed channels ([`crate::channel`]) when the peer
/// offers them, over HTTP/2 otherwise; GETs go over HTTP/2.
#[derive(Debug, Clone)]
pub struct Peer {
    base: String,
    http: reqwest::Client,
    channels: Arc<Channels>,
}

/// A shared HTTP/2 client (connection pool) for calling peers.
pub fn http_client() -> Result<reqwest::Client, CallError> {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| CallError::Unreachable(e.to_string()))
}

impl Peer {
    /// A peer at `base` (like `http://127.0.0.1:7101`).
    pub fn new(base: &str, http: reqwest::Client) -> Peer {
        let base = base.trim_end_matches('/').to_string();
        Peer {
            channels: Arc::new(Channels::new(&base)),
            base,
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs a canonical body, with a deadline for the answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        deadline: Duration,
    ) -> Result<T, CallError> {
        let bytes = to_canonical(body).map_err(|e| CallError::BadAnswer(e.to_string()))?;
        self.post_encoded(path, bytes.into(), deadline).await
    }

    /// POSTs a body already in its canonical encoding: one encoding sent to several
    /// peers.
    pub async fn post_encoded<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
        deadline: Duration,
    ) -> Result<T, CallError> {
        if self.channels.usable() {
            match self.channels.call(path, &bytes, deadline).await {
                Ok((status, answer)) => return decode(status, &answer),
                Err(ChannelError::Broken(e)) => return Err(CallError::Unreachable(e)),
                Err(ChannelError::Deadline(d)) => {
                    return Err(CallError::Unreachable(format!("no answer within {d:?}")));
                }
                Err(ChannelError::Unsupported) => {}
            }
        }
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(bytes)
            .timeout(deadline);
        answer(req.send().await).await
    }

    /// GETs a canonical body, with a deadline.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        deadline: Duration,
    ) -> Result<T, CallError> {
        let req = self.http.get(format!("{}{path}", self.base));
        answer(req.timeout(deadline).send().await).await
    }

    /// POSTs a canonical body over HTTP and reads an answer of at most `max` bytes, with
    /// a deadline: for answers from a peer that may be hostile, which could otherwise send
    /// until the deadline.
    pub async fn post_capped<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        deadline: Duration,
        max: usize,
    ) -> Result<T, CallError> {
        let bytes = to_canonical(body).map_err(|e| CallError::BadAnswer(e.to_string()))?;
        let mut resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(bytes)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let too_long = || CallError::BadAnswer(format!("an answer longer than {max} bytes"));
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CallError::Unreachable(error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk);
        }
        decode(status, &bytes)
    }
}

async fn answer<T: DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, CallError> {
    let resp = sent.map_err(|e| CallError::Unreachable(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Unreachable(error_chain(&e)))?;
    decode(status, &bytes)
}

/// An answer: a canonical body on success, else a refusal.
fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, CallError> {
    if (200..300).contains(&status) {
        return from_canonical(bytes).map_err(|e| CallError::BadAnswer(e.to_string()));
    }
    match from_canonical::<Refusal>(bytes) {
        Ok(r) => Err(CallError::Refused(r)),
        Err(_) => Err(CallError::Refused(Refusal::new(
            RefusalKind::Internal,
            format!("HTTP {status}"),
        ))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;

    use super::*;

    /// A server whose `/bytes/{n}` answers a canonical byte string of `n` bytes.
    async fn server() -> String {
        let router = Router::new().route(
            "/bytes/{n}",
            post(
                |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                    to_canonical(&vec![7u8; n]).expect("encodes")
                },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(l, router).await;
        });
        base
    }

    #[tokio::test]
    async fn a_capped_post_cuts_off_a_long_answer() {
        let peer = Peer::new(&server().await, http_client().expect("client"));
        let wait = Duration::from_secs(5);
        let small: Vec<u8> = peer
            .post_capped("/bytes/1000", &(), wait, 4096)
            .await
            .expect("a short answer is read");
        assert_eq!(small.len(), 1000);
        let long = peer
            .post_capped::<_, Vec<u8>>("/bytes/1000000", &(), wait, 65_536)
            .await;
        assert!(matches!(long, Err(CallError::BadAnswer(_))), "{long:?}");
        // The same answer with room for it.
        let whole: Vec<u8> = peer
            .post_capped("/bytes/1000000", &(), wait, 2 << 20)
            .await
            .expect("read whole");
        assert_eq!(whole.len(), 1_000_000);
    }
}
