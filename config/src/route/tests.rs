//! Route-table tests: every match type, every precedence rule and the host index, through `build`.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::{build, Generation, SourceFile};

const BASE: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      allowedRoutes: {namespaces: {from: All}}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: [{address: \"10.0.0.1:80\"}]}
";

/// Builds BASE plus route files; panics with the diagnostics on error.
fn gen(routes: &[(&str, &str)]) -> Generation {
    let mut files = vec![SourceFile::new("base.yaml", BASE)];
    files.extend(routes.iter().map(|(p, c)| SourceFile::new(*p, *c)));
    build(&files).unwrap_or_else(|e| panic!("{e}"))
}

/// One HTTPRoute named `name` with the given hostnames and rules (block list items indented
/// by 4; a leading `"\` line continuation eats the first item's indentation, so it is restored).
fn route(name: &str, hostnames: &str, rules: &str) -> String {
    let rules = if rules.starts_with('-') {
        format!("    {rules}")
    } else {
        rules.to_string()
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: {hostnames}\n  rules:\n{rules}"
    )
}

struct Req<'a> {
    method: Method,
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
}

fn req<'a>(host: &'a str, path: &'a str) -> Req<'a> {
    Req {
        method: Method::GET,
        host,
        path,
        query: None,
        headers: HeaderMap::new(),
    }
}

impl Req<'_> {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }
    fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
}

/// "route#rule.match" of the winner, plus the matched prefix.
fn hit(g: &Generation, r: &Req<'_>) -> Option<(String, Option<String>)> {
    let table = &g.gateways[0].ports[0].routes;
    let view = crate::RequestView {
        method: &r.method,
        host: r.host,
        path: r.path,
        query: r.query,
        headers: &r.headers,
    };
    table.find(&view).map(|m| {
        (
            format!(
                "{}#{}.{}",
                m.rule.route.name, m.rule.rule_index, m.match_index
            ),
            m.matched_prefix.map(str::to_string),
        )
    })
}

fn winner(g: &Generation, r: &Req<'_>) -> Option<String> {
    hit(g, r).map(|(w, _)| w)
}

const PATHS: &str = "\
    - matches: [{path: {type: Exact, value: /exact}}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: PathPrefix, value: /foo}}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: PathPrefix, value: /bar/}}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: RegularExpression, value: \"/items/[0-9]+\"}}]
      backendRefs: [{name: a}]
";

#[test]
fn exact_prefix_and_regex_semantics() {
    let g = gen(&[("r.yaml", &route("r", "[]", PATHS))]);
    let w = |p| winner(&g, &req("x", p));
    assert_eq!(w("/exact").as_deref(), Some("r#0.0"));
    assert_eq!(w("/exact/"), None);
    assert_eq!(w("/exactly"), None);
    // Segment-wise prefix.
    for p in ["/foo", "/foo/", "/foo/bar", "/foo/bar/baz"] {
        assert_eq!(w(p).as_deref(), Some("r#1.0"), "{p}");
    }
    assert_eq!(w("/foobar"), None);
    // A trailing slash in the prefix is ignored.
    for p in ["/bar", "/bar/", "/bar/x"] {
        assert_eq!(w(p).as_deref(), Some("r#2.0"), "{p}");
    }
    assert_eq!(w("/barn"), None);
    // Regex is a full match.
    assert_eq!(w("/items/42").as_deref(), Some("r#3.0"));
    assert_eq!(w("/items/42/x"), None);
    assert_eq!(w("/x/items/42"), None);
    assert_eq!(w("/"), None);
}

#[test]
fn root_prefix_and_rules_without_matches_match_everything() {
    let rules = "    - backendRefs: [{name: a}]\n";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    for p in ["/", "/a", "/a/b/", "*"] {
        assert_eq!(
            hit(&g, &req("any.host", p)),
            Some(("r#0.0".into(), Some("/".into()))),
            "{p}"
        );
    }
}

#[test]
fn matched_prefix_is_the_trimmed_prefix() {
    let g = gen(&[("r.yaml", &route("r", "[]", PATHS))]);
    assert_eq!(
        hit(&g, &req("x", "/bar/baz")).unwrap().1.as_deref(),
        Some("/bar")
    );
    assert_eq!(
        hit(&g, &req("x", "/foo")).unwrap().1.as_deref(),
        Some("/foo")
    );
    assert_eq!(hit(&g, &req("x", "/exact")).unwrap().1, None);
    assert_eq!(hit(&g, &req("x", "/items/1")).unwrap().1, None);
}

#[test]
fn precedence_exact_then_regex_then_longest_prefix() {
    let rules = "\
    - matches: [{path: {value: /}}]
    - matches: [{path: {value: /api}}]
    - matches: [{path: {value: /api/v1}}]
    - matches: [{path: {type: RegularExpression, value: /re/.*}}]
    - matches: [{path: {type: RegularExpression, value: /re/v1/.*}}]
    - matches: [{path: {type: Exact, value: /api/v1/users}}]
    - matches: [{path: {type: RegularExpression, value: \"/api/v1/[a-z]+\"}}]
";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    let w = |p| winner(&g, &req("x", p)).unwrap();
    // Exact beats a matching regex and a matching prefix.
    assert_eq!(w("/api/v1/users"), "r#5.0");
    // A regex beats a longer matching prefix.
    assert_eq!(w("/api/v1/orders"), "r#6.0");
    // Among prefixes the longest wins.
    assert_eq!(w("/api/v1/orders/1"), "r#2.0");
    assert_eq!(w("/api/v1"), "r#2.0");
    assert_eq!(w("/api"), "r#1.0");
    assert_eq!(w("/other"), "r#0.0");
    // Among regexes the longer pattern wins.
    assert_eq!(w("/re/v1/x"), "r#4.0");
    assert_eq!(w("/re/v2"), "r#3.0");
}

#[test]
fn tie_breaks_method_then_headers_then_query_then_source_order() {
    let rules = "\
    - matches: [{path: {value: /p}}]
    - matches: [{path: {value: /p}, queryParams: [{name: q, value: \"1\"}]}]
    - matches: [{path: {value: /p}, headers: [{name: h1, value: a}]}]
    - matches: [{path: {value: /p}, headers: [{name: h1, value: a}, {name: h2, value: b}]}]
    - matches: [{path: {value: /p}, method: POST}]
";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    let base = || {
        req("x", "/p")
            .header("h1", "a")
            .header("h2", "b")
            .query("q=1")
    };
    assert_eq!(winner(&g, &base().method(Method::POST)).unwrap(), "r#4.0");
    assert_eq!(winner(&g, &base()).unwrap(), "r#3.0");
    assert_eq!(
        winner(&g, &req("x", "/p").header("h1", "a").query("q=1")).unwrap(),
        "r#2.0"
    );
    assert_eq!(winner(&g, &req("x", "/p").query("q=1")).unwrap(), "r#1.0");
    assert_eq!(winner(&g, &req("x", "/p")).unwrap(), "r#0.0");
}

#[test]
fn source_order_is_file_then_document_then_rule_then_match() {
    let two = |name: &str| {
        route(
            name,
            "[]",
            "    - matches: [{path: {value: /s}}, {path: {value: /s}}]\n",
        )
    };
    let multi = format!("{}\n---\n{}", two("b-first-doc"), two("a-second-doc"));
    // "a.yaml" sorts before "z.yaml" whatever the input order.
    let g = gen(&[("z.yaml", &two("z-route")), ("a.yaml", &multi)]);
    assert_eq!(winner(&g, &req("x", "/s")).unwrap(), "b-first-doc#0.0");
    let g = gen(&[("z.yaml", &two("z-route"))]);
    assert_eq!(winner(&g, &req("x", "/s")).unwrap(), "z-route#0.0");
}

#[test]
fn header_matching() {
    let rules = "\
    - matches:
        - headers:
            - {name: X-Env, value: canary}
            - {name: x-env, value: ignored-duplicate}
            - {name: x-version, type: RegularExpression, value: \"v[0-9]+\"}
    - matches: [{headers: [{name: accept, value: \"text/html,application/json\"}]}]
";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    let r = |h: &[(&str, &str)]| {
        let mut q = req("x", "/");
        for (n, v) in h {
            q = q.header(n, v);
        }
        winner(&g, &q)
    };
    // Names are case-insensitive, matches are ANDed, only the first entry for a name counts.
    assert_eq!(
        r(&[("x-env", "canary"), ("X-Version", "v2")]).as_deref(),
        Some("r#0.0")
    );
    assert_eq!(r(&[("x-env", "canary")]), None);
    assert_eq!(r(&[("x-env", "Canary"), ("x-version", "v2")]), None);
    assert_eq!(r(&[("x-env", "canary"), ("x-version", "v2x")]), None);
    // Several values are joined with ",".
    assert_eq!(
        r(&[("accept", "text/html"), ("accept", "application/json")]).as_deref(),
        Some("r#1.0")
    );
    assert_eq!(r(&[("accept", "text/html")]), None);
}

#[test]
fn query_matching() {
    let rules = "\
    - matches:
        - queryParams:
            - {name: debug, value: \"on\"}
            - {name: user, type: RegularExpression, value: \"[a-z ]+\"}
";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    let q = |s: &'static str| winner(&g, &req("x", "/").query(s));
    assert_eq!(q("debug=on&user=ann").as_deref(), Some("r#0.0"));
    // Percent-decoded names and values.
    assert_eq!(q("de%62ug=o%6E&user=ann%20lee").as_deref(), Some("r#0.0"));
    // First occurrence only; names are case-sensitive.
    assert_eq!(q("debug=off&debug=on&user=ann"), None);
    assert_eq!(q("debug=on&debug=off&user=ann").as_deref(), Some("r#0.0"));
    assert_eq!(q("DEBUG=on&user=ann"), None);
    assert_eq!(winner(&g, &req("x", "/")), None);
}

#[test]
fn method_matching_and_ored_matches() {
    let rules = "\
    - matches:
        - {path: {type: Exact, value: /a}, method: GET}
        - {path: {type: Exact, value: /b}, method: DELETE}
";
    let g = gen(&[("r.yaml", &route("r", "[]", rules))]);
    assert_eq!(winner(&g, &req("x", "/a")).as_deref(), Some("r#0.0"));
    assert_eq!(
        winner(&g, &req("x", "/b").method(Method::DELETE)).as_deref(),
        Some("r#0.1")
    );
    assert_eq!(winner(&g, &req("x", "/b")), None);
    assert_eq!(winner(&g, &req("x", "/a").method(Method::HEAD)), None);
}

#[test]
fn host_index_uses_only_the_most_specific_bucket() {
    let g = gen(&[
        (
            "1.yaml",
            &route(
                "exact",
                "[shop.example.com]",
                "    - matches: [{path: {type: Exact, value: /only}}]\n",
            ),
        ),
        (
            "2.yaml",
            &route(
                "wild",
                "[\"*.example.com\"]",
                "    - backendRefs: [{name: a}]\n",
            ),
        ),
        (
            "3.yaml",
            &route(
                "deeper",
                "[\"*.eu.example.com\"]",
                "    - backendRefs: [{name: a}]\n",
            ),
        ),
        (
            "4.yaml",
            &route("any", "[]", "    - backendRefs: [{name: a}]\n"),
        ),
    ]);
    let w = |h, p| winner(&g, &req(h, p)).map(|s| s.split('#').next().unwrap().to_string());
    assert_eq!(w("shop.example.com", "/only").as_deref(), Some("exact"));
    // The exact bucket exists for this host: no fallback to wildcard or catch-all.
    assert_eq!(w("shop.example.com", "/other"), None);
    assert_eq!(w("shop.example.com.", "/only").as_deref(), Some("exact"));
    // Wildcards match one or more labels; the longest suffix wins.
    assert_eq!(w("a.example.com", "/x").as_deref(), Some("wild"));
    assert_eq!(w("a.b.example.com", "/x").as_deref(), Some("wild"));
    assert_eq!(w("fr.eu.example.com", "/x").as_deref(), Some("deeper"));
    assert_eq!(w("a.fr.eu.example.com", "/x").as_deref(), Some("deeper"));
    assert_eq!(w("eu.example.com", "/x").as_deref(), Some("wild"));
    // A wildcard never matches the bare domain; it goes to the catch-all.
    assert_eq!(w("example.com", "/x").as_deref(), Some("any"));
    assert_eq!(w("other.org", "/x").as_deref(), Some("any"));
    assert_eq!(g.gateways[0].ports[0].routes.host_count(), 4);
}

#[test]
fn no_catch_all_means_unknown_hosts_get_nothing() {
    let g = gen(&[(
        "r.yaml",
        &route("r", "[a.example.com]", "    - backendRefs: [{name: a}]\n"),
    )]);
    assert_eq!(winner(&g, &req("b.example.com", "/")), None);
    assert_eq!(
        winner(&g, &req("a.example.com", "/")).as_deref(),
        Some("r#0.0")
    );
}

#[test]
fn listener_hostnames_narrow_route_hostnames_and_ports_merge_listeners() {
    let gw = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: shop, port: 8080, protocol: HTTP, hostname: \"*.shop.example.com\"}
    - {name: api, port: 8080, protocol: HTTP, hostname: api.example.com}
    - {name: admin, port: 9090, protocol: HTTP}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: []}
";
    let routes = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wide}
spec:
  parentRefs: [{name: edge, port: 8080}]
  hostnames: [\"*.example.com\", eu.shop.example.com]
  rules: [{backendRefs: [{name: a}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: admin}
spec:
  parentRefs: [{name: edge, sectionName: admin}]
  rules: [{backendRefs: [{name: a}]}]
";
    let g = build(&[
        SourceFile::new("gw.yaml", gw),
        SourceFile::new("routes.yaml", routes),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let gw = g.gateway(Some("default/edge")).unwrap();
    assert_eq!(
        gw.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        [8080, 9090]
    );
    let p8080 = gw.port(8080).unwrap();
    assert_eq!(
        p8080
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["shop", "api"]
    );
    assert_eq!(p8080.routes.rule_count(), 1);
    let find = |port: u16, host: &str| {
        let headers = HeaderMap::new();
        let view = crate::RequestView {
            method: &Method::GET,
            host,
            path: "/",
            query: None,
            headers: &headers,
        };
        gw.port(port)
            .unwrap()
            .routes
            .find(&view)
            .map(|m| m.rule.route.name.clone())
    };
    // *.shop.example.com ∩ *.example.com = *.shop.example.com, and eu.shop.example.com stays.
    assert_eq!(find(8080, "x.shop.example.com").as_deref(), Some("wide"));
    assert_eq!(find(8080, "eu.shop.example.com").as_deref(), Some("wide"));
    // api.example.com ∩ *.example.com = api.example.com.
    assert_eq!(find(8080, "api.example.com").as_deref(), Some("wide"));
    // Not covered by any listener hostname.
    assert_eq!(find(8080, "www.example.com"), None);
    assert_eq!(find(9090, "anything"), Some("admin".into()));
    assert_eq!(gw.port(9090).unwrap().routes.rule_count(), 1);
}

#[test]
fn rules_expose_their_source_position_and_backends() {
    let yaml = route(
        "r",
        "[]",
        "\
    - name: first
      backendRefs:
        - {name: a, weight: 3}
        - {name: a, weight: 1}
    - backendRefs: [{name: a}]
",
    );
    let g = gen(&[("routes/r.yaml", &yaml)]);
    let rules: Vec<_> = g.gateways[0].ports[0].routes.rules().cloned().collect();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        (
            rules[0].file.as_str(),
            rules[0].line,
            rules[0].name.as_deref()
        ),
        ("routes/r.yaml", 8, Some("first"))
    );
    assert_eq!(rules[0].total_weight, 4);
    assert_eq!(rules[0].backends[0].backend.id.to_string(), "default/a");
    assert_eq!(rules[1].line, 12);
}
