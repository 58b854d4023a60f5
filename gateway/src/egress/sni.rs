//! The SNI of a tunnelled TLS connection: the client's first flight is read (bounded in size
//! and time) and handed to rustls' server-side `Acceptor`, which parses the ClientHello; the
//! bytes are kept so they can be replayed to the upstream unchanged.

use std::io;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest ClientHello accepted (several TLS records' worth; real ones are 0.5 to 2 KiB).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Why no SNI could be read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("the client sent no complete ClientHello within {0:?}")]
    Timeout(Duration),
    #[error("the ClientHello is larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    #[error("the client closed the tunnel before a complete ClientHello")]
    Closed,
    #[error("not a TLS ClientHello: {0}")]
    NotTls(String),
    #[error("reading the ClientHello: {0}")]
    Io(#[from] io::Error),
}

/// The outcome of parsing buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A complete ClientHello, with its SNI host name if it sent one.
    Hello(Option<String>),
}

/// Parses the start of a TLS stream. Pure: the caller owns the bytes.
pub fn parse_client_hello(bytes: &[u8]) -> Result<Parsed, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = acceptor
            .read_tls(&mut rest)
            .map_err(|e| HelloError::NotTls(e.to_string()))?;
        if n == 0 {
            break;
        }
    }
    match acceptor.accept() {
        Ok(None) => Ok(Parsed::Incomplete),
        Ok(Some(accepted)) => Ok(Parsed::Hello(
            accepted.client_hello().server_name().map(str::to_string),
        )),
        Err((e, _alert)) => Err(HelloError::NotTls(e.to_string())),
    }
}

/// Reads from `stream` into `buf` (which may already hold early bytes) until it holds a
/// complete ClientHello, and returns its SNI. Everything read stays in `buf`.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Duration,
) -> Result<Option<String>, HelloError> {
    let read = async {
        loop {
            if !buf.is_empty() {
                if let Parsed::Hello(sni) = parse_client_hello(buf)? {
                    return Ok(sni);
                }
            }
            if buf.len() >= MAX_CLIENT_HELLO {
                return Err(HelloError::TooLarge);
            }
            let mut chunk = [0u8; 4096];
            let room = (MAX_CLIENT_HELLO - buf.len()).min(chunk.len());
            let n = stream.read(&mut chunk[..room]).await?;
            if n == 0 {
                return Err(HelloError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| HelloError::Timeout(deadline))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client connecting to `server_name`.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn sni_from_a_rustls_client_hello() {
        let hello = client_hello("api.payments.test");
        assert_eq!(
            parse_client_hello(&hello).unwrap(),
            Parsed::Hello(Some("api.payments.test".into()))
        );
        // Any strict prefix is incomplete, not an error.
        for cut in [1, 5, hello.len() / 2, hello.len() - 1] {
            assert_eq!(
                parse_client_hello(&hello[..cut]).unwrap(),
                Parsed::Incomplete,
                "{cut}"
            );
        }
        // A client connecting by IP sends no SNI.
        assert_eq!(
            parse_client_hello(&client_hello("127.0.0.1")).unwrap(),
            Parsed::Hello(None)
        );
        assert!(matches!(
            parse_client_hello(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HelloError::NotTls(_))
        ));
    }

    #[tokio::test]
    async fn reads_a_hello_split_across_writes() {
        let hello = client_hello("img.cdn.test");
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = hello.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in sent.chunks(100) {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client
        });
        let mut buf = Vec::new();
        let sni = read_client_hello(&mut server, &mut buf, Duration::from_secs(5)).await;
        assert_eq!(sni.unwrap().as_deref(), Some("img.cdn.test"));
        assert_eq!(buf, hello, "every byte is kept for the replay");
        let _client = writer.await.unwrap();

        // A silent client hits the deadline.
        let (_quiet, mut server) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        let e = read_client_hello(&mut server, &mut buf, Duration::from_millis(50)).await;
        assert!(matches!(e, Err(HelloError::Timeout(_))), "{e:?}");
    }
}
