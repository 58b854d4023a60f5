//! TrafficPolicy (docs/policies.md): compiled values, defaults, attachment to routes and
//! rules, and positioned diagnostics.

use std::sync::Arc;
use std::time::Duration;

use super::{errors, ok, pos, route};
use crate::{
    Cohort, CohortSource, Fault, Generation, ObjRef, RateLimit, RateLimitKey, RetryOn, RetryPolicy,
    Rule, Sticky, TrafficPolicy,
};

/// The rules on port 8080, in route-table order.
fn rules(g: &Generation) -> Vec<Arc<Rule>> {
    let gw = g.gateway(None).unwrap();
    gw.port(8080).unwrap().routes.rules().cloned().collect()
}

fn header(name: &'static str) -> http::HeaderName {
    http::HeaderName::from_static(name)
}

const TRAFFIC_ROUTE: &str = "\
    - name: api
      matches: [{path: {value: /api}}]
      backendRefs: [{name: cart-v1}, {name: cart-v2}]
      retry: {codes: [503], attempts: 2}
    - name: web
      backendRefs: [{name: cart-v1}]
    - backendRefs: [{name: cart-v2}]
      matches: [{path: {value: /static}}]
";

const FULL_TRAFFIC_POLICY: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs:
    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: cart}
  rateLimit:
    requests: 100
    per: 1s
    burst: 20
    key: {clientIP: true}
  fault:
    delay: {fixedDelay: 2s, percentage: 12.5}
    abort: {httpStatus: 503, percentage: 0.0001}
  retry:
    on: [timeout, 5xx, gateway-error, reset]
    perTryTimeout: 500ms
    maxBodyBytes: 1024
  cohort:
    pin: {header: X-Canary}
    sticky: {cookie: {name: sy-cohort, maxAge: 24h}}
  timeouts:
    downstreamIdle: 60s
";

#[test]
fn traffic_policy_fields_compile_onto_every_rule_of_the_route() {
    let route = route(TRAFFIC_ROUTE);
    let g = ok(&[("r.yaml", &route), ("t.yaml", FULL_TRAFFIC_POLICY)]);
    let expected = TrafficPolicy {
        source: Some(ObjRef::new("shop", "cart")),
        rate_limit: Some(RateLimit {
            requests: 100,
            per: Duration::from_secs(1),
            burst: 20,
            key: RateLimitKey::ClientIp,
        }),
        fault: Some(Fault {
            delay: Some((Duration::from_secs(2), 125_000)),
            abort: Some((503, 1)),
        }),
        retry: Some(RetryPolicy {
            on: RetryOn {
                connect_failure: false,
                reset: true,
                timeout: true,
                retriable_codes: false,
                any_5xx: true,
                gateway_error: true,
            },
            per_try_timeout: Some(Duration::from_millis(500)),
            max_body_bytes: 1024,
        }),
        cohort: Some(Cohort {
            pin: Some(CohortSource::Header(header("x-canary"))),
            sticky: Some(Sticky::Cookie {
                name: "sy-cohort".into(),
                max_age: Some(Duration::from_secs(24 * 3600)),
            }),
        }),
        downstream_idle_timeout: Some(Duration::from_secs(60)),
    };
    let rules = rules(&g);
    assert_eq!(rules.len(), 3);
    for rule in &rules {
        assert_eq!(rule.traffic.as_deref(), Some(&expected), "{:?}", rule.name);
    }
    // Rules without a rule-level policy share the route-level one.
    assert!(Arc::ptr_eq(
        rules[0].traffic.as_ref().unwrap(),
        rules[1].traffic.as_ref().unwrap()
    ));
}

#[test]
fn traffic_policy_defaults_and_alternatives() {
    let policy = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: alt, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart}]
  rateLimit: {requests: 5, per: 1m, key: {header: X-Api-Key}}
  fault: {abort: {httpStatus: 200, percentage: 100}}
  retry: {}
  cohort:
    pin: {cookie: canary}
    sticky: {hashOn: {header: x-user-id}}
";
    let route = route(TRAFFIC_ROUTE);
    let g = ok(&[("r.yaml", &route), ("t.yaml", policy)]);
    let all = rules(&g);
    let t = all[0].traffic.as_deref().unwrap();
    assert_eq!(
        t.rate_limit,
        Some(RateLimit {
            requests: 5,
            per: Duration::from_secs(60),
            burst: 5,
            key: RateLimitKey::Header(header("x-api-key")),
        })
    );
    assert_eq!(
        t.fault,
        Some(Fault {
            delay: None,
            abort: Some((200, 1_000_000)),
        })
    );
    assert_eq!(t.retry, Some(RetryPolicy::default()));
    assert_eq!(
        t.retry.map(|r| (r.on, r.max_body_bytes)),
        Some((
            RetryOn {
                connect_failure: true,
                reset: true,
                timeout: false,
                retriable_codes: true,
                any_5xx: false,
                gateway_error: false,
            },
            65536
        ))
    );
    assert_eq!(
        t.cohort,
        Some(Cohort {
            pin: Some(CohortSource::Cookie("canary".into())),
            sticky: Some(Sticky::Hash(header("x-user-id"))),
        })
    );
    assert_eq!(t.downstream_idle_timeout, None);

    // Without any TrafficPolicy, rules have none.
    let g = ok(&[("r.yaml", &route)]);
    assert!(rules(&g).iter().all(|r| r.traffic.is_none()));
}

#[test]
fn a_rule_level_policy_wins_field_by_field_over_the_route_level_one() {
    let rule_level = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: api-only, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart, sectionName: api}]
  rateLimit: {requests: 1, per: 1s, key: {header: x-user}}
  retry: {on: [5xx]}
";
    let route = route(TRAFFIC_ROUTE);
    let g = ok(&[
        ("r.yaml", &route),
        ("t.yaml", FULL_TRAFFIC_POLICY),
        ("u.yaml", rule_level),
    ]);
    let all = rules(&g);
    let by_name = |name: Option<&str>| {
        all.iter()
            .find(|r| r.name.as_deref() == name)
            .and_then(|r| r.traffic.clone())
            .unwrap()
    };
    let api = by_name(Some("api"));
    let web = by_name(Some("web"));
    let unnamed = by_name(None);
    assert_eq!(api.source, Some(ObjRef::new("shop", "api-only")));
    assert_eq!(
        api.rate_limit
            .as_ref()
            .map(|r| (r.requests, r.burst, &r.key)),
        Some((1, 1, &RateLimitKey::Header(header("x-user"))))
    );
    let on = api.retry.unwrap().on;
    assert!(on.any_5xx && !on.timeout && !on.reset);
    assert_eq!(api.retry.unwrap().per_try_timeout, None);
    // Fields the rule-level policy leaves out come from the route-level one.
    assert_eq!(api.fault, web.fault);
    assert_eq!(api.cohort, web.cohort);
    assert_eq!(api.downstream_idle_timeout, Some(Duration::from_secs(60)));
    // The other rules keep the route-level policy.
    assert_eq!(web.source, Some(ObjRef::new("shop", "cart")));
    assert_eq!(web.rate_limit.as_ref().map(|r| r.requests), Some(100));
    assert!(Arc::ptr_eq(&web, &unnamed));

    // A rule-level policy alone applies to its rule only.
    let g = ok(&[("r.yaml", &route), ("u.yaml", rule_level)]);
    let with: Vec<Option<String>> = rules(&g)
        .iter()
        .filter(|r| r.traffic.is_some())
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(with, [Some("api".to_string())]);
}

#[test]
fn two_policies_at_the_same_level_are_an_error_naming_the_first() {
    let first = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: first, namespace: shop}
spec:
  targetRefs:
    - {kind: HTTPRoute, name: cart}
    - {kind: HTTPRoute, name: cart, sectionName: api}
";
    let second = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: second, namespace: shop}
spec:
  targetRefs:
    - {kind: HTTPRoute, name: cart, sectionName: web}
    - {kind: HTTPRoute, name: cart, sectionName: api}
    - {kind: HTTPRoute, name: cart}
";
    let route = route(TRAFFIC_ROUTE);
    assert_eq!(
        errors(&[("r.yaml", &route), ("t1.yaml", first), ("t2.yaml", second)]),
        [
            format!(
                "t2.yaml:{}: TrafficPolicy shop/second spec.targetRefs[1].sectionName: rule \"api\" of HTTPRoute shop/cart is already targeted by TrafficPolicy shop/first (t1.yaml:7); a rule takes one rule-level TrafficPolicy",
                pos(second, "api}", 0)
            ),
            format!(
                "t2.yaml:{}: TrafficPolicy shop/second spec.targetRefs[2].name: HTTPRoute shop/cart is already targeted by TrafficPolicy shop/first (t1.yaml:6); a route takes one route-level TrafficPolicy",
                pos(second, "cart}", 0)
            ),
        ]
    );
}

#[test]
fn traffic_policy_target_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: t, namespace: shop}
spec:
  targetRefs:
    - {kind: Gateway, name: edge}
    - {group: example.com, kind: HTTPRoute, name: cart}
    - {kind: HTTPRoute, name: cart, namespace: other}
    - {kind: HTTPRoute, name: nope}
    - {kind: HTTPRoute, name: cart, sectionName: admin}
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: empty, namespace: shop}
spec:
  targetRefs: []
";
    let route = route(TRAFFIC_ROUTE);
    let e = |needle: &str, nth, obj: &str, field: &str, msg: &str| {
        format!(
            "t.yaml:{}: TrafficPolicy shop/{obj} spec.{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("r.yaml", &route), ("t.yaml", yaml)]),
        [
            e("Gateway", 0, "t", "targetRefs[0].kind", "a TrafficPolicy can only target kind HTTPRoute in group gateway.networking.k8s.io, not \"Gateway\""),
            e("example.com", 0, "t", "targetRefs[1].group", "a TrafficPolicy can only target kind HTTPRoute in group gateway.networking.k8s.io, not group \"example.com\""),
            e("other", 0, "t", "targetRefs[2].namespace", "a TrafficPolicy can only target HTTPRoutes in its own namespace \"shop\", not \"other\""),
            e("nope", 0, "t", "targetRefs[3].name", "unknown HTTPRoute \"nope\" (known: cart)"),
            e("admin", 0, "t", "targetRefs[4].sectionName", "HTTPRoute shop/cart has no rule named \"admin\" (rule names: api, web)"),
            e("[]", 0, "empty", "targetRefs", "a TrafficPolicy needs at least one targetRef"),
        ]
    );
}

#[test]
fn traffic_policy_value_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: t, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart}]
  rateLimit: {requests: 0, per: 0s, burst: 0, key: {clientIP: true, header: x-a}}
  fault:
    delay: {fixedDelay: 0s, percentage: 12.34567}
    abort: {httpStatus: 100, percentage: 101}
  retry: {on: [reset, 4xx], perTryTimeout: 0s, maxBodyBytes: 65537}
  cohort:
    pin: {}
    sticky: {cookie: {name: \"a;b\", maxAge: 0s}}
  timeouts: {downstreamIdle: 0s}
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: u, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart, sectionName: api}]
  rateLimit: {requests: 1, per: 1s, key: {header: \"bad header\"}}
  fault: {}
  cohort: {sticky: {cookie: {name: c}, hashOn: {header: x}}, pin: {header: \"a:b\"}}
";
    let route = route(TRAFFIC_ROUTE);
    let e = |needle: &str, nth, obj: &str, field: &str, msg: &str| {
        format!(
            "t.yaml:{}: TrafficPolicy shop/{obj} spec.{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("r.yaml", &route), ("t.yaml", yaml)]),
        [
            e("0, per", 0, "t", "rateLimit.requests", "must be at least 1"),
            e("0s, burst", 0, "t", "rateLimit.per", "must be above 0s"),
            e("0, key", 0, "t", "rateLimit.burst", "must be at least 1"),
            e("clientIP: true, header", 0, "t", "rateLimit.key", "set exactly one of clientIP: true or header"),
            e("0s, percentage", 0, "t", "fault.delay.fixedDelay", "must be above 0s"),
            e("12.34567", 0, "t", "fault.delay.percentage", "12.34567 is not a percentage from 0 to 100 with up to four decimals"),
            e("100,", 0, "t", "fault.abort.httpStatus", "httpStatus 100 is not between 200 and 599"),
            e("101", 0, "t", "fault.abort.percentage", "101 is not a percentage from 0 to 100 with up to four decimals"),
            e("4xx", 0, "t", "retry.on[1]", "unknown retry condition \"4xx\" (known: connect-failure, reset, timeout, retriable-status-codes, 5xx, gateway-error)"),
            e("0s, maxBody", 0, "t", "retry.perTryTimeout", "must be above 0s"),
            e("65537", 0, "t", "retry.maxBodyBytes", "maxBodyBytes 65537 is above the maximum 65536 (the proxy's replay buffer)"),
            e("{}", 0, "t", "cohort.pin", "set exactly one of header or cookie"),
            e("\"a;b\"", 0, "t", "cohort.sticky.cookie.name", "invalid cookie name \"a;b\""),
            e("0s}}", 0, "t", "cohort.sticky.cookie.maxAge", "must be above 0s"),
            e("0s}\n", 0, "t", "timeouts.downstreamIdle", "must be above 0s"),
            e("\"bad header\"", 0, "u", "rateLimit.key.header", "invalid header name \"bad header\""),
            e("{}\n", 1, "u", "fault", "a fault needs delay or abort (or both)"),
            e("cookie: {name: c}", 0, "u", "cohort.sticky", "set exactly one of cookie or hashOn"),
            e("\"a:b\"", 0, "u", "cohort.pin.header", "invalid header name \"a:b\""),
        ]
    );
}

#[test]
fn the_default_rule_of_a_route_without_rules_gets_the_route_level_policy() {
    let route = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bare, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: http}]
";
    let policy = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: idle, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: bare}]
  timeouts: {downstreamIdle: 90s}
";
    let g = ok(&[("r.yaml", route), ("t.yaml", policy)]);
    let all = rules(&g);
    assert_eq!(all.len(), 1);
    let traffic = all[0].traffic.as_deref().unwrap();
    assert_eq!(
        traffic.downstream_idle_timeout,
        Some(Duration::from_secs(90))
    );
    assert_eq!(traffic.source, Some(ObjRef::new("shop", "idle")));
}
