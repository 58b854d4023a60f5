//! Unit tests of the routing decision over a compiled generation (no sockets): matching and
//! 404, redirects, weights and seeded draws, cohort pins, rewrites, mirrors and the 500s.

use std::sync::Arc;

use pingora::http::RequestHeader;
use switchyard_config::SourceFile;

use super::*;
use crate::resilience::cohort::Why;
use crate::state::StateRegistry;

/// A gateway on port 8080 with routes for `shop.test` and `*.wild.test`.
pub(crate) const FIXTURE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: v1}
spec: {endpoints: [{address: "127.0.0.1:9001"}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: v2}
spec: {endpoints: [{address: "127.0.0.1:9002"}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: empty}
spec: {endpoints: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.test]
  rules:
    - matches: [{path: {type: PathPrefix, value: /cart}}]
      backendRefs: [{name: v1, weight: 0}, {name: v2, weight: 100}]
    - matches: [{path: {type: Exact, value: /old}}]
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}]
    - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
      filters: [{type: URLRewrite, urlRewrite: {hostname: api.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]
      backendRefs: [{name: v1}]
    - matches: [{path: {type: PathPrefix, value: /split}}]
      backendRefs: [{name: v1, weight: 50}, {name: v2, weight: 50}]
    - matches: [{path: {type: PathPrefix, value: /mirror}}]
      filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2}}}]
      backendRefs: [{name: v1}]
    - matches: [{path: {type: PathPrefix, value: /none}}]
    - matches: [{path: {type: PathPrefix, value: /empty}}]
      backendRefs: [{name: empty}]
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: v1}]
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
    - backendRefs: [{name: v2}]
"#;

/// The fixture compiled into a runtime.
pub(crate) fn runtime() -> Runtime {
    let generation = switchyard_config::build(&[SourceFile::new("routes.yaml", FIXTURE)])
        .unwrap_or_else(|e| panic!("{e}"));
    Runtime::compile(Arc::new(generation), None, 1, &StateRegistry::default()).unwrap()
}

pub(crate) fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RequestHeader {
    let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
    req.insert_header("host", host).unwrap();
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).unwrap();
    }
    req
}

fn decide(rt: &Runtime, req: &RequestHeader, seed: u64) -> Routed {
    let port = rt.port(8080).unwrap();
    route(rt, port, req, &mut fastrand::Rng::with_seed(seed))
}

fn backend_name(r: &Routed) -> &str {
    r.backend
        .as_ref()
        .map(|(b, _)| b.id.name.as_str())
        .unwrap_or("-")
}

#[test]
fn matches_route_and_host() {
    let rt = runtime();
    let r = decide(&rt, &request("GET", "shop.test", "/cart/items", &[]), 1);
    assert_eq!(r.outcome, Outcome::Proxy);
    assert_eq!(r.rule.as_ref().unwrap().rule_index, 0);
    assert_eq!(backend_name(&r), "v2");
    let r = decide(&rt, &request("GET", "Shop.Test:8080", "/", &[]), 1);
    assert_eq!(r.rule.as_ref().unwrap().rule_index, 7);
    let r = decide(&rt, &request("GET", "a.wild.test", "/x", &[]), 1);
    assert_eq!(backend_name(&r), "v2");
    let r = decide(&rt, &request("GET", "nowhere.test", "/", &[]), 1);
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            status: 404,
            reason: Reason::NoRoute
        }
    );
    assert!(r.rule.is_none());
}

#[test]
fn weights_zero_and_hundred_are_deterministic_and_draws_follow_the_seed() {
    let rt = runtime();
    for seed in 0..50 {
        let r = decide(&rt, &request("GET", "shop.test", "/cart", &[]), seed);
        assert_eq!(backend_name(&r), "v2");
        assert!(matches!(r.why, Some(Why::Weighted { draw }) if draw < 100));
    }
    let req = request("GET", "shop.test", "/split", &[]);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let a = decide(&rt, &req, seed);
        let b = decide(&rt, &req, seed);
        assert_eq!(a.why, b.why, "same seed, same draw");
        assert_eq!(backend_name(&a), backend_name(&b));
        let Some(Why::Weighted { draw }) = a.why else {
            panic!("{:?}", a.why)
        };
        let expected = if draw < 50 { "v1" } else { "v2" };
        assert_eq!(backend_name(&a), expected);
        seen.insert(expected);
    }
    assert_eq!(seen.len(), 2, "64 seeds reach both halves of a 50/50 split");
}

#[test]
fn a_cohort_pin_overrides_the_weights() {
    let rt = runtime();
    let r = decide(
        &rt,
        &request("GET", "shop.test", "/cart", &[("x-canary", "v1")]),
        3,
    );
    assert_eq!(backend_name(&r), "v1");
    assert_eq!(r.why, Some(Why::Pinned));
    let r = decide(
        &rt,
        &request("GET", "shop.test", "/cart", &[("x-canary", "nope")]),
        3,
    );
    assert_eq!(backend_name(&r), "v2");
}

#[test]
fn redirect_rewrite_and_mirror() {
    let rt = runtime();
    let r = decide(&rt, &request("GET", "shop.test", "/old?q=1", &[]), 1);
    assert_eq!(
        r.outcome,
        Outcome::Redirect {
            status: 301,
            location: "http://shop.test:8080/new?q=1".into()
        }
    );
    assert_eq!(r.rule.as_ref().unwrap().rule_index, 1);
    assert!(r.backend.is_none());

    let r = decide(
        &rt,
        &request("POST", "shop.test", "/api/users?id=7", &[]),
        1,
    );
    assert_eq!(r.outcome, Outcome::Proxy);
    assert_eq!(r.upstream_path.as_deref(), Some("/v2/users?id=7"));
    assert_eq!(r.upstream_host.as_deref(), Some("api.internal"));
    // Without the method the API rule does not match; the catch-all does.
    let r = decide(&rt, &request("GET", "shop.test", "/api/users", &[]), 1);
    assert_eq!(r.rule.as_ref().unwrap().rule_index, 7);
    assert!(r.upstream_path.is_none());

    let r = decide(&rt, &request("GET", "shop.test", "/mirror", &[]), 1);
    assert_eq!(backend_name(&r), "v1");
    let mirrors: Vec<&str> = r.mirrors.iter().map(|b| b.id.name.as_str()).collect();
    assert_eq!(mirrors, ["v2"]);
}

#[test]
fn rules_without_backends_or_endpoints_answer_500() {
    let rt = runtime();
    let r = decide(&rt, &request("GET", "shop.test", "/none", &[]), 1);
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            status: 500,
            reason: Reason::NoBackend
        }
    );
    assert_eq!(r.rule.as_ref().unwrap().rule_index, 5);
    let r = decide(&rt, &request("GET", "shop.test", "/empty", &[]), 1);
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            status: 500,
            reason: Reason::NoEndpoints
        }
    );
    assert_eq!(backend_name(&r), "empty");
}

#[test]
fn downstream_idle_defaults_and_replayable_needs_a_retry() {
    assert_eq!(downstream_idle(None), DEFAULT_DOWNSTREAM_IDLE);
    let rt = runtime();
    let req = request("GET", "shop.test", "/cart", &[]);
    let r = decide(&rt, &req, 1);
    assert!(!replayable(r.rule.as_ref().unwrap(), &req, true));
}
