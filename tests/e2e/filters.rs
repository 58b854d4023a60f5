//! HTTPRoute filters end to end: header modifiers, redirects, URL rewrites, mirrors and
//! per-backendRef filters.

use std::time::{Duration, Instant};

use switchyard_testkit::{get, EchoBackend};

use crate::common::{backend_yaml, Harness};

const ROUTE_HEAD: &str = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: f}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [f.test]\n  rules:\n";

#[tokio::test]
async fn header_modifiers_and_per_backend_filters() {
    let main = EchoBackend::start("main").await;
    let yaml = backend_yaml("main", &[main.addr()]);
    let route = format!(
        r#"{ROUTE_HEAD}    - matches: [{{path: {{value: /h}}}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{{name: x-set, value: new}}]
            add: [{{name: x-add, value: added}}]
            remove: [x-remove]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{{name: x-resp, value: from-rule}}]
            remove: [content-type]
      backendRefs:
        - group: switchyard.dev
          kind: Backend
          name: main
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{{name: x-backend, value: main}}]
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                add: [{{name: x-resp-backend, value: main}}]
"#
    );
    let h = Harness::start(&[("b.yaml", yaml), ("f.yaml", route)]).await;
    let r = get(
        h.http,
        "f.test",
        "/h",
        &[("x-set", "old"), ("x-add", "orig"), ("x-remove", "bye")],
    )
    .await;
    assert_eq!(r.status, 200);
    let hdr = &r.json()["headers"];
    assert_eq!(hdr["x-set"], "new");
    assert_eq!(hdr["x-add"], "orig, added", "add appends: {hdr}");
    assert!(hdr.get("x-remove").is_none());
    assert_eq!(hdr["x-backend"], "main");
    assert_eq!(r.header("x-resp"), Some("from-rule"));
    assert_eq!(r.header("x-resp-backend"), Some("main"));
    assert!(r.header("content-type").is_none());
}

#[tokio::test]
async fn redirects_follow_the_spec_port_and_path_rules() {
    let main = EchoBackend::start("main").await;
    let yaml = backend_yaml("main", &[main.addr()]);
    let route = format!(
        r#"{ROUTE_HEAD}    - matches: [{{path: {{type: Exact, value: /full}}}}]
      filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: /new/place}}, statusCode: 301}}}}]
    - matches: [{{path: {{value: /old}}}}]
      filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /fresh}}}}}}]
    - matches: [{{path: {{value: /secure}}}}]
      filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, hostname: secure.test}}}}]
    - matches: [{{path: {{value: /port}}}}]
      filters: [{{type: RequestRedirect, requestRedirect: {{hostname: other.test, port: 8443, statusCode: 308}}}}]
"#
    );
    let h = Harness::start(&[("b.yaml", yaml), ("f.yaml", route)]).await;
    let port = h.http.port();

    let r = get(h.http, "f.test", "/full?x=1", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").unwrap(),
        format!("http://f.test:{port}/new/place?x=1")
    );

    let r = get(h.http, "f.test", "/old/a/b", &[]).await;
    assert_eq!(r.status, 302, "default status");
    assert_eq!(
        r.header("location").unwrap(),
        format!("http://f.test:{port}/fresh/a/b")
    );
    let r = get(h.http, "f.test", "/old", &[]).await;
    assert_eq!(
        r.header("location").unwrap(),
        format!("http://f.test:{port}/fresh")
    );

    // A scheme without a port: the scheme's well-known port, omitted from Location.
    let r = get(h.http, "f.test", "/secure/x", &[]).await;
    assert_eq!(
        r.header("location").unwrap(),
        "https://secure.test/secure/x"
    );

    let r = get(h.http, "f.test", "/port", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location").unwrap(), "http://other.test:8443/port");
    assert_eq!(main.request_count(), 0, "redirects never reach the backend");
}

#[tokio::test]
async fn url_rewrites_hostname_full_path_and_prefix() {
    let main = EchoBackend::start("main").await;
    let yaml = backend_yaml("main", &[main.addr()]);
    let route = format!(
        r#"{ROUTE_HEAD}    - matches: [{{path: {{value: /api/v1}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{hostname: internal.svc, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}}}}]
      backendRefs: [{{group: switchyard.dev, kind: Backend, name: main}}]
    - matches: [{{path: {{value: /strip}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs: [{{group: switchyard.dev, kind: Backend, name: main}}]
    - matches: [{{path: {{value: /full}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /replaced}}}}}}]
      backendRefs: [{{group: switchyard.dev, kind: Backend, name: main}}]
"#
    );
    let h = Harness::start(&[("b.yaml", yaml), ("f.yaml", route)]).await;
    let j = get(h.http, "f.test", "/api/v1/users?id=7", &[])
        .await
        .json();
    assert_eq!(j["path"], "/v2/users");
    assert_eq!(j["query"], "id=7");
    assert_eq!(j["host"], "internal.svc");
    assert_eq!(
        j["headers"]["x-forwarded-host"], "f.test",
        "original host kept for the app"
    );
    let j = get(h.http, "f.test", "/strip/a", &[]).await.json();
    assert_eq!(j["path"], "/a");
    let j = get(h.http, "f.test", "/strip", &[]).await.json();
    assert_eq!(j["path"], "/");
    let j = get(h.http, "f.test", "/full/whatever", &[]).await.json();
    assert_eq!(j["path"], "/replaced");
    assert_eq!(j["host"], "f.test");
}

#[tokio::test]
async fn mirror_copies_without_affecting_the_main_request() {
    let main = EchoBackend::start("main").await;
    let shadow = EchoBackend::start("shadow").await;
    // A mirror that never answers must not slow the main request.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = [
        backend_yaml("main", &[main.addr()]),
        backend_yaml("shadow", &[shadow.addr()]),
        backend_yaml("hung", &[hung.local_addr().unwrap()]),
    ]
    .concat();
    let route = format!(
        r#"{ROUTE_HEAD}    - filters:
        - {{type: RequestMirror, requestMirror: {{backendRef: {{group: switchyard.dev, kind: Backend, name: shadow}}}}}}
        - {{type: RequestMirror, requestMirror: {{backendRef: {{group: switchyard.dev, kind: Backend, name: hung}}}}}}
      backendRefs: [{{group: switchyard.dev, kind: Backend, name: main}}]
"#
    );
    let h = Harness::start(&[("b.yaml", yaml), ("f.yaml", route)]).await;
    for i in 0..20 {
        let started = Instant::now();
        let r = get(h.http, "f.test", &format!("/m/{i}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["backend"], "main");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "mirror delayed the request"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while shadow.request_count() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(main.request_count(), 20);
    assert_eq!(shadow.request_count(), 20, "every request mirrored");
    let mut paths: Vec<String> = shadow.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert!(paths.contains(&"/m/7".to_string()));
}
