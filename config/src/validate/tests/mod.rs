//! Validation tests: each diagnostic with its exact file:line:col and field path, and what valid input compiles to.

mod backend_policy;
mod compile;
mod egress;
mod locality;
mod mesh;
mod objects;
mod routes;
mod security;
mod traffic_policy;

use crate::{build, Generation, SourceFile};

pub(super) const GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: infra
  labels: {switchyard.dev/zone: eu-west-1a}
spec:
  gatewayClassName: switchyard
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
    - name: http
      port: 8080
      protocol: HTTP
      allowedRoutes:
        namespaces: {from: All}
    - name: https
      port: 8443
      protocol: HTTPS
      hostname: \"*.example.com\"
      tls:
        certificateRefs: [{group: switchyard.dev, kind: TLSCertificate, name: wildcard}]
      allowedRoutes:
        namespaces: {from: All}
---
apiVersion: switchyard.dev/v1alpha1
kind: TLSCertificate
metadata: {name: wildcard, namespace: infra}
spec: {certFile: certs/wildcard.pem, keyFile: certs/wildcard.key}
";

pub(super) const BACKENDS: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v1, namespace: shop}
spec:
  endpoints:
    - {address: \"10.0.0.1:8080\", zone: eu-west-1a}
    - {address: \"10.0.0.2:8080\", weight: 3}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v2, namespace: shop}
spec:
  endpoints: []
";

/// Position (1-based line:col) of the `nth` occurrence of `needle` in `text`.
pub(super) fn pos(text: &str, needle: &str, nth: usize) -> String {
    let (offset, _) = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not found"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

/// Builds the shared Gateway and Backends plus `files`, expecting errors.
pub(super) fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let mut all = vec![
        SourceFile::new("conf/gateway.yaml", GATEWAY),
        SourceFile::new("conf/backends.yaml", BACKENDS),
    ];
    all.extend(files.iter().map(|(p, c)| SourceFile::new(*p, *c)));
    match build(&all) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

/// An HTTPRoute shop/cart on infra/edge with the given rules (block items indented by 4; a
/// leading `"\` line continuation eats the first item's indentation, so it is restored).
pub(super) fn route(rules: &str) -> String {
    let rules = if rules.starts_with('-') {
        format!("    {rules}")
    } else {
        rules.to_string()
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: cart\n  namespace: shop\nspec:\n  parentRefs:\n    - {{name: edge, namespace: infra}}\n  rules:\n{rules}"
    )
}

/// Builds the shared Gateway and Backends plus `files`, expecting success.
pub(super) fn ok(files: &[(&str, &str)]) -> Generation {
    let mut all = vec![
        SourceFile::new("conf/gateway.yaml", GATEWAY),
        SourceFile::new("conf/backends.yaml", BACKENDS),
    ];
    all.extend(files.iter().map(|(p, c)| SourceFile::new(*p, *c)));
    build(&all).unwrap_or_else(|e| panic!("{e}"))
}
