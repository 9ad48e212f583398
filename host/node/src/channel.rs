//! Framed channels: node-to-node calls over an upgraded HTTP/1.1 connection.
//!
//! An MPC session is a chain of small request/answer exchanges between the coordinator and
//! each custodian of Q, one per round, so the round trip of one call bounds how fast an
//! interactive program runs. On the development machine a cleartext HTTP/2 call through
//! `reqwest` and `axum` takes 100–160 µs on loopback, a bare TCP exchange 30 µs: the rest is
//! the HTTP/2 machinery (header compression, stream and flow-control state, and several task
//! hand-offs inside the client and server connections).
//!
//! So a caller opens a channel with an HTTP/1.1 upgrade (RFC 9110 §7.8, the way WebSocket
//! does, on the same port and listener), and then sends length-prefixed frames over the
//! bare connection. Each request frame names a path and carries the same canonical body the
//! HTTP call would; the server hands it to the same router, so routing, handlers, refusals
//! and body limits are those of HTTP, and the answer frame carries the HTTP status and body.
//! A connection carries one call at a time; callers keep a small pool of idle ones.
//!
//! Frames: a 4-byte big-endian length, then the payload. Request payload: a 2-byte
//! big-endian path length, the path, the body. Answer payload: a 2-byte big-endian status,
//! the body. The upgrade token is [`PROTOCOL`].

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use qvm_api::wire::{Refusal, RefusalKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

use crate::http::{CONTENT_TYPE, MAX_BODY, refusal_response};

/// The path a channel is opened on.
pub const PATH: &str = "/v1/channel";
/// The upgrade token.
pub const PROTOCOL: &str = "qvm-frames/1";
/// How long a server keeps a channel with no request.
const SERVER_IDLE: Duration = Duration::from_secs(300);
/// How long a caller keeps an idle channel for reuse (well below [`SERVER_IDLE`]).
const CLIENT_IDLE: Duration = Duration::from_secs(60);
/// Idle channels a caller keeps per peer.
const MAX_IDLE: usize = 32;

/// `router` with [`PATH`] added: an upgrade to a channel whose frames go to `router`.
pub fn with_channel(router: Router) -> Router {
    let inner = router.clone();
    router.route(
        PATH,
        axum::routing::get(move |req: Request| open(inner.clone(), req)),
    )
}

/// Answers an upgrade request and serves the channel once the connection is handed over.
async fn open(router: Router, mut req: Request) -> Response {
    let wanted = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes()));
    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let Some(upgrade) = upgrade.filter(|_| wanted) else {
        let msg = format!("open a channel with an HTTP/1.1 upgrade to {PROTOCOL}");
        return refusal_response(&Refusal::new(RefusalKind::BadControl, msg));
    };
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => {
                if let Err(e) = serve_frames(TokioIo::new(io), router).await {
                    tracing::debug!(error = %e, "channel closed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "channel upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(PROTOCOL)),
        ],
    )
        .into_response()
}

/// Answers request frames until the caller closes the channel or leaves it idle.
async fn serve_frames<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    router: Router,
) -> io::Result<()> {
    loop {
        let frame = match tokio::time::timeout(SERVER_IDLE, read_frame(&mut io)).await {
            Ok(frame) => frame?,
            Err(_) => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        let (status, body) = match split_request(frame) {
            Ok((path, body)) => dispatch(&router, &path, body).await,
            Err(msg) => refusal_frame(RefusalKind::BadControl, msg),
        };
        write_frame(&mut io, &status.to_be_bytes(), &body).await?;
    }
}

/// The request frame's path and body.
fn split_request(mut frame: Bytes) -> Result<(String, Bytes), String> {
    if frame.len() < 2 {
        return Err("a request frame shorter than its path length".into());
    }
    let len = u16::from_be_bytes([frame[0], frame[1]]) as usize;
    if frame.len() < 2 + len {
        return Err("a request frame shorter than its path".into());
    }
    let body = frame.split_off(2 + len);
    let path = std::str::from_utf8(&frame[2..])
        .map_err(|_| "a path that is not UTF-8".to_string())?
        .to_string();
    Ok((path, body))
}

/// Runs one call through the router, as the HTTP server would.
async fn dispatch(router: &Router, path: &str, body: Bytes) -> (u16, Bytes) {
    if !path.starts_with('/') {
        return refusal_frame(RefusalKind::BadControl, "a path must start with /".into());
    }
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Body::from(body));
    let req = match req {
        Ok(r) => r,
        Err(e) => return refusal_frame(RefusalKind::BadControl, format!("bad path: {e}")),
    };
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    match axum::body::to_bytes(resp.into_body(), MAX_BODY).await {
        Ok(b) => (status, b),
        Err(e) => refusal_frame(RefusalKind::Internal, format!("answer body: {e}")),
    }
}

fn refusal_frame(kind: RefusalKind, msg: String) -> (u16, Bytes) {
    let r = Refusal::new(kind, msg);
    let status = crate::http::status(kind).as_u16();
    let body = qvm_core::encoding::to_canonical(&r).unwrap_or_default();
    (status, Bytes::from(body))
}

/// Reads one frame; `None` when the peer closed the connection between frames.
async fn read_frame<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    // The largest body plus its path or status prefix.
    if len > MAX_BODY + 2 + u16::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, over the limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(Some(Bytes::from(payload)))
}

/// Writes one frame, `head` then `body`, in one write where it fits.
async fn write_frame<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(head.len() + body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame over 4 GiB"))?;
    let mut buf = Vec::with_capacity(4 + head.len() + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(head);
    buf.extend_from_slice(body);
    io.write_all(&buf).await?;
    io.flush().await
}

/// Why a call over a channel did not get an answer.
#[derive(Debug)]
pub enum ChannelError {
    /// The peer does not offer channels (an HTTP call will do).
    Unsupported,
    /// Connecting, the upgrade, or the exchange failed.
    Broken(String),
    /// No answer within the deadline.
    Deadline(Duration),
}

type Conn = TokioIo<hyper::upgrade::Upgraded>;

/// A caller's channels to one peer: idle connections for reuse.
#[derive(Debug)]
pub struct Channels {
    /// `host:port` of the peer; `None` when its URL is not cleartext HTTP.
    authority: Option<String>,
    idle: Mutex<Vec<(Instant, Conn)>>,
    unsupported: AtomicBool,
}

/// How an exchange failed: before any byte of the answer (the request may never have
/// reached a live server, as on a connection the peer closed while it sat idle) or after.
enum Failed {
    BeforeAnswer(io::Error),
    During(io::Error),
}

impl Channels {
    /// Channels to the peer at `base` (like `http://127.0.0.1:7101`).
    pub fn new(base: &str) -> Channels {
        let authority = base
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .filter(|a| !a.is_empty());
        Channels {
            authority,
            idle: Mutex::new(Vec::new()),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Whether calls should go over channels.
    pub fn usable(&self) -> bool {
        self.authority.is_some() && !self.unsupported.load(Ordering::Relaxed)
    }

    /// POSTs `body` to `path` and waits for the answer's status and body. On an idle
    /// connection that turns out closed before anything was answered, tries once more on a
    /// fresh one; a connection whose call failed or ran out of time is dropped, never reused.
    pub async fn call(
        &self,
        path: &str,
        body: &[u8],
        deadline: Duration,
    ) -> Result<(u16, Bytes), ChannelError> {
        let path_len = u16::try_from(path.len())
            .map_err(|_| ChannelError::Broken("a path over 64 KiB".into()))?;
        let mut head = Vec::with_capacity(2 + path.len());
        head.extend_from_slice(&path_len.to_be_bytes());
        head.extend_from_slice(path.as_bytes());
        let attempt = async {
            if let Some(mut conn) = self.take_idle() {
                match exchange(&mut conn, &head, body).await {
                    Ok(answer) => {
                        self.keep(conn);
                        return Ok(answer);
                    }
                    Err(Failed::During(e)) => return Err(ChannelError::Broken(e.to_string())),
                    Err(Failed::BeforeAnswer(e)) => {
                        tracing::debug!(error = %e, "idle channel closed; opening another");
                    }
                }
            }
            let mut conn = self.open().await?;
            match exchange(&mut conn, &head, body).await {
                Ok(answer) => {
                    self.keep(conn);
                    Ok(answer)
                }
                Err(Failed::BeforeAnswer(e) | Failed::During(e)) => {
                    Err(ChannelError::Broken(e.to_string()))
                }
            }
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .map_err(|_| ChannelError::Deadline(deadline))?
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((since, conn)) = idle.pop() {
            if since.elapsed() < CLIENT_IDLE {
                return Some(conn);
            }
        }
        None
    }

    fn keep(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push((Instant::now(), conn));
        }
    }

    /// Connects and upgrades a fresh connection.
    async fn open(&self) -> Result<Conn, ChannelError> {
        let broken =
            |what: &str, e: &dyn std::fmt::Display| ChannelError::Broken(format!("{what}: {e}"));
        let authority = self.authority.as_deref().ok_or(ChannelError::Unsupported)?;
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| broken("connect", &e))?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tcp))
                .await
                .map_err(|e| broken("handshake", &e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "channel handshake connection");
            }
        });
        let req = Request::builder()
            .method(Method::GET)
            .uri(PATH)
            .header(header::HOST, authority)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, PROTOCOL)
            .body(Body::empty())
            .map_err(|e| broken("upgrade request", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| broken("upgrade", &e))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.unsupported.store(true, Ordering::Relaxed);
            tracing::info!(peer = authority, status = %resp.status(), "no channels; calling over HTTP");
            return Err(ChannelError::Unsupported);
        }
        let io = hyper::upgrade::on(resp)
            .await
            .map_err(|e| broken("upgrade", &e))?;
        Ok(TokioIo::new(io))
    }
}

/// Sends one request frame and reads its answer frame.
async fn exchange(conn: &mut Conn, head: &[u8], body: &[u8]) -> Result<(u16, Bytes), Failed> {
    write_frame(conn, head, body)
        .await
        .map_err(Failed::BeforeAnswer)?;
    let frame = match read_frame(conn).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the channel");
            return Err(Failed::BeforeAnswer(e));
        }
        Err(e) => return Err(Failed::During(e)),
    };
    if frame.len() < 2 {
        let e = io::Error::new(io::ErrorKind::InvalidData, "an answer frame with no status");
        return Err(Failed::During(e));
    }
    let status = u16::from_be_bytes([frame[0], frame[1]]);
    Ok((status, frame.slice(2..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    const WAIT: Duration = Duration::from_secs(5);

    /// A loopback listener and its base URL.
    async fn listener() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        (l, base)
    }

    /// A call that must get an answer.
    async fn ok_call(ch: &Channels, path: &str, body: &[u8]) -> (u16, Bytes) {
        ch.call(path, body, WAIT).await.expect("call")
    }

    fn echo() -> Router {
        Router::new().route("/echo", post(|b: Bytes| async move { b }))
    }

    async fn server() -> String {
        let router = echo().route(
            "/refuse",
            post(|| async {
                refusal_response(&Refusal::new(RefusalKind::RateLimited, "slow down"))
            }),
        );
        let (l, base) = listener().await;
        tokio::spawn(async move {
            let _ = axum::serve(l, with_channel(router)).await;
        });
        base
    }

    #[tokio::test]
    async fn calls_reuse_one_connection_and_keep_status() {
        let ch = Channels::new(&server().await);
        for i in 0..5u8 {
            let body = vec![i; 1000 * i as usize];
            let (status, answer) = ok_call(&ch, "/echo", &body).await;
            assert_eq!(status, 200);
            assert_eq!(&answer[..], &body[..]);
        }
        assert_eq!(ch.idle.lock().expect("lock").len(), 1);
        let (status, answer) = ok_call(&ch, "/refuse", b"").await;
        assert_eq!(status, 429);
        let r: Refusal = qvm_core::encoding::from_canonical(&answer).expect("refusal");
        assert_eq!(r.kind, RefusalKind::RateLimited);
        assert_eq!(ok_call(&ch, "/nowhere", b"").await.0, 404);
    }

    /// A server that upgrades each connection, answers one frame, and closes it.
    async fn one_frame_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let (l, base) = listener().await;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if tcp.read_exact(&mut b).await.is_err() {
                        break;
                    }
                    head.push(b[0]);
                }
                let ok = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: qvm-frames/1\r\n\r\n";
                if tcp.write_all(ok).await.is_err() {
                    continue;
                }
                if let Ok(Some(frame)) = read_frame(&mut tcp).await {
                    let (_, body) = split_request(frame).expect("request");
                    let _ = write_frame(&mut tcp, &200u16.to_be_bytes(), &body).await;
                }
            }
        });
        (base, accepted)
    }

    #[tokio::test]
    async fn a_closed_idle_channel_is_replaced_once() {
        let (base, accepted) = one_frame_server().await;
        let ch = Channels::new(&base);
        for i in 0..3u8 {
            let (status, answer) = ok_call(&ch, "/echo", &[i]).await;
            assert_eq!((status, &answer[..]), (200, &[i][..]));
        }
        // Each call after the first found its idle channel closed and opened another.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_dead_peer_and_a_hung_peer_fail_the_call() {
        let (l, base) = listener().await;
        drop(l);
        let r = Channels::new(&base).call("/echo", b"x", WAIT).await;
        assert!(matches!(r, Err(ChannelError::Broken(_))), "{r:?}");
        // Accepts but never answers the upgrade.
        let (l, base) = listener().await;
        let _hold = tokio::spawn(async move {
            let conn = l.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        let r = Channels::new(&base)
            .call("/echo", b"x", Duration::from_millis(200))
            .await;
        assert!(matches!(r, Err(ChannelError::Deadline(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_server_without_channels_is_remembered() {
        let (l, base) = listener().await;
        tokio::spawn(async move {
            let _ = axum::serve(l, echo()).await;
        });
        let ch = Channels::new(&base);
        let r = ch.call("/echo", b"x", WAIT).await;
        assert!(matches!(r, Err(ChannelError::Unsupported)), "{r:?}");
        assert!(!ch.usable());
    }

    #[tokio::test]
    async fn malformed_frames_are_refused_or_close_the_channel() {
        let ch = Channels::new(&server().await);
        let mut conn = ch.open().await.expect("open");
        // A path length longer than the frame: refused, and the channel still serves.
        write_frame(&mut conn, &[0, 9], b"/e").await.expect("write");
        let f = read_frame(&mut conn).await.expect("read").expect("frame");
        assert_eq!(u16::from_be_bytes([f[0], f[1]]), 401);
        let (status, _) = exchange(&mut conn, &[0, 5, b'/', b'e', b'c', b'h', b'o'], b"ok")
            .await
            .map_err(|_| ())
            .expect("exchange");
        assert_eq!(status, 200);
        // A length over the limit: the server closes the channel (rather than waiting for
        // 4 GiB, which would leave this read hanging until the timeout fails the test).
        conn.write_all(&u32::MAX.to_be_bytes())
            .await
            .expect("write");
        let closed = tokio::time::timeout(WAIT, read_frame(&mut conn))
            .await
            .expect("the server closes the channel");
        assert!(matches!(closed, Ok(None) | Err(_)));
    }
}
