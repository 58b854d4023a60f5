//! Synthetic Switchyard configurations for the criterion benches.

use switchyard_config::SourceFile;

/// Number of Backends the synthetic routes spread over.
pub const BACKENDS: usize = 4;

/// One Gateway (`default/edge`, HTTP on 8080), [`BACKENDS`] Backends and `n` HTTPRoutes, one
/// file each, route `i` on host `svc-{i}.example.com` with three rules: Exact `/healthz`,
/// PathPrefix `/api` with header `x-canary: "true"`, and PathPrefix `/`.
pub fn synthetic_routes(n: usize) -> Vec<SourceFile> {
    let mut files = Vec::with_capacity(n + 2);
    files.push(SourceFile::new(
        "conf/gateway.yaml",
        "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: default
spec:
  gatewayClassName: switchyard
  listeners:
    - name: http
      port: 8080
      protocol: HTTP
",
    ));
    let mut backends = String::new();
    for b in 0..BACKENDS {
        backends.push_str(&format!(
            "\
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  name: backend-{b}
  namespace: default
spec:
  endpoints:
    - address: 10.0.{b}.1:8080
    - address: 10.0.{b}.2:8080
"
        ));
    }
    files.push(SourceFile::new("conf/backends.yaml", backends));
    for i in 0..n {
        let (b, c) = (i % BACKENDS, (i + 1) % BACKENDS);
        files.push(SourceFile::new(
            format!("conf/routes/svc-{i:05}.yaml"),
            format!(
                "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: svc-{i}
  namespace: default
spec:
  parentRefs:
    - name: edge
  hostnames:
    - svc-{i}.example.com
  rules:
    - matches:
        - path: {{type: Exact, value: /healthz}}
      backendRefs:
        - name: backend-{b}
    - matches:
        - path: {{type: PathPrefix, value: /api}}
          headers:
            - name: x-canary
              value: \"true\"
      backendRefs:
        - name: backend-{c}
    - matches:
        - path: {{type: PathPrefix, value: /}}
      backendRefs:
        - name: backend-{b}
"
            ),
        ));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_routes_build() {
        let g = switchyard_config::build(&synthetic_routes(10)).unwrap_or_else(|e| panic!("{e}"));
        let table = &g.gateway(None).unwrap().ports[0].routes;
        assert_eq!(table.rule_count(), 30);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-canary", http::HeaderValue::from_static("true"));
        let req = switchyard_config::RequestView {
            method: &http::Method::GET,
            host: "svc-5.example.com",
            path: "/api/orders/42",
            query: None,
            headers: &headers,
        };
        let m = table.find(&req).unwrap();
        assert_eq!(
            (m.rule.route.name.as_str(), m.rule.rule_index),
            ("svc-5", 1)
        );
    }
}
