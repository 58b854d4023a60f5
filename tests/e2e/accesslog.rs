//! The access log end to end: every line of the file sink is JSON with every field, with the
//! right values for a routed request (canonical path, request and trace ids, timings), a
//! retried one, a failed one and one without a route; sampling 0 keeps only the errors; the
//! file is reopened after logrotate's move and SIGHUP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_testkit::{free_port, get, EchoBackend};

use crate::common::{backend_ref, backend_yaml, gateway_yaml, Harness};

/// Every field of a line.
const FIELDS: &[&str] = &[
    "time",
    "request_id",
    "trace_id",
    "method",
    "host",
    "path",
    "route",
    "rule",
    "backend",
    "endpoint",
    "zone",
    "endpoint_zone",
    "status",
    "reason",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_connect_ms",
    "upstream_response_ms",
    "retries",
    "generation",
];

fn route(name: &str, host: &str, backend: &str, rule_lines: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n    - backendRefs: [{}]\n{rule_lines}",
        backend_ref(backend, 1)
    )
}

/// Reads the log until it has `n` lines (bounded: 10 s); returns them parsed, checking that
/// each is a JSON object with exactly the fields of [`FIELDS`].
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let count = text.lines().count();
        if count >= n {
            return text
                .lines()
                .map(|l| {
                    let v: Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                    let keys: BTreeSet<&str> = v
                        .as_object()
                        .unwrap_or_else(|| panic!("not an object: {l}"))
                        .keys()
                        .map(String::as_str)
                        .collect();
                    let want: BTreeSet<&str> = FIELDS.iter().copied().collect();
                    assert_eq!(keys, want, "fields of {l}");
                    v
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} has {count} lines, want {n}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one line for `host` (lines of concurrent finishes may come in any order).
fn by_host<'a>(all: &'a [Value], host: &str) -> Vec<&'a Value> {
    all.iter().filter(|l| l["host"] == host).collect()
}

fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

async fn start(files: &[(&str, String)], log: &Path, extra: &[&str]) -> Harness {
    let port = free_port();
    let log = log.display().to_string();
    let mut args = vec!["--access-log", log.as_str()];
    args.extend_from_slice(extra);
    Harness::start_with_args(port, gateway_yaml(port), files, &args).await
}

#[tokio::test]
async fn every_line_is_json_with_every_field_and_the_right_values() {
    let x = EchoBackend::start("x").await;
    let dead = dead_addr();
    let logs = tempfile::tempdir().expect("a temp dir");
    let path = logs.path().join("access.log");
    let files = [
        (
            "backends.yaml",
            backend_yaml("x", &[x.addr()])
                + &backend_yaml("dead", &[dead])
                + &backend_yaml("flaky", &[dead, x.addr()]),
        ),
        ("a.yaml", route("a", "a.test", "x", "      name: main\n")),
        ("b.yaml", route("b", "b.test", "dead", "")),
        (
            "r.yaml",
            route("r", "r.test", "flaky", "      retry: {attempts: 1}\n"),
        ),
    ];
    let h = start(&files, &path, &[]).await;
    let generation = h.gw.config().await["generation"]
        .as_u64()
        .expect("generation");

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let ok = get(
        h.http,
        "a.test",
        "/shop/./cart//items?q=1",
        &[("x-request-id", "req-1"), ("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(ok.status, 200);
    let failed = get(h.http, "b.test", "/down", &[]).await;
    assert_eq!(failed.status, 503);
    let missing = get(h.http, "nowhere.test", "/x", &[]).await;
    assert_eq!(missing.status, 404);
    // Round robin over [dead, x] with one retry: every request ends 200, and those that
    // started on the dead endpoint were retried once.
    for _ in 0..4 {
        assert_eq!(get(h.http, "r.test", "/r", &[]).await.status, 200);
    }

    let all = lines(&path, 7).await;
    assert_eq!(all.len(), 7, "{all:#?}");
    for l in &all {
        assert_eq!(l["generation"], generation, "{l}");
        assert!(l["zone"].is_null(), "{l}");
        let t = l["time"].as_str().expect("time");
        assert!(
            t.len() == 24 && t.ends_with('Z') && &t[19..20] == ".",
            "RFC 3339 UTC with ms: {t}"
        );
        let id = l["trace_id"].as_str().expect("trace_id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
    }

    let a = by_host(&all, "a.test")[0];
    assert_eq!(a["request_id"], "req-1");
    assert_eq!(a["trace_id"], trace, "the client's trace");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["host"], "a.test");
    assert_eq!(
        a["path"], "/shop/cart/items",
        "the canonical path, no query"
    );
    assert_eq!(a["route"], "default/a");
    assert_eq!(a["rule"], "main");
    assert_eq!(a["backend"], "default/x");
    assert_eq!(a["endpoint"], x.addr().to_string());
    assert!(a["endpoint_zone"].is_null());
    assert_eq!(a["status"], 200);
    assert_eq!(a["reason"], "ok");
    assert_eq!(a["bytes_in"], 0);
    assert_eq!(a["bytes_out"], ok.body.len());
    assert_eq!(a["retries"], 0);
    let connect = a["upstream_connect_ms"].as_f64().expect("connect time");
    let response = a["upstream_response_ms"].as_f64().expect("response time");
    let total = a["duration_ms"].as_f64().expect("duration");
    assert!(
        connect <= response && response <= total,
        "{connect} <= {response} <= {total}"
    );
    // The backend saw the same canonical path.
    assert_eq!(x.requests()[0].path, "/shop/cart/items");

    let b = by_host(&all, "b.test")[0];
    assert_eq!(b["route"], "default/b");
    assert_eq!(b["rule"], "0");
    assert_eq!(b["backend"], "default/dead");
    assert_eq!(b["endpoint"], dead.to_string());
    assert_eq!(b["status"], 503);
    assert_eq!(b["reason"], "upstream_connect_failure");
    assert!(b["upstream_connect_ms"].is_null() && b["upstream_response_ms"].is_null());
    assert_eq!(b["retries"], 0);
    assert!(b["request_id"].is_string(), "the gateway made one: {b}");

    let m = by_host(&all, "nowhere.test")[0];
    assert_eq!(m["status"], 404);
    assert_eq!(m["reason"], "no_route");
    assert!(m["route"].is_null() && m["backend"].is_null() && m["endpoint"].is_null());
    assert_eq!(m["host"], "nowhere.test");

    let flaky = by_host(&all, "r.test");
    assert_eq!(flaky.len(), 4);
    assert!(
        flaky.iter().any(|l| l["retries"] == 1),
        "no retried request: {all:#?}"
    );
    for r in flaky {
        assert_eq!(r["status"], 200);
        assert_eq!(r["reason"], "ok");
        assert_eq!(r["route"], "default/r");
        assert_eq!(r["backend"], "default/flaky");
        assert_eq!(
            r["endpoint"],
            x.addr().to_string(),
            "the endpoint that answered"
        );
        assert!(r["upstream_response_ms"].is_number());
    }
}

#[tokio::test]
async fn sampling_zero_keeps_only_errors_and_sighup_reopens_the_file() {
    let x = EchoBackend::start("x").await;
    let logs = tempfile::tempdir().expect("a temp dir");
    let path: PathBuf = logs.path().join("access.log");
    let files = [
        (
            "backends.yaml",
            backend_yaml("x", &[x.addr()]) + &backend_yaml("dead", &[dead_addr()]),
        ),
        ("a.yaml", route("a", "a.test", "x", "")),
        ("b.yaml", route("b", "b.test", "dead", "")),
    ];
    let h = start(&files, &path, &["--access-log-sample", "0"]).await;
    for _ in 0..5 {
        assert_eq!(get(h.http, "a.test", "/", &[]).await.status, 200);
    }
    assert_eq!(get(h.http, "nowhere.test", "/", &[]).await.status, 404);
    assert_eq!(get(h.http, "b.test", "/", &[]).await.status, 503);
    let all = lines(&path, 2).await;
    // Give a stray success line time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_now = lines(&path, 2).await;
    assert_eq!(all_now.len(), 2, "only the errors: {all_now:#?}");
    let mut statuses: Vec<u64> = all.iter().filter_map(|l| l["status"].as_u64()).collect();
    statuses.sort();
    assert_eq!(statuses, [404, 503]);

    // logrotate: move the file away, SIGHUP, and the next line goes to a new file.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    h.gw.signal("HUP").expect("SIGHUP");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(h.http, "nowhere.test", "/after", &[]).await.status, 404);
    let fresh = lines(&path, 1).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["path"], "/after");
    assert_eq!(
        std::fs::read_to_string(&rotated)
            .expect("the rotated file")
            .lines()
            .count(),
        2
    );
    // The gateway survived the SIGHUP and still serves.
    assert_eq!(get(h.http, "a.test", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn the_stdout_sink_writes_json_lines() {
    let x = EchoBackend::start("x").await;
    let files = [
        ("backends.yaml", backend_yaml("x", &[x.addr()])),
        ("a.yaml", route("a", "a.test", "x", "")),
    ];
    let port = free_port();
    let h = Harness::start_with_args(
        port,
        gateway_yaml(port),
        &files,
        &["--access-log", "stdout"],
    )
    .await;
    assert_eq!(get(h.http, "a.test", "/out", &[]).await.status, 200);
    // The process's stdout and stderr share the harness's log file; tracing logs are not JSON.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = h.gw.logs();
        let line = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == "/out");
        if let Some(line) = line {
            assert_eq!(line["status"], 200);
            assert_eq!(line["route"], "default/a");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line on stdout:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
