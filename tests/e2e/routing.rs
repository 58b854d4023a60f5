//! Routing by the Gateway API rules: every match type, every precedence rule, hostnames,
//! weighted splits, and the 404/500/503 outcomes.

use std::collections::HashMap;

use switchyard_testkit::{get, EchoBackend, H1Conn};

use crate::common::{backend_ref, backend_yaml, Harness};

/// Starts one echo backend per name and returns them with their Backend YAML.
async fn backends(names: &[&str]) -> (Vec<EchoBackend>, String) {
    let mut list = Vec::new();
    let mut yaml = String::new();
    for n in names {
        let b = EchoBackend::start(n).await;
        yaml.push_str(&backend_yaml(n, &[b.addr()]));
        list.push(b);
    }
    (list, yaml)
}

async fn backend_of(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get(h.http, host, path, headers).await;
    assert_eq!(r.status, 200, "{host}{path} {headers:?}: {r:?}");
    r.json()["backend"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn path_header_query_and_method_matches() {
    let names = [
        "exact", "prefix", "regex", "hdr", "hdr-re", "query", "method", "either", "root",
    ];
    let (_b, yaml) = backends(&names).await;
    let route = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: matches}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [match.test]
  rules:
    - matches: [{{path: {{type: Exact, value: /exact}}}}]
      backendRefs: [{}]
    - matches: [{{path: {{type: PathPrefix, value: /prefix/}}}}]
      backendRefs: [{}]
    - matches: [{{path: {{type: RegularExpression, value: "/re/[0-9]+"}}}}]
      backendRefs: [{}]
    - matches: [{{path: {{value: /h}}, headers: [{{name: X-Env, value: prod}}, {{name: x-team, value: cart}}]}}]
      backendRefs: [{}]
    - matches: [{{path: {{value: /h}}, headers: [{{type: RegularExpression, name: x-env, value: "stag(e|ing)"}}]}}]
      backendRefs: [{}]
    - matches: [{{path: {{value: /q}}, queryParams: [{{name: v, value: "2"}}]}}]
      backendRefs: [{}]
    - matches: [{{path: {{value: /m}}, method: DELETE}}]
      backendRefs: [{}]
    - matches: [{{path: {{type: Exact, value: /a}}}}, {{path: {{type: Exact, value: /b}}}}]
      backendRefs: [{}]
    - backendRefs: [{}]
"#,
        backend_ref("exact", 1),
        backend_ref("prefix", 1),
        backend_ref("regex", 1),
        backend_ref("hdr", 1),
        backend_ref("hdr-re", 1),
        backend_ref("query", 1),
        backend_ref("method", 1),
        backend_ref("either", 1),
        backend_ref("root", 1),
    );
    let h = Harness::start(&[("backends.yaml", yaml), ("route.yaml", route)]).await;
    let host = "match.test";
    // Exact matches the whole path only.
    assert_eq!(backend_of(&h, host, "/exact", &[]).await, "exact");
    assert_eq!(backend_of(&h, host, "/exact/", &[]).await, "root");
    assert_eq!(backend_of(&h, host, "/exactly", &[]).await, "root");
    // PathPrefix is segment-wise and ignores the prefix's trailing slash.
    assert_eq!(backend_of(&h, host, "/prefix", &[]).await, "prefix");
    assert_eq!(backend_of(&h, host, "/prefix/", &[]).await, "prefix");
    assert_eq!(backend_of(&h, host, "/prefix/deep/er", &[]).await, "prefix");
    assert_eq!(backend_of(&h, host, "/prefixes", &[]).await, "root");
    // RegularExpression is a full match.
    assert_eq!(backend_of(&h, host, "/re/42", &[]).await, "regex");
    assert_eq!(backend_of(&h, host, "/re/42x", &[]).await, "root");
    // Headers: names case-insensitive, all ANDed; regex values.
    let both = [("x-env", "prod"), ("X-Team", "cart")];
    assert_eq!(backend_of(&h, host, "/h", &both).await, "hdr");
    assert_eq!(
        backend_of(&h, host, "/h", &[("x-env", "prod")]).await,
        "root"
    );
    assert_eq!(
        backend_of(&h, host, "/h", &[("x-env", "staging")]).await,
        "hdr-re"
    );
    assert_eq!(
        backend_of(&h, host, "/h", &[("x-env", "stagingX")]).await,
        "root"
    );
    // Query params, with other params around.
    assert_eq!(backend_of(&h, host, "/q?a=1&v=2", &[]).await, "query");
    assert_eq!(backend_of(&h, host, "/q?v=3", &[]).await, "root");
    // Method.
    let mut c = H1Conn::connect(h.http).await.unwrap();
    let del = switchyard_testkit::request(http::Method::DELETE, host, "/m")
        .body(bytes::Bytes::new())
        .unwrap();
    assert_eq!(c.send(del).await.unwrap().json()["backend"], "method");
    assert_eq!(backend_of(&h, host, "/m", &[]).await, "root");
    // Several matches in one rule are ORed.
    assert_eq!(backend_of(&h, host, "/a", &[]).await, "either");
    assert_eq!(backend_of(&h, host, "/b", &[]).await, "either");
}

#[tokio::test]
async fn precedence_across_routes_and_files() {
    let names = [
        "exact", "long", "short", "method", "two-hdr", "one-hdr", "query", "first", "second",
    ];
    let (_b, yaml) = backends(&names).await;
    let route = |name: &str, rules: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [prec.test]\n  rules:\n{rules}"
        )
    };
    let r = |m: &str, b: &str| {
        format!(
            "    - matches: [{m}]\n      backendRefs: [{}]\n",
            backend_ref(b, 1)
        )
    };
    // Spread over files: "a-*.yaml" sorts before "b-*.yaml", which decides the final tie.
    let a = route(
        "a",
        &[
            r("{path: {type: PathPrefix, value: /x}}", "short"),
            r("{path: {type: PathPrefix, value: /x/y}}", "long"),
            r(
                "{path: {type: PathPrefix, value: /p}, headers: [{name: h1, value: '1'}]}",
                "one-hdr",
            ),
            r("{path: {type: PathPrefix, value: /t}}", "first"),
        ]
        .concat(),
    );
    let b = route(
        "b",
        &[
            r("{path: {type: Exact, value: /x/y/z}}", "exact"),
            r("{path: {type: PathPrefix, value: /m}, method: GET}", "method"),
            r("{path: {type: PathPrefix, value: /p}, headers: [{name: h1, value: '1'}, {name: h2, value: '2'}]}", "two-hdr"),
            r("{path: {type: PathPrefix, value: /p}, queryParams: [{name: q, value: '1'}]}", "query"),
            r("{path: {type: PathPrefix, value: /t}}", "second"),
            r("{path: {type: PathPrefix, value: /m}}", "short"),
        ]
        .concat(),
    );
    let h = Harness::start(&[
        ("backends.yaml", yaml),
        ("b-route.yaml", b),
        ("a-route.yaml", a),
    ])
    .await;
    let host = "prec.test";
    assert_eq!(
        backend_of(&h, host, "/x/y/z", &[]).await,
        "exact",
        "Exact beats any prefix"
    );
    assert_eq!(
        backend_of(&h, host, "/x/y/w", &[]).await,
        "long",
        "longest prefix wins"
    );
    assert_eq!(backend_of(&h, host, "/x/w", &[]).await, "short");
    assert_eq!(
        backend_of(&h, host, "/m", &[]).await,
        "method",
        "method match beats none"
    );
    let two = [("h1", "1"), ("h2", "2")];
    assert_eq!(
        backend_of(&h, host, "/p", &two).await,
        "two-hdr",
        "more header matches win"
    );
    assert_eq!(backend_of(&h, host, "/p", &[("h1", "1")]).await, "one-hdr");
    // One header match beats one query match (headers rank before query params).
    assert_eq!(
        backend_of(&h, host, "/p?q=1", &[("h1", "1")]).await,
        "one-hdr"
    );
    assert_eq!(backend_of(&h, host, "/p?q=1", &[]).await, "query");
    assert_eq!(
        backend_of(&h, host, "/t", &[]).await,
        "first",
        "file path breaks the tie"
    );
}

#[tokio::test]
async fn hostnames_exact_beats_wildcard_beats_catch_all() {
    let (_b, yaml) = backends(&["exact", "wild", "any"]).await;
    let route = |name: &str, hosts: &str, b: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n{hosts}  rules:\n    - backendRefs: [{}]\n",
            backend_ref(b, 1)
        )
    };
    let routes = [
        route("w", "  hostnames: ['*.example.com']\n", "wild"),
        route("e", "  hostnames: [api.example.com]\n", "exact"),
        route("c", "", "any"),
    ]
    .concat();
    let h = Harness::start(&[("backends.yaml", yaml), ("routes.yaml", routes)]).await;
    assert_eq!(backend_of(&h, "api.example.com", "/", &[]).await, "exact");
    assert_eq!(
        backend_of(&h, "API.Example.com:8080", "/", &[]).await,
        "exact"
    );
    assert_eq!(backend_of(&h, "web.example.com", "/", &[]).await, "wild");
    assert_eq!(backend_of(&h, "a.b.example.com", "/", &[]).await, "wild");
    assert_eq!(backend_of(&h, "example.com", "/", &[]).await, "any");
    assert_eq!(backend_of(&h, "other.test", "/", &[]).await, "any");
}

#[tokio::test]
async fn weighted_split_lands_within_two_percent() {
    let (_b, yaml) = backends(&["v1", "v2", "v3"]).await;
    let route = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: split}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n    - backendRefs: [{}, {}, {}]\n",
        backend_ref("v1", 90),
        backend_ref("v2", 10),
        backend_ref("v3", 0)
    );
    let h = Harness::start(&[("backends.yaml", yaml), ("split.yaml", route)]).await;
    const N: usize = 10_000;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(H1Conn::connect(h.http).await.unwrap());
    }
    let per = N / conns.len();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(per);
                for _ in 0..per {
                    let r = c.get("split.test", "/").await.expect("request");
                    assert_eq!(r.status, 200);
                    seen.push(r.json()["backend"].as_str().unwrap_or("").to_string());
                }
                seen
            })
        })
        .collect();
    for t in tasks {
        for b in t.await.unwrap() {
            *counts.entry(b).or_default() += 1;
        }
    }
    let share = |b: &str| *counts.get(b).unwrap_or(&0) as f64 / N as f64;
    assert!(
        (0.88..=0.92).contains(&share("v1")),
        "v1 share {} {counts:?}",
        share("v1")
    );
    assert!(
        (0.08..=0.12).contains(&share("v2")),
        "v2 share {} {counts:?}",
        share("v2")
    );
    assert_eq!(share("v3"), 0.0, "weight 0 gets no traffic");
}

#[tokio::test]
async fn not_found_empty_backend_and_dead_upstream() {
    let live = EchoBackend::start("live").await;
    // A port with nothing listening on it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = [
        backend_yaml("live", &[live.addr()]),
        backend_yaml("empty", &[]),
        backend_yaml("dead", &[dead]),
    ]
    .concat();
    let route = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [s.test]\n  rules:\n    - matches: [{{path: {{value: /empty}}}}]\n      backendRefs: [{}]\n    - matches: [{{path: {{value: /dead}}}}]\n      backendRefs: [{}]\n    - matches: [{{path: {{value: /half}}}}]\n      backendRefs: [{}, {}]\n    - matches: [{{path: {{value: /none}}}}]\n",
        backend_ref("empty", 1),
        backend_ref("dead", 1),
        backend_ref("live", 1),
        backend_ref("empty", 1),
    );
    let h = Harness::start(&[("backends.yaml", yaml), ("r.yaml", route)]).await;

    let r = get(h.http, "s.test", "/nowhere", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-switchyard-error"), Some("no_route"));
    let r = get(h.http, "unknown.test", "/", &[]).await;
    assert_eq!(r.status, 404);

    let r = get(h.http, "s.test", "/empty", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-switchyard-error"), Some("no_endpoints"));
    let r = get(h.http, "s.test", "/none", &[]).await;
    assert_eq!(r.status, 500, "a rule without backendRefs answers 500");

    let r = get(h.http, "s.test", "/dead", &[]).await;
    assert!(r.status == 502 || r.status == 503, "{r:?}");
    assert_eq!(
        r.header("x-switchyard-error"),
        Some("upstream_connect_failure")
    );
    // The access record is written after the reply; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !h.gw.logs().contains("upstream_connect_failure") {
        assert!(
            std::time::Instant::now() < deadline,
            "reason is logged:\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Half the weight goes to a Backend without endpoints: that half gets 500s, the rest 200s.
    let mut ok = 0;
    let mut err = 0;
    let mut c = H1Conn::connect(h.http).await.unwrap();
    for _ in 0..400 {
        match c.get("s.test", "/half").await.unwrap().status.as_u16() {
            200 => ok += 1,
            500 => err += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        (140..=260).contains(&ok) && ok + err == 400,
        "ok {ok} err {err}"
    );
}

#[tokio::test]
async fn forwarding_headers_hop_by_hop_and_request_id() {
    let (_b, yaml) = backends(&["echo"]).await;
    let route = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n    - backendRefs: [{}]\n",
        backend_ref("echo", 1)
    );
    let h = Harness::start(&[("backends.yaml", yaml), ("r.yaml", route)]).await;
    let r = get(
        h.http,
        "fwd.test:1234",
        "/",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    let hdr = &r.json()["headers"];
    assert_eq!(hdr["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(hdr["x-forwarded-proto"], "http");
    assert_eq!(hdr["x-forwarded-host"], "fwd.test:1234");
    assert!(
        hdr.get("x-hop").is_none(),
        "Connection-named header removed: {hdr}"
    );
    assert!(
        hdr.get("keep-alive").is_none(),
        "hop-by-hop header removed: {hdr}"
    );
    assert_eq!(hdr["x-kept"], "yes");
    let id = hdr["x-request-id"].as_str().expect("request id generated");
    assert_eq!(id.len(), 32);
    let again = get(h.http, "fwd.test", "/", &[("x-request-id", "mine-1")]).await;
    assert_eq!(
        again.json()["headers"]["x-request-id"],
        "mine-1",
        "kept when present"
    );
}
