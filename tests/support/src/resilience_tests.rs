//! The faulty backend's modes and the load driver, exercised over real loopback sockets.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

use crate::*;

/// Sends `head` on a fresh TCP connection and reads until the server closes it.
async fn raw_exchange(addr: SocketAddr, head: &str) -> io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "server kept the connection"))??;
    Ok(out)
}

/// Polls `cond` every 5 ms for up to 3 s; panics with `what` if it never holds.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn ok_and_status_modes_switch_on_one_keep_alive_connection() {
    let b = FaultyBackend::start("f1", Mode::Ok).await;
    assert!(b.url().starts_with("http://127.0.0.1:"));
    let mut conn = H1Conn::connect(b.addr()).await.unwrap();
    let r = conn.get("a.test", "/x?q=1").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-backend"), Some("f1"));
    assert_eq!(r.text(), "f1");

    b.set_mode(Mode::Status(503));
    assert_eq!(b.mode(), Mode::Status(503));
    let r = conn.get("a.test", "/x").await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("x-backend"), Some("f1"));
    b.set_mode(Mode::Status(204));
    assert_eq!(conn.get("a.test", "/x").await.unwrap().status, 204);

    b.set_mode(Mode::Ok);
    // A body (fixed and chunked) is read past, so the connection stays usable.
    let post = request(Method::POST, "a.test", "/up")
        .body("hello")
        .unwrap();
    assert_eq!(conn.send(post).await.unwrap().status, StatusCode::OK);
    let head = request(Method::HEAD, "a.test", "/x")
        .body(Bytes::new())
        .unwrap();
    let r = conn.send(head).await.unwrap();
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    assert_eq!(conn.get("a.test", "/x").await.unwrap().text(), "f1");

    assert!(!conn.is_closed());
    assert_eq!(b.connections(), 1, "every mode switch on one connection");
    assert_eq!(b.requests(), 6);
    assert_eq!(b.requests_by_path("/x"), 5);
    assert_eq!(b.requests_by_path("/up"), 1);
    assert_eq!((b.traffic_requests(), b.health_requests()), (6, 0));

    let chunked = "POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n0\r\n\r\nGET /d HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let out = String::from_utf8(raw_exchange(b.addr(), chunked).await.unwrap()).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert_eq!(b.requests_by_path("/d"), 1);
    assert!(format!("{b:?}").contains("f1"));
}

#[tokio::test]
async fn reset_mode_resets_the_connection() {
    let b = FaultyBackend::start("rst", Mode::Ok).await;
    let mut conn = H1Conn::connect(b.addr()).await.unwrap();
    conn.get("a.test", "/").await.unwrap();
    b.set_mode(Mode::Reset);
    let err = conn.get("a.test", "/").await.unwrap_err();
    assert!(conn.is_closed(), "{err}");

    let err = raw_exchange(b.addr(), "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(b.requests(), 3, "heads are counted before the reset");

    b.set_mode(Mode::Ok);
    assert_eq!(
        get(b.addr(), "a.test", "/", &[]).await.status,
        StatusCode::OK
    );
    wait_until("reset connections to close", || b.open_connections() == 0).await;
}

#[tokio::test]
async fn hang_mode_answers_nothing_until_the_peer_leaves() {
    let b = FaultyBackend::start("hang", Mode::Hang).await;
    let mut conn = H1Conn::connect(b.addr()).await.unwrap();
    let waited = timeout(Duration::from_millis(300), conn.get("a.test", "/")).await;
    assert!(waited.is_err(), "no answer within 300 ms: {waited:?}");
    assert_eq!(b.requests(), 1);
    assert_eq!(b.open_connections(), 1);
    drop(conn);
    wait_until("the hung connection to close", || b.open_connections() == 0).await;
}

#[tokio::test]
async fn close_after_headers_truncates_the_body() {
    let b = FaultyBackend::start("trunc", Mode::CloseAfterHeaders).await;
    let err = try_get(b.addr(), "a.test", "/", &[]).await.unwrap_err();
    assert!(!err.to_string().is_empty());

    let out = raw_exchange(b.addr(), "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("content-length: 100\r\n"), "{out}");
    assert!(out.contains("x-backend: trunc\r\n"), "{out}");
    assert!(
        out.ends_with("\r\n\r\n"),
        "no body byte after the head: {out:?}"
    );
}

#[tokio::test]
async fn kill_refuses_and_restart_serves_on_the_same_port() {
    let b = FaultyBackend::start("phoenix", Mode::Ok).await;
    let addr = b.addr();
    let mut conn = H1Conn::connect(addr).await.unwrap();
    conn.get("a.test", "/").await.unwrap();
    let _idle = TcpStream::connect(addr).await.unwrap();
    wait_until("two open connections", || b.open_connections() == 2).await;

    b.kill().await;
    assert!(!b.is_running());
    assert_eq!(
        b.open_connections(),
        0,
        "kill waits for every connection to close"
    );
    assert!(
        conn.get("a.test", "/").await.is_err(),
        "open connection dropped"
    );
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    b.kill().await; // twice is fine

    b.set_mode(Mode::Status(502));
    b.restart().await;
    assert!(b.is_running());
    assert_eq!(b.addr(), addr);
    let r = get(addr, "a.test", "/", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-backend")),
        (502, Some("phoenix"))
    );

    // Again right away, with server-closed connections in TIME_WAIT on the port.
    b.kill().await;
    b.restart().await;
    b.restart().await; // running: nothing to do
    assert_eq!(get(addr, "a.test", "/", &[]).await.status.as_u16(), 502);
    assert_eq!(b.connections(), 4);
    assert_eq!(b.requests(), 3);
}

#[tokio::test]
async fn kill_ends_a_hanging_request_at_once() {
    let b = FaultyBackend::start("crash", Mode::Hang).await;
    let addr = b.addr();
    let pending = tokio::spawn(async move { try_get(addr, "a.test", "/slow", &[]).await });
    wait_until("the request to arrive", || b.requests() == 1).await;
    let t = Instant::now();
    b.kill().await;
    let outcome = timeout(Duration::from_secs(2), pending)
        .await
        .expect("the client sees the crash, not its own timeout")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn health_mode_is_independent_of_the_traffic_mode() {
    let b = FaultyBackend::start("hc", Mode::Ok).await;
    assert_eq!(b.health_mode(), Mode::Ok);
    b.set_health(Mode::Status(503));
    let mut conn = H1Conn::connect(b.addr()).await.unwrap();
    assert_eq!(conn.get("a.test", "/healthz").await.unwrap().status, 503);
    assert_eq!(
        conn.get("a.test", "/healthz/deep").await.unwrap().status,
        503
    );
    assert_eq!(conn.get("a.test", "/api").await.unwrap().status, 200);

    b.set_mode(Mode::Reset);
    b.set_health(Mode::Ok);
    assert_eq!(conn.get("a.test", "/healthz").await.unwrap().status, 200);
    assert!(
        conn.get("a.test", "/api").await.is_err(),
        "traffic is reset"
    );
    assert_eq!(b.health_requests(), 3);
    assert_eq!(b.traffic_requests(), 2);
    assert_eq!(b.requests_by_path("/healthz"), 2);
}

#[test]
#[should_panic(expected = "200..=599")]
fn status_mode_rejects_non_final_codes() {
    let _ = Mode::Status(101).check();
}

#[tokio::test]
async fn load_counts_echo_responses() {
    let echo = EchoBackend::start("e1").await;
    let spec = LoadSpec::new(echo.addr(), "a.test", "/x?y=1")
        .header("x-test", "load")
        .concurrency(4)
        .max_requests(200)
        .duration(Duration::from_secs(10));
    let t = Instant::now();
    let report = run_load(spec).await;
    assert!(t.elapsed() < Duration::from_secs(5), "ends at max_requests");
    assert_eq!(report.total, 200, "{report}");
    assert_eq!(report.status(200), 200);
    assert_eq!((report.errors, report.responses()), (0, 200));
    assert_eq!(report.header_name.as_deref(), Some("x-backend"));
    assert_eq!(report.header("e1"), 200);
    assert!(report.switchyard_errors.is_empty());
    assert_eq!(report.timeline.len(), 200);
    assert!(!report.timeline_truncated && !report.hit_hard_deadline);
    assert!(report.timeline.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(report
        .timeline
        .iter()
        .all(|(_, s, v)| *s == 200 && v.as_deref() == Some("e1")));

    assert_eq!(echo.request_count(), 200);
    assert_eq!(
        echo.connection_count(),
        4,
        "one keep-alive connection per worker"
    );
    let seen = &echo.requests()[0];
    assert_eq!(seen.host.as_deref(), Some("a.test"));
    assert_eq!(seen.query.as_deref(), Some("y=1"));
    assert_eq!(seen.headers["x-test"], "load");
}

#[tokio::test]
async fn load_counts_a_failing_backend() {
    let b = FaultyBackend::start("bad", Mode::Status(503)).await;
    let spec = LoadSpec::new(b.addr(), "a.test", "/")
        .concurrency(2)
        .max_requests(100);
    let report = run_load(spec).await;
    assert_eq!(report.total, 100, "{report}");
    assert_eq!(report.statuses.len(), 1);
    assert_eq!(report.status(503), 100);
    assert_eq!(report.header("bad"), 100);
    assert_eq!(b.requests(), 100);
    assert_eq!(b.connections(), 2);
}

#[tokio::test]
async fn load_counts_switchyard_error_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = n.clone();
            let service = service_fn(move |_req| {
                let odd = n.fetch_add(1, Ordering::SeqCst) % 2 == 1;
                let resp = if odd {
                    http::Response::builder()
                        .status(502)
                        .header("x-switchyard-error", "upstream-connect")
                        .header("x-pool", "p1")
                } else {
                    http::Response::builder().status(200).header("x-pool", "p2")
                };
                async move { Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap()) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    let spec = LoadSpec::new(addr, "a.test", "/")
        .record_header("x-pool")
        .max_requests(10);
    let report = run_load(spec).await;
    assert_eq!((report.status(200), report.status(502)), (5, 5), "{report}");
    assert_eq!(report.switchyard_errors["upstream-connect"], 5);
    assert_eq!((report.header("p1"), report.header("p2")), (5, 5));
    assert_eq!(
        report.timeline[1],
        (report.timeline[1].0, 502, Some("p1".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_load_holds_its_rate() {
    let echo = EchoBackend::start("paced").await;
    let spec = LoadSpec::new(echo.addr(), "a.test", "/")
        .concurrency(4)
        .rate(150.0)
        .duration(Duration::from_secs(2));
    let report = run_load(spec).await;
    assert_eq!(report.errors, 0, "{report}");
    assert!((299..=301).contains(&report.total), "{report}");
    let rate = report.send_rate().unwrap();
    assert!((rate - 150.0).abs() <= 150.0 * 0.05, "sent at {rate:.1}/s");
    for second in 0..2 {
        let from = Duration::from_secs(second);
        let n = report.between(from, from + Duration::from_secs(1)).count();
        assert!((143..=158).contains(&n), "{n} requests in second {second}");
    }
    assert!(report.elapsed < Duration::from_millis(2500), "{report}");
}

#[tokio::test]
async fn spawned_load_follows_a_mode_switch_and_stops_early() {
    let b = FaultyBackend::start("switch", Mode::Ok).await;
    let handle = spawn_load(
        LoadSpec::new(b.addr(), "a.test", "/")
            .concurrency(2)
            .duration(Duration::from_secs(30)),
    );
    wait_until("50 answers", || handle.completed() >= 50).await;
    b.set_mode(Mode::Status(503));
    let switched = handle.completed();
    wait_until("50 more answers", || handle.completed() >= switched + 50).await;
    handle.stop();
    let t = Instant::now();
    let report = handle.finish().await;
    assert!(t.elapsed() < Duration::from_secs(1), "stop ends the run");
    assert_eq!(report.errors, 0, "{report}");
    assert!(
        report.status(200) >= 50 && report.status(503) >= 48,
        "{report}"
    );
    assert_eq!(report.total, report.status(200) + report.status(503));
    assert_eq!(report.timeline.first().unwrap().1, 200);
    assert_eq!(report.timeline.last().unwrap().1, 503);
    assert_eq!(report.total, b.requests());
}

#[tokio::test]
async fn load_reports_a_crash_and_recovers_after_restart() {
    let b = FaultyBackend::start("crashy", Mode::Ok).await;
    let handle = spawn_load(
        LoadSpec::new(b.addr(), "a.test", "/")
            .concurrency(2)
            .duration(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(1)),
    );
    wait_until("20 answers", || handle.completed() >= 20).await;
    b.kill().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.restart().await;
    let back = b.requests();
    wait_until("20 answers after the restart", || b.requests() >= back + 20).await;
    handle.stop();
    let report = handle.finish().await;
    assert!(report.errors > 0, "{report}");
    assert!(
        report
            .error_kinds
            .get("ConnectionRefused")
            .copied()
            .unwrap_or(0)
            > 0,
        "{report}"
    );
    assert!(!report.error_samples.is_empty());
    assert!(report.status(200) >= 40, "{report}");
    assert_eq!(report.timeline.last().unwrap().1, 200);
    // Errors only between the kill and the restart: 200s before, errors, then 200s again.
    let statuses: Vec<u16> = report.timeline.iter().map(|e| e.1).collect();
    let first_err = statuses.iter().position(|s| *s == 0).unwrap();
    let last_err = statuses.iter().rposition(|s| *s == 0).unwrap();
    assert!(statuses[..first_err].iter().all(|s| *s == 200));
    assert!(statuses[last_err + 1..].iter().all(|s| *s == 200));
}

#[tokio::test]
async fn hanging_requests_time_out_within_the_bound() {
    let b = FaultyBackend::start("stuck", Mode::Hang).await;
    let spec = LoadSpec::new(b.addr(), "a.test", "/")
        .concurrency(2)
        .duration(Duration::from_millis(500))
        .request_timeout(Duration::from_millis(200));
    let t = Instant::now();
    let report = run_load(spec).await;
    assert!(t.elapsed() < Duration::from_millis(1500), "{report}");
    assert!(report.total >= 4, "{report}");
    assert_eq!(report.errors, report.total);
    assert_eq!(report.error_kinds["TimedOut"], report.total);
    assert!(report.statuses.is_empty());
    assert!(report.timeline.iter().all(|e| e.1 == 0 && e.2.is_none()));
    assert_eq!(b.requests(), report.total);
}
