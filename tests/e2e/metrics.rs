//! `/metrics` end to end: known traffic (successes, no route, connect failures with a retry,
//! a rate limit, a circuit-breaker overflow while a request hangs) and then one scrape whose
//! series have exactly the expected counts and label sets, parsed from the exposition text.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use switchyard_testkit::{free_port, get, request, EchoBackend, FaultyBackend, H1Conn, Mode};

use crate::common::{backend_ref, backend_yaml, Harness};

/// One sample: metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the text exposition format into samples (comments skipped).
pub fn parse_exposition(text: &str) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().expect("a numeric sample");
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_string(), parse_labels(body))
            }
        };
        out.push(((name, labels), value));
    }
    out
}

fn parse_labels(mut s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("key=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => value.push(chars.next().expect("an escaped char").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the one sample of `name` whose labels include `want` (panics on 0 or >1).
fn value(samples: &[(Series, f64)], name: &str, want: &[(&str, &str)]) -> f64 {
    let hits: Vec<_> = matching(samples, name, want);
    assert_eq!(
        hits.len(),
        1,
        "{name} {want:?}: want exactly one series, found {hits:#?}"
    );
    hits[0].1
}

/// The sum of the samples of `name` whose labels include `want`.
pub fn sum(samples: &[(Series, f64)], name: &str, want: &[(&str, &str)]) -> f64 {
    matching(samples, name, want).iter().map(|(_, v)| v).sum()
}

fn matching<'a>(
    samples: &'a [(Series, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<&'a (Series, f64)> {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn route(name: &str, host: &str, backend: &str, rule_lines: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n    - backendRefs: [{}]\n{rule_lines}",
        backend_ref(backend, 1)
    )
}

/// Every label of a request series, in catalogue order.
fn request_labels<'a>(
    route: &'a str,
    rule: &'a str,
    backend: &'a str,
    code: &'a str,
    reason: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("gateway", "default/gw"),
        ("zone", ""),
        ("listener", "http"),
        ("route", route),
        ("rule", rule),
        ("backend", backend),
        ("endpoint_zone", ""),
        ("code", code),
        ("reason", reason),
    ]
}

#[tokio::test]
async fn a_scrape_after_known_traffic_has_exact_counts_and_labels() {
    let x = EchoBackend::start("x").await;
    let hang = FaultyBackend::start("hang", Mode::Hang).await;
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let files = [
        (
            "backends.yaml",
            backend_yaml("x", &[x.addr()])
                + &backend_yaml("dead", &[dead])
                + &backend_yaml("hang", &[hang.addr()])
                + "---\napiVersion: switchyard.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: hang}\nspec:\n  targetRefs: [{group: switchyard.dev, kind: Backend, name: hang}]\n  circuitBreaker: {maxRequests: 1}\n",
        ),
        ("a.yaml", route("a", "a.test", "x", "      name: main\n")),
        (
            "b.yaml",
            route("b", "b.test", "dead", "      retry: {attempts: 1}\n"),
        ),
        (
            "c.yaml",
            route("c", "c.test", "x", "")
                + "---\napiVersion: switchyard.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: c}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: c}]\n  rateLimit: {requests: 1, per: 1m, burst: 1, key: {header: x-tenant}}\n",
        ),
        ("e.yaml", route("e", "e.test", "hang", "")),
    ];
    let h = Harness::start(&files).await;

    // Route a: 6 GETs and one POST with an 11-byte body, all 200 from x.
    let mut out_bytes = 0;
    for i in 0..6 {
        let r = get(h.http, "a.test", &format!("/ok/{i}?client=secret"), &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        out_bytes += r.body.len();
    }
    let mut conn = H1Conn::connect(h.http).await.expect("connect");
    let post = request(Method::POST, "a.test", "/ok/post")
        .body(Bytes::from_static(b"hello world"))
        .expect("a request");
    let r = conn.send(post).await.expect("POST");
    assert_eq!(r.status, 200, "{r:?}");
    out_bytes += r.body.len();
    // No route: 3 x 404.
    for _ in 0..3 {
        let r = get(h.http, "nowhere.test", "/x", &[]).await;
        assert_eq!(r.status, 404);
    }
    // Connect failures, each retried once: 2 x 503.
    for _ in 0..2 {
        let r = get(h.http, "b.test", "/", &[]).await;
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(
            r.header("x-switchyard-error"),
            Some("upstream_connect_failure")
        );
    }
    // Rate limit of 1 per minute: 200, then 429.
    assert_eq!(
        get(h.http, "c.test", "/", &[("x-tenant", "t1")])
            .await
            .status,
        200
    );
    let r = get(h.http, "c.test", "/", &[("x-tenant", "t1")]).await;
    assert_eq!(r.status, 429);
    // One request hangs holding the only maxRequests permit; the next overflows.
    let addr = h.http;
    let hanging = tokio::spawn(async move {
        let _ =
            tokio::time::timeout(Duration::from_secs(30), get(addr, "e.test", "/hang", &[])).await;
    });
    let mut overflowed = false;
    for _ in 0..100 {
        if hang.requests() > 0 {
            let r = get(h.http, "e.test", "/", &[]).await;
            assert_eq!(r.status, 503);
            assert_eq!(r.header("x-switchyard-error"), Some("upstream_overflow"));
            overflowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(overflowed, "the hanging request never reached the backend");

    // A request is recorded in the `logging` hook, just after its response went out: wait
    // (bounded) until the overflowed request is in the scrape before reading the counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let scrape = loop {
        let scrape = h.gw.admin_get("/metrics").await.expect("GET /metrics");
        let samples = parse_exposition(&scrape.text());
        let recorded = matching(
            &samples,
            "switchyard_requests_total",
            &[("reason", "upstream_overflow")],
        )
        .iter()
        .any(|(_, v)| *v >= 1.0);
        if recorded || std::time::Instant::now() > deadline {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The same hook then records the histogram and byte counters: give it a moment to finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let scrape = match h.gw.admin_get("/metrics").await {
        Ok(again) if again.status == 200 => again,
        _ => scrape,
    };
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = scrape.text();
    let s = parse_exposition(&text);

    let requests = "switchyard_requests_total";
    let ok = request_labels("default/a", "main", "default/x", "200", "ok");
    let no_route = request_labels("", "", "", "404", "no_route");
    let connect = request_labels(
        "default/b",
        "0",
        "default/dead",
        "503",
        "upstream_connect_failure",
    );
    let limited = request_labels("default/c", "0", "default/x", "429", "rate_limited");
    let c_ok = request_labels("default/c", "0", "default/x", "200", "ok");
    let overflow = request_labels("default/e", "0", "default/hang", "503", "upstream_overflow");
    let expected = [
        (&ok, 7.0),
        (&no_route, 3.0),
        (&connect, 2.0),
        (&limited, 1.0),
        (&c_ok, 1.0),
        (&overflow, 1.0),
    ];
    for (labels, n) in &expected {
        assert_eq!(value(&s, requests, labels), *n, "{labels:?}\n{text}");
        // The label set is exactly the catalogue's.
        let series = matching(&s, requests, labels);
        assert_eq!(series[0].0 .1.len(), labels.len(), "{series:?}");
        // The histogram counted the same requests (no reason label there).
        let dl = &labels[..8];
        let count = value(&s, "switchyard_request_duration_seconds_count", dl);
        assert_eq!(count, *n, "duration count {dl:?}");
        let mut inf = dl.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            value(&s, "switchyard_request_duration_seconds_bucket", &inf),
            *n
        );
        let mut ten_s = dl.to_vec();
        ten_s.push(("le", "10"));
        assert_eq!(
            value(&s, "switchyard_request_duration_seconds_bucket", &ten_s),
            *n
        );
    }
    let total: f64 = matching(&s, requests, &[]).iter().map(|(_, v)| v).sum();
    assert_eq!(total, 15.0, "no other requests were counted:\n{text}");

    let gz = [("gateway", "default/gw"), ("zone", "")];
    let backend = |b: &'static str| [gz[0], gz[1], ("backend", b)];
    assert_eq!(
        value(
            &s,
            "switchyard_upstream_retries_total",
            &backend("default/dead")
        ),
        2.0
    );
    // x: 7 + 1 connected attempts, on new or reused connections.
    let conns: f64 = matching(
        &s,
        "switchyard_upstream_connections_total",
        &backend("default/x"),
    )
    .iter()
    .map(|(_, v)| v)
    .sum();
    assert_eq!(conns, 8.0);
    let route_bytes = |route| {
        [
            gz[0],
            gz[1],
            ("listener", "http"),
            ("route", route),
            ("backend", "default/x"),
        ]
    };
    assert_eq!(
        value(
            &s,
            "switchyard_request_bytes_total",
            &route_bytes("default/a")
        ),
        11.0
    );
    assert_eq!(
        value(
            &s,
            "switchyard_response_bytes_total",
            &route_bytes("default/a")
        ),
        out_bytes as f64
    );
    let mut limit = backend("default/hang").to_vec();
    limit.push(("limit", "max_requests"));
    assert_eq!(
        value(&s, "switchyard_circuit_breaker_overflows_total", &limit),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "switchyard_upstream_requests_in_flight",
            &backend("default/hang")
        ),
        1.0,
        "the hanging request is in flight"
    );
    assert_eq!(
        value(
            &s,
            "switchyard_upstream_requests_in_flight",
            &backend("default/x")
        ),
        0.0
    );
    let mut available = backend("default/x").to_vec();
    available.push(("state", "available"));
    assert_eq!(value(&s, "switchyard_endpoints", &available), 1.0);
    assert_eq!(
        value(
            &s,
            "switchyard_outlier_ejections_total",
            &backend("default/x")
        ),
        0.0
    );
    let generation = h.gw.config().await["generation"]
        .as_f64()
        .expect("generation");
    assert_eq!(value(&s, "switchyard_generation", &gz), generation);
    let applied = value(&s, "switchyard_generation_applied_timestamp_seconds", &gz);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(applied > now - 600.0 && applied <= now + 1.0, "{applied}");

    // Bounded cardinality: no path, query, host or client address in any label value.
    for ((name, labels), _) in &s {
        for v in labels.values() {
            for bad in ["/ok", "secret", "a.test", "nowhere", "127.0.0.1"] {
                assert!(!v.contains(bad), "{name} has label value {v:?}");
            }
        }
    }
    hanging.abort();
}

#[test]
fn the_exposition_parser_reads_labels_and_escapes() {
    let s = parse_exposition(
        "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"z\"} 3\nplain 4.5\ne{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].0 .1["b"], "q\"z");
    assert_eq!(s[1].1, 4.5);
    assert_eq!(s[2].0 .1["le"], "+Inf");
}

#[tokio::test]
async fn metrics_off_serves_traffic_without_a_registry() {
    let x = EchoBackend::start("x").await;
    let files = [
        ("backends.yaml", backend_yaml("x", &[x.addr()])),
        ("a.yaml", route("a", "a.test", "x", "")),
    ];
    let port = free_port();
    let h = Harness::start_with_args(
        port,
        crate::common::gateway_yaml(port),
        &files,
        &["--metrics", "off"],
    )
    .await;
    assert_eq!(get(h.http, "a.test", "/", &[]).await.status, 200);
    let r = h.gw.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 404, "{}", r.text());
    // Trace headers are still written.
    assert!(x.requests()[0].headers.contains_key("traceparent"));
}
