//! A backend on 127.0.0.1 whose behaviour switches at runtime (answer, fail, reset, hang,
//! truncate; crash and come back on the same port) for the gateway's resilience tests.
//!
//! It speaks HTTP/1.1 by hand rather than through hyper: resetting the socket or closing it
//! after the response head needs the raw stream, and one hand-written path lets every mode be
//! chosen per request on the same keep-alive connection.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long [`FaultyBackend::restart`] keeps retrying to bind the old port.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests whose path starts with this are health checks, answered by the health mode.
pub const HEALTH_PATH: &str = "/healthz";

/// Largest request head (request line and headers) the backend reads.
const MAX_HEAD: usize = 64 * 1024;

/// What the backend does with each request it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 200 with the backend's name as the body and `x-backend: <name>`, like the echo backend.
    #[default]
    Ok,
    /// That status (200..=599) with `x-backend` and the name as the body.
    Status(u16),
    /// Reads the request head, then resets the connection (SO_LINGER 0 and close: a TCP RST).
    Reset,
    /// Reads the request and never answers; the connection ends when the peer closes it or the
    /// backend is killed or dropped.
    Hang,
    /// Sends a 200 head with `content-length: 100`, then closes (FIN) without any body.
    CloseAfterHeaders,
}

impl Mode {
    pub(crate) fn check(self) -> Mode {
        if let Mode::Status(code) = self {
            assert!(
                (200..=599).contains(&code),
                "Mode::Status({code}): the status must be in 200..=599"
            );
        }
        self
    }
}

/// State shared by the accept loops, the connections and the [`FaultyBackend`] handle.
#[derive(Debug, Default)]
struct Shared {
    name: String,
    mode: Mutex<Mode>,
    health: Mutex<Mode>,
    requests: AtomicU64,
    health_requests: AtomicU64,
    paths: Mutex<HashMap<String, u64>>,
    connections: AtomicU64,
    open: AtomicU64,
}

impl Shared {
    /// Counts one request head and returns the mode that answers it.
    fn arrived(&self, path: &str) -> Mode {
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self
            .paths
            .lock()
            .expect("path count lock")
            .entry(path.to_string())
            .or_default() += 1;
        if path.starts_with(HEALTH_PATH) {
            self.health_requests.fetch_add(1, Ordering::SeqCst);
            *self.health.lock().expect("health mode lock")
        } else {
            *self.mode.lock().expect("mode lock")
        }
    }
}

/// Keeps [`FaultyBackend::open_connections`] right however a connection task ends (aborts too).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTP/1.1 backend whose answers follow a [`Mode`] that tests switch at runtime, with a
/// separate mode for health checks (paths starting with [`HEALTH_PATH`]). It can be killed like
/// a crashed process and restarted on the same port. Dropping it kills it.
pub struct FaultyBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl FaultyBackend {
    /// Starts serving on 127.0.0.1 (a free port) with traffic `mode` and health mode [`Mode::Ok`].
    pub async fn start(name: &str, mode: Mode) -> FaultyBackend {
        let listener =
            bind("127.0.0.1:0".parse().expect("address")).expect("bind a faulty backend");
        let addr = listener.local_addr().expect("faulty backend local address");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            mode: Mutex::new(mode.check()),
            ..Shared::default()
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        FaultyBackend {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// The name the backend puts in `x-backend` and in its bodies.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address, the same across [`FaultyBackend::restart`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets how requests outside [`HEALTH_PATH`] are answered, from the next request head read
    /// on (open keep-alive connections included).
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode lock") = mode.check();
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.lock().expect("mode lock")
    }

    /// Sets how health checks (paths starting with [`HEALTH_PATH`]) are answered; [`Mode::Ok`]
    /// until changed.
    pub fn set_health(&self, mode: Mode) {
        *self.shared.health.lock().expect("health mode lock") = mode.check();
    }

    pub fn health_mode(&self) -> Mode {
        *self.shared.health.lock().expect("health mode lock")
    }

    /// Request heads received so far, health checks included, whatever the mode.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Request heads received on paths starting with [`HEALTH_PATH`].
    pub fn health_requests(&self) -> u64 {
        self.shared.health_requests.load(Ordering::SeqCst)
    }

    /// Request heads received on other paths: [`requests`](Self::requests) minus health checks.
    pub fn traffic_requests(&self) -> u64 {
        self.requests() - self.health_requests()
    }

    /// Request heads received for exactly `path` (without the query).
    pub fn requests_by_path(&self, path: &str) -> u64 {
        let paths = self.shared.paths.lock().expect("path count lock");
        paths.get(path).copied().unwrap_or(0)
    }

    /// TCP connections accepted so far, across restarts.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TCP connections open right now.
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Whether the backend listens (started or restarted, not killed).
    pub fn is_running(&self) -> bool {
        self.task.lock().expect("task lock").is_some()
    }

    /// Stops like a crashed process: the listener closes (the port refuses and stays unbound)
    /// and every open connection is dropped. Returns once all of them are closed.
    pub async fn kill(&self) {
        let task = self.task.lock().expect("task lock").take();
        let Some(task) = task else { return };
        task.abort();
        // The accept loop owns the listener and the connection tasks; once it is gone,
        // the listener is closed and every connection task is aborted.
        let _ = task.await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Listens on the same port again, serving with the current modes. Retries the bind for
    /// up to [`REBIND_TIMEOUT`] (the port may still be held briefly); panics if it never frees
    /// up. Does nothing when the backend is running.
    pub async fn restart(&self) {
        if self.is_running() {
            return;
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match bind(self.addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "restart faulty backend {:?}: bind {} again: {e}",
                        self.shared.name, self.addr
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let task = tokio::spawn(accept_loop(listener, self.shared.clone()));
        let mut slot = self.task.lock().expect("task lock");
        if slot.is_some() {
            // Restarted concurrently by someone else: keep theirs (ours could not have bound).
            task.abort();
        } else {
            *slot = Some(task);
        }
    }
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("mode", &self.mode())
            .field("health_mode", &self.health_mode())
            .field("requests", &self.requests())
            .field("health_requests", &self.health_requests())
            .field("connections", &self.connections())
            .field("open_connections", &self.open_connections())
            .field("running", &self.is_running())
            .finish()
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// A listener with SO_REUSEADDR, so a restart can take the port back from TIME_WAIT sockets.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts until aborted; dropping the JoinSet then aborts every connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
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
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.open.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(shared.clone());
                conns.spawn(serve(stream, shared.clone(), guard));
            }
        }
    }
}

/// What the backend needs from a request head.
#[derive(Debug)]
struct Head {
    method: String,
    /// The path without the query (also for absolute-form targets).
    path: String,
    body: BodyLen,
    keep_alive: bool,
    expect_continue: bool,
}

#[derive(Debug)]
enum BodyLen {
    Fixed(u64),
    Chunked,
}

/// Serves requests on one connection until it closes, a mode ends it, or the task is aborted.
async fn serve(stream: TcpStream, shared: Arc<Shared>, _open: OpenGuard) {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    loop {
        let head = match read_head(&mut conn).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(_) => {
                let _ = conn
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                return;
            }
        };
        let mode = shared.arrived(&head.path);
        match mode {
            Mode::Reset => {
                // Closing with a zero linger sends a RST instead of a FIN; it does not block.
                let _ = conn.get_ref().set_zero_linger();
                return;
            }
            Mode::Hang => {
                // Swallow whatever else arrives until the peer goes away.
                let mut scratch = [0u8; 4096];
                while matches!(conn.read(&mut scratch).await, Ok(n) if n > 0) {}
                return;
            }
            Mode::Ok | Mode::Status(_) | Mode::CloseAfterHeaders => {}
        }
        if head.expect_continue
            && conn
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        if skip_body(&mut conn, &head.body).await.is_err() {
            return;
        }
        let name = &shared.name;
        let written = match mode {
            Mode::CloseAfterHeaders => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: {name}\r\ncontent-length: 100\r\n\r\n"
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.shutdown().await;
                return;
            }
            Mode::Status(code) => respond(&mut conn, code, name, &head).await,
            _ => respond(&mut conn, 200, name, &head).await,
        };
        if written.is_err() || !head.keep_alive {
            let _ = conn.shutdown().await;
            return;
        }
    }
}

/// Writes a complete response: `code`, `x-backend`, and `name` as the body where one is allowed.
async fn respond(
    conn: &mut BufReader<TcpStream>,
    code: u16,
    name: &str,
    head: &Head,
) -> io::Result<()> {
    let reason = StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {code} {reason}\r\nx-backend: {name}\r\n");
    let no_body = code == 204 || code == 304;
    if !no_body {
        out.push_str("content-type: text/plain\r\n");
        out.push_str(&format!("content-length: {}\r\n", name.len()));
    }
    if !head.keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !no_body && head.method != "HEAD" {
        out.push_str(name);
    }
    conn.write_all(out.as_bytes()).await?;
    conn.flush().await
}

/// Reads one request head; `Ok(None)` when the peer closed the connection between requests.
async fn read_head(conn: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut size = 0usize;
    let mut line = Vec::new();
    // The request line, after any empty lines (RFC 9112 section 2.2).
    let request_line = loop {
        line.clear();
        let n = conn.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return if size == 0 {
                Ok(None)
            } else {
                Err(bad("closed inside the request head"))
            };
        }
        size += n;
        if size > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if !text.is_empty() {
            break text;
        }
    };
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let mut head = Head {
        method: method.to_string(),
        path: path_of(target),
        body: BodyLen::Fixed(0),
        keep_alive: http11,
        expect_continue: false,
    };
    loop {
        line.clear();
        let n = conn.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(bad("closed inside the request head"));
        }
        size += n;
        if size > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(bad("malformed header line"));
        };
        let value = value.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match name.trim().to_ascii_lowercase().as_str() {
            // Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3).
            "content-length" if !matches!(head.body, BodyLen::Chunked) => {
                let len = value.parse().map_err(|_| bad("bad content-length"))?;
                head.body = BodyLen::Fixed(len);
            }
            "transfer-encoding" if has_token("chunked") => head.body = BodyLen::Chunked,
            "connection" if has_token("close") => head.keep_alive = false,
            "connection" if has_token("keep-alive") => head.keep_alive = true,
            "expect" if has_token("100-continue") => head.expect_continue = http11,
            _ => {}
        }
    }
}

/// The path of an origin-form (`/p?q`) or absolute-form (`http://h/p?q`) request target.
fn path_of(target: &str) -> String {
    let rest = match target.split_once("://") {
        Some((_, after)) => after.find('/').map_or("/", |i| &after[i..]),
        None => target,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// Reads and discards the request body.
async fn skip_body(conn: &mut BufReader<TcpStream>, body: &BodyLen) -> io::Result<()> {
    match body {
        BodyLen::Fixed(len) => discard(conn, *len).await,
        BodyLen::Chunked => {
            let mut line = Vec::new();
            loop {
                line.clear();
                if conn.read_until(b'\n', &mut line).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    break;
                }
                discard(conn, size + 2).await?; // the chunk and its CRLF
            }
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if conn.read_until(b'\n', &mut line).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if line.trim_ascii().is_empty() {
                    return Ok(());
                }
            }
        }
    }
}

async fn discard(conn: &mut BufReader<TcpStream>, len: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut (&mut *conn).take(len), &mut tokio::io::sink()).await?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
