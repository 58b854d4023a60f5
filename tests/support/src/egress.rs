//! Clients for the egress and TLS-reload tests: a raw CONNECT through a proxy (then TLS with a
//! chosen SNI inside the tunnel), and a TLS handshake that returns the certificate a server
//! presented.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::client::{other, H1Conn};
use crate::tls;

/// Bound on every step of these helpers.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's answer to a CONNECT: status, the head's text, any body, and the stream (open
/// after a 200).
#[derive(Debug)]
pub struct ConnectReply {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub stream: TcpStream,
}

impl ConnectReply {
    /// A header's value (case-insensitive name), from the head.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

async fn step<T>(
    what: &str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} took over {STEP_TIMEOUT:?}"),
            ))
        })
}

/// Sends `CONNECT target HTTP/1.1` to `proxy` and reads the reply head (and, when the proxy
/// closes after it, the body).
pub async fn connect(proxy: SocketAddr, target: &str) -> io::Result<ConnectReply> {
    let mut stream = TcpStream::connect(proxy).await?;
    let _ = stream.set_nodelay(true);
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_end = step("the CONNECT reply head", async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "proxy closed before a reply head: {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line: {head:?}"),
            )
        })?;
    let mut body = buf[head_end..].to_vec();
    if status != 200 {
        // A refusal's body: content-length bytes, else up to the close.
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        step("the refusal body", async {
            match length {
                Some(n) => {
                    while body.len() < n {
                        let mut chunk = [0u8; 1024];
                        let got = stream.read(&mut chunk).await?;
                        if got == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..got]);
                    }
                    Ok(())
                }
                None => stream.read_to_end(&mut body).await.map(|_| ()),
            }
        })
        .await?;
    }
    Ok(ConnectReply {
        status,
        head,
        body: String::from_utf8_lossy(&body).to_string(),
        stream,
    })
}

/// TLS over an established tunnel with SNI `sni`, trusting `ca_pem`, then HTTP/1.1.
pub async fn tls_http1(stream: TcpStream, sni: &str, ca_pem: &str) -> io::Result<H1Conn> {
    let config = tls::client_config(ca_pem, &[b"http/1.1"])?;
    let name = ServerName::try_from(sni.to_string()).map_err(other)?;
    let tls = step(
        "the TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await?;
    H1Conn::handshake(tls).await
}

/// Handshakes with `addr` using SNI `sni` (trusting `ca_pem`) and returns the leaf
/// certificate the server presented.
pub async fn presented_certificate(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
) -> io::Result<CertificateDer<'static>> {
    let config = tls::client_config(ca_pem, &[b"http/1.1"])?;
    let name = ServerName::try_from(sni.to_string()).map_err(other)?;
    let tcp = TcpStream::connect(addr).await?;
    let tls = step(
        "the TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no server certificate"))?;
    Ok(leaf.into_owned())
}
