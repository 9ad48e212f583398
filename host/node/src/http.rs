//! Canonical-encoding bodies for axum handlers, and refusals as responses.
//!
//! Node-to-node bodies are BCS (`application/octet-stream`): the same bytes that are hashed
//! and signed, with no second encoding to keep consistent. A refusal is a [`Refusal`] in
//! the same encoding with a status that tells the caller whose fault it was: 4xx when the
//! request is at fault (a retry elsewhere will not help), 5xx when this node is.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use qvm_api::wire::{Refusal, RefusalKind};
use qvm_core::encoding::{from_canonical, to_canonical};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest body a node accepts (a package, or a batch session's round).
pub const MAX_BODY: usize = 64 << 20;

/// The content type of canonical bodies.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// A body in the canonical encoding.
#[derive(Debug)]
pub struct Bcs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Bcs<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        from_canonical(&bytes).map(Bcs).map_err(|e| {
            refusal_response(&Refusal::new(
                RefusalKind::BadControl,
                format!("undecodable body: {e}"),
            ))
        })
    }
}

impl<T: Serialize> IntoResponse for Bcs<T> {
    fn into_response(self) -> Response {
        match to_canonical(&self.0) {
            Ok(bytes) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                bytes,
            )
                .into_response(),
            Err(e) => refusal_response(&Refusal::new(RefusalKind::Internal, e.to_string())),
        }
    }
}

/// The HTTP status of a refusal.
pub fn status(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::BadClientSignature | RefusalKind::BadControl | RefusalKind::BadTicket => {
            StatusCode::UNAUTHORIZED
        }
        RefusalKind::UnknownIdentity => StatusCode::FORBIDDEN,
        RefusalKind::UnknownProgram => StatusCode::NOT_FOUND,
        RefusalKind::NotActive
        | RefusalKind::ChainGap
        | RefusalKind::ChainFork
        | RefusalKind::ItemsUsed => StatusCode::CONFLICT,
        RefusalKind::Expired | RefusalKind::InvalidInput => StatusCode::BAD_REQUEST,
        RefusalKind::Replay => StatusCode::CONFLICT,
        RefusalKind::BudgetExhausted => StatusCode::PAYMENT_REQUIRED,
        RefusalKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RefusalKind::PoolDry | RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RefusalKind::Storage | RefusalKind::SessionFailed | RefusalKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal as a canonical-encoding response.
pub fn refusal_response(r: &Refusal) -> Response {
    let body = to_canonical(r).unwrap_or_default();
    (
        status(r.kind),
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

/// A handler's result: a canonical body or a refusal.
pub type Reply<T> = Result<Bcs<T>, Refused>;

/// A refusal, as a handler error.
#[derive(Debug)]
pub struct Refused(pub Refusal);

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        Refused(r)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refusal_response(&self.0)
    }
}

/// Binds a listener whose connections have `TCP_NODELAY` set: round messages are small
/// and latency-bound, and Nagle's algorithm with delayed ACKs would hold them for tens of
/// milliseconds.
pub async fn listen(
    addr: std::net::SocketAddr,
) -> std::io::Result<impl axum::serve::Listener<Addr = std::net::SocketAddr>> {
    use axum::serve::ListenerExt;
    Ok(tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    }))
}

/// Serves `router` on `addr` (HTTP/1.1 and cleartext HTTP/2, `TCP_NODELAY`) until
/// `shutdown` resolves.
pub async fn serve(
    addr: std::net::SocketAddr,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = listen(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// The Prometheus text exposition of a registry.
pub fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
