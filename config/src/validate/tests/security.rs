//! ClientTrafficPolicy and AuthorizationPolicy (docs/policies.md): compiled values per port,
//! defaults, and positioned diagnostics.

use std::time::Duration;

use super::{errors, ok, pos, route};
use crate::{
    AuthzAction, AuthzPath, Backslashes, ClientPolicy, EscapedSlashes, HeaderCondition, ObjRef,
    PathParameters,
};

const ROUTE: &str = "\
    - name: api
      backendRefs: [{name: cart-v1}]
";

const CLIENT: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: strict, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: http}]
  path: {escapedSlashes: Decode, backslashes: Slash, pathParameters: Keep, mergeSlashes: false}
  headers: {maxCount: 50, maxBytes: 8192}
  timeouts: {requestHeader: 2s, requestBody: 5s}
";

#[test]
fn client_traffic_policy_applies_per_port_and_defaults_elsewhere() {
    let g = ok(&[("c.yaml", CLIENT)]);
    let gw = g.gateway(None).unwrap();
    let http = &gw.port(8080).unwrap().client;
    assert_eq!(http.source, Some(ObjRef::new("infra", "strict")));
    assert_eq!(http.path.escaped_slashes, EscapedSlashes::Decode);
    assert_eq!(http.path.backslashes, Backslashes::Slash);
    assert_eq!(http.path.path_parameters, PathParameters::Keep);
    assert!(!http.path.merge_slashes);
    assert_eq!((http.headers.max_count, http.headers.max_bytes), (50, 8192));
    assert_eq!(http.timeouts.request_header, Duration::from_secs(2));
    assert_eq!(http.timeouts.request_body, Duration::from_secs(5));
    let https = &gw.port(8443).unwrap().client;
    assert_eq!(*https, ClientPolicy::default());
    assert_eq!(https.headers.max_count, 100);
    assert_eq!(https.headers.max_bytes, 32768);
    assert_eq!(https.timeouts.request_header, Duration::from_secs(10));
    assert_eq!(https.timeouts.request_body, Duration::from_secs(30));
    assert!(https.path.merge_slashes);
    assert!(gw.port(8080).unwrap().authz.is_none());

    // Without sectionName the policy covers every port.
    let whole = CLIENT.replace(", sectionName: http", "");
    let g = ok(&[("c.yaml", &whole)]);
    let gw = g.gateway(None).unwrap();
    assert!(gw.ports.iter().all(|p| p.client.headers.max_count == 50));
}

#[test]
fn client_traffic_policy_value_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: bad, namespace: infra}
spec:
  targetRefs: [{kind: Gateway, name: edge, sectionName: http}]
  path: {escapedSlashes: decode, backslashes: Allow, pathParameters: Drop}
  headers: {maxCount: 300, maxBytes: 10}
  timeouts: {requestHeader: 0s, requestBody: soon}
";
    let e = |needle: &str, field: &str, msg: &str| {
        format!(
            "c.yaml:{}: ClientTrafficPolicy infra/bad spec.{field}: {msg}",
            pos(yaml, needle, 0)
        )
    };
    assert_eq!(
        errors(&[("c.yaml", yaml)]),
        [
            e(
                "decode",
                "path.escapedSlashes",
                "unknown value \"decode\" (expected one of: Reject, Keep, Decode)"
            ),
            e(
                "Allow",
                "path.backslashes",
                "unknown value \"Allow\" (expected one of: Reject, Slash)"
            ),
            e(
                "Drop",
                "path.pathParameters",
                "unknown value \"Drop\" (expected one of: Strip, Reject, Keep)"
            ),
            e(
                "300",
                "headers.maxCount",
                "maxCount 300 is not between 1 and 256 (pingora refuses more fields itself)"
            ),
            e(
                "10}",
                "headers.maxBytes",
                "maxBytes 10 is not between 1024 and 1048575"
            ),
            e("0s", "timeouts.requestHeader", "must be above 0s"),
            e("soon", "timeouts.requestBody", &errors_of_duration("soon")),
        ]
    );
}

fn errors_of_duration(v: &str) -> String {
    crate::parse_duration(v).unwrap_err().to_string()
}

#[test]
fn client_traffic_policy_target_errors_and_conflicts() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: first, namespace: infra}
spec:
  targetRefs: [{kind: Gateway, name: edge}]
---
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: second, namespace: infra}
spec:
  targetRefs:
    - {kind: Gateway, name: edge, sectionName: https}
    - {kind: HTTPRoute, name: edge}
    - {kind: Gateway, name: edge, namespace: shop}
    - {kind: Gateway, name: nope}
    - {kind: Gateway, name: edge, sectionName: admin}
---
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: none, namespace: infra}
spec:
  targetRefs: []
";
    let e = |needle: &str, nth, obj: &str, field: &str, msg: &str| {
        format!(
            "c.yaml:{}: ClientTrafficPolicy infra/{obj} spec.{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    let first_line = pos(yaml, "[{kind: Gateway", 0);
    let first_line = first_line.split(':').next().unwrap();
    assert_eq!(
        errors(&[("c.yaml", yaml)]),
        [
            e("kind: Gateway, name: edge, sectionName: https}", 0, "second", "targetRefs[0]",
              &format!("port 8443 of Gateway infra/edge is already targeted by ClientTrafficPolicy infra/first (c.yaml:{first_line}); a listener takes one ClientTrafficPolicy")),
            e("HTTPRoute", 0, "second", "targetRefs[1].kind", "a ClientTrafficPolicy can only target kind Gateway in group gateway.networking.k8s.io, not \"HTTPRoute\" in group \"gateway.networking.k8s.io\""),
            e("shop", 0, "second", "targetRefs[2].namespace", "a ClientTrafficPolicy can only target Gateways in its own namespace \"infra\", not \"shop\""),
            e("nope", 0, "second", "targetRefs[3].name", "unknown Gateway \"nope\" (known: edge)"),
            e("admin", 0, "second", "targetRefs[4].sectionName", "Gateway infra/edge has no listener named \"admin\" (listeners: http, https)"),
            e("[]", 0, "none", "targetRefs", "a ClientTrafficPolicy needs at least one targetRef"),
        ]
    );
}

const AUTHZ: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: shop-authz, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: http}]
  defaultAction: Deny
  dryRun: true
  rules:
    - name: block-admin
      action: Deny
      from:
        - principals: [\"spiffe://switchyard.local/ns/shop/sa/cart\"]
          principalPrefixes: [\"spiffe://switchyard.local/ns/shop/\"]
          zones: [zone-a]
      to:
        - routes: [shop/cart]
          backends: [shop/cart-v1]
          paths: [{type: PathPrefix, value: /admin/, ignoreCase: true}, {type: Exact, value: /x}]
          methods: [GET, POST]
      headers:
        - {name: X-Env, value: prod}
        - {name: x-debug, present: true}
    - action: Allow
";

#[test]
fn authorization_policy_compiles_per_port() {
    let route = route(ROUTE);
    let g = ok(&[("r.yaml", &route), ("a.yaml", AUTHZ)]);
    let gw = g.gateway(None).unwrap();
    assert!(gw.port(8443).unwrap().authz.is_none());
    let authz = gw.port(8080).unwrap().authz.as_ref().unwrap();
    assert_eq!(authz.policies.len(), 1);
    let p = &authz.policies[0];
    assert_eq!(p.id, ObjRef::new("infra", "shop-authz"));
    assert_eq!(p.default_action, AuthzAction::Deny);
    assert!(p.dry_run);
    assert_eq!(p.rules.len(), 2);
    let r = &p.rules[0];
    assert_eq!(
        (r.name.as_str(), r.action),
        ("block-admin", AuthzAction::Deny)
    );
    assert_eq!(
        r.from[0].principals,
        ["spiffe://switchyard.local/ns/shop/sa/cart"]
    );
    assert_eq!(r.from[0].zones, ["zone-a"]);
    assert_eq!(r.to[0].routes, [ObjRef::new("shop", "cart")]);
    assert_eq!(r.to[0].backends, [ObjRef::new("shop", "cart-v1")]);
    assert_eq!(
        r.to[0].paths,
        [
            AuthzPath {
                exact: false,
                value: "/admin".into(),
                ignore_case: true
            },
            AuthzPath {
                exact: true,
                value: "/x".into(),
                ignore_case: false
            },
        ]
    );
    assert_eq!(r.to[0].methods, [http::Method::GET, http::Method::POST]);
    assert_eq!(
        r.headers,
        [
            HeaderCondition {
                name: http::HeaderName::from_static("x-env"),
                value: Some("prod".into())
            },
            HeaderCondition {
                name: http::HeaderName::from_static("x-debug"),
                value: None
            },
        ]
    );
    let catch_all = &p.rules[1];
    assert_eq!(catch_all.name, "rules[1]");
    assert!(catch_all.from.is_empty() && catch_all.to.is_empty());
}

#[test]
fn authorization_policy_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: infra}
spec:
  targetRefs: [{kind: Gateway, name: edge}]
  defaultAction: Block
  rules:
    - name: r
      action: Permit
      from: [{principals: [cart]}, {}]
      to:
        - {routes: [missing], backends: [shop/none], methods: [get]}
        - {paths: [{type: Regex, value: /a}, {value: /a/../b}, {value: admin}]}
        - {}
      headers: [{name: \"bad name\", value: x}, {name: x-a}, {name: x-b, present: false}]
    - name: r
      action: Allow
      from: []
";
    let route = route(ROUTE);
    let e = |needle: &str, nth, field: &str, msg: &str| {
        format!(
            "a.yaml:{}: AuthorizationPolicy infra/bad spec.{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("r.yaml", &route), ("a.yaml", yaml)]),
        [
            e("Block", 0, "defaultAction", "unknown value \"Block\" (expected one of: Allow, Deny)"),
            e("Permit", 0, "rules[0].action", "unknown action \"Permit\" (expected Allow or Deny)"),
            e("cart]", 0, "rules[0].from[0].principals[0]", "\"cart\" is not a SPIFFE ID (spiffe://trust-domain/path)"),
            e("{}]", 0, "rules[0].from[1]", "set at least one non-empty list of principals, principalPrefixes or zones"),
            e("missing", 0, "rules[0].to[0].routes[0]", "unknown HTTPRoute \"missing\" (none in namespace \"infra\")"),
            e("shop/none", 0, "rules[0].to[0].backends[0]", "unknown Backend \"shop/none\" (known: cart-v1, cart-v2)"),
            e("get]", 0, "rules[0].to[0].methods[0]", "invalid method \"get\" (methods are case-sensitive uppercase tokens, e.g. GET)"),
            e("Regex", 0, "rules[0].to[1].paths[0].type", "unknown path type \"Regex\" (expected Exact or PathPrefix)"),
            e("/a/../b", 0, "rules[0].to[1].paths[1].value", "path \"/a/../b\" must not contain empty, . or .. segments; conditions match the canonical path"),
            e("admin}", 0, "rules[0].to[1].paths[2].value", "path \"admin\" must start with /; conditions match the canonical path"),
            e("{}\n", 0, "rules[0].to[2]", "set at least one non-empty list of routes, backends, paths or methods"),
            e("\"bad name", 0, "rules[0].headers[0].name", "invalid header name \"bad name\""),
            e("name: x-a}", 0, "rules[0].headers[1]", "set exactly one of value or present: true"),
            e("name: x-b", 0, "rules[0].headers[2]", "set exactly one of value or present: true"),
            e("r\n", 1, "rules[1].name", "duplicate rule name \"r\" (also spec.rules[0])"),
            e("[]\n", 0, "rules[1].from", "an empty from list matches nothing; omit from to match any source"),
        ]
    );
}

#[test]
fn several_authorization_policies_share_a_port_in_name_order() {
    let second = AUTHZ
        .replace("name: shop-authz", "name: a-first")
        .replace(", sectionName: http", "");
    let route = route(ROUTE);
    let g = ok(&[("r.yaml", &route), ("a.yaml", AUTHZ), ("b.yaml", &second)]);
    let gw = g.gateway(None).unwrap();
    let names = |port| -> Vec<String> {
        gw.port(port)
            .unwrap()
            .authz
            .as_ref()
            .unwrap()
            .policies
            .iter()
            .map(|p| p.id.name.clone())
            .collect()
    };
    assert_eq!(names(8080), ["a-first", "shop-authz"]);
    assert_eq!(names(8443), ["a-first"]);
}

#[test]
fn a_listener_sharing_its_port_is_targeted_through_the_gateway() {
    let shared = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: a, port: 8090, protocol: HTTP, hostname: a.example.com}
    - {name: b, port: 8090, protocol: HTTP, hostname: b.example.com}
---
apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: one-host, namespace: infra}
spec:
  targetRefs: [{kind: Gateway, name: shared, sectionName: a}]
  rules: [{action: Deny, to: [{methods: [DELETE]}]}]
";
    let e = format!(
        "s.yaml:{}: AuthorizationPolicy infra/one-host spec.targetRefs[0].sectionName: listener \"a\" shares port 8090 with b; settings apply per port, so target the Gateway or give the listener its own port",
        pos(shared, "a}]", 0)
    );
    assert_eq!(errors(&[("s.yaml", shared)]), [e]);
    let whole = shared.replace(", sectionName: a", "");
    let g = ok(&[("s.yaml", &whole)]);
    let gw = g.gateway(Some("infra/shared")).unwrap();
    assert_eq!(
        gw.port(8090)
            .unwrap()
            .authz
            .as_ref()
            .unwrap()
            .policies
            .len(),
        1
    );
}
