//! Gateway, Backend, BackendPolicy and naming diagnostics, and one-pass reporting.

use super::{errors, pos, route};

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first() {
    let dup = "\
# A second definition of cart-v2.
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  namespace: shop
  name: cart-v2
spec: {endpoints: []}
";
    // Same name in another kind or namespace is fine.
    let other = "\
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v2, namespace: staging}
spec: {endpoints: []}
";
    assert_eq!(
        errors(&[("z/dup.yaml", dup), ("z/other.yaml", other)]),
        [format!(
            "z/dup.yaml:{}: Backend shop/cart-v2 metadata.name: duplicate Backend shop/cart-v2 (first defined at conf/backends.yaml:11)",
            pos(dup, "cart-v2", 1)
        )]
    );
}

#[test]
fn invalid_names() {
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: Cart_V1, namespace: shop.eu}\nspec: {endpoints: []}\n";
    assert_eq!(
        errors(&[("b.yaml", yaml)]),
        [
            "b.yaml:3:18: Backend shop.eu/Cart_V1 metadata.name: invalid name \"Cart_V1\": only lowercase letters, digits, '-' and '.' are allowed",
            "b.yaml:3:38: Backend shop.eu/Cart_V1 metadata.namespace: invalid namespace \"shop.eu\": only lowercase letters, digits and '-' are allowed",
        ]
    );
}

#[test]
fn listener_conflicts_and_tls_problems() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bad, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: a, port: 80, protocol: HTTP}
    - {name: a, port: 81, protocol: HTTP}
    - {name: b, port: 80, protocol: HTTPS, tls: {certificateRefs: [{name: wildcard}]}}
    - {name: c, port: 80, protocol: HTTP}
    - {name: d, port: 443, protocol: HTTPS}
    - {name: e, port: 444, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}
    - {name: f, port: 445, protocol: HTTPS, tls: {mode: Passthrough, certificateRefs: [{kind: Secret, group: \"\", name: s}]}}
    - {name: g, port: 53, protocol: UDP}
    - {name: h, port: 82, protocol: HTTP, hostname: Bad.Example.com, tls: {certificateRefs: []}}
    - {name: i, port: 83, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}, kinds: [{kind: GRPCRoute}]}}
";
    let e = |needle: &str, nth, field: &str, msg: &str| {
        format!(
            "gw.yaml:{}: Gateway infra/bad spec.listeners[{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("gw.yaml", yaml)]),
        [
            e("a,", 1, "1].name", "duplicate listener name \"a\" (also spec.listeners[0])"),
            e("HTTPS", 0, "2].protocol", "port 80 is already HTTP on listener \"a\"; listeners sharing a port must share a protocol"),
            e("80", 2, "3].port", "listener \"c\" conflicts with listener \"a\": same port 80 and no hostname"),
            e("name: d", 0, "4]", "an HTTPS listener needs tls.certificateRefs"),
            e("missing", 0, "5].tls.certificateRefs[0].name", "unknown TLSCertificate \"missing\" (known: wildcard)"),
            e("Passthrough", 0, "6].tls.mode", "unsupported TLS mode Passthrough (supported: Terminate)"),
            e("Secret", 0, "6].tls.certificateRefs[0].kind", "unsupported certificate reference /Secret (use group switchyard.dev, kind TLSCertificate)"),
            e("UDP", 0, "7].protocol", "unsupported protocol \"UDP\" (supported: HTTP, HTTPS, switchyard.dev/EastWest, switchyard.dev/Egress, switchyard.dev/EgressConnect)"),
            e("Bad.Example", 0, "8].hostname", "invalid hostname \"Bad.Example.com\": only lowercase letters, digits, '-' and '.' are allowed"),
            e("certificateRefs: []", 0, "8].tls", "tls is only allowed on HTTPS listeners"),
            e("Selector", 0, "9].allowedRoutes.namespaces.from", "unsupported namespaces.from Selector (supported: Same, All)"),
            e("GRPCRoute", 0, "9].allowedRoutes.kinds[0].kind", "unsupported route kind \"GRPCRoute\" (supported: HTTPRoute)"),
        ]
    );
}

#[test]
fn same_port_and_hostname_twice() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: twice, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}
    - {name: b, port: 80, protocol: HTTP, hostname: b.example.com}
    - {name: c, port: 80, protocol: HTTP, hostname: a.example.com}
";
    assert_eq!(
        errors(&[("gw.yaml", yaml)]),
        [format!(
            "gw.yaml:{}: Gateway infra/twice spec.listeners[2].hostname: listener \"c\" conflicts with listener \"a\": same port 80 and hostname \"a.example.com\"",
            pos(yaml, "a.example.com", 1)
        )]
    );
}

#[test]
fn backend_and_policy_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: bad, namespace: shop}
spec:
  endpoints:
    - address: cart.shop.svc:8080
    - {address: \"10.0.0.9:8080\", weight: 2000000}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: first, namespace: shop}
spec:
  targetRefs: [{group: switchyard.dev, kind: Backend, name: cart-v1}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: second, namespace: shop}
spec:
  targetRefs:
    - {kind: Backend, name: cart-v1}
    - {kind: Backend, name: nope}
    - {kind: Service, name: cart-v2}
  loadBalancer: {type: RingHash, hashOn: {header: x-user, cookie: session}}
  timeouts: {connect: 0s, read: forever}
  protocol: TLS
  tls: {alpn: h2}
";
    let e = |needle: &str, nth, obj: &str, field: &str, msg: &str| {
        format!("p.yaml:{}: {obj} {field}: {msg}", pos(yaml, needle, nth))
    };
    let second = "BackendPolicy shop/second";
    assert_eq!(
        errors(&[("p.yaml", yaml)]),
        [
            e("cart.shop.svc:8080", 0, "Backend shop/bad", "spec.endpoints[0].address", "invalid endpoint address \"cart.shop.svc:8080\": expected IP:port (e.g. 10.0.0.7:8080 or [::1]:8080)"),
            e("2000000", 0, "Backend shop/bad", "spec.endpoints[1].weight", "weight 2000000 is above the maximum 1000000"),
            e("cart-v1}", 1, second, "spec.targetRefs[0].name", "Backend shop/cart-v1 is already targeted by BackendPolicy shop/first (p.yaml:11); a Backend takes one BackendPolicy"),
            e("nope", 0, second, "spec.targetRefs[1].name", "unknown Backend \"nope\" (known: bad, cart-v1, cart-v2)"),
            e("Service", 0, second, "spec.targetRefs[2].kind", "a BackendPolicy can only target kind Backend in group switchyard.dev, not \"Service\""),
            e("header: x-user", 0, second, "spec.loadBalancer.hashOn", "set exactly one of header, cookie or sourceIP: true"),
            e("0s", 0, second, "spec.timeouts.connect", "the connect timeout must be above 0s"),
            e("forever", 0, second, "spec.timeouts.read", "invalid duration \"forever\": expected a number (expected 1 to 4 groups of up to 5 digits followed by h, m, s or ms, e.g. \"1m30s\" or \"250ms\")"),
            e("alpn", 0, second, "spec.tls.sni", "protocol TLS needs tls.sni (the upstream's server name)"),
        ]
    );
}

#[test]
fn every_error_is_reported_in_one_pass_across_files() {
    let a = route("    - backendRefs: [{name: nope-a}]\n");
    let b = route("    - backendRefs: [{name: nope-b}]\n      timeouts: {request: soon}\n")
        .replace("name: cart\n", "name: cart-b\n");
    let c = "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: c}\nspec: {endpoints: [{address: nowhere}], extra: 1}\n";
    let errs = errors(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", c)]);
    let files: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(files, ["a.yaml", "b.yaml", "b.yaml", "c.yaml"], "{errs:#?}");
}
