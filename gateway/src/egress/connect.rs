//! The `switchyard.dev/EgressConnect` listener: CONNECT tunnels to allowed external TLS hosts.
//!
//! Per connection: read the request head (at most [`MAX_HEAD`] bytes within [`HEAD_DEADLINE`],
//! parsed by `httparse`); accept only `CONNECT host:port HTTP/1.1`; check `host:port` against
//! the live generation's ExternalServices (protocol TLS) and refuse with 403 `egress_denied`
//! otherwise; resolve; answer `200 Connection Established`; read the client's ClientHello and
//! require its SNI to equal the CONNECT host (a mismatch or a missing SNI closes the tunnel
//! without ever connecting upstream); then connect, replay the ClientHello and splice both
//! directions until either side closes or the tunnel idles for [`IDLE_TIMEOUT`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use switchyard_config::ExternalProtocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::resolve::Resolver;
use super::sni::read_client_hello;
use crate::live::LiveConfig;
use crate::respond::{Reason, REASON_HEADER};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Time allowed for the request head, and then for the ClientHello.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A tunnel with no bytes in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;

/// The CONNECT tunnel app, one per gateway process.
pub struct ConnectApp {
    live: Arc<LiveConfig>,
    resolver: Resolver,
}

impl ConnectApp {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        ConnectApp {
            live,
            resolver: Resolver::default(),
        }
    }
}

#[async_trait]
impl ServerApp for ConnectApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .map(|a| a.to_string())
            .unwrap_or_default();
        if let Err(e) = self.tunnel(&mut stream, &peer).await {
            debug!(client = %peer, error = %e, "CONNECT tunnel ended with an error");
        }
        let _ = stream.shutdown().await;
        // A tunnel is never reused for another request.
        None
    }
}

/// A refusal, written back as a small HTTP response before closing.
struct Refusal {
    status: u16,
    text: &'static str,
    reason: Option<Reason>,
    detail: String,
}

impl Refusal {
    fn new(status: u16, text: &'static str, reason: Option<Reason>, detail: String) -> Self {
        Refusal {
            status,
            text,
            reason,
            detail,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let body = format!("{}\n", self.detail);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.text,
            body.len()
        );
        if let Some(r) = self.reason {
            head.push_str(&format!("{REASON_HEADER}: {}\r\n", r.as_str()));
        }
        if self.status == 405 {
            head.push_str("allow: CONNECT\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// The parsed CONNECT request: target and any bytes the client sent after the head.
struct ConnectRequest {
    host: String,
    port: u16,
    early: Vec<u8>,
}

impl ConnectApp {
    async fn tunnel(&self, stream: &mut Stream, client: &str) -> io::Result<()> {
        let request = match read_head(stream).await {
            Ok(r) => r,
            Err(refusal) => {
                info!(client, status = refusal.status, reason = %refusal.detail, "CONNECT refused");
                return stream.write_all(&refusal.bytes()).await;
            }
        };
        let (host, port) = (request.host.as_str(), request.port);
        // The generation in force when the tunnel is requested decides it.
        let runtime = self.live.current();
        let allowed = runtime
            .config
            .egress
            .allow(host, port, ExternalProtocol::Tls);
        let service = match allowed {
            Ok(m) => m.service.clone(),
            Err(why) => {
                info!(client, target = %format!("{host}:{port}"), reason = %why, "CONNECT denied");
                let r = Refusal::new(403, "Forbidden", Some(Reason::EgressDenied), why);
                return stream.write_all(&r.bytes()).await;
            }
        };
        drop(runtime);
        let addr = match self.resolver.resolve(&service, host, port).await {
            Ok(a) => a,
            Err(why) => {
                warn!(client, target = %format!("{host}:{port}"), reason = %why, "CONNECT target unresolvable");
                let r = Refusal::new(502, "Bad Gateway", Some(Reason::EgressUnresolved), why);
                return stream.write_all(&r.bytes()).await;
            }
        };
        stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        stream.flush().await?;
        let mut hello = request.early;
        let sni = match read_client_hello(stream, &mut hello, HEAD_DEADLINE).await {
            Ok(sni) => sni,
            Err(e) => {
                warn!(client, target = %format!("{host}:{port}"), reason = %e, "CONNECT tunnel closed: no usable ClientHello");
                return Ok(());
            }
        };
        match sni.as_deref() {
            Some(name) if name.trim_end_matches('.').eq_ignore_ascii_case(host) => {}
            other => {
                warn!(
                    client,
                    target = %format!("{host}:{port}"),
                    sni = other.unwrap_or("-"),
                    reason = if other.is_some() { "SNI differs from the CONNECT host" } else { "no SNI in the ClientHello" },
                    "CONNECT tunnel refused"
                );
                return Ok(());
            }
        }
        let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(client, target = %format!("{host}:{port}"), %addr, error = %e, "CONNECT upstream connect failed");
                return Ok(());
            }
            Err(_) => {
                warn!(client, target = %format!("{host}:{port}"), %addr, "CONNECT upstream connect timed out");
                return Ok(());
            }
        };
        let _ = upstream.set_nodelay(true);
        upstream.write_all(&hello).await?;
        info!(client, target = %format!("{host}:{port}"), %addr, "CONNECT tunnel open");
        let started = Instant::now();
        let (up, down) = splice(stream, &mut upstream, IDLE_TIMEOUT).await;
        debug!(client, target = %format!("{host}:{port}"), to_upstream = up, to_client = down, secs = started.elapsed().as_secs_f64(), "CONNECT tunnel closed");
        Ok(())
    }
}

/// Reads and checks the request head; a refusal says what to answer.
async fn read_head(stream: &mut Stream) -> Result<ConnectRequest, Refusal> {
    let bad = |detail: String| Refusal::new(400, "Bad Request", Some(Reason::BadRequest), detail);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let read = async {
        loop {
            let mut chunk = [0u8; 2048];
            let room = (MAX_HEAD + 1 - buf.len()).min(chunk.len());
            let n = stream
                .read(&mut chunk[..room])
                .await
                .map_err(|e| bad(format!("reading the request: {e}")))?;
            if n == 0 {
                return Err(bad(
                    "the client closed the connection before a complete request head".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    return check(&req, &buf[len..]);
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                    return Err(Refusal::new(
                        431,
                        "Request Header Fields Too Large",
                        Some(Reason::BadRequest),
                        format!("the request head is larger than {MAX_HEAD} bytes"),
                    ));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(bad(format!("malformed request: {e}"))),
            }
        }
    };
    tokio::time::timeout(HEAD_DEADLINE, read)
        .await
        .map_err(|_| {
            Refusal::new(
                408,
                "Request Timeout",
                Some(Reason::BadRequest),
                format!("no complete request head within {HEAD_DEADLINE:?}"),
            )
        })?
}

fn check(req: &httparse::Request<'_, '_>, early: &[u8]) -> Result<ConnectRequest, Refusal> {
    let method = req.method.unwrap_or_default();
    if method != "CONNECT" {
        return Err(Refusal::new(
            405,
            "Method Not Allowed",
            Some(Reason::BadRequest),
            format!("this listener only accepts CONNECT host:port, not {method}"),
        ));
    }
    let bad = |detail: String| Refusal::new(400, "Bad Request", Some(Reason::BadRequest), detail);
    if req.version != Some(1) {
        return Err(bad("CONNECT must be HTTP/1.1".into()));
    }
    let target = req.path.unwrap_or_default();
    // authority-form only: host:port with an explicit port.
    if !target.contains(':') || target.contains('/') {
        return Err(bad(format!("CONNECT target {target:?} is not host:port")));
    }
    let Some((host, port)) = super::split_authority(target, 0).filter(|(_, p)| *p != 0) else {
        return Err(bad(format!("CONNECT target {target:?} is not host:port")));
    };
    Ok(ConnectRequest {
        host,
        port,
        early: early.to_vec(),
    })
}

/// Copies both directions until both are done, an error, or `idle` without traffic. Returns
/// the bytes sent each way (client to upstream, upstream to client).
async fn splice<A, B>(client: &mut A, upstream: &mut B, idle: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Activity {
        inner: client,
        last: last.clone(),
        clock,
    };
    let mut b = Activity {
        inner: upstream,
        last: last.clone(),
        clock,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let quiet_for = clock
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        let wait = idle.saturating_sub(quiet_for);
        if wait.is_zero() {
            return (0, 0);
        }
        tokio::select! {
            r = &mut copy => return r.unwrap_or((0, 0)),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A stream that records when it last read bytes, for the tunnel's idle timeout.
struct Activity<'a, S: ?Sized> {
    inner: &'a mut S,
    last: Arc<AtomicU64>,
    clock: Instant,
}

impl<S: AsyncRead + Unpin + ?Sized> AsyncRead for Activity<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.clock.elapsed().as_millis() as u64;
            self.last.store(now, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin + ?Sized> AsyncWrite for Activity<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_tunnel_is_closed() {
        let (mut client, mut client_far) = tokio::io::duplex(1024);
        let (mut upstream, mut upstream_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            splice(&mut client, &mut upstream, Duration::from_millis(200)).await
        });
        client_far.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the idle timeout closes the tunnel")
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
