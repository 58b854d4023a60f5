//! AuthorizationPolicy end to end: allow and deny, deny winning, default deny, method,
//! header, route and backend conditions, dry-run (passes, and the gateway log names the
//! decision), and bypass attempts against a Deny on `/admin` and against a default Deny with
//! an Allow for `/public` only. Every refused attempt is checked from both sides: the client
//! gets 403 or 400 and the echo backend's request count does not move.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_testkit::EchoBackend;

use crate::common::{backend_yaml, Harness};
use crate::hardening::{exchange, route, zoned_gateway};

fn policy(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n{spec}"
    )
}

async fn start(policies: &str, backends: &[&EchoBackend], routes: &str) -> Harness {
    let mut yaml = String::new();
    for b in backends {
        yaml.push_str(&backend_yaml(b.name(), &[b.addr()]));
    }
    yaml.push_str(routes);
    yaml.push_str(policies);
    let port = switchyard_testkit::free_port();
    Harness::start_with(port, zoned_gateway(port), &[("routes.yaml", yaml)]).await
}

/// Sends a raw request; returns its status and whether a backend saw it.
async fn send(addr: SocketAddr, request: &str, backends: &[&EchoBackend]) -> (u16, bool) {
    let count = || backends.iter().map(|b| b.request_count()).sum::<u64>();
    let before = count();
    let (r, _) = exchange(addr, request.as_bytes()).await;
    (r.status, count() > before)
}

fn req(method: &str, path: &str, headers: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n{headers}\r\n")
}

/// Every path of the bypass corpus, raw as sent.
const BYPASSES: [&str; 10] = [
    "/public/%2e%2e/admin",
    "/public/..%2fadmin",
    "/public/%2E%2E/admin",
    "//admin",
    "/admin;param",
    "/%2Fadmin",
    "/admin%2F",
    "/public\\..\\admin",
    "/ADMIN",
    "/%61dmin",
];

#[tokio::test]
async fn allow_deny_conditions_and_dry_run() {
    let shop = EchoBackend::start("shop").await;
    let cart = EchoBackend::start("cart").await;
    let routes = route("shop", "/", "shop") + &route("cart", "/cart", "cart");
    let policies = policy(
        "rules",
        "  rules:
    - name: deny-admin
      action: Deny
      to: [{paths: [{type: PathPrefix, value: /admin, ignoreCase: true}]}]
    - name: no-cart-deletes
      action: Deny
      to: [{routes: [cart], methods: [DELETE]}]
    - name: no-staging
      action: Deny
      headers: [{name: x-env, value: staging}]
    - name: cart-internal
      action: Deny
      to: [{backends: [cart], paths: [{value: /cart/internal}]}]
    - name: debug-present
      action: Deny
      headers: [{name: x-debug, present: true}]
",
    ) + &policy(
        "trial",
        "  dryRun: true
  rules:
    - name: would-deny-dry
      action: Deny
      to: [{paths: [{value: /dry}]}]
",
    );
    let all = [&shop, &cart];
    let h = start(&policies, &all, &routes).await;
    let cases = [
        ("GET", "/", "", 200),
        ("GET", "/admin", "", 403),
        ("GET", "/Admin/users", "", 403),
        ("GET", "/administrator", "", 200),
        ("DELETE", "/cart/1", "", 403),
        ("GET", "/cart/1", "", 200),
        ("DELETE", "/other", "", 200),
        ("GET", "/x", "x-env: staging\r\n", 403),
        ("GET", "/x", "x-env: prod\r\n", 200),
        ("GET", "/cart/internal/x", "", 403),
        ("GET", "/cart/public", "", 200),
        ("GET", "/x", "x-debug: \r\n", 403),
        ("GET", "/dry", "", 200),
    ];
    for (method, path, headers, want) in cases {
        let (status, reached) = send(h.http, &req(method, path, headers), &all).await;
        assert_eq!(status, want, "{method} {path} {headers:?}\n{}", h.gw.logs());
        assert_eq!(
            reached,
            want == 200,
            "{method} {path}: backend saw it: {reached}"
        );
    }
    let (r, _) = exchange(h.http, req("GET", "/admin", "").as_bytes()).await;
    assert_eq!(r.header("x-switchyard-error"), Some("authz_denied"));
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !body.contains("deny-admin") && !r.head.contains("deny-admin"),
        "policy names stay in the log"
    );

    // The bypass corpus against the Deny on /admin.
    for path in BYPASSES {
        let (status, reached) = send(h.http, &req("GET", path, ""), &all).await;
        assert!(status == 403 || status == 400, "{path}: {status}");
        assert!(!reached, "{path} reached a backend");
    }

    // The log names the denial's policy and rule, and the dry-run decision.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = h.gw.logs();
        let denied = logs.lines().any(|l| {
            l.contains("authorization denied")
                && l.contains("default/rules")
                && l.contains("deny-admin")
        });
        let dry = logs.lines().any(|l| {
            l.contains("authorization dry-run")
                && l.contains("\"/dry\"")
                && l.contains("default/trial")
                && l.contains("would-deny-dry")
                && l.contains("\"deny\"")
        });
        if denied && dry {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing log lines (denied {denied}, dry {dry}):\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn default_deny_allows_only_public_and_resists_bypasses() {
    let web = EchoBackend::start("web").await;
    let all = [&web];
    let policies = policy(
        "closed",
        "  defaultAction: Deny
  rules:
    - name: public
      action: Allow
      to: [{paths: [{value: /public}]}]
    - name: no-secret
      action: Deny
      to: [{paths: [{value: /public/secret}]}]
    - name: cart-workload
      action: Allow
      from: [{principals: [\"spiffe://switchyard.local/ns/shop/sa/cart\"]}]
    - name: shop-workloads
      action: Allow
      from: [{principalPrefixes: [\"spiffe://switchyard.local/ns/shop/\"]}]
    - name: zone-x
      action: Allow
      from: [{zones: [zone-x]}]
",
    );
    let h = start(&policies, &all, &route("web", "/", "web")).await;
    let cases = [
        ("/public", "", 200),
        ("/public/page", "", 200),
        ("/other", "", 403),
        ("/public/secret", "", 403),
        ("/publicity", "", 403),
        // Spoofed identity headers would match an Allow rule, but are stripped outside.
        ("/other", "x-switchyard-identity: spiffe://switchyard.local/ns/shop/sa/cart\r\n", 403),
        ("/other", "X-Switchyard-Identity: spiffe://switchyard.local/ns/shop/sa/x\r\n", 403),
        ("/other", "x-switchyard-source-zone: zone-x\r\n", 403),
        (
            "/admin",
            "x-switchyard-identity: spiffe://switchyard.local/ns/shop/sa/cart\r\nx-switchyard-source-zone: zone-x\r\n",
            403,
        ),
    ];
    for (path, headers, want) in cases {
        let (status, reached) = send(h.http, &req("GET", path, headers), &all).await;
        assert_eq!(status, want, "{path} {headers:?}\n{}", h.gw.logs());
        assert_eq!(
            reached,
            want == 200,
            "{path} {headers:?}: backend saw it: {reached}"
        );
    }
    for path in BYPASSES {
        let (status, reached) = send(h.http, &req("GET", path, ""), &all).await;
        assert!(status == 403 || status == 400, "{path}: {status}");
        assert!(!reached, "{path} reached the backend");
    }
    // What did reach the backend never carried the spoofed headers.
    for seen in web.requests() {
        assert!(seen.headers.get("x-switchyard-identity").is_none());
        assert!(seen.headers.get("x-switchyard-source-zone").is_none());
    }
}
