//! In-process echo backend on 127.0.0.1 (HTTP/1.1 + h2c, or TLS) that records what it answers.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, Method, Version};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::certs::TestCert;
use crate::echo::{self, ConnInfo};
use crate::tls;

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// The path without the query.
    pub path: String,
    pub query: Option<String>,
    /// The Host header, or the HTTP/2 `:authority`.
    pub host: Option<String>,
    pub headers: HeaderMap,
    pub version: Version,
    pub body: Bytes,
    /// 1-based index of the TCP connection that carried it (see [`EchoBackend::connection_count`]).
    pub connection: u64,
    /// Set when the request came over TLS.
    pub tls: Option<TlsInfo>,
}

/// What the TLS handshake of a backend connection negotiated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol ("h2", "http/1.1").
    pub alpn: Option<String>,
}

/// State shared by the accept loop, the connections and the [`EchoBackend`] handle.
#[derive(Debug)]
pub(crate) struct State {
    pub name: String,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub request_count: AtomicU64,
    pub connections: AtomicU64,
}

impl State {
    pub(crate) fn record(&self, req: RecordedRequest) {
        self.request_count.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().expect("request log lock").push(req);
    }
}

/// An echo server answering every request with 200 JSON describing it (see the crate docs).
/// It stops (listener closed, connections dropped) on [`EchoBackend::shutdown`] or drop.
pub struct EchoBackend {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EchoBackend {
    /// Starts a plain-text backend (HTTP/1.1 and h2c prior knowledge on one port).
    pub async fn start(name: &str) -> EchoBackend {
        Self::spawn(name, None).await
    }

    /// Starts a TLS backend presenting `cert`, offering ALPN h2 and http/1.1.
    pub async fn start_tls(name: &str, cert: &TestCert) -> EchoBackend {
        let config = tls::server_config(&cert.cert_pem, &cert.key_pem, tls::SERVER_ALPN)
            .expect("TLS config for the echo backend from the TestCert");
        Self::spawn(name, Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn spawn(name: &str, acceptor: Option<TlsAcceptor>) -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an echo backend on 127.0.0.1:0");
        let addr = listener.local_addr().expect("echo backend local address");
        let state = Arc::new(State {
            name: name.to_string(),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let tls = acceptor.is_some();
        let task = tokio::spawn(accept_loop(listener, state.clone(), acceptor, stopped));
        EchoBackend {
            addr,
            tls,
            state,
            stop,
            task: Some(task),
        }
    }

    /// The name the backend puts in every response (`"backend"` and `x-backend`).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://` for a TLS backend).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests received so far (counted on arrival, before any `/delay`).
    pub fn request_count(&self) -> u64 {
        self.state.request_count.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .expect("request log lock")
            .clone()
    }

    /// TCP connections accepted so far (before any TLS handshake).
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests (counters keep counting).
    pub fn clear_requests(&self) {
        self.state
            .requests
            .lock()
            .expect("request log lock")
            .clear();
    }

    /// Closes the listener and every open connection (WebSockets included); the port then refuses.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Whether [`EchoBackend::shutdown`] has run.
    pub fn is_shut_down(&self) -> bool {
        self.task.is_none()
    }
}

impl fmt::Debug for EchoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoBackend")
            .field("name", &self.state.name)
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("requests", &self.request_count())
            .field("connections", &self.connection_count())
            .field("running", &self.task.is_some())
            .finish()
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts until stopped; dropping the JoinSet on exit aborts every connection.
async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    acceptor: Option<TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let conn_stop = stopped.clone();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop).map(|_| ()) => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = stream.set_nodelay(true);
                conns.spawn(serve(stream, id, state.clone(), acceptor.clone(), conn_stop.clone()));
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    id: u64,
    state: Arc<State>,
    acceptor: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    match acceptor {
        None => {
            let info = ConnInfo {
                id,
                tls: None,
                state,
                shutdown,
            };
            serve_http(stream, info).await;
        }
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let (_, session) = stream.get_ref();
            let tls = TlsInfo {
                sni: session.server_name().map(str::to_string),
                alpn: session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            };
            let info = ConnInfo {
                id,
                tls: Some(tls),
                state,
                shutdown,
            };
            serve_http(stream, info).await;
        }
    }
}

/// HTTP/1.1 (with upgrades) or HTTP/2, whichever the first bytes announce.
async fn serve_http<I>(io: I, info: ConnInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = service_fn(move |req| echo::handle(req, info.clone()));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}
