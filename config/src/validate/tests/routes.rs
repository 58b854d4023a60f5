//! HTTPRoute diagnostics: references, matches, durations, filters and attachment.

use super::{errors, pos, route};

#[test]
fn dangling_backend_ref_lists_known_backends() {
    let yaml = route("    - backendRefs:\n        - name: cart-v1\n        - name: cart-v3\n");
    assert_eq!(
        errors(&[("cart.yaml", &yaml)]),
        [format!(
            "cart.yaml:{}: HTTPRoute shop/cart spec.rules[0].backendRefs[1].name: unknown Backend \"cart-v3\" (known: cart-v1, cart-v2)",
            pos(&yaml, "cart-v3", 0)
        )]
    );
    let yaml =
        route("    - backendRefs: [{name: cart-v1, namespace: other}, {name: x, kind: Pod}]\n");
    let errs = errors(&[("cart.yaml", &yaml)]);
    assert_eq!(errs.len(), 2);
    assert!(errs[0].ends_with("spec.rules[0].backendRefs[0].name: unknown Backend \"other/cart-v1\" (none in namespace \"other\")"), "{errs:?}");
    assert!(
        errs[1].contains("spec.rules[0].backendRefs[1].kind: unsupported backend kind \"Pod\""),
        "{errs:?}"
    );
}

#[test]
fn dangling_parent_refs() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs:
    - {name: edge}
    - {name: edge, namespace: infra, sectionName: htps}
    - {name: edge, namespace: infra, sectionName: https, port: 8080}
    - {name: edge, namespace: infra, port: 9999}
    - {name: edge, namespace: infra, kind: Service}
  rules: [{backendRefs: [{name: cart-v1}]}]
";
    assert_eq!(
        errors(&[("cart.yaml", yaml)]),
        [
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.parentRefs[0].name: unknown Gateway shop/edge (known: infra/edge)", pos(yaml, "edge", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.parentRefs[1].sectionName: Gateway infra/edge has no listener \"htps\" (listeners: http (8080), https (8443))", pos(yaml, "htps", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.parentRefs[2].port: listener \"https\" of Gateway infra/edge is on port 8443, not 8080", pos(yaml, "8080", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.parentRefs[3].port: Gateway infra/edge has no listener on port 9999 (listeners: http (8080), https (8443))", pos(yaml, "9999", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.parentRefs[4].kind: unsupported parent kind \"Service\" (supported: Gateway)", pos(yaml, "Service", 0)),
        ]
    );
}

#[test]
fn bad_regexes_paths_methods_and_headers() {
    let yaml = route(
        "\
    - matches:
        - path: {type: RegularExpression, value: \"/items/(\"}
        - path: {type: PathPrefix, value: api}
        - path: {type: Exact, value: /a//b}
        - method: FETCH
        - headers:
            - {name: \"bad header\", value: x}
            - {name: x-ok, value: \"line\\nbreak\"}
            - {name: x-re, type: RegularExpression, value: \"[a-\"}
        - queryParams: [{name: \"\", value: x}]
      backendRefs: [{name: cart-v1}]
",
    );
    let errs = errors(&[("cart.yaml", &yaml)]);
    let at = |needle, field: &str, msg: &str| {
        format!(
            "cart.yaml:{}: HTTPRoute shop/cart spec.rules[0].matches[{field}: {msg}",
            pos(&yaml, needle, 0)
        )
    };
    assert_eq!(
        errs,
        [
            at("\"/items/(\"", "0].path.value", "invalid regular expression \"/items/(\": unclosed group"),
            at("api}", "1].path.value", "path \"api\" must start with '/'"),
            at("/a//b", "2].path.value", "path \"/a//b\" must not contain \"//\""),
            at("FETCH", "3].method", "unsupported method \"FETCH\" (supported: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"),
            at("\"bad header\"", "4].headers[0].name", "invalid header name \"bad header\""),
            at("\"line", "4].headers[1].value", "invalid header value \"line\\nbreak\""),
            at("\"[a-\"", "4].headers[2].value", "invalid regular expression \"[a-\": unclosed character class"),
            at("\"\", value", "5].queryParams[0].name", "query parameter name is empty"),
        ]
    );
}

#[test]
fn bad_durations_and_backend_request_longer_than_request() {
    let yaml = route(
        "\
    - timeouts: {request: 10s, backendRequest: 1m}
      backendRefs: [{name: cart-v1}]
    - timeouts: {request: 1.5s}
      retry: {codes: [503, 200], attempts: 2, backoff: 100}
      backendRefs: [{name: cart-v1}]
",
    );
    assert_eq!(
        errors(&[("cart.yaml", &yaml)]),
        [
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.rules[0].timeouts.backendRequest: backendRequest timeout \"1m\" is longer than the request timeout \"10s\"", pos(&yaml, "1m}", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.rules[1].timeouts.request: invalid duration \"1.5s\": unknown unit (expected 1 to 4 groups of up to 5 digits followed by h, m, s or ms, e.g. \"1m30s\" or \"250ms\")", pos(&yaml, "1.5s", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.rules[1].retry.codes[1]: retry code 200 is not between 400 and 599", pos(&yaml, "200", 0)),
            format!("cart.yaml:{}: HTTPRoute shop/cart spec.rules[1].retry.backoff: invalid duration \"100\": missing unit (expected 1 to 4 groups of up to 5 digits followed by h, m, s or ms, e.g. \"1m30s\" or \"250ms\")", pos(&yaml, "100}", 0)),
        ]
    );
}

#[test]
fn filter_errors() {
    let yaml = route("\
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {statusCode: 305, scheme: ftp, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - filters:
        - {type: RequestRedirect, requestRedirect: {hostname: example.com}}
        - {type: URLRewrite, urlRewrite: {hostname: other.example.com}}
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-a, value: \"1\"}, {name: X-A, value: \"2\"}]
            add: [{name: \"x b\", value: \"1\"}]
            remove: [x-c]
        - {type: RequestHeaderModifier, requestHeaderModifier: {remove: [x-d]}}
        - {type: RequestMirror, requestMirror: {backendRef: {name: cart-v2}, percent: 10}}
        - {type: RequestMirror, requestMirror: {backendRef: {name: cart-v2}, percent: 150}}
        - {type: ExtensionRef, extensionRef: {group: x.dev, kind: Auth, name: a}}
        - {type: ResponseHeaderModifier, requestHeaderModifier: {remove: [x]}}
      backendRefs:
        - name: cart-v1
          weight: 1000001
        - name: cart-v2
          filters: [{type: RequestRedirect, requestRedirect: {}}]
      sessionPersistence: {sessionName: s}
");
    let e = |needle: &str, nth, field: &str, msg: &str| {
        format!(
            "cart.yaml:{}: HTTPRoute shop/cart spec.rules[{field}: {msg}",
            pos(&yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("cart.yaml", &yaml)]),
        [
            e("305", 0, "0].filters[0].requestRedirect.statusCode", "unsupported redirect status 305 (supported: 301, 302, 303, 307, 308)"),
            e("ftp", 0, "0].filters[0].requestRedirect.scheme", "unsupported scheme \"ftp\" (supported: http, https)"),
            e("URLRewrite", 0, "1].filters[1].type", "RequestRedirect and URLRewrite cannot be used in the same rule (see filters[0])"),
            e("X-A", 0, "1].filters[2].requestHeaderModifier.set[1].name", "header \"X-A\" appears more than once in set"),
            e("\"x b\"", 0, "1].filters[2].requestHeaderModifier.add[0].name", "invalid header name \"x b\""),
            e("RequestHeaderModifier, requestHeaderModifier: {remove: [x-d]", 0, "1].filters[3].type", "RequestHeaderModifier is declared more than once in this rule (first at filters[2])"),
            e("150", 0, "1].filters[5].requestMirror.percent", "percent 150 is above 100"),
            e("ExtensionRef", 0, "1].filters[6].type", "unsupported filter type ExtensionRef"),
            e("type: ResponseHeaderModifier", 0, "1].filters[7]", "type ResponseHeaderModifier needs a responseHeaderModifier section"),
            e("remove: [x]}", 0, "1].filters[7].requestHeaderModifier", "requestHeaderModifier is not allowed with type ResponseHeaderModifier"),
            e("1000001", 0, "1].backendRefs[0].weight", "weight 1000001 is above the maximum 1000000"),
            e("RequestRedirect, requestRedirect: {}", 0, "1].backendRefs[1].filters[0].type", "RequestRedirect is not supported on a backendRef (supported: RequestHeaderModifier, ResponseHeaderModifier)"),
            e("sessionName", 0, "1].sessionPersistence", "unsupported field sessionPersistence"),
        ]
    );
}

#[test]
fn replace_prefix_match_needs_prefix_matches() {
    let yaml = route(
        "\
    - matches: [{path: {value: /v1}}, {path: {type: Exact, value: /legacy}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
      backendRefs: [{name: cart-v1}]
",
    );
    assert_eq!(
        errors(&[("cart.yaml", &yaml)]),
        [format!(
            "cart.yaml:{}: HTTPRoute shop/cart spec.rules[0].filters[0].urlRewrite.path.type: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match (matches[1] is Exact)",
            pos(&yaml, "ReplacePrefixMatch,", 0)
        )]
    );
}

#[test]
fn route_hostnames_must_meet_a_listener_hostname() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: https}]
  hostnames: [shop.example.org, \"*.example.net\"]
  rules: [{backendRefs: [{name: cart-v1}]}]
";
    assert_eq!(
        errors(&[("shop.yaml", yaml)]),
        [format!(
            "shop.yaml:{}: HTTPRoute shop/shop spec.hostnames: no hostname of the route (shop.example.org, *.example.net) matches a listener hostname of Gateway infra/edge (listeners: https (*.example.com))",
            pos(yaml, "[shop", 0)
        )]
    );
}

#[test]
fn allowed_routes_default_to_the_same_namespace() {
    let gw = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: local, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 9000, protocol: HTTP}]
";
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{name: local, namespace: infra}]
  rules: [{backendRefs: [{name: cart-v1}]}]
";
    assert_eq!(
        errors(&[("gw2.yaml", gw), ("r.yaml", yaml)]),
        [format!(
            "r.yaml:{}: HTTPRoute shop/cart spec.parentRefs[0]: Gateway infra/local only accepts routes from namespace \"infra\" on listener \"http\" (allowedRoutes.namespaces.from: Same)",
            pos(yaml, "name: local", 0)
        )]
    );
}
