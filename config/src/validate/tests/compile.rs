//! What valid input compiles to, gateway lookup, build_dir and diagnostic display.

use std::path::PathBuf;
use std::time::Duration;

use super::{route, BACKENDS, GATEWAY};
use crate::{
    build, Filter, HashKey, LbAlgorithm, PathModifier, SourceFile, TlsAlpn, UpstreamProtocol,
};

#[test]
fn valid_config_compiles_policies_certificates_and_filters() {
    let policy = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs: [{group: switchyard.dev, kind: Backend, name: cart-v1}]
  loadBalancer: {type: RingHash, hashOn: {header: X-User}}
  timeouts: {connect: 500ms, read: 0s, idle: 1m}
  protocol: TLS
  tls: {sni: cart.internal, caFile: ca.pem, alpn: auto}
";
    let yaml = route("\
    - name: api
      matches: [{path: {value: /api/}}]
      filters:
        - type: URLRewrite
          urlRewrite: {hostname: cart.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: X-Env, value: prod}], add: [{name: via, value: switchyard}], remove: [Cookie]}
        - {type: RequestMirror, requestMirror: {backendRef: {name: cart-v2}, fraction: {numerator: 1, denominator: 4}}}
      backendRefs:
        - {name: cart-v1, weight: 9, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [server]}}]}
        - {name: cart-v2, kind: Backend, group: switchyard.dev}
      timeouts: {request: 30s, backendRequest: 10s}
      retry: {codes: [502, 503], attempts: 3, backoff: 100ms}
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - {type: RequestRedirect, requestRedirect: {scheme: https, path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}
");
    let files = [
        SourceFile::new("/etc/switchyard/gateway.yaml", GATEWAY),
        SourceFile::new("/etc/switchyard/backends.yaml", BACKENDS),
        SourceFile::new("/etc/switchyard/policies/cart.yaml", policy),
        SourceFile::new("/etc/switchyard/routes/cart.yaml", yaml),
    ];
    let g = build(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.files.len(), 4);
    assert_eq!(g.files[0], "/etc/switchyard/backends.yaml");
    assert_eq!(g.digest.len(), 64);

    let gw = g.gateway(None).unwrap();
    assert_eq!(gw.id.to_string(), "infra/edge");
    assert_eq!(gw.zone.as_deref(), Some("eu-west-1a"));
    assert_eq!(gw.address.to_string(), "127.0.0.1");
    let https = gw.port(8443).unwrap();
    let cert = &https.listeners[0].tls.as_ref().unwrap().certificates[0];
    assert_eq!(
        cert.cert_file,
        PathBuf::from("/etc/switchyard/certs/wildcard.pem")
    );
    assert_eq!(
        cert.key_file,
        PathBuf::from("/etc/switchyard/certs/wildcard.key")
    );

    let v1 = &g.backends[&crate::ObjRef::new("shop", "cart-v1")];
    assert_eq!(v1.endpoints.len(), 2);
    assert_eq!(v1.endpoints[1].weight, 3);
    assert_eq!(v1.endpoints[0].zone.as_deref(), Some("eu-west-1a"));
    let p = &v1.policy;
    let user = http::HeaderName::from_static("x-user");
    assert_eq!(
        p.lb,
        LbAlgorithm::RingHash {
            key: HashKey::Header(user)
        }
    );
    assert_eq!(
        (
            p.connect_timeout,
            p.read_timeout,
            p.write_timeout,
            p.idle_timeout
        ),
        (
            Duration::from_millis(500),
            None,
            Some(Duration::from_secs(60)),
            Duration::from_secs(60)
        )
    );
    match &p.protocol {
        UpstreamProtocol::Tls(t) => {
            assert_eq!(t.sni, "cart.internal");
            assert_eq!(
                t.ca_file.as_deref(),
                Some(std::path::Path::new("/etc/switchyard/policies/ca.pem"))
            );
            assert_eq!(t.alpn, TlsAlpn::Auto);
            assert!(!t.insecure_skip_verify);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.source.as_ref().unwrap().to_string(), "shop/cart");
    let v2 = &g.backends[&crate::ObjRef::new("shop", "cart-v2")];
    assert_eq!(v2.policy, crate::BackendPolicy::default());

    let http = gw.port(8080).unwrap();
    let rules: Vec<_> = http.routes.rules().collect();
    assert_eq!(rules.len(), 2);
    let api = rules[0];
    assert_eq!(api.name.as_deref(), Some("api"));
    assert_eq!(api.total_weight, 10);
    assert_eq!(api.timeouts.request, Some(Duration::from_secs(30)));
    assert_eq!(api.timeouts.backend_request, Some(Duration::from_secs(10)));
    let retry = api.retry.as_ref().unwrap();
    assert_eq!(
        (retry.codes.as_slice(), retry.attempts, retry.backoff),
        (&[502, 503][..], 3, Some(Duration::from_millis(100)))
    );
    match &api.filters[..] {
        [Filter::UrlRewrite(rw), Filter::RequestHeaderModifier(m), Filter::RequestMirror(mirror)] =>
        {
            assert_eq!(rw.hostname.as_deref(), Some("cart.internal"));
            assert_eq!(rw.path, Some(PathModifier::ReplacePrefixMatch("/".into())));
            assert_eq!(m.set[0].0.as_str(), "x-env");
            assert_eq!(m.add[0].1, "switchyard");
            assert_eq!(m.remove[0].as_str(), "cookie");
            assert_eq!(mirror.percent, 25);
            assert_eq!(mirror.backend.id.name, "cart-v2");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&api.backends[0].filters[..], [Filter::ResponseHeaderModifier(m)] if m.remove[0] == "server")
    );
    match &rules[1].filters[..] {
        [Filter::RequestRedirect(r)] => {
            assert_eq!((r.scheme.as_deref(), r.status_code), (Some("https"), 301));
            assert_eq!(r.path, Some(PathModifier::ReplaceFullPath("/new".into())));
        }
        other => panic!("{other:?}"),
    }
    assert!(rules[1].backends.is_empty());
    assert_eq!(rules[1].total_weight, 0);
}

#[test]
fn generation_gateway_lookup() {
    let second = GATEWAY
        .replace("name: edge", "name: edge2")
        .split("---")
        .next()
        .unwrap()
        .to_string();
    let files = [
        SourceFile::new("a.yaml", GATEWAY),
        SourceFile::new("b.yaml", second),
    ];
    let g = build(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.gateway(Some("edge")).unwrap().id.name, "edge");
    assert_eq!(g.gateway(Some("infra/edge2")).unwrap().id.name, "edge2");
    assert_eq!(
        g.gateway(None).unwrap_err(),
        "several Gateways are defined, name one (known: infra/edge, infra/edge2)"
    );
    assert_eq!(
        g.gateway(Some("nope")).unwrap_err(),
        "unknown Gateway \"nope\" (known: infra/edge, infra/edge2)"
    );
    let empty = build(&[]).unwrap();
    assert_eq!(empty.gateway(None).unwrap_err(), "no Gateway is defined");
}

#[test]
fn empty_rules_get_the_default_rule_and_build_dir_reads_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routes")).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), GATEWAY).unwrap();
    std::fs::write(dir.path().join("backends.yml"), BACKENDS).unwrap();
    let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  parentRefs: [{name: edge, namespace: infra, sectionName: http}]\n";
    std::fs::write(dir.path().join("routes/r.yaml"), yaml).unwrap();
    let g = crate::build_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let table = &g.gateway(None).unwrap().port(8080).unwrap().routes;
    let rule = table.rules().next().unwrap();
    assert_eq!((rule.backends.len(), rule.line), (0, 5));

    let err = crate::build_dir(&dir.path().join("missing")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(
        err.to_string().contains("missing: cannot list directory"),
        "{err}"
    );
}

#[test]
fn rule_lines_in_flow_style_come_from_the_span_index() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flow, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: http}]
  rules: [{backendRefs: [{name: cart-v1}]},
          {backendRefs: [{name: cart-v2}]}]
";
    let files = [
        SourceFile::new("gateway.yaml", GATEWAY),
        SourceFile::new("backends.yaml", BACKENDS),
        SourceFile::new("flow.yaml", yaml),
    ];
    let g = build(&files).unwrap_or_else(|e| panic!("{e}"));
    let table = &g.gateway(None).unwrap().port(8080).unwrap().routes;
    let lines: Vec<usize> = table.rules().map(|r| r.line).collect();
    assert_eq!(lines, [6, 7]);
}

#[test]
fn diagnostics_display() {
    let d = crate::Diagnostic {
        file: "cart.yaml".into(),
        line: 14,
        column: 9,
        object: Some("HTTPRoute shop/cart".into()),
        field: "spec.rules[1].backendRefs[0].name".into(),
        message: "unknown Backend \"cart-v3\" (known: cart-v1, cart-v2)".into(),
    };
    assert_eq!(
        d.to_string(),
        "cart.yaml:14:9: HTTPRoute shop/cart spec.rules[1].backendRefs[0].name: unknown Backend \"cart-v3\" (known: cart-v1, cart-v2)"
    );
    let bare = crate::Diagnostic {
        line: 0,
        column: 0,
        object: None,
        field: String::new(),
        message: "unreadable".into(),
        ..d.clone()
    };
    assert_eq!(bare.to_string(), "cart.yaml: unreadable");
    let all = crate::Diagnostics(vec![d, bare]);
    assert_eq!(all.to_string().lines().count(), 2);
}
