//! Resilience end to end: the real gateway in front of [`FaultyBackend`]s that fail on cue.
//! Outlier ejection and its half-open readmission (with measured timings), retries that hide a
//! dying endpoint, the retry budget in a full outage, circuit-breaker overflow, active HTTP and
//! TCP health checks, state that survives a reload, and request / per-try timeouts.
//!
//! Every wait has a deadline and every load run is bounded by a request count and a duration.
//! Tolerances are generous (the CI machine has two noisy cores) but each bound still separates
//! the behaviour under test from its absence.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_testkit::{spawn_load, try_get, FaultyBackend, H1Conn, LoadSpec, Mode};
use tokio::task::JoinHandle;

use crate::common::{backend_ref, backend_yaml, Harness};

// ---------------------------------------------------------------------------------------------
// YAML builders

/// An HTTPRoute `name` for `host` with one rule to `backend`; `rule` lines are added to the rule
/// (e.g. `retry: {...}`, `timeouts: {...}`).
fn route(name: &str, host: &str, backend: &str, rule: &[&str]) -> String {
    let mut s = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n    - backendRefs: [{}]\n",
        backend_ref(backend, 1)
    );
    for line in rule {
        s.push_str("      ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// A BackendPolicy on Backend `backend`; `spec` lines go under `spec:` (two-space indent).
fn backend_policy(backend: &str, spec: &[&str]) -> String {
    let mut s = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: {backend}-policy}}\nspec:\n  targetRefs: [{{group: switchyard.dev, kind: Backend, name: {backend}}}]\n"
    );
    for line in spec {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// A TrafficPolicy on HTTPRoute `route`; `spec` lines go under `spec:` (two-space indent).
fn traffic_policy(route: &str, spec: &[&str]) -> String {
    let mut s = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {route}-traffic}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]\n"
    );
    for line in spec {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn addrs(backends: &[&FaultyBackend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr()).collect()
}

// ---------------------------------------------------------------------------------------------
// Clients and waits

/// One request's fate as a sequential client saw it.
#[derive(Debug, Clone)]
struct Hit {
    sent: Instant,
    done: Instant,
    /// 0 for a transport error.
    status: u16,
    backend: Option<String>,
    error_reason: Option<String>,
    error: Option<String>,
}

impl Hit {
    fn from(&self, name: &str) -> bool {
        self.backend.as_deref() == Some(name)
    }
}

/// A sequential client on one keep-alive connection, reconnecting when the gateway closes it.
struct Seq {
    addr: SocketAddr,
    host: String,
    conn: Option<H1Conn>,
}

impl Seq {
    fn new(addr: SocketAddr, host: &str) -> Seq {
        Seq {
            addr,
            host: host.to_string(),
            conn: None,
        }
    }

    async fn get(&mut self, path: &str) -> Hit {
        let sent = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            if self.conn.as_ref().is_none_or(H1Conn::is_closed) {
                self.conn = Some(H1Conn::connect(self.addr).await?);
            }
            self.conn
                .as_mut()
                .expect("connected")
                .get(&self.host, path)
                .await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no response within 5 s")));
        let done = Instant::now();
        match outcome {
            Ok(r) => {
                let closing = r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if closing {
                    self.conn = None;
                }
                Hit {
                    sent,
                    done,
                    status: r.status.as_u16(),
                    backend: r.header("x-backend").map(str::to_string),
                    error_reason: r.header("x-switchyard-error").map(str::to_string),
                    error: None,
                }
            }
            Err(e) => {
                self.conn = None;
                Hit {
                    sent,
                    done,
                    status: 0,
                    backend: None,
                    error_reason: None,
                    error: Some(e.to_string()),
                }
            }
        }
    }

    /// Sends requests back to back for `span` (at most `max`), returning every hit.
    async fn run_for(&mut self, span: Duration, max: usize) -> Vec<Hit> {
        let end = Instant::now() + span;
        let mut hits = Vec::new();
        while Instant::now() < end && hits.len() < max {
            hits.push(self.get("/").await);
        }
        hits
    }
}

/// Polls `cond` every 10 ms until it holds; panics with `what` and the logs after `timeout`.
async fn wait_until(h: &Harness, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n--- gateway logs ---\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Gateway log lines containing both `message` and `addr`.
fn log_lines(h: &Harness, message: &str, addr: SocketAddr) -> Vec<String> {
    let addr = addr.to_string();
    h.gw.logs()
        .lines()
        .filter(|l| l.contains(message) && l.contains(&addr))
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until the gateway logged `message` about `addr`.
async fn wait_log(h: &Harness, message: &str, addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while log_lines(h, message, addr).is_empty() {
        assert!(
            Instant::now() < deadline,
            "gateway never logged {message:?} for {addr} within {timeout:?}\n--- gateway logs ---\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a GET on its own connection that is expected to hang; resolves to its status (0 on a
/// transport error), bounded at 15 s.
fn hanging_get(addr: SocketAddr, host: &'static str) -> JoinHandle<(u16, Option<String>)> {
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(15), try_get(addr, host, "/hang", &[])).await
        {
            Ok(Ok(r)) => (
                r.status.as_u16(),
                r.header("x-switchyard-error").map(str::to_string),
            ),
            _ => (0, None),
        }
    })
}

/// `GET /` on a fresh connection, failing the test when no response comes within 3 s.
async fn get_within(h: &Harness, host: &str) -> switchyard_testkit::Response {
    match tokio::time::timeout(Duration::from_secs(3), try_get(h.http, host, "/", &[])).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("GET {host}/: {e}\n{}", h.gw.logs()),
        Err(_) => panic!("GET {host}/: no response within 3 s\n{}", h.gw.logs()),
    }
}

/// The generation the gateway serves.
async fn generation(h: &Harness) -> u64 {
    h.gw.config().await["generation"]
        .as_u64()
        .expect("/config has a numeric generation")
}

fn summary(hits: &[Hit]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for hit in hits {
        let key = format!(
            "{} {} {}",
            hit.status,
            hit.backend.as_deref().unwrap_or("-"),
            hit.error_reason
                .as_deref()
                .or(hit.error.as_deref())
                .unwrap_or("")
        );
        *counts.entry(key).or_default() += 1;
    }
    format!("{counts:?}")
}

// ---------------------------------------------------------------------------------------------
// 1. Outlier detection

/// Three endpoints, one answering 503. After its third 503 in a row it is ejected for
/// `baseEjectionTime` (1 s): no traffic; then one half-open trial, which (the endpoint being
/// fixed) readmits it. Failing again, its second ejection lasts 2 × base.
#[tokio::test(flavor = "multi_thread")]
async fn outlier_ejection_readmission_and_doubling() {
    let a = FaultyBackend::start("a", Mode::Ok).await;
    let b = FaultyBackend::start("b", Mode::Ok).await;
    let c = FaultyBackend::start("c", Mode::Status(503)).await;
    let backends = [
        backend_yaml("pool", &addrs(&[&a, &b, &c])),
        backend_policy(
            "pool",
            &[
                "loadBalancer: {type: RoundRobin}",
                "outlierDetection: {consecutive5xx: 3, consecutiveGatewayErrors: 0, interval: 60s, baseEjectionTime: 1s, maxEjectionTime: 10s, maxEjectionPercent: 50}",
            ],
        ),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route("outlier", "outlier.test", "pool", &[])),
    ])
    .await;
    let mut seq = Seq::new(h.http, "outlier.test");
    let start = Instant::now();

    // Phase 1: round robin reaches c; its third 503 in a row ejects it.
    let mut hits = Vec::new();
    let first_ejection = loop {
        assert!(
            start.elapsed() < Duration::from_secs(5) && hits.len() < 200,
            "c never answered three times: {}",
            summary(&hits)
        );
        let hit = seq.get("/").await;
        hits.push(hit.clone());
        if hit.from("c") {
            assert_eq!(hit.status, 503, "{hit:?}");
            if c.traffic_requests() == 3 {
                // The request that carried the third 503 was sent before the ejection.
                break hit.sent;
            }
        } else {
            assert_eq!(hit.status, 200, "a and b answer 200: {hit:?}");
        }
    };
    assert_eq!(c.traffic_requests(), 3);
    // Fixed now, but ejected: it must see nothing until the ejection time has passed.
    c.set_mode(Mode::Ok);

    // Phase 2: load until c gets a request again (its half-open trial).
    let mut during = Vec::new();
    let trial = loop {
        assert!(
            first_ejection.elapsed() < Duration::from_secs(4) && during.len() < 20_000,
            "c never got its half-open trial: {}\n{}",
            summary(&during),
            h.gw.logs()
        );
        let hit = seq.get("/").await;
        during.push(hit.clone());
        if hit.from("c") {
            break hit;
        }
        assert_eq!(hit.status, 200, "{hit:?}");
    };
    let out_for = trial.done - first_ejection;
    let quiet: Vec<&Hit> = during
        .iter()
        .filter(|hit| hit.sent - first_ejection < Duration::from_millis(800))
        .collect();
    assert!(
        quiet.len() >= 20,
        "too little load while ejected to show anything: {}",
        quiet.len()
    );
    assert!(
        quiet.iter().all(|hit| !hit.from("c")),
        "c served while ejected"
    );
    assert_eq!(
        trial.status, 200,
        "the trial reaches the fixed endpoint: {trial:?}"
    );
    assert_eq!(c.traffic_requests(), 4, "one trial request, not a burst");
    assert!(
        out_for >= Duration::from_millis(1000) && out_for <= Duration::from_millis(1600),
        "first ejection lasted {out_for:?}, expected 1.0 s (+0.6 s slack)\n{}",
        h.gw.logs()
    );

    // Phase 3: the successful trial readmitted it: round robin gives it its share again.
    let after = seq.run_for(Duration::from_secs(5), 60).await;
    let c_share = after.iter().filter(|hit| hit.from("c")).count();
    assert!(
        after.iter().all(|hit| hit.status == 200),
        "{}",
        summary(&after)
    );
    assert!(
        c_share >= 15,
        "c readmitted into round robin: {}",
        summary(&after)
    );
    assert!(
        !log_lines(&h, "outlier detection: endpoint readmitted", c.addr()).is_empty(),
        "readmission is logged\n{}",
        h.gw.logs()
    );

    // Phase 4: failing again, three 503s eject it for the second time: 2 × base.
    c.set_mode(Mode::Status(503));
    let before = c.traffic_requests();
    let mut again = Vec::new();
    let phase4 = Instant::now();
    let second_ejection = loop {
        assert!(
            again.len() < 200 && phase4.elapsed() < Duration::from_secs(3),
            "c never failed three more times: {}",
            summary(&again)
        );
        let hit = seq.get("/").await;
        again.push(hit.clone());
        if hit.from("c") && c.traffic_requests() == before + 3 {
            assert_eq!(hit.status, 503);
            break hit.sent;
        }
    };
    let mut during = Vec::new();
    let trial = loop {
        assert!(
            second_ejection.elapsed() < Duration::from_secs(5) && during.len() < 40_000,
            "c never got its second trial: {}\n{}",
            summary(&during),
            h.gw.logs()
        );
        let hit = seq.get("/").await;
        during.push(hit.clone());
        if hit.from("c") {
            break hit;
        }
        assert_eq!(hit.status, 200, "{hit:?}");
    };
    let out_again = trial.done - second_ejection;
    assert_eq!(
        trial.status, 503,
        "the trial meets the still-failing endpoint"
    );
    assert!(
        out_again >= Duration::from_millis(2000) && out_again <= Duration::from_millis(2600),
        "second ejection lasted {out_again:?}, expected 2 × 1 s (+0.6 s slack)\n{}",
        h.gw.logs()
    );

    // The failed trial ejects it again at once (for 3 s): no traffic for the next 0.5 s.
    let traffic = c.traffic_requests();
    let tail = seq.run_for(Duration::from_millis(500), 10_000).await;
    assert!(tail.len() >= 10, "{}", summary(&tail));
    assert!(
        tail.iter().all(|hit| hit.status == 200 && !hit.from("c")),
        "{}",
        summary(&tail)
    );
    assert_eq!(c.traffic_requests(), traffic);
    let ejections = log_lines(&h, "outlier detection: endpoint ejected", c.addr());
    assert_eq!(
        ejections.len(),
        3,
        "three ejections of c logged: {ejections:#?}"
    );
    println!(
        "outlier: first ejection {:.3} s (base 1 s), second {:.3} s (2 × base)",
        out_for.as_secs_f64(),
        out_again.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. An endpoint dies under load

/// Idempotent GETs at concurrency 8 while one of three endpoints is killed: retries (connect
/// failure, reset, 502-504) hide the failure from every client and outlier detection takes the
/// dead endpoint out of rotation, so once back on its port it still gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn killing_an_endpoint_under_load_fails_no_idempotent_request() {
    let a = FaultyBackend::start("a", Mode::Ok).await;
    let b = FaultyBackend::start("b", Mode::Ok).await;
    let c = FaultyBackend::start("c", Mode::Ok).await;
    let backends = [
        backend_yaml("pool", &addrs(&[&a, &b, &c])),
        backend_policy(
            "pool",
            &["outlierDetection: {consecutiveGatewayErrors: 2, baseEjectionTime: 30s, maxEjectionPercent: 50}"],
        ),
    ]
    .concat();
    let routes = [
        route(
            "dies",
            "dies.test",
            "pool",
            &["retry: {attempts: 2, codes: [502, 503, 504]}"],
        ),
        traffic_policy(
            "dies",
            &["retry: {on: [connect-failure, reset, retriable-status-codes]}"],
        ),
    ]
    .concat();
    let h = Harness::start(&[("backends.yaml", backends), ("route.yaml", routes)]).await;

    let load = spawn_load(
        LoadSpec::new(h.http, "dies.test", "/")
            .concurrency(8)
            .duration(Duration::from_secs(4))
            .max_requests(400_000)
            .request_timeout(Duration::from_secs(3)),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while load.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let served_before_kill = c.traffic_requests();
    c.kill().await;
    let killed_at = load.elapsed();
    wait_log(
        &h,
        "outlier detection: endpoint ejected",
        c.addr(),
        Duration::from_secs(2),
    )
    .await;
    // Back on its port but still ejected (30 s): it must get nothing for the rest of the run.
    let deadline = Instant::now() + Duration::from_secs(5);
    while load.elapsed() < Duration::from_secs(2) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.restart().await;
    let restarted_at = load.elapsed();
    let (conns, reqs) = (c.connections(), c.traffic_requests());
    let report = load.finish().await;

    println!("endpoint death under load: {report}; c killed at {killed_at:?}");
    assert!(!report.hit_hard_deadline, "{report}");
    assert_eq!(report.errors, 0, "transport errors: {report}");
    assert_eq!(
        report.status(200),
        report.total,
        "every GET succeeds: {report}\n{}",
        h.gw.logs()
    );
    assert!(
        report.total >= 200,
        "too little load to show anything: {report}"
    );
    assert!(
        served_before_kill > 20,
        "c served its share before dying: {served_before_kill}"
    );
    assert_eq!(
        (c.connections(), c.traffic_requests()),
        (conns, reqs),
        "the ejected endpoint got traffic after coming back"
    );
    let late_c = report
        .timeline
        .iter()
        .filter(|(at, _, backend)| *at >= killed_at && backend.as_deref() == Some("c"))
        .count();
    assert_eq!(late_c, 0, "responses from c sent after it was killed");
    let after_restart: Vec<_> = report
        .between(restarted_at, Duration::from_secs(10))
        .collect();
    assert!(
        after_restart.len() > 50,
        "load went on after the restart: {}",
        after_restart.len()
    );
    assert!(report.header("a") > 0 && report.header("b") > 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Retry budget

/// Every endpoint answers 503 and the rule allows 3 retries; the backend's retry budget
/// (20% of requests + 5/s over a 10 s window) caps the extra load. A second backend with an
/// effectively unlimited budget shows what the same rule does without it (3 retries each).
#[tokio::test(flavor = "multi_thread")]
async fn retry_budget_caps_extra_load_in_a_full_outage() {
    let x1 = FaultyBackend::start("x1", Mode::Status(503)).await;
    let x2 = FaultyBackend::start("x2", Mode::Status(503)).await;
    let y1 = FaultyBackend::start("y1", Mode::Status(503)).await;
    let y2 = FaultyBackend::start("y2", Mode::Status(503)).await;
    let backends = [
        backend_yaml("down", &addrs(&[&x1, &x2])),
        backend_policy(
            "down",
            &["retryBudget: {ratio: 20, minRetriesPerSecond: 5, window: 10s}"],
        ),
        backend_yaml("down-free", &addrs(&[&y1, &y2])),
        backend_policy(
            "down-free",
            &["retryBudget: {ratio: 100, minRetriesPerSecond: 1000000, window: 10s}"],
        ),
    ]
    .concat();
    let rule = ["retry: {attempts: 3, codes: [503]}"];
    let routes = [
        route("budget", "budget.test", "down", &rule),
        route("free", "free.test", "down-free", &rule),
    ]
    .concat();
    let h = Harness::start(&[("backends.yaml", backends), ("route.yaml", routes)]).await;

    let spec = |host: &str, secs: u64| {
        LoadSpec::new(h.http, host, "/")
            .concurrency(4)
            .duration(Duration::from_secs(secs))
            .max_requests(100_000)
            .request_timeout(Duration::from_secs(3))
    };
    let report = spawn_load(spec("budget.test", 4)).finish().await;
    let n = report.total;
    let backend_requests = x1.traffic_requests() + x2.traffic_requests();
    let extra = backend_requests.saturating_sub(n);
    let allowed = n as f64 * 0.20 + 5.0 * 10.0;
    println!(
        "retry budget: {n} client requests in {:?}, {backend_requests} backend requests, extra {extra} = {:.1}% of client requests (budget 20% + 5/s x 10 s = {allowed:.0}; unbudgeted would be 300%)",
        report.elapsed,
        100.0 * extra as f64 / n.max(1) as f64
    );
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.status(503), n, "every request fails: {report}");
    assert!(n >= 200, "too little load to show anything: {report}");
    assert!(
        backend_requests >= n,
        "each client request reached a backend"
    );
    assert!(
        (extra as f64) <= allowed + 10.0,
        "retries added {extra} requests, over the budget of {allowed:.0}: {report}"
    );
    assert!(
        (extra as f64) >= 0.8 * allowed - 10.0,
        "retries stopped well short of the budget ({extra} of {allowed:.0}): {report}\n{}",
        h.gw.logs()
    );
    assert!(
        (extra as f64) < 0.5 * 3.0 * n as f64,
        "far below unbudgeted retries"
    );

    // Control: the same rule without a budget to speak of retries every request 3 times.
    let control = spawn_load(spec("free.test", 1)).finish().await;
    let m = control.total;
    let free_requests = y1.traffic_requests() + y2.traffic_requests();
    println!(
        "unbudgeted control: {m} client requests, {free_requests} backend requests ({:.2}x)",
        free_requests as f64 / m.max(1) as f64
    );
    assert_eq!(control.errors, 0, "{control}");
    assert!(m >= 50, "{control}");
    assert_eq!(
        free_requests,
        4 * m,
        "without a budget every request makes 1 + 3 attempts: {control}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Circuit breaker

/// `maxRequests: 4` on a hanging backend: four requests hang, the fifth is refused at once with
/// 503 `upstream_overflow` (never queued, never sent); once the backend answers again, so does
/// the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn circuit_breaker_max_requests_overflows_immediately() {
    let slow = FaultyBackend::start("slow", Mode::Hang).await;
    let backends = [
        backend_yaml("slow", &[slow.addr()]),
        backend_policy("slow", &["circuitBreaker: {maxRequests: 4}"]),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route("cb", "cb.test", "slow", &[])),
    ])
    .await;

    let hanging: Vec<_> = (0..4).map(|_| hanging_get(h.http, "cb.test")).collect();
    wait_until(
        &h,
        "4 requests hanging at the backend",
        Duration::from_secs(5),
        || slow.traffic_requests() == 4,
    )
    .await;

    let mut latencies = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = get_within(&h, "cb.test").await;
        let took = t.elapsed();
        latencies.push(took);
        assert_eq!(r.status.as_u16(), 503, "{r:?}");
        assert_eq!(
            r.header("x-switchyard-error"),
            Some("upstream_overflow"),
            "{r:?}"
        );
        assert_eq!(
            r.header("x-switchyard-limit"),
            Some("max_requests"),
            "{r:?}"
        );
        assert!(
            took < Duration::from_millis(200),
            "the overflow reply took {took:?}: it must not queue"
        );
    }
    assert_eq!(
        slow.traffic_requests(),
        4,
        "refused requests never reach the backend"
    );
    assert!(
        hanging.iter().all(|t| !t.is_finished()),
        "the four still hang"
    );
    println!("circuit breaker: overflow replies in {latencies:?}");

    // Release: the backend crashes (the four fail) and comes back healthy.
    slow.kill().await;
    for t in hanging {
        let (status, reason) = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("hanging requests end when the backend dies")
            .unwrap();
        assert!(
            (500..=599).contains(&status),
            "a request whose backend died gets a 5xx: {status} {reason:?}"
        );
    }
    slow.set_mode(Mode::Ok);
    slow.restart().await;
    let r = get_within(&h, "cb.test").await;
    assert_eq!(r.status.as_u16(), 200, "permits were given back: {r:?}");
    assert_eq!(r.header("x-backend"), Some("slow"));
}

/// `maxPendingRequests: 2` on an endpoint whose connects hang (a listener that never accepts,
/// its queue filled): two requests wait to connect, the third is refused with
/// `upstream_overflow` at once.
#[tokio::test(flavor = "multi_thread")]
async fn circuit_breaker_max_pending_refuses_while_connects_hang() {
    // A listener with a backlog of 1 that never accepts: once its accept queue is full the
    // kernel drops further SYNs and every new connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = socket.listen(1).unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(stuck_addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    // Check that a connect really hangs now.
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(stuck_addr),
    )
    .await;
    assert!(
        probe.is_err(),
        "connects to the full listener should hang: {probe:?}"
    );

    let backends = [
        backend_yaml("stuck", &[stuck_addr]),
        backend_policy(
            "stuck",
            &[
                "timeouts: {connect: 5s}",
                "circuitBreaker: {maxPendingRequests: 2}",
            ],
        ),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route("pending", "pending.test", "stuck", &[])),
    ])
    .await;
    let waiting: Vec<_> = (0..2)
        .map(|_| hanging_get(h.http, "pending.test"))
        .collect();
    // Both are now stuck connecting; give them time to get there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(waiting.iter().all(|t| !t.is_finished()));
    let t = Instant::now();
    let r = get_within(&h, "pending.test").await;
    let took = t.elapsed();
    println!("max pending: overflow reply in {took:?}");
    assert_eq!(r.status.as_u16(), 503, "{r:?}");
    assert_eq!(
        r.header("x-switchyard-error"),
        Some("upstream_overflow"),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(200), "took {took:?}");
    for t in waiting {
        t.abort();
    }
    drop(fillers);
}

// ---------------------------------------------------------------------------------------------
// 5. Active health checks

/// HTTP checks every 200 ms, two failures to go out, two passes to come back: an endpoint whose
/// `/healthz` fails stops getting traffic within ~1 s while the other serves everything, and
/// gets traffic again once its checks pass.
#[tokio::test(flavor = "multi_thread")]
async fn http_health_check_takes_endpoint_out_and_back() {
    let a = FaultyBackend::start("a", Mode::Ok).await;
    let b = FaultyBackend::start("b", Mode::Ok).await;
    let backends = [
        backend_yaml("hc", &addrs(&[&a, &b])),
        backend_policy(
            "hc",
            &["healthCheck: {interval: 200ms, timeout: 150ms, healthyThreshold: 2, unhealthyThreshold: 2, http: {path: /healthz}}"],
        ),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route("hc", "hc.test", "hc", &[])),
    ])
    .await;
    let mut seq = Seq::new(h.http, "hc.test");
    wait_until(
        &h,
        "health checks on both endpoints",
        Duration::from_secs(3),
        || a.health_requests() >= 2 && b.health_requests() >= 2,
    )
    .await;
    let warm = seq.run_for(Duration::from_secs(3), 20).await;
    assert!(
        warm.iter().filter(|hit| hit.from("b")).count() >= 5,
        "{}",
        summary(&warm)
    );

    b.set_health(Mode::Status(500));
    let failed_at = Instant::now();
    let hits = seq.run_for(Duration::from_millis(1600), 100_000).await;
    assert!(
        hits.iter().all(|hit| hit.status == 200),
        "{}",
        summary(&hits)
    );
    let last_b = hits
        .iter()
        .filter(|hit| hit.from("b"))
        .map(|hit| hit.sent)
        .max();
    let out_after = last_b.map(|t| t - failed_at).unwrap_or_default();
    let late: Vec<&Hit> = hits
        .iter()
        .filter(|hit| hit.sent - failed_at >= Duration::from_secs(1))
        .collect();
    assert!(late.len() >= 10, "too little load: {}", summary(&hits));
    assert!(
        late.iter().all(|hit| hit.from("a")),
        "b still served 1 s after its health checks started failing (last at {out_after:?})\n{}",
        h.gw.logs()
    );
    wait_log(
        &h,
        "health check: endpoint unhealthy",
        b.addr(),
        Duration::from_secs(1),
    )
    .await;
    let traffic = b.traffic_requests();
    let more = seq.run_for(Duration::from_millis(300), 10_000).await;
    assert!(more.iter().all(|hit| hit.from("a")), "{}", summary(&more));
    assert_eq!(b.traffic_requests(), traffic);

    b.set_health(Mode::Ok);
    let healed_at = Instant::now();
    let mut during = Vec::new();
    let back = loop {
        assert!(
            healed_at.elapsed() < Duration::from_secs(3) && during.len() < 50_000,
            "b never got traffic back: {}\n{}",
            summary(&during),
            h.gw.logs()
        );
        let hit = seq.get("/").await;
        during.push(hit.clone());
        assert_eq!(hit.status, 200, "{hit:?}");
        if hit.from("b") {
            break hit.done - healed_at;
        }
    };
    assert!(
        back <= Duration::from_millis(1200),
        "b back only after {back:?}"
    );
    let after = seq.run_for(Duration::from_secs(3), 20).await;
    assert!(
        after.iter().filter(|hit| hit.from("b")).count() >= 5,
        "b back in rotation: {}",
        summary(&after)
    );
    println!("http health check: out within {out_after:?} (last request), back after {back:?}");
}

/// TCP checks: a killed endpoint is marked unhealthy after two refused connects and requests
/// stop failing (no retries configured, so only the health check can route around it); once
/// it listens again, two passing checks bring it back.
#[tokio::test(flavor = "multi_thread")]
async fn tcp_health_check_follows_kill_and_restart() {
    let a = FaultyBackend::start("a", Mode::Ok).await;
    let b = FaultyBackend::start("b", Mode::Ok).await;
    let backends = [
        backend_yaml("tcp", &addrs(&[&a, &b])),
        backend_policy(
            "tcp",
            &["healthCheck: {interval: 200ms, timeout: 150ms, healthyThreshold: 2, unhealthyThreshold: 2, tcp: {}}"],
        ),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route("tcp", "tcp.test", "tcp", &[])),
    ])
    .await;
    let mut seq = Seq::new(h.http, "tcp.test");
    wait_until(
        &h,
        "tcp probes on both endpoints",
        Duration::from_secs(3),
        || a.connections() >= 2 && b.connections() >= 2,
    )
    .await;
    assert_eq!(b.health_requests(), 0, "a tcp check sends no request");
    let warm = seq.run_for(Duration::from_secs(3), 20).await;
    assert!(
        warm.iter().all(|hit| hit.status == 200),
        "{}",
        summary(&warm)
    );

    b.kill().await;
    let killed_at = Instant::now();
    let hits = seq.run_for(Duration::from_millis(1600), 100_000).await;
    let late: Vec<&Hit> = hits
        .iter()
        .filter(|hit| hit.sent - killed_at >= Duration::from_secs(1))
        .collect();
    let failures = hits.iter().filter(|hit| hit.status != 200).count();
    assert!(late.len() >= 10, "too little load: {}", summary(&hits));
    assert!(
        late.iter().all(|hit| hit.status == 200 && hit.from("a")),
        "requests still failed 1 s after the kill: {}\n{}",
        summary(&hits),
        h.gw.logs()
    );
    wait_log(
        &h,
        "health check: endpoint unhealthy",
        b.addr(),
        Duration::from_secs(1),
    )
    .await;

    b.restart().await;
    let restarted_at = Instant::now();
    let mut during = Vec::new();
    let back = loop {
        assert!(
            restarted_at.elapsed() < Duration::from_secs(3) && during.len() < 50_000,
            "b never got traffic back: {}\n{}",
            summary(&during),
            h.gw.logs()
        );
        let hit = seq.get("/").await;
        during.push(hit.clone());
        assert_eq!(hit.status, 200, "{hit:?}");
        if hit.from("b") {
            break hit.done - restarted_at;
        }
    };
    assert!(
        back <= Duration::from_millis(1200),
        "b back only after {back:?}"
    );
    println!("tcp health check: {failures} failed requests right after the kill, back {back:?} after restart");
}

// ---------------------------------------------------------------------------------------------
// 6. State survives a reload

fn reload_route(version: u32) -> String {
    let header = format!(
        "filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-gen, value: \"{version}\"}}]}}}}]"
    );
    [
        route("pool", "pool.test", "pool", &[&header]),
        route("slow", "slow.test", "slow", &[&header]),
    ]
    .concat()
}

/// An endpoint ejected by outlier detection, another failing its health checks, and four
/// requests holding the circuit breaker's `maxRequests` all stay as they were across a route
/// reload: the backend state lives outside the generation.
#[tokio::test(flavor = "multi_thread")]
async fn resilience_state_survives_a_reload() {
    let a = FaultyBackend::start("a", Mode::Ok).await;
    let b = FaultyBackend::start("b", Mode::Status(503)).await;
    let c = FaultyBackend::start("c", Mode::Ok).await;
    let slow = FaultyBackend::start("slow", Mode::Hang).await;
    let backends = [
        backend_yaml("pool", &addrs(&[&a, &b, &c])),
        backend_policy(
            "pool",
            &[
                "outlierDetection: {consecutive5xx: 3, interval: 60s, baseEjectionTime: 30s, maxEjectionPercent: 50}",
                "healthCheck: {interval: 200ms, timeout: 150ms, healthyThreshold: 2, unhealthyThreshold: 2, http: {path: /healthz}}",
                "panicThreshold: 0",
            ],
        ),
        backend_yaml("slow", &[slow.addr()]),
        backend_policy("slow", &["circuitBreaker: {maxRequests: 4}"]),
    ]
    .concat();
    let h = Harness::start(&[("backends.yaml", backends), ("route.yaml", reload_route(1))]).await;
    wait_until(
        &h,
        "health checks on the pool",
        Duration::from_secs(3),
        || c.health_requests() >= 2,
    )
    .await;

    // c fails its health checks.
    c.set_health(Mode::Status(500));
    wait_log(
        &h,
        "health check: endpoint unhealthy",
        c.addr(),
        Duration::from_secs(3),
    )
    .await;
    // b is ejected after three 503s.
    let mut seq = Seq::new(h.http, "pool.test");
    let mut hits = Vec::new();
    let ejecting = Instant::now();
    while b.traffic_requests() < 3 {
        assert!(
            hits.len() < 100 && ejecting.elapsed() < Duration::from_secs(3),
            "b never got 3 requests: {}",
            summary(&hits)
        );
        hits.push(seq.get("/").await);
    }
    wait_log(
        &h,
        "outlier detection: endpoint ejected",
        b.addr(),
        Duration::from_secs(2),
    )
    .await;
    let before = seq.run_for(Duration::from_secs(3), 20).await;
    assert!(
        before
            .iter()
            .all(|hit| hit.status == 200 && hit.from("a") && hit.error.is_none()),
        "only a serves before the reload: {}",
        summary(&before)
    );
    // Four requests hold the slow backend's breaker.
    let hanging: Vec<_> = (0..4).map(|_| hanging_get(h.http, "slow.test")).collect();
    wait_until(&h, "4 requests hanging", Duration::from_secs(5), || {
        slow.traffic_requests() == 4
    })
    .await;

    // Reload: only the routes' response header changes.
    let (b_seen, c_seen) = (b.traffic_requests(), c.traffic_requests());
    let gen = generation(&h).await;
    h.dir.write("route.yaml", &reload_route(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while generation(&h).await <= gen {
        assert!(
            Instant::now() < deadline,
            "the route change never made a new generation\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The breaker still counts the four requests started under the old generation.
    let t = Instant::now();
    let r = get_within(&h, "slow.test").await;
    let took = t.elapsed();
    assert_eq!(
        (r.status.as_u16(), r.header("x-switchyard-error")),
        (503, Some("upstream_overflow")),
        "the 5th request after the reload overflows: {r:?}\n{}",
        h.gw.logs()
    );
    assert!(took < Duration::from_millis(200), "took {took:?}");
    assert_eq!(slow.traffic_requests(), 4);

    // b is still ejected and c still unhealthy: only a serves, under the new generation.
    let mut after = Vec::new();
    let mut gens = Vec::new();
    for _ in 0..30 {
        let r = get_within(&h, "pool.test").await;
        gens.push(r.header("x-gen").unwrap_or("-").to_string());
        after.push((r.status.as_u16(), r.header("x-backend").map(str::to_string)));
    }
    assert!(
        gens.iter().all(|g| g == "2"),
        "new generation serves: {gens:?}"
    );
    assert!(
        after
            .iter()
            .all(|(s, be)| *s == 200 && be.as_deref() == Some("a")),
        "after the reload only a serves: {after:?}\n{}",
        h.gw.logs()
    );
    assert_eq!(
        (b.traffic_requests(), c.traffic_requests()),
        (b_seen, c_seen),
        "neither the ejected nor the unhealthy endpoint got traffic after the reload"
    );
    assert!(
        log_lines(&h, "health check: endpoint healthy", c.addr()).is_empty(),
        "c was never reported healthy again\n{}",
        h.gw.logs()
    );
    let checks = c.health_requests();
    wait_until(&h, "c still health-checked", Duration::from_secs(2), || {
        c.health_requests() >= checks + 2
    })
    .await;
    for t in hanging {
        t.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Timeouts

/// The rule's request timeout (500 ms) against a hanging backend: 504 after ~0.5 s. A
/// per-try timeout of 200 ms (the rule's `backendRequest`, or a TrafficPolicy `perTryTimeout`)
/// with retries on timeout moves a hanging attempt to the healthy endpoint: 200.
#[tokio::test(flavor = "multi_thread")]
async fn request_and_per_try_timeouts() {
    let hang = FaultyBackend::start("hang", Mode::Hang).await;
    let ok = FaultyBackend::start("ok", Mode::Ok).await;
    let backends = [
        backend_yaml("hang-only", &[hang.addr()]),
        backend_yaml("mixed", &addrs(&[&hang, &ok])),
        backend_policy("mixed", &["loadBalancer: {type: RoundRobin}"]),
        backend_yaml("mixed2", &addrs(&[&hang, &ok])),
        backend_policy("mixed2", &["loadBalancer: {type: RoundRobin}"]),
    ]
    .concat();
    let routes = [
        route(
            "deadline",
            "deadline.test",
            "hang-only",
            &["timeouts: {request: 500ms}"],
        ),
        route(
            "pertry",
            "pertry.test",
            "mixed",
            &[
                "timeouts: {request: 3s, backendRequest: 200ms}",
                "retry: {attempts: 1, codes: [504]}",
            ],
        ),
        traffic_policy(
            "pertry",
            &["retry: {on: [timeout, connect-failure, reset]}"],
        ),
        route(
            "pertry2",
            "pertry2.test",
            "mixed2",
            &[
                "timeouts: {request: 3s}",
                "retry: {attempts: 1, codes: [504]}",
            ],
        ),
        traffic_policy(
            "pertry2",
            &["retry: {on: [timeout, connect-failure, reset], perTryTimeout: 200ms}"],
        ),
    ]
    .concat();
    let h = Harness::start(&[("backends.yaml", backends), ("route.yaml", routes)]).await;

    // Request deadline.
    let mut took = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            try_get(h.http, "deadline.test", "/", &[]),
        )
        .await
        .expect("the request timeout ends the request")
        .unwrap();
        let elapsed = t.elapsed();
        took.push(elapsed);
        assert_eq!(r.status.as_u16(), 504, "{r:?}");
        assert_eq!(
            r.header("x-switchyard-error"),
            Some("request_timeout"),
            "{r:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(450) && elapsed <= Duration::from_millis(1000),
            "504 after {elapsed:?}, expected ~500 ms"
        );
    }
    println!("request timeout 500 ms: 504 after {took:?}");

    // Per-try timeouts with a retry to the healthy endpoint.
    for host in ["pertry.test", "pertry2.test"] {
        let hang_before = hang.traffic_requests();
        let mut slow = 0;
        for i in 0..6 {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), try_get(h.http, host, "/", &[]))
                .await
                .expect("bounded by the request timeout")
                .unwrap();
            let elapsed = t.elapsed();
            assert_eq!(
                (r.status.as_u16(), r.header("x-backend")),
                (200, Some("ok")),
                "{host} request {i}: {r:?} after {elapsed:?}\n{}",
                h.gw.logs()
            );
            assert!(elapsed < Duration::from_millis(1500), "{host}: {elapsed:?}");
            if elapsed >= Duration::from_millis(190) {
                slow += 1;
            }
        }
        let tried_hang = hang.traffic_requests() - hang_before;
        println!("{host}: {tried_hang} of 6 first attempts hung and were retried after 200 ms");
        assert!(
            tried_hang >= 2,
            "{host}: round robin sent first attempts to the hanging endpoint: {tried_hang}"
        );
        assert_eq!(
            slow, tried_hang,
            "{host}: exactly the requests that tried the hanging endpoint waited its 200 ms"
        );
    }
}
