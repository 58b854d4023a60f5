//! Traffic policies end to end: rate-limit precision, fault-injection shares, sticky canary
//! cohorts while weights ramp, a blue-green switch under load, and the client idle timeout.
//! Every loop is bounded by a request count and a deadline; figures are printed with
//! `--nocapture` so a drift shows before it fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use switchyard_testkit::{
    request, run_load, spawn_load, FaultyBackend, H1Conn, LoadSpec, Mode, Response,
};

use crate::common::{backend_ref, backend_yaml, Harness};

/// Starts one always-200 faulty backend per name (they answer with `x-backend: <name>`) and
/// returns them with their Backend YAML.
async fn backends(names: &[&str]) -> (Vec<FaultyBackend>, String) {
    let mut list = Vec::new();
    let mut yaml = String::new();
    for n in names {
        let b = FaultyBackend::start(n, Mode::Ok).await;
        yaml.push_str(&backend_yaml(n, &[b.addr()]));
        list.push(b);
    }
    (list, yaml)
}

/// An HTTPRoute `name` for `host` with one rule splitting over `refs` (backend, weight).
fn route_yaml(name: &str, host: &str, refs: &[(&str, u32)]) -> String {
    let refs: Vec<String> = refs.iter().map(|(b, w)| backend_ref(b, *w)).collect();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n    - backendRefs: [{}]\n",
        refs.join(", ")
    )
}

/// A TrafficPolicy `name` on the whole of HTTPRoute `route`; `spec` are the lines after
/// `targetRefs`, each indented by two spaces.
fn policy_yaml(name: &str, route: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]\n{spec}"
    )
}

/// Rewrites `file` and waits (bounded) until the gateway loaded a newer generation; panics
/// with the gateway's last error when the set is rejected instead. Returns the generation.
async fn rewrite(h: &Harness, file: &str, yaml: &str) -> u64 {
    let before = h.gw.config().await;
    let generation = before["generation"].as_u64().unwrap_or(0);
    let rejected = before["rejected"].as_u64().unwrap_or(0);
    h.dir.write(file, yaml);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = h.gw.config().await;
        let g = c["generation"].as_u64().unwrap_or(0);
        if g > generation {
            return g;
        }
        assert!(
            c["rejected"].as_u64().unwrap_or(0) == rejected,
            "the gateway rejected {file}:\n{yaml}\n/config: {c}\n{}",
            h.gw.logs()
        );
        assert!(
            Instant::now() < deadline,
            "generation stayed at {g} after writing {file}: {c}\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one request in a fan-out saw.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    backend: String,
    /// `name=value` of the response's Set-Cookie, if any.
    cookie: Option<String>,
}

impl Seen {
    fn of(r: &Response) -> Seen {
        Seen {
            status: r.status.as_u16(),
            backend: r.header("x-backend").unwrap_or("").to_string(),
            cookie: r
                .header("set-cookie")
                .and_then(|c| c.split(';').next())
                .map(|c| c.trim().to_string()),
        }
    }
}

/// Sends `GET /` to `host` once per header set, over `conns` keep-alive connections in
/// parallel; answers in the order of `sets`. Panics on a transport error or after 20 s.
async fn fan_out(
    h: &Harness,
    host: &str,
    sets: Vec<Vec<(String, String)>>,
    conns: usize,
) -> Vec<Seen> {
    let sets = Arc::new(sets);
    let next = Arc::new(AtomicU64::new(0));
    let out = Arc::new(Mutex::new(vec![None; sets.len()]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (sets, next, out, addr) = (sets.clone(), next.clone(), out.clone(), h.http);
        let host = host.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = H1Conn::connect(addr).await.expect("connect to the gateway");
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                if i >= sets.len() {
                    return;
                }
                assert!(Instant::now() < deadline, "fan-out took over 20 s");
                let mut req = request(Method::GET, &host, "/");
                for (k, v) in &sets[i] {
                    req = req.header(k.as_str(), v.as_str());
                }
                let r = conn
                    .send(req.body(Bytes::new()).expect("request"))
                    .await
                    .unwrap_or_else(|e| panic!("request {i} {:?}: {e}", sets[i]));
                out.lock().unwrap()[i] = Some(Seen::of(&r));
            }
        }));
    }
    for t in tasks {
        t.await.expect("fan-out worker");
    }
    let out = std::mem::take(&mut *out.lock().unwrap());
    out.into_iter()
        .map(|s| s.expect("every request answered"))
        .collect()
}

fn within(share: f64, target: f64, tolerance: f64) -> bool {
    (share - target).abs() <= tolerance
}

/// 50 requests/s with a burst of 5, keyed by client IP, under 100 requests/s for 10 s:
/// accepted = 50 × 10 + 5 (±10%), the rest 429 + Retry-After; header keys have their own buckets.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_holds_its_rate_within_ten_percent() {
    let (b, yaml) = backends(&["limited", "keyed"]).await;
    let files = [
        ("backends.yaml", yaml),
        (
            "limited.yaml",
            route_yaml("limited", "limit.test", &[("limited", 1)])
                + &policy_yaml(
                    "limited",
                    "limited",
                    "  rateLimit: {requests: 50, per: 1s, burst: 5, key: {clientIP: true}}\n",
                ),
        ),
        (
            "keyed.yaml",
            route_yaml("keyed", "keyed.test", &[("keyed", 1)])
                + &policy_yaml(
                    "keyed",
                    "keyed",
                    "  rateLimit: {requests: 2, per: 1m, burst: 2, key: {header: x-api-key}}\n",
                ),
        ),
    ];
    let h = Harness::start(&files).await;

    let secs = 10.0;
    let report = run_load(
        LoadSpec::new(h.http, "limit.test", "/")
            .rate(100.0)
            .concurrency(4)
            .duration(Duration::from_secs_f64(secs))
            .max_requests(1000),
    )
    .await;
    eprintln!("rate limit: {report}");
    let span = report.timeline.last().map(|e| e.0).unwrap_or_default()
        - report.timeline.first().map(|e| e.0).unwrap_or_default();
    assert_eq!(report.errors, 0, "{report}");
    assert!(
        report.total >= 950,
        "the paced client sent only {} requests in {span:?}: {report}",
        report.total
    );
    let accepted = report.status(200);
    let limited = report.status(429);
    assert_eq!(
        accepted + limited,
        report.total,
        "only 200 or 429: {report}"
    );
    assert_eq!(
        report.switchyard_errors.get("rate_limited").copied(),
        Some(limited),
        "every 429 says rate_limited: {report}"
    );
    let expected = 50.0 * secs + 5.0;
    let deviation = (accepted as f64 - expected) / expected;
    eprintln!(
        "rate limit: accepted {accepted} of {} (expected {expected}, {:+.1}%), 429 {limited}, send span {span:?}",
        report.total,
        deviation * 100.0
    );
    assert!(
        deviation.abs() <= 0.10,
        "accepted {accepted}, expected {expected} ±10%: {report}"
    );
    assert_eq!(
        b[0].traffic_requests(),
        accepted,
        "refused requests never reach the backend"
    );

    // A direct burst: the bucket holds 5, so a 429 with Retry-After comes within a few requests.
    let mut conn = H1Conn::connect(h.http).await.expect("connect");
    let mut refused = None;
    for _ in 0..50 {
        let r = conn.get("limit.test", "/").await.expect("direct request");
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = refused.expect("no 429 within 50 back-to-back requests");
    assert_eq!(
        r.header("x-switchyard-error"),
        Some("rate_limited"),
        "{r:?}"
    );
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {r:?}"));
    assert!(retry_after >= 1, "Retry-After {retry_after}: {r:?}");
    let r = conn
        .get("limit.test", "/")
        .await
        .expect("keep-alive after a 429");
    assert!(r.status == 200 || r.status == 429, "{r:?}");

    // Header-keyed: 2 per minute per x-api-key value; each value has its own bucket.
    let statuses = |key: &'static str, n: usize| {
        let addr = h.http;
        async move {
            let mut conn = H1Conn::connect(addr).await.expect("connect");
            let mut out = Vec::new();
            for _ in 0..n {
                let req = request(Method::GET, "keyed.test", "/")
                    .header("x-api-key", key)
                    .body(Bytes::new())
                    .unwrap();
                out.push(conn.send(req).await.expect("keyed request").status.as_u16());
            }
            out
        }
    };
    assert_eq!(statuses("alpha", 3).await, [200, 200, 429]);
    assert_eq!(
        statuses("beta", 3).await,
        [200, 200, 429],
        "beta has its own bucket"
    );
    assert_eq!(
        statuses("alpha", 1).await,
        [429],
        "alpha's bucket is still empty"
    );
    assert_eq!(b[1].traffic_requests(), 4);
}

/// abort 503 at 20% over 5,000 requests and delay 100 ms at 10% over 2,000 requests: both
/// shares within ±3 points.
#[tokio::test(flavor = "multi_thread")]
async fn fault_injection_shares_within_three_points() {
    let (b, yaml) = backends(&["abort-be", "delay-be"]).await;
    let files = [
        ("backends.yaml", yaml),
        (
            "abort.yaml",
            route_yaml("abort", "abort.test", &[("abort-be", 1)])
                + &policy_yaml(
                    "abort",
                    "abort",
                    "  fault:\n    abort: {httpStatus: 503, percentage: 20}\n",
                ),
        ),
        (
            "delay.yaml",
            route_yaml("delay", "delay.test", &[("delay-be", 1)])
                + &policy_yaml(
                    "delay",
                    "delay",
                    "  fault:\n    delay: {fixedDelay: 100ms, percentage: 10}\n",
                ),
        ),
    ];
    let h = Harness::start(&files).await;

    let started = Instant::now();
    let report = run_load(
        LoadSpec::new(h.http, "abort.test", "/")
            .concurrency(8)
            .max_requests(5000)
            .duration(Duration::from_secs(12)),
    )
    .await;
    eprintln!("fault abort: {report}");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.total, 5000, "5,000 requests within 12 s: {report}");
    let aborted = report.status(503);
    assert_eq!(report.status(200) + aborted, 5000, "{report}");
    assert_eq!(
        report
            .switchyard_errors
            .get("fault_abort")
            .copied()
            .unwrap_or(0),
        aborted,
        "every 503 is a fault_abort: {report}"
    );
    assert_eq!(
        b[0].traffic_requests(),
        report.status(200),
        "aborted requests never reach the backend"
    );
    let abort_share = aborted as f64 / 5000.0;
    eprintln!(
        "fault abort: {aborted}/5000 = {:.2}% in {:?}",
        abort_share * 100.0,
        started.elapsed()
    );
    assert!(
        within(abort_share, 0.20, 0.03),
        "abort share {:.2}% outside 17-23%",
        abort_share * 100.0
    );

    // Delay: closed-loop workers timing every request themselves.
    const N: u64 = 2000;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (next, addr) = (next.clone(), h.http);
        workers.push(tokio::spawn(async move {
            let mut conn = H1Conn::connect(addr).await.expect("connect");
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < N && Instant::now() < deadline {
                let t = Instant::now();
                let r = conn.get("delay.test", "/").await.expect("delay request");
                latencies.push(t.elapsed());
                assert_eq!(r.status, 200, "{r:?}");
                assert_eq!(r.header("x-backend"), Some("delay-be"));
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("delay worker"));
    }
    let elapsed = started.elapsed();
    assert_eq!(latencies.len() as u64, N, "{N} requests within 15 s");
    let delayed = latencies
        .iter()
        .filter(|l| **l >= Duration::from_millis(100))
        .count();
    let grey = latencies
        .iter()
        .filter(|l| **l >= Duration::from_millis(50) && **l < Duration::from_millis(100))
        .count();
    let fastest_delayed = latencies
        .iter()
        .filter(|l| **l >= Duration::from_millis(100))
        .min()
        .copied();
    let slowest_plain = latencies
        .iter()
        .filter(|l| **l < Duration::from_millis(100))
        .max()
        .copied();
    let delay_share = delayed as f64 / N as f64;
    eprintln!(
        "fault delay: {delayed}/{N} = {:.2}% took >= 100 ms ({grey} in 50-100 ms; fastest delayed {fastest_delayed:?}, slowest other {slowest_plain:?}) in {elapsed:?}",
        delay_share * 100.0
    );
    assert!(
        within(delay_share, 0.10, 0.03),
        "delayed share {:.2}% outside 7-13%",
        delay_share * 100.0
    );
    assert_eq!(
        b[1].traffic_requests(),
        N,
        "delayed requests still reach the backend"
    );
}

/// Hash-sticky cohort on `x-user` while v2 ramps 0 → 10 → 25 → 50 → 100: no user ever goes
/// back from v2 to v1, and each step's v2 share is the weight ±8 points.
#[tokio::test(flavor = "multi_thread")]
async fn hash_cohort_never_flips_back_while_weights_ramp() {
    let (_b, yaml) = backends(&["v1", "v2"]).await;
    let policy = policy_yaml(
        "cohort",
        "canary",
        "  cohort:\n    sticky: {hashOn: {header: x-user}}\n",
    );
    let h = Harness::start(&[
        ("backends.yaml", yaml),
        ("policy.yaml", policy),
        (
            "route.yaml",
            route_yaml("canary", "canary.test", &[("v1", 100), ("v2", 0)]),
        ),
    ])
    .await;

    const USERS: usize = 200;
    // Each user asks twice per step: both answers must agree.
    let sets: Vec<Vec<(String, String)>> = (0..USERS * 2)
        .map(|i| vec![("x-user".to_string(), format!("user-{}", i % USERS))])
        .collect();
    let mut on_v2_since: Vec<Option<u32>> = vec![None; USERS];
    let mut flips = Vec::new();
    let mut shares = Vec::new();
    for w in [0u32, 10, 25, 50, 100] {
        if w > 0 {
            rewrite(
                &h,
                "route.yaml",
                &route_yaml("canary", "canary.test", &[("v1", 100 - w), ("v2", w)]),
            )
            .await;
        }
        let seen = fan_out(&h, "canary.test", sets.clone(), 4).await;
        let mut on_v2 = 0;
        for u in 0..USERS {
            let (a, b) = (&seen[u], &seen[u + USERS]);
            assert_eq!(a.status, 200, "user-{u} at weight {w}: {a:?}");
            assert_eq!(
                a.backend, b.backend,
                "user-{u} answered by two backends at weight {w}"
            );
            assert!(a.cookie.is_none(), "hash cohorts set no cookie: {a:?}");
            match a.backend.as_str() {
                "v2" => {
                    on_v2 += 1;
                    on_v2_since.get_mut(u).unwrap().get_or_insert(w);
                }
                "v1" => {
                    if let Some(since) = on_v2_since[u] {
                        flips.push(format!("user-{u}: v2 since weight {since}, v1 at {w}"));
                    }
                }
                other => panic!("user-{u} answered by {other:?}"),
            }
        }
        let share = on_v2 as f64 / USERS as f64;
        shares.push((w, share));
        assert!(
            within(share, f64::from(w) / 100.0, 0.08),
            "weight {w}: v2 share {:.1}% (steps so far {shares:?})",
            share * 100.0
        );
    }
    eprintln!(
        "hash cohort: v2 shares by weight {shares:?}, flips back to v1: {}",
        flips.len()
    );
    assert!(flips.is_empty(), "users went back to v1: {flips:?}");
}

/// Cookie-sticky cohort: sessions keep the backend named by the cookie the gateway set while
/// v2 ramps 0 → 10 → 25 → 50 (only new sessions follow the weights); a pinned header reaches
/// v2 at weight 0.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_cohort_keeps_sessions_and_pin_overrides_weights() {
    let (_b, yaml) = backends(&["v1", "v2"]).await;
    let policy = policy_yaml(
        "cohort",
        "canary",
        "  cohort:\n    pin: {header: x-canary}\n    sticky: {cookie: {name: sy-cohort, maxAge: 1h}}\n",
    );
    let h = Harness::start(&[
        ("backends.yaml", yaml),
        ("policy.yaml", policy),
        (
            "route.yaml",
            route_yaml("canary", "canary.test", &[("v1", 100), ("v2", 0)]),
        ),
    ])
    .await;

    // Pins at weight 0: v2 is reachable by name, v1 too; neither sets a cookie.
    let pinned = fan_out(
        &h,
        "canary.test",
        (0..40)
            .map(|i| {
                let v = if i % 2 == 0 { "v2" } else { "v1" };
                vec![("x-canary".to_string(), v.to_string())]
            })
            .collect(),
        2,
    )
    .await;
    for (i, s) in pinned.iter().enumerate() {
        let want = if i % 2 == 0 { "v2" } else { "v1" };
        assert_eq!(
            (s.status, s.backend.as_str()),
            (200, want),
            "pin {want}: {s:?}"
        );
        assert!(s.cookie.is_none(), "a pinned request sets no cookie: {s:?}");
    }

    // Sessions: every step starts NEW fresh ones; all older ones resend their cookie.
    const NEW: usize = 500;
    let mut sessions: Vec<(String, String)> = Vec::new(); // (cookie, backend)
    let mut report = Vec::new();
    for w in [0u32, 10, 25, 50] {
        if w > 0 {
            rewrite(
                &h,
                "route.yaml",
                &route_yaml("canary", "canary.test", &[("v1", 100 - w), ("v2", w)]),
            )
            .await;
        }
        // Old sessions first: each keeps its backend and gets no new cookie.
        let sets = sessions
            .iter()
            .map(|(c, _)| vec![("cookie".to_string(), format!("theme=dark; {c}"))])
            .collect();
        let kept = fan_out(&h, "canary.test", sets, 4).await;
        let moved: Vec<String> = sessions
            .iter()
            .zip(&kept)
            .filter(|((_, b), s)| s.status != 200 || s.backend != *b || s.cookie.is_some())
            .map(|((c, _), s)| format!("{c} -> {s:?}"))
            .collect();
        assert!(
            moved.is_empty(),
            "weight {w}: {} of {} sessions moved, e.g. {:?}",
            moved.len(),
            sessions.len(),
            &moved[..moved.len().min(5)]
        );
        // New sessions: drawn by weight, told their backend in the cookie.
        let fresh = fan_out(&h, "canary.test", vec![Vec::new(); NEW], 4).await;
        let mut on_v2 = 0;
        for s in &fresh {
            assert_eq!(s.status, 200, "{s:?}");
            let cookie = s
                .cookie
                .clone()
                .unwrap_or_else(|| panic!("a new session got no cookie: {s:?}"));
            assert_eq!(
                cookie,
                format!("sy-cohort={}", s.backend),
                "the cookie names the backend that answered"
            );
            on_v2 += usize::from(s.backend == "v2");
            sessions.push((cookie, s.backend.clone()));
        }
        // The pin still wins over the cookie and the weights.
        let pin = fan_out(
            &h,
            "canary.test",
            vec![vec![
                ("x-canary".to_string(), "v2".to_string()),
                ("cookie".to_string(), "sy-cohort=v1".to_string()),
            ]],
            1,
        )
        .await;
        assert_eq!(pin[0].backend, "v2", "weight {w}: {:?}", pin[0]);
        let share = on_v2 as f64 / NEW as f64;
        report.push((w, kept.len(), share));
        assert!(
            within(share, f64::from(w) / 100.0, 0.08),
            "weight {w}: new sessions on v2 {:.1}% ({report:?})",
            share * 100.0
        );
    }
    eprintln!(
        "cookie cohort: (weight, old sessions kept, new-session v2 share) {report:?}, moved 0"
    );
}

/// Blue-green: 100/0 → 0/100 at 1.5 s under GET and POST load. Nothing fails, traffic moves
/// to green at the switch, and blue's pooled upstream connections close after the upstream
/// idle timeout (4 s by default).
#[tokio::test(flavor = "multi_thread")]
async fn blue_green_switch_under_load_fails_nothing() {
    let (b, yaml) = backends(&["blue", "green"]).await;
    let (blue, green) = (&b[0], &b[1]);
    let h = Harness::start(&[
        ("backends.yaml", yaml),
        (
            "route.yaml",
            route_yaml("bg", "bg.test", &[("blue", 100), ("green", 0)]),
        ),
    ])
    .await;

    let run = Duration::from_secs(8);
    let gets = spawn_load(
        LoadSpec::new(h.http, "bg.test", "/get")
            .concurrency(6)
            .rate(600.0)
            .duration(run),
    );
    let posts = spawn_load(
        LoadSpec::new(h.http, "bg.test", "/post")
            .method(Method::POST)
            .header("content-type", "application/json")
            .body(Bytes::from(format!(
                "{{\"order\":\"{}\"}}",
                "x".repeat(200)
            )))
            .concurrency(2)
            .rate(200.0)
            .duration(run),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let blue_open_before = blue.open_connections();
    let green_before = green.traffic_requests();
    let (get_write, post_write) = (gets.elapsed(), posts.elapsed());
    let switch = Instant::now();
    rewrite(
        &h,
        "route.yaml",
        &route_yaml("bg", "bg.test", &[("blue", 0), ("green", 100)]),
    )
    .await;
    let (get_seen, post_seen) = (gets.elapsed(), posts.elapsed());
    let reload = switch.elapsed();
    let blue_at_switch = blue.traffic_requests();

    // Blue's pooled connections go idle at the switch and close after the idle timeout.
    let mut blue_closed_after = None;
    let deadline = switch + Duration::from_secs(9);
    while Instant::now() < deadline {
        if blue.open_connections() == 0 {
            blue_closed_after = Some(switch.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let blue_open_at_deadline = blue.open_connections();
    let gets = gets.finish().await;
    let posts = posts.finish().await;
    eprintln!("blue-green GET: {gets}");
    eprintln!("blue-green POST: {posts}");
    eprintln!(
        "blue-green: reload seen {reload:?} after the write; blue open connections {blue_open_before} before, closed after {blue_closed_after:?}; blue requests after the switch {}",
        blue.traffic_requests() - blue_at_switch
    );

    for (what, r, write, seen) in [
        ("GET", &gets, get_write, get_seen),
        ("POST", &posts, post_write, post_seen),
    ] {
        assert_eq!(
            r.errors,
            0,
            "{what}: transport errors: {r}\n{}",
            h.gw.logs()
        );
        assert_eq!(
            r.status(200),
            r.total,
            "{what}: all 200: {r}\n{}",
            h.gw.logs()
        );
        assert!(r.total > 500, "{what}: too little load: {r}");
        let wrong_before: Vec<_> = r
            .between(Duration::ZERO, write)
            .filter(|e| e.2.as_deref() != Some("blue"))
            .collect();
        assert!(
            wrong_before.is_empty(),
            "{what}: before the switch only blue answers: {:?}",
            &wrong_before[..wrong_before.len().min(5)]
        );
        let wrong_after: Vec<_> = r
            .between(seen, Duration::from_secs(3600))
            .filter(|e| e.2.as_deref() != Some("green"))
            .collect();
        assert!(
            wrong_after.is_empty(),
            "{what}: after the new generation only green answers: {:?}",
            &wrong_after[..wrong_after.len().min(5)]
        );
        assert!(r.header("blue") > 0 && r.header("green") > 0, "{what}: {r}");
    }
    assert!(blue_open_before > 0, "blue had pooled connections");
    assert_eq!(green_before, 0, "green got nothing at weight 0");
    let closed = blue_closed_after.unwrap_or_else(|| {
        panic!(
            "blue still has {blue_open_at_deadline} open connections 9 s after the switch\n{}",
            h.gw.logs()
        )
    });
    assert!(
        closed <= Duration::from_millis(6500),
        "blue's connections closed only {closed:?} after the switch (upstream idle 4 s)"
    );
    assert!(
        closed >= Duration::from_secs(2),
        "blue's connections closed {closed:?} after the switch: before the idle timeout"
    );
}

/// `timeouts.downstreamIdle: 1s`: a keep-alive client idle 0.3 s is still served, one idle
/// ~2 s is closed by the gateway; a route without the policy keeps the default (60 s).
#[tokio::test(flavor = "multi_thread")]
async fn downstream_idle_timeout_closes_idle_clients() {
    let (_b, yaml) = backends(&["idle-be"]).await;
    let h = Harness::start(&[
        ("backends.yaml", yaml),
        (
            "idle.yaml",
            route_yaml("idle", "idle.test", &[("idle-be", 1)])
                + &policy_yaml("idle", "idle", "  timeouts: {downstreamIdle: 1s}\n"),
        ),
        (
            "plain.yaml",
            route_yaml("plain", "plain.test", &[("idle-be", 1)]),
        ),
    ])
    .await;

    let mut short = H1Conn::connect(h.http).await.expect("connect");
    let mut plain = H1Conn::connect(h.http).await.expect("connect");
    assert_eq!(short.get("idle.test", "/").await.unwrap().status, 200);
    assert_eq!(plain.get("plain.test", "/").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!short.is_closed(), "closed after 0.3 s idle");
    let r = short
        .get("idle.test", "/")
        .await
        .expect("the connection is still usable after 0.3 s idle");
    assert_eq!(r.status, 200);
    let idle_since = Instant::now();

    let mut closed_after = None;
    while idle_since.elapsed() < Duration::from_secs(3) {
        if short.is_closed() {
            closed_after = Some(idle_since.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("downstream idle 1s: closed after {closed_after:?}");
    let closed = closed_after.unwrap_or_else(|| {
        panic!(
            "the gateway kept an idle connection open 3 s (downstreamIdle 1s)\n{}",
            h.gw.logs()
        )
    });
    assert!(
        closed >= Duration::from_millis(900) && closed <= Duration::from_secs(2),
        "closed after {closed:?}, expected about 1 s"
    );
    assert!(
        short.get("idle.test", "/").await.is_err(),
        "a closed connection carries no request"
    );
    // The connection without the policy was idle as long and is still served.
    assert!(!plain.is_closed(), "the default idle timeout is 60 s");
    let r = plain
        .get("plain.test", "/")
        .await
        .expect("default idle: still usable");
    assert_eq!(r.status, 200);
    assert_eq!(plain.requests_sent(), 2);
}
