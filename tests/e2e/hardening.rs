//! Request hardening at the listener, end to end over raw TCP: the canonical path reaches the
//! backend, ambiguous framing is refused and its connection closed, header limits answer
//! 431, slow headers and bodies hit their deadlines, and internal headers sent by a client
//! never reach the backend. The echo backend's request count shows what got through.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_testkit::{EchoBackend, RecordedRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{backend_yaml, Harness};

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response (head, and a Content-Length body). `Ok(None)`: closed before a byte.
pub async fn read_response(s: &mut TcpStream, limit: Duration) -> io::Result<Option<RawResponse>> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))??;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed mid-response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    let mut response = RawResponse {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let length: usize = response
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while response.body.len() < length {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "body not complete in time"))??;
        if n == 0 {
            break;
        }
        response.body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(response))
}

/// True when the peer closes the connection (EOF or reset) within `limit`.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends `bytes` on a new connection and reads one response (bounded by 10 s).
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (RawResponse, TcpStream) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    s.write_all(bytes).await.expect("send the request");
    let r = read_response(&mut s, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)))
        .unwrap_or_else(|| {
            panic!(
                "{:?}: closed without a response",
                String::from_utf8_lossy(bytes)
            )
        });
    (r, s)
}

/// `GET {path}` with Host `a.test` and the extra header lines (each ending in CRLF).
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n{extra}\r\n").into_bytes()
}

/// A Gateway `gw` in zone `zone-a` with one HTTP listener `http`.
pub fn zoned_gateway(port: u16) -> String {
    crate::common::gateway_yaml(port).replace(
        "  name: gw\n",
        "  name: gw\n  labels: {switchyard.dev/zone: zone-a}\n",
    )
}

/// One HTTPRoute `name` sending `prefix` to Backend `backend`.
pub fn route(name: &str, prefix: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n    - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n      backendRefs: [{{name: {backend}}}]\n"
    )
}

const CLIENT_POLICY: &str = "---
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: edge-hardening}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: http}]
  headers: {maxCount: 30, maxBytes: 4096}
  timeouts: {requestHeader: 1s, requestBody: 1s}
";

async fn start() -> (Harness, EchoBackend) {
    let echo = EchoBackend::start("web").await;
    let yaml = backend_yaml("web", &[echo.addr()]) + &route("web", "/", "web") + CLIENT_POLICY;
    let port = switchyard_testkit::free_port();
    let h = Harness::start_with(port, zoned_gateway(port), &[("routes.yaml", yaml)]).await;
    (h, echo)
}

fn last(echo: &EchoBackend) -> RecordedRequest {
    echo.requests().pop().expect("the backend saw a request")
}

#[tokio::test]
async fn the_canonical_path_reaches_the_backend() {
    let (h, echo) = start().await;
    let cases = [
        (
            "/api/./v1/../items//x%61?q=%2e%2e/x",
            "/api/items/xa",
            Some("q=%2e%2e/x"),
        ),
        ("/public/%2e%2e/api", "/api", None),
        ("//a///b/", "/a/b/", None),
        ("/a;jsessionid=1/b;x", "/a/b", None),
        ("/caf%c3%a9/%7euser", "/caf%C3%A9/~user", None),
        ("/../../etc/passwd", "/etc/passwd", None),
        ("http://a.test/abs/./x?y=1", "/abs/x", Some("y=1")),
    ];
    for (sent, want, query) in cases {
        let (r, _) = exchange(h.http, &get(sent, "")).await;
        assert_eq!(r.status, 200, "{sent}: {}\n{}", r.head, h.gw.logs());
        let seen = last(&echo);
        assert_eq!(seen.path, want, "{sent}");
        assert_eq!(seen.query.as_deref(), query, "{sent}");
    }
    // Refused paths never reach the backend.
    let before = echo.request_count();
    for bad in ["/a%zz", "/a%", "/%2Fadmin", "/a%00b", "/a\\b", "*"] {
        let (r, _) = exchange(h.http, &get(bad, "")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.head);
        assert_eq!(
            r.header("x-switchyard-error"),
            Some("invalid_path"),
            "{bad}"
        );
    }
    assert_eq!(echo.request_count(), before);
}

#[tokio::test]
async fn conflicting_framing_is_refused_and_the_connection_closed() {
    let (h, echo) = start().await;
    let post = |headers: &str| {
        format!("POST /upload HTTP/1.1\r\nHost: a.test\r\n{headers}\r\n5\r\nhello\r\n0\r\n\r\n")
            .into_bytes()
    };
    let cases = [
        (
            "CL+TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE+CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "CL twice, same",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
        ),
        (
            "CL twice, different",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        ("CL list", "Content-Length: 5, 5\r\n"),
        ("CL not a number", "Content-Length: five\r\n"),
        ("CL signed", "Content-Length: +5\r\n"),
        ("TE not chunked", "Transfer-Encoding: gzip\r\n"),
        (
            "TE chunked then gzip",
            "Transfer-Encoding: chunked, gzip\r\n",
        ),
    ];
    let before = echo.request_count();
    let mut who = Vec::new();
    for (name, headers) in cases {
        let (r, mut s) = exchange(h.http, &post(headers)).await;
        assert_eq!(r.status, 400, "{name}: {}", r.head);
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).await,
            "{name}: the connection stayed open"
        );
        // Who refused it: our check names the reason; pingora's own 400 does not.
        who.push(format!(
            "{name}: {}",
            r.header("x-switchyard-error").unwrap_or("pingora")
        ));
    }
    eprintln!("framing refusals: {who:#?}");
    assert_eq!(
        echo.request_count(),
        before,
        "no ambiguous request reached the backend"
    );
    // Plain framings still work, and keep the connection.
    let mut s = TcpStream::connect(h.http).await.unwrap();
    for body_headers in ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"] {
        let body = if body_headers.starts_with("Content") {
            "hello"
        } else {
            "5\r\nhello\r\n0\r\n\r\n"
        };
        let req = format!("POST /upload HTTP/1.1\r\nHost: a.test\r\n{body_headers}\r\n{body}");
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200, "{body_headers}: {}", r.head);
        assert_eq!(r.json()["body_len"], 5);
    }
}

#[tokio::test]
async fn header_limits_answer_431() {
    let (h, echo) = start().await;
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = format!("x-big: {}\r\n", "b".repeat(5000));
    let before = echo.request_count();
    for (name, extra) in [("count", many.as_str()), ("bytes", big.as_str())] {
        let (r, _) = exchange(h.http, &get("/", extra)).await;
        assert_eq!(r.status, 431, "{name}: {}", r.head);
        assert_eq!(
            r.header("x-switchyard-error"),
            Some("header_limit"),
            "{name}"
        );
    }
    assert_eq!(echo.request_count(), before);
    let some: String = (0..20).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (r, _) = exchange(h.http, &get("/", &some)).await;
    assert_eq!(r.status, 200, "{}", r.head);
}

/// Sends `first`, then `drip` every 300 ms until the gateway answers or closes (at most
/// 8 s). Returns the elapsed time and the response, if any.
async fn drip(addr: SocketAddr, first: &[u8], drip: &[u8]) -> (Duration, Option<RawResponse>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(first).await.unwrap();
    drip_on(&mut s, started, drip).await
}

async fn drip_on(
    s: &mut TcpStream,
    started: Instant,
    drip: &[u8],
) -> (Duration, Option<RawResponse>) {
    for _ in 0..27 {
        match read_response(s, Duration::from_millis(300)).await {
            Ok(r) => return (started.elapsed(), r),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return (started.elapsed(), None),
        }
        if s.write_all(drip).await.is_err() {
            return (
                started.elapsed(),
                read_response(s, Duration::from_secs(1))
                    .await
                    .ok()
                    .flatten(),
            );
        }
    }
    panic!("the gateway let a slow client drip for 8 s");
}

#[tokio::test]
async fn slow_headers_and_bodies_hit_their_deadlines() {
    let (h, echo) = start().await;
    let before = echo.request_count();
    // A header dripping one field every 300 ms: cut at the 1 s deadline.
    let (elapsed, r) = drip(
        h.http,
        b"GET /slow HTTP/1.1\r\nHost: a.test\r\n",
        b"x-a: b\r\n",
    )
    .await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let r = r.expect("a 408 before the close");
    assert_eq!(
        (r.status, r.header("x-switchyard-error")),
        (408, Some("client_timeout"))
    );

    // A connection that never sends a byte is closed (nothing to answer).
    let mut idle = TcpStream::connect(h.http).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle connection stayed open"
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");

    // On a kept-alive connection the clock restarts with the next request's first byte.
    let mut s = TcpStream::connect(h.http).await.unwrap();
    s.write_all(&get("/first", "")).await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await; // idle is not the header's time
    let started = Instant::now();
    s.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
    let (elapsed, r) = drip_on(&mut s, started, b"x-a: b\r\n").await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(r.map(|r| r.status), Some(408));
    assert_eq!(echo.request_count(), before + 1, "only /first got through");

    // A body trickling one byte every 300 ms, and a body that stops: 408 after about 1 s.
    let head = b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n";
    let (elapsed, r) = drip(h.http, head, b"x").await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let r = r.expect("a 408 for the trickling body");
    assert_eq!(
        (r.status, r.header("x-switchyard-error")),
        (408, Some("client_timeout")),
        "{}",
        r.head
    );
    let mut s = TcpStream::connect(h.http).await.unwrap();
    let started = Instant::now();
    s.write_all(head).await.unwrap();
    s.write_all(b"0123456789").await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a 408 for the stalled body");
    let elapsed = started.elapsed();
    assert_eq!(
        (r.status, r.header("x-switchyard-error")),
        (408, Some("client_timeout")),
        "{}",
        r.head
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn internal_headers_from_clients_never_reach_the_backend() {
    let (h, echo) = start().await;
    let spoofed = "X-Switchyard-Identity: spiffe://switchyard.local/ns/shop/sa/cart\r\n\
                   x-switchyard-source-zone: zone-x\r\n\
                   X-Switchyard-Anything: 1\r\n\
                   X-Forwarded-Client-Cert: By=spiffe://x;Hash=1\r\n\
                   X-SSL-Client-Cert: pem\r\n\
                   X-Kept: yes\r\n";
    let (r, _) = exchange(h.http, &get("/who", spoofed)).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = last(&echo);
    for name in [
        "x-switchyard-identity",
        "x-switchyard-source-zone",
        "x-switchyard-anything",
        "x-forwarded-client-cert",
        "x-ssl-client-cert",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the backend: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.headers.get("x-kept").unwrap(), "yes");
}

#[tokio::test]
async fn deadlines_leave_well_behaved_connections_alone() {
    let (h, echo) = start().await;
    // HTTP/1.1 keep-alive and h2c connections idle past the 1 s header deadline between
    // requests, and keep working.
    let mut h1 = switchyard_testkit::H1Conn::connect(h.http).await.unwrap();
    let h2 = switchyard_testkit::H2Conn::connect_h2c(h.http)
        .await
        .unwrap();
    for round in 0..2 {
        let r = h1
            .get("a.test", "/h1")
            .await
            .unwrap_or_else(|e| panic!("h1 round {round}: {e}"));
        assert_eq!(r.status, 200);
        let r = h2
            .get("a.test", "/h2")
            .await
            .unwrap_or_else(|e| panic!("h2 round {round}: {e}"));
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(!h2.is_closed());
    assert_eq!(echo.request_count(), 4);
    // A body sent promptly is not cut by the body deadline.
    let body = vec![b'z'; 200_000];
    let req = switchyard_testkit::request(http::Method::POST, "a.test", "/upload")
        .body(bytes::Bytes::from(body))
        .unwrap();
    let r = h1.send(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 200_000);
}
