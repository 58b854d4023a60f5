//! Stage-one tests: document splitting, kind dispatch and positioned parse errors.

use std::cell::Cell;

use super::*;
use crate::build;

thread_local! {
    /// Documents that came out of the joined stream (see `parse_part`) on this thread.
    pub(super) static FAST: Cell<usize> = const { Cell::new(0) };
}

fn fast_count() -> usize {
    FAST.with(Cell::get)
}

fn parse_one(path: &str, contents: &str) -> (Vec<RawDoc>, Vec<String>) {
    let file = SourceFile::new(path, contents);
    let parsed = parse(&[&file], None);
    let diags = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    (parsed.docs, diags)
}

const MULTI: &str = "\
# Backends for the shop.
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  name: cart-v1
  namespace: shop
spec:
  endpoints:
    - address: 10.0.0.1:8080
      zone: eu-west-1a
---
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  name: cart-v2
  namespace: shop
  uid: 3f1e
  resourceVersion: \"12\"
  generation: 3
  creationTimestamp: \"2024-01-01T00:00:00Z\"
  managedFields: [{manager: kubectl}]
  labels: {app: cart}
  annotations: {note: \"v2\"}
spec:
  endpoints: []
status:
  conditions: [{type: Accepted}]
...
";

#[test]
fn multi_document_files_skip_empty_documents() {
    let (docs, diags) = parse_one("backends.yaml", MULTI);
    assert!(diags.is_empty(), "{diags:?}");
    let names: Vec<_> = docs
        .iter()
        .map(|d| (d.at.doc, d.object.metadata.name.as_str()))
        .collect();
    assert_eq!(names, [(1, "cart-v1"), (3, "cart-v2")]);
    assert_eq!(docs[0].object.kind, Some(Kind::Backend));
    assert_eq!(docs[1].object.metadata.labels["app"], "cart");
    match &docs[1].object.spec {
        Spec::Backend(b) => assert!(b.endpoints.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_and_comment_only_files_have_no_documents() {
    for contents in [
        "",
        "\n\n",
        "# nothing here\n",
        "---\n",
        "---\n# only a comment\n---\n",
    ] {
        let (docs, diags) = parse_one("empty.yaml", contents);
        assert!(
            docs.is_empty() && diags.is_empty(),
            "{contents:?}: {diags:?}"
        );
    }
}

#[test]
fn spec_before_kind_is_read_with_the_kind() {
    let yaml = "\
spec:
  endpoints: [{address: \"127.0.0.1:80\"}]
metadata: {name: web}
kind: Backend
apiVersion: switchyard.dev/v1alpha1
";
    let (docs, diags) = parse_one("b.yaml", yaml);
    assert!(diags.is_empty(), "{diags:?}");
    match &docs[0].object.spec {
        Spec::Backend(b) => assert_eq!(b.endpoints[0].address, "127.0.0.1:80"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_field_is_positioned_in_the_file_with_its_field_path() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: ok}
spec:
  endpoints: []
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: cart
  namespace: shop
spec:
  parentRefs: [{name: edge}]
  rules:
    - backendRefs:
        - name: cart-v1
          wieght: 10
";
    let (docs, diags) = parse_one("routes/cart.yaml", yaml);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        diags,
        ["routes/cart.yaml:17:11: HTTPRoute shop/cart spec.rules[0].backendRefs[0].wieght: unknown field `wieght`, expected one of `group`, `kind`, `name`, `namespace`, `port`, `weight`, `filters`"]
    );
}

#[test]
fn policy_kinds_parse_and_their_mistakes_are_positioned() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: t, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart, sectionName: api}]
  fault: {delay: {fixedDelay: 1s, percentage: 12.5}}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  healthCheck:
    http: {path: /, expectedStatuses: [204, \"200-299\", \"301\"]}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: typo, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  outlierDetection:
    consecutive5XX: 3
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: typed, namespace: shop}
spec:
  targetRefs: [{kind: HTTPRoute, name: cart}]
  fault: {abort: {httpStatus: 503, percentage: \"5%\"}}
";
    let (docs, diags) = parse_one("p.yaml", yaml);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].object.kind, Some(Kind::TrafficPolicy));
    match &docs[0].object.spec {
        Spec::TrafficPolicy(t) => {
            assert_eq!(t.target_refs[0].section_name.as_deref(), Some("api"));
            let delay = t.fault.as_ref().and_then(|f| f.delay.as_ref()).unwrap();
            assert_eq!((delay.fixed_delay.as_str(), delay.percentage), ("1s", 12.5));
        }
        other => panic!("{other:?}"),
    }
    match &docs[1].object.spec {
        Spec::BackendPolicy(p) => {
            let http = p
                .health_check
                .as_ref()
                .and_then(|h| h.http.as_ref())
                .unwrap();
            use switchyard::RawStatus::{Code, Text};
            assert_eq!(
                http.expected_statuses.as_deref().unwrap(),
                [Code(204), Text("200-299".into()), Text("301".into())]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        diags,
        [
            "p.yaml:22:5: BackendPolicy shop/typo spec.outlierDetection.consecutive5XX: unknown field `consecutive5XX`, expected one of `consecutive5xx`, `consecutiveGatewayErrors`, `successRate`, `interval`, `baseEjectionTime`, `maxEjectionTime`, `maxEjectionPercent`",
            "p.yaml:29:48: TrafficPolicy shop/typed spec.fault.abort.percentage: invalid type: string \"5%\", expected f64",
        ]
    );
}

#[test]
fn type_errors_and_bad_enum_values() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners:
    - name: http
      port: 70000
      protocol: HTTP
";
    let (_, diags) = parse_one("gw.yaml", yaml);
    assert_eq!(
        diags,
        ["gw.yaml:8:13: Gateway default/edge spec.listeners[0].port: invalid value: integer `70000`, expected u16"]
    );
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  rules:
    - matches:
        - path: {type: Prefix, value: /}
";
    let (_, diags) = parse_one("r.yaml", yaml);
    assert_eq!(
        diags,
        ["r.yaml:7:24: HTTPRoute shop/r spec.rules[0].matches[0].path.type: unknown variant `Prefix`, expected one of `Exact`, `PathPrefix`, `RegularExpression`"]
    );
}

#[test]
fn missing_required_fields() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  namespace: infra
spec:
  listeners: []
";
    let (_, diags) = parse_one("gw.yaml", yaml);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with("gw.yaml:4:3: Gateway metadata: missing field `name`"),
        "{diags:?}"
    );
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n";
    let (_, diags) = parse_one("b.yaml", yaml);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].contains("Backend default/b: missing field `spec`"),
        "{diags:?}"
    );
}

#[test]
fn malformed_yaml_reports_the_parser_position_and_later_documents_still_load() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: []}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: b
spec: {endpoints: []}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: c}
spec: {endpoints: []}
";
    let (docs, diags) = parse_one("b.yaml", yaml);
    let names: Vec<_> = docs
        .iter()
        .map(|d| d.object.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].starts_with("b.yaml:9:5: "), "{diags:?}");
    assert!(
        diags[0].contains("while parsing a flow mapping at line 8 column 11"),
        "{diags:?}"
    );
}

#[test]
fn tab_indentation_is_a_syntax_error() {
    let (_, diags) = parse_one("t.yaml", "apiVersion: v1\nkind: X\nmetadata:\n\tname: x\n");
    assert_eq!(diags.len(), 1);
    assert!(diags[0].starts_with("t.yaml:4:"), "{diags:?}");
}

#[test]
fn unknown_top_level_field_and_duplicate_keys() {
    let (_, diags) = parse_one("x.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nspec: {}\nstatuss: {}\n");
    assert_eq!(
        diags,
        ["x.yaml:5:1: Backend default/b: unknown field `statuss`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"]
    );
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nkind: Backend\nspec: {}\n";
    let (_, diags) = parse_one("x.yaml", yaml);
    assert_eq!(
        diags,
        ["x.yaml:4:1: Backend default/b: duplicate field `kind`"]
    );
}

#[test]
fn unsupported_kinds_name_what_is_supported() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  rules: []
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec: {}
";
    let err = build(&[SourceFile::new("k.yaml", yaml)]).unwrap_err();
    let lines: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        "k.yaml:2:7: GRPCRoute default/g kind: unsupported apiVersion/kind \"gateway.networking.k8s.io/v1\" \"GRPCRoute\" (supported: gateway.networking.k8s.io/v1 Gateway, gateway.networking.k8s.io/v1 HTTPRoute, switchyard.dev/v1alpha1 Backend, switchyard.dev/v1alpha1 BackendPolicy, switchyard.dev/v1alpha1 TLSCertificate, switchyard.dev/v1alpha1 TrafficPolicy, switchyard.dev/v1alpha1 ExternalService, switchyard.dev/v1alpha1 ClientTrafficPolicy, switchyard.dev/v1alpha1 AuthorizationPolicy)"
    );
    assert!(lines[1].starts_with("k.yaml:7:13: Ingress default/i apiVersion: unsupported apiVersion/kind \"networking.k8s.io/v1\" \"Ingress\""), "{}", lines[1]);
}

#[test]
fn shift_lines_moves_context_positions() {
    assert_eq!(
        shift_lines(
            "did not find x, while parsing a block mapping at line 2 column 1",
            10
        ),
        "did not find x, while parsing a block mapping at line 12 column 1"
    );
    assert_eq!(
        shift_lines("value at line 3 is fine", 5),
        "value at line 3 is fine"
    );
}

#[test]
fn joined_stream_matches_document_by_document_parsing() {
    let files = [
        SourceFile::new("a.yaml", "# lead comment\napiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: a}\nspec: {endpoints: []}\n"),
        SourceFile::new("b.yaml", MULTI),
        SourceFile::new("c.yaml", "%YAML 1.1\n---\napiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: c}\nspec: {endpoints: []}"),
        SourceFile::new("d.yaml", "--- {apiVersion: switchyard.dev/v1alpha1, kind: Backend, metadata: {name: d}, spec: {endpoints: []}}\n"),
        SourceFile::new("e.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: e}\nspec: {endpoints: [], bogus: 1}\n"),
        SourceFile::new("f.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: f\n"),
        SourceFile::new("g.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: g}\nspec: {endpoints: []}\n"),
    ];
    let refs: Vec<&SourceFile> = files.iter().collect();
    let before = fast_count();
    let parsed = parse(&refs, None);
    // a, cart-v1, cart-v2, c and d come out of the stream; e has a type error, f a syntax
    // error, after which g is read on its own.
    assert_eq!(fast_count() - before, 5);
    let names: Vec<_> = parsed
        .docs
        .iter()
        .map(|d| (d.at.file, d.object.metadata.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (0, "a"),
            (1, "cart-v1"),
            (1, "cart-v2"),
            (2, "c"),
            (3, "d"),
            (6, "g")
        ]
    );
    let diags: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert!(
        diags[0].starts_with("e.yaml:4:23: Backend default/e spec.bogus: unknown field `bogus`"),
        "{diags:?}"
    );
    assert!(diags[1].starts_with("f.yaml:4:1: "), "{diags:?}");
    // Document by document gives the same objects.
    for (doc, file) in parsed.docs.iter().zip([0, 1, 1, 2, 3, 6]) {
        let chunk = parsed.sources[file].chunks[doc.at.doc];
        let alone = parse_document(doc.at, &chunk, &parsed.sources[file].path);
        assert_eq!(
            alone.object.unwrap().metadata.name,
            doc.object.metadata.name
        );
    }
}

#[test]
fn large_inputs_parse_in_parallel_in_order() {
    let mut files = Vec::new();
    for i in 0..800 {
        let bad = if i == 650 { "  bogus: true\n" } else { "" };
        files.push(SourceFile::new(
            format!("b/{i:04}.yaml"),
            format!("apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: b{i}\n  annotations: {{padding: \"{}\"}}\n{bad}spec:\n  endpoints: [{{address: \"10.0.0.1:80\"}}]\n", "x".repeat(300)),
        ));
    }
    let refs: Vec<&SourceFile> = files.iter().collect();
    let parsed = parse(&refs, None);
    assert_eq!(parsed.docs.len(), 799);
    assert!(parsed.docs.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(parsed.diagnostics.len(), 1);
    assert!(
        parsed.diagnostics[0]
            .to_string()
            .starts_with("b/0650.yaml:6:3: Backend metadata.bogus: unknown field `bogus`"),
        "{}",
        parsed.diagnostics[0]
    );
}

#[test]
fn the_cache_reparses_only_changed_files_and_keeps_their_errors() {
    let backend = |name: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  endpoints: [{{address: \"127.0.0.1:1\"}}]\n"
        )
    };
    let a = SourceFile::new("a.yaml", backend("a"));
    let b = SourceFile::new("b.yaml", backend("b"));
    let bad = SourceFile::new("c.yaml", "kind: [\n");
    let mut cache = ParseCache::default();
    let before = fast_count();
    let first = parse(&[&a, &b, &bad], Some(&mut cache));
    assert_eq!(fast_count() - before, 2);
    assert_eq!(first.docs.len(), 2);
    assert_eq!(first.diagnostics.len(), 1);

    // Unchanged: nothing is parsed again; the bad file's error is still reported.
    let before = fast_count();
    let again = parse(&[&a, &b, &bad], Some(&mut cache));
    assert_eq!(fast_count() - before, 0);
    assert_eq!(again.docs.len(), 2);
    assert_eq!(again.diagnostics.len(), 1);
    assert!(Arc::ptr_eq(&again.docs[0].object, &first.docs[0].object));

    // One edit: only that file.
    let b2 = SourceFile::new("b.yaml", backend("b2"));
    let before = fast_count();
    let edited = parse(&[&a, &b2, &bad], Some(&mut cache));
    assert_eq!(fast_count() - before, 1);
    assert_eq!(edited.docs[1].object.metadata.name, "b2");
    assert_eq!(edited.docs[1].at, DocRef { file: 1, doc: 0 });
    assert_eq!(
        build(&[a.clone(), b2.clone()]).map(|g| g.digest).ok(),
        crate::Builder::new()
            .build_with_views(&[a, b2])
            .map(|(g, _)| g.digest)
            .ok()
    );
}
