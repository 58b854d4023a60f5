//! A one-shot mutual-TLS HTTP/1.1 client (tokio-rustls) for mesh listeners: it trusts the given
//! roots, optionally presents a client certificate, sends one `GET` with `Connection: close`
//! and reports either the response and the server's leaf certificate, or where and why the
//! exchange failed together with every byte received (so a refusal can be shown to carry no
//! HTTP response).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{certs_from_pem, key_from_pem};

/// Bound on one whole exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client config trusting only the certificates in `roots_pem`, presenting `identity`
/// (certificate PEM, key PEM) when given, offering ALPN http/1.1.
pub fn mtls_config(roots_pem: &str, identity: Option<(&str, &str)>) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(roots_pem)? {
        roots
            .add(cert)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A response over mTLS.
#[derive(Debug, Clone)]
pub struct MtlsReply {
    pub status: u16,
    /// The raw response (head and body).
    pub text: String,
    /// The server's leaf certificate (DER).
    pub server_cert: Vec<u8>,
}

/// A failed exchange: the stage (`connect`, `handshake`, `write`, `read`), the error, and the
/// bytes received before it (empty when no response came back).
#[derive(Debug, Clone)]
pub struct MtlsFailure {
    pub stage: &'static str,
    pub error: String,
    pub received: Vec<u8>,
}

impl fmt::Display for MtlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} ({} bytes received)",
            self.stage,
            self.error,
            self.received.len()
        )
    }
}

fn fail(stage: &'static str, error: impl fmt::Display, received: Vec<u8>) -> MtlsFailure {
    MtlsFailure {
        stage,
        error: error.to_string(),
        received,
    }
}

/// `GET path` with `Host: host` over a new mTLS connection to `addr` with SNI `sni`.
pub async fn mtls_get(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
    host: &str,
    path: &str,
) -> Result<MtlsReply, MtlsFailure> {
    mtls_get_with(addr, sni, config, host, path, &[]).await
}

/// [`mtls_get`] with extra request headers.
pub async fn mtls_get_with(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<MtlsReply, MtlsFailure> {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let exchange = async {
        let name = ServerName::try_from(sni.to_string()).map_err(|e| fail("connect", e, vec![]))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| fail("connect", e, vec![]))?;
        let _ = tcp.set_nodelay(true);
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| fail("handshake", e, vec![]))?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| fail("write", e, vec![]))?;
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                // Connection: close without close_notify still delivered a whole response.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !received.is_empty() => break,
                Err(e) => return Err(fail("read", e, received)),
            }
        }
        let text = String::from_utf8_lossy(&received).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| fail("read", "no HTTP response", received.clone()))?;
        Ok(MtlsReply {
            status,
            text,
            server_cert,
        })
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail("exchange", "timed out", vec![])),
    }
}

/// Sends a plaintext HTTP/1.1 request to a TLS port and returns whatever came back (bounded).
pub async fn plaintext_get(addr: SocketAddr, host: &str) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            if received.len() > 64 * 1024 {
                break;
            }
        }
        Ok(received)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "plaintext exchange timed out"))?
}
