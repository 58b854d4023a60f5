//! Test HTTP clients that keep one connection alive: HTTP/1.1, h2c, and TLS choosing h1 or h2 by ALPN.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Scheme, Uri};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::echo::version_str;
use crate::tls;

/// How long one request (send + whole body) may take before it fails with `TimedOut`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A fully read response.
#[derive(Clone)]
pub struct Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON; panics (showing the body) when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A response header as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("version", &version_str(self.version))
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}

/// `METHOD path` with a Host header: finish it with `.header(..)` and `.body(..)`.
pub fn request(method: Method, host: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
}

pub(crate) fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

pub(crate) async fn bounded<T>(
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} took over {REQUEST_TIMEOUT:?}"),
            ))
        })
}

async fn read_response(resp: http::Response<hyper::body::Incoming>) -> io::Result<Response> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(other)?.to_bytes();
    Ok(Response {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// An HTTP/1.1 connection that carries every request sent on it (keep-alive).
pub struct H1Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    local: Option<SocketAddr>,
    sent: u64,
}

impl H1Conn {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> io::Result<H1Conn> {
        let tcp = TcpStream::connect(addr).await?;
        let local = tcp.local_addr().ok();
        let _ = tcp.set_nodelay(true);
        let mut conn = Self::handshake(tcp).await?;
        conn.local = local;
        Ok(conn)
    }

    /// Speaks HTTP/1.1 over an established stream (TCP, TLS, ...).
    pub async fn handshake<I>(io: I) -> io::Result<H1Conn>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(other)?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H1Conn {
            sender,
            task,
            local: None,
            sent: 0,
        })
    }

    /// Sends `req` on this connection and reads the whole response. Without a Host header,
    /// the URI's authority is used. Fails when the server closed the connection.
    pub async fn send<B: Into<Bytes>>(&mut self, req: Request<B>) -> io::Result<Response> {
        let mut req = req.map(|b| Full::new(b.into()));
        if !req.headers().contains_key(HOST) {
            if let Some(auth) = req.uri().authority().cloned() {
                let value = HeaderValue::from_str(auth.as_str()).map_err(other)?;
                req.headers_mut().insert(HOST, value);
            }
        }
        self.sent += 1;
        let sender = &mut self.sender;
        bounded("HTTP/1.1 request", async move {
            sender.ready().await.map_err(other)?;
            read_response(sender.send_request(req).await.map_err(other)?).await
        })
        .await
    }

    /// `GET path` with `Host: host` on this connection.
    pub async fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        self.send(
            request(Method::GET, host, path)
                .body(Bytes::new())
                .map_err(other)?,
        )
        .await
    }

    /// Whether the server (or an error) closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// The client side's address (tells connections apart in server logs); None over non-TCP IO.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Requests sent on this connection so far.
    pub fn requests_sent(&self) -> u64 {
        self.sent
    }
}

impl fmt::Debug for H1Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H1Conn")
            .field("local", &self.local)
            .field("sent", &self.sent)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/2 connection; requests may be sent concurrently (`send` takes `&self`).
pub struct H2Conn {
    sender: http2::SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    scheme: Scheme,
    authority: Authority,
}

impl H2Conn {
    /// Connects over plain TCP with prior knowledge (h2c, no upgrade).
    pub async fn connect_h2c(addr: SocketAddr) -> io::Result<H2Conn> {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        Self::handshake(tcp, Scheme::HTTP, addr).await
    }

    /// Speaks HTTP/2 over an established stream; `scheme` and `addr` fill in relative URIs.
    pub async fn handshake<I>(io: I, scheme: Scheme, addr: SocketAddr) -> io::Result<H2Conn>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(other)?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = Authority::try_from(addr.to_string()).map_err(other)?;
        Ok(H2Conn {
            sender,
            task,
            scheme,
            authority,
        })
    }

    /// Sends `req` as one stream. A relative URI becomes absolute, its authority taken from
    /// the Host header (which is then dropped, as h2 carries it in `:authority`).
    pub async fn send<B: Into<Bytes>>(&self, req: Request<B>) -> io::Result<Response> {
        let mut req = req.map(|b| Full::new(b.into()));
        if req.uri().scheme().is_none() {
            let authority = match req.headers_mut().remove(HOST) {
                Some(h) => Authority::try_from(h.as_bytes()).map_err(other)?,
                None => self.authority.clone(),
            };
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| "/".parse().expect("/"));
            *req.uri_mut() = Uri::builder()
                .scheme(self.scheme.clone())
                .authority(authority)
                .path_and_query(pq)
                .build()
                .map_err(other)?;
        }
        *req.version_mut() = Version::HTTP_2;
        let mut sender = self.sender.clone();
        bounded("HTTP/2 request", async move {
            sender.ready().await.map_err(other)?;
            read_response(sender.send_request(req).await.map_err(other)?).await
        })
        .await
    }

    /// `GET path` with authority `host` on this connection.
    pub async fn get(&self, host: &str, path: &str) -> io::Result<Response> {
        self.send(
            request(Method::GET, host, path)
                .body(Bytes::new())
                .map_err(other)?,
        )
        .await
    }

    /// Whether the connection is gone (GOAWAY handled, closed or failed).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Conn")
            .field("authority", &self.authority)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS connection that speaks HTTP/2 if ALPN chose "h2", else HTTP/1.1.
#[derive(Debug)]
pub struct TlsConn {
    alpn: Option<Vec<u8>>,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    H1(H1Conn),
    H2(H2Conn),
}

impl TlsConn {
    /// Connects to `addr`, sends SNI `sni` (a DNS name or an IP), trusts only `ca_pem`, offers
    /// `alpn`, and returns the negotiated protocol with the connection.
    pub async fn connect(
        addr: SocketAddr,
        sni: &str,
        ca_pem: &str,
        alpn: &[&[u8]],
    ) -> io::Result<(Option<Vec<u8>>, TlsConn)> {
        let config = tls::client_config(ca_pem, alpn)?;
        let name = ServerName::try_from(sni.to_string()).map_err(other)?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let inner = if alpn.as_deref() == Some(b"h2".as_slice()) {
            Inner::H2(H2Conn::handshake(stream, Scheme::HTTPS, addr).await?)
        } else {
            let mut h1 = H1Conn::handshake(stream).await?;
            h1.local = local;
            Inner::H1(h1)
        };
        Ok((alpn.clone(), TlsConn { alpn, inner }))
    }

    /// Sends `req` with whichever protocol was negotiated.
    pub async fn send<B: Into<Bytes>>(&mut self, req: Request<B>) -> io::Result<Response> {
        match &mut self.inner {
            Inner::H1(c) => c.send(req).await,
            Inner::H2(c) => c.send(req).await,
        }
    }

    /// `GET path` with Host (or `:authority`) `host`.
    pub async fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        self.send(
            request(Method::GET, host, path)
                .body(Bytes::new())
                .map_err(other)?,
        )
        .await
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// True when the connection speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        matches!(self.inner, Inner::H2(_))
    }
}

/// `GET path` with `Host: host` and `headers` on a fresh HTTP/1.1 connection.
pub async fn try_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut req = request(Method::GET, host, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Bytes::new()).map_err(other)?;
    H1Conn::connect(addr).await?.send(req).await
}

/// [`try_get`] that panics with the address and path when the request fails.
pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get(addr, host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path} (Host: {host}) failed: {e}"))
}
