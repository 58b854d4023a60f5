//! `switchyard explain` against the gateway's own behaviour: for two dozen varied requests
//! (hosts, non-canonical paths, methods, headers, cohort pins, 0/100 splits, redirects,
//! rewrites, authorization allows and denies, unknown hosts, 500s and 400s) explain runs in
//! both modes (route files and `--admin` of the running gateway), then the real request goes
//! through the gateway, and the two sides must agree: the backend the echo names, the local
//! reply's status and `x-switchyard-error`, the redirect's Location, the upstream path. A
//! second story checks that `--admin` sees a live ejection that the files cannot know about.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;
use switchyard_testkit::EchoBackend;

use crate::common::{backend_ref, backend_yaml, bin, Harness};
use crate::hardening::{exchange, zoned_gateway, RawResponse};

const ROUTES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.test]
  rules:
    - matches: [{path: {type: PathPrefix, value: /cart}}]
      backendRefs: [V1_0, V2_100]
    - matches: [{path: {type: PathPrefix, value: /cart}, headers: [{name: x-env, value: beta}]}]
      backendRefs: [BETA]
    - matches: [{path: {type: Exact, value: /old}}]
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}]
    - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]
      backendRefs: [API]
    - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: v, value: "2"}]}]
      backendRefs: [API]
    - matches: [{path: {type: PathPrefix, value: /empty}}]
      backendRefs: [EMPTY]
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [WEB]
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: canary}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop}]
  cohort: {pin: {header: x-canary}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wild}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["*.wild.test"]
  rules:
    - backendRefs: [V2_1]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other}
spec:
  parentRefs: [{name: gw}]
  hostnames: [other.test]
  rules:
    - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: other}]}}]
      backendRefs: [V1_100, V2_0]
---
apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: guard}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rules:
    - name: no-admin
      action: Deny
      to: [{paths: [{type: PathPrefix, value: /admin}]}]
    - name: no-debug
      action: Deny
      headers: [{name: x-debug, present: true}]
"#;

fn routes_yaml() -> String {
    ROUTES
        .replace("V1_0", &backend_ref("v1", 0))
        .replace("V2_100", &backend_ref("v2", 100))
        .replace("V1_100", &backend_ref("v1", 100))
        .replace("V2_0", &backend_ref("v2", 0))
        .replace("V2_1", &backend_ref("v2", 1))
        .replace("BETA", &backend_ref("beta", 1))
        .replace("API", &backend_ref("api", 1))
        .replace("EMPTY", &backend_ref("empty", 1))
        .replace("WEB", &backend_ref("web", 1))
}

/// What the test expects (and both sides must show).
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Proxied to this Backend (echo name), matched by (route, rule index).
    Proxy(&'static str, &'static str, usize),
    Reply(u16, &'static str),
    Redirect(u16, &'static str),
}

struct Case {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

const fn case(
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case {
        method,
        host,
        path,
        headers,
        expect,
    }
}

use Expect::{Proxy, Redirect, Reply};

const CASES: &[Case] = &[
    case("GET", "shop.test", "/cart", &[], Proxy("v2", "shop", 0)),
    case(
        "GET",
        "shop.test",
        "/cart/items?x=1",
        &[],
        Proxy("v2", "shop", 0),
    ),
    case("GET", "Shop.Test", "/cart", &[], Proxy("v2", "shop", 0)),
    case(
        "DELETE",
        "shop.test",
        "/cart/1",
        &[],
        Proxy("v2", "shop", 0),
    ),
    case("GET", "shop.test", "//cart//x", &[], Proxy("v2", "shop", 0)),
    case(
        "GET",
        "shop.test",
        "/a/../cart",
        &[],
        Proxy("v2", "shop", 0),
    ),
    case(
        "GET",
        "shop.test",
        "/cart",
        &[("x-env", "beta")],
        Proxy("beta", "shop", 1),
    ),
    case(
        "GET",
        "shop.test",
        "/cart",
        &[("x-canary", "v1")],
        Proxy("v1", "shop", 0),
    ),
    case(
        "GET",
        "shop.test",
        "/cart",
        &[("x-canary", "nobody")],
        Proxy("v2", "shop", 0),
    ),
    case(
        "GET",
        "shop.test",
        "/old",
        &[],
        Redirect(301, "http://shop.test:PORT/new"),
    ),
    case(
        "GET",
        "shop.test",
        "/old?a=1",
        &[],
        Redirect(301, "http://shop.test:PORT/new?a=1"),
    ),
    case(
        "POST",
        "shop.test",
        "/api/users?id=7",
        &[],
        Proxy("api", "shop", 3),
    ),
    case(
        "GET",
        "shop.test",
        "/api/users",
        &[],
        Proxy("web", "shop", 6),
    ),
    case("GET", "shop.test", "/q?v=2", &[], Proxy("api", "shop", 4)),
    case("GET", "shop.test", "/q?v=3", &[], Proxy("web", "shop", 6)),
    case(
        "GET",
        "shop.test",
        "/empty",
        &[],
        Reply(500, "no_endpoints"),
    ),
    case(
        "GET",
        "shop.test",
        "/admin",
        &[],
        Reply(403, "authz_denied"),
    ),
    case(
        "GET",
        "shop.test",
        "/public/../admin",
        &[],
        Reply(403, "authz_denied"),
    ),
    case(
        "GET",
        "shop.test",
        "/%61dmin/x",
        &[],
        Reply(403, "authz_denied"),
    ),
    case(
        "GET",
        "shop.test",
        "/cart",
        &[("x-debug", "1")],
        Reply(403, "authz_denied"),
    ),
    case(
        "GET",
        "shop.test",
        "/bad%00path",
        &[],
        Reply(400, "invalid_path"),
    ),
    case("GET", "unknown.test", "/", &[], Reply(404, "no_route")),
    case(
        "GET",
        "a.wild.test",
        "/anything",
        &[],
        Proxy("v2", "wild", 0),
    ),
    case("GET", "b.c.wild.test", "/", &[], Proxy("v2", "wild", 0)),
    case("GET", "other.test", "/x", &[], Proxy("v1", "other", 0)),
    case("HEAD", "other.test", "/", &[], Proxy("v1", "other", 0)),
];

/// Runs `switchyard explain --json` with `mode` args; returns (exit code, explanation).
fn explain(mode: &[String], c: &Case) -> (i32, Value) {
    let mut cmd = Command::new(bin());
    cmd.args([
        "explain", "--json", "--seed", "7", "--method", c.method, "--host", c.host,
    ]);
    cmd.arg("--path").arg(c.path);
    for (k, v) in c.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.args(mode);
    let out = cmd.output().expect("run switchyard explain");
    let code = out.status.code().unwrap_or(-1);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} {}{}: explain printed no JSON ({e}), exit {code}: {}",
            c.method,
            c.host,
            c.path,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, doc)
}

async fn send(addr: SocketAddr, c: &Case) -> RawResponse {
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        c.method, c.path, c.host
    );
    for (k, v) in c.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    exchange(addr, req.as_bytes()).await.0
}

fn short(backend: &Value) -> &str {
    let name = backend.as_str().unwrap_or("");
    name.rsplit('/').next().unwrap_or(name)
}

/// Asserts that explain's outcome matches the expectation and the gateway's response.
fn agree(what: &str, c: &Case, ex: &Value, code: i32, r: &RawResponse, port: u16) {
    let o = &ex["outcome"];
    match c.expect {
        Proxy(backend, route, rule) => {
            assert_eq!(code, 0, "{what}: exit code");
            assert_eq!(o["action"], "proxy", "{what}: {o}");
            assert_eq!(short(&o["backend"]), backend, "{what}: explain's backend");
            let matched = &ex["rules"][0];
            assert_eq!(matched["verdict"], "matched", "{what}: {}", ex["rules"]);
            assert_eq!(matched["route"], format!("default/{route}"), "{what}");
            assert_eq!(matched["rule_index"], rule, "{what}");
            assert!(
                matched["line"].as_u64().unwrap_or(0) > 0,
                "{what}: {matched}"
            );
            // The gateway did the same: the echo that answered, the path it saw.
            assert_eq!(r.status, 200, "{what}: gateway answered {}", r.head);
            assert_eq!(
                r.header("x-backend"),
                Some(backend),
                "{what}: the gateway's backend"
            );
            if c.method != "HEAD" {
                let echo = r.json();
                let mut seen = echo["path"].as_str().unwrap_or("").to_string();
                if let Some(q) = echo["query"].as_str() {
                    seen = format!("{seen}?{q}");
                }
                assert_eq!(ex["upstream"]["path"], seen, "{what}: upstream path");
            }
        }
        Reply(status, reason) => {
            assert_eq!(code, 1, "{what}: exit code");
            assert_eq!(o["action"], "reply", "{what}: {o}");
            assert_eq!(o["status"], status, "{what}: {o}");
            assert_eq!(o["reason"], reason, "{what}: {o}");
            assert_eq!(r.status, status, "{what}: gateway answered {}", r.head);
            assert_eq!(
                r.header("x-switchyard-error"),
                Some(reason),
                "{what}: {}",
                r.head
            );
        }
        Redirect(status, location) => {
            let location = location.replace("PORT", &port.to_string());
            assert_eq!(code, 1, "{what}: exit code");
            assert_eq!(o["action"], "redirect", "{what}: {o}");
            assert_eq!(o["status"], status, "{what}");
            assert_eq!(o["location"], location.as_str(), "{what}");
            assert_eq!(r.status, status, "{what}: gateway answered {}", r.head);
            assert_eq!(r.header("location"), Some(location.as_str()), "{what}");
        }
    }
}

#[tokio::test]
async fn explain_agrees_with_the_gateway_in_both_modes() {
    let mut echoes = Vec::new();
    let mut yaml = String::new();
    for name in ["v1", "v2", "beta", "api", "web"] {
        let e = EchoBackend::start(name).await;
        yaml.push_str(&backend_yaml(name, &[e.addr()]));
        echoes.push(e);
    }
    yaml.push_str(&backend_yaml("empty", &[]));
    let port = switchyard_testkit::free_port();
    let files = [("backends.yaml", yaml), ("routes.yaml", routes_yaml())];
    let h = Harness::start_with(port, zoned_gateway(port), &files).await;
    let dir = h.dir.path().display().to_string();
    let files_mode = vec!["--config-dir".to_string(), dir.clone()];
    let admin_mode = vec!["--admin".to_string(), h.gw.admin_addr().to_string()];

    assert!(CASES.len() >= 20);
    for c in CASES {
        let what = format!("{} {}{} {:?}", c.method, c.host, c.path, c.headers);
        let (code_f, from_files) = explain(&files_mode, c);
        let (code_a, from_admin) = explain(&admin_mode, c);
        let r = send(h.http, c).await;
        agree(&format!("{what} [files]"), c, &from_files, code_f, &r, port);
        agree(&format!("{what} [admin]"), c, &from_admin, code_a, &r, port);
        // Both modes read the same files: the same generation and the same reasoning.
        for key in [
            "rules", "backend", "filters", "authz", "listener", "host", "upstream",
        ] {
            assert_eq!(
                from_files[key], from_admin[key],
                "{what}: {key} differs between modes"
            );
        }
        assert_eq!(
            from_files["generation"]["digest"], from_admin["generation"]["digest"],
            "{what}"
        );
    }

    // Why the others did not match, and where they are.
    let verdicts = |c: &Case| explain(&files_mode, c).1["rules"].clone();
    let find = |rules: &Value, rule: usize| -> String {
        let list = rules.as_array().cloned().unwrap_or_default();
        let v = list
            .iter()
            .find(|v| v["route"] == "default/shop" && v["rule_index"] == rule)
            .unwrap_or_else(|| panic!("rule {rule} not listed: {rules}"));
        v["verdict"].as_str().unwrap_or("").to_string()
    };
    let api_get = verdicts(&CASES[12]);
    assert_eq!(find(&api_get, 3), "method");
    assert_eq!(find(&api_get, 0), "path");
    assert_eq!(find(&verdicts(&CASES[14]), 4), "query");
    let beta = verdicts(&CASES[6]);
    assert_eq!(find(&beta, 0), "precedence");
    assert_eq!(find(&verdicts(&CASES[7]), 1), "header");
    let routes_file = std::fs::read_to_string(h.dir.path().join("routes.yaml")).unwrap();
    for v in api_get.as_array().unwrap() {
        let line = v["line"].as_u64().unwrap() as usize;
        let text = routes_file.lines().nth(line - 1).unwrap_or("");
        assert!(v["file"].as_str().unwrap().ends_with("routes.yaml"), "{v}");
        assert!(
            text.contains("- matches")
                || text.contains("- backendRefs")
                || text.contains("- filters"),
            "line {line} is not a rule: {text:?}"
        );
    }
    // No host match: say so and list the port's hostnames.
    let unknown = explain(&files_mode, &CASES[21]).1;
    assert!(unknown["host"]["bucket"].is_null(), "{unknown}");
    let names: Vec<&str> = unknown["host"]["port_hostnames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, ["*.wild.test", "other.test", "shop.test"]);
    // The authorization decision names the policy and rule; the canonical path is shown.
    let denied = explain(&admin_mode, &CASES[17]).1;
    assert_eq!(denied["listener"]["canonical_path"], "/admin");
    assert_eq!(denied["authz"]["policy"], "default/guard");
    assert_eq!(denied["authz"]["rule"], "no-admin");
    assert_eq!(
        explain(&admin_mode, &CASES[20]).1["listener"]["refused"],
        "invalid_path: control byte"
    );
    // The split and the filters are shown.
    let split = explain(&files_mode, &CASES[24]).1;
    assert_eq!(
        split["backend"]["weights"],
        serde_json::json!([["default/v1", 100], ["default/v2", 0]])
    );
    assert_eq!(split["backend"]["why"], "weighted");
    assert_eq!(
        split["filters"][0],
        "RequestHeaderModifier: set [x-route: other]"
    );
    let pinned = explain(&files_mode, &CASES[7]).1;
    assert_eq!(pinned["backend"]["why"], "pinned");

    // Text output and errors.
    let text = Command::new(bin())
        .args([
            "explain",
            "--config-dir",
            &dir,
            "--host",
            "shop.test",
            "--path",
            "/old",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("redirect 301 to http://shop.test:"), "{text}");
    assert!(text.contains("routes.yaml:"), "{text}");
    let bad = Command::new(bin())
        .args([
            "explain",
            "--config-dir",
            &dir,
            "--host",
            "shop.test",
            "--path",
            "/",
            "--port",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no port 1"));
}

#[tokio::test]
async fn admin_mode_sees_live_ejections() {
    let a = EchoBackend::start("flaky-a").await;
    let b = EchoBackend::start("flaky-b").await;
    let mut yaml = backend_yaml("flaky", &[a.addr(), b.addr()]);
    yaml.push_str("---\napiVersion: switchyard.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: flaky-policy}\nspec:\n  targetRefs: [{group: switchyard.dev, kind: Backend, name: flaky}]\n  outlierDetection: {consecutive5xx: 1, interval: 60s, baseEjectionTime: 60s, maxEjectionPercent: 50}\n");
    yaml.push_str(&format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: flaky}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [flaky.test]\n  rules:\n    - backendRefs: [{}]\n",
        backend_ref("flaky", 1)
    ));
    let port = switchyard_testkit::free_port();
    let h = Harness::start_with(port, zoned_gateway(port), &[("routes.yaml", yaml)]).await;
    let c = case("GET", "flaky.test", "/", &[], Proxy("flaky", "flaky", 0));
    // One 500 ejects the endpoint that answered it.
    let r = send(
        h.http,
        &case("GET", "flaky.test", "/status/500", &[], c.expect),
    )
    .await;
    assert_eq!(r.status, 500);
    let bad = r.header("x-backend").unwrap().to_string();
    let bad_addr = if bad == "flaky-a" { a.addr() } else { b.addr() };
    let good = if bad == "flaky-a" {
        "flaky-b"
    } else {
        "flaky-a"
    };

    let admin = vec!["--admin".to_string(), h.gw.admin_addr().to_string()];
    let (code, live) = explain(&admin, &c);
    assert_eq!(code, 0);
    let endpoints = live["backend"]["endpoints"]["local"]
        .as_array()
        .unwrap()
        .clone();
    let state = |addr: SocketAddr| {
        endpoints
            .iter()
            .find(|e| e["address"] == addr.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{addr} not listed: {endpoints:?}"))
    };
    assert_eq!(state(bad_addr)["ejected"], true, "{live}");
    assert_eq!(state(bad_addr)["available"], false);
    assert_eq!(
        live["backend"]["endpoints"]["detail"],
        "1/2 endpoints in rotation"
    );
    // The files know nothing of it.
    let files = vec![
        "--config-dir".to_string(),
        h.dir.path().display().to_string(),
    ];
    let (_, cold) = explain(&files, &c);
    let cold_eps = cold["backend"]["endpoints"]["local"].as_array().unwrap();
    assert!(cold_eps
        .iter()
        .all(|e| e["ejected"] == false && e["available"] == true));
    // And the gateway indeed sends everything to the endpoint in rotation.
    for _ in 0..6 {
        let r = send(h.http, &c).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some(good));
    }
}
