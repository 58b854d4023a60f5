//! Egress: the ExternalService allowlist on the HTTP forward-proxy listener (absolute-form and
//! Host-header requests, TLS origination, a wrong CA, an unresolvable name) and on the CONNECT
//! listener (denial, a working tunnel, an SNI that differs from the CONNECT host).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use switchyard_testkit::egress::{connect, tls_http1};
use switchyard_testkit::{free_port, request, EchoBackend, H1Conn, TestCa};

use crate::common::Harness;

/// Backends, CAs and a gateway with an HTTP, an Egress and an EgressConnect listener.
struct Egress {
    h: Harness,
    http_egress: SocketAddr,
    tunnels: SocketAddr,
    plain: EchoBackend,
    secure: EchoBackend,
    tunnel_target: EchoBackend,
    ca: TestCa,
    _certs: tempfile::TempDir,
}

async fn start() -> Egress {
    let ca = TestCa::new("egress-test-ca");
    let other_ca = TestCa::new("some-other-ca");
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("payments-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca_file = certs.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca.pem()).unwrap();

    let plain = EchoBackend::start("plain").await;
    let secure = EchoBackend::start_tls("secure", &ca.issue(&["secure.payments.test"])).await;
    let tunnel_target = EchoBackend::start_tls("tunnel", &ca.issue(&["api.tls.test"])).await;

    let (http, egress, tunnels) = (free_port(), free_port(), free_port());
    let gateway = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: http, port: {http}, protocol: HTTP}}
    - {{name: egress, port: {egress}, protocol: switchyard.dev/Egress}}
    - {{name: tunnels, port: {tunnels}, protocol: switchyard.dev/EgressConnect}}
"#
    );
    let services = format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {{name: payments}}
spec:
  hosts: [api.payments.test]
  addresses: [127.0.0.1]
  ports: [{{number: {plain}, protocol: HTTP}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {{name: secure}}
spec:
  hosts: [secure.payments.test]
  addresses: [127.0.0.1]
  ports:
  - number: 80
    protocol: HTTP
    originateTls: {{targetPort: {secure}, caFile: "{ca_file}"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {{name: wrong-ca}}
spec:
  hosts: [wrong.payments.test]
  addresses: [127.0.0.1]
  ports:
  - number: 80
    protocol: HTTP
    originateTls: {{targetPort: {secure}, caFile: "{other_ca_file}", sni: secure.payments.test}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {{name: unresolvable}}
spec:
  hosts: [nx.invalid]
  ports: [{{number: 80, protocol: HTTP}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {{name: tunnel}}
spec:
  hosts: ["*.tls.test"]
  addresses: [127.0.0.1]
  ports: [{{number: {tunnel}, protocol: TLS}}]
"#,
        plain = plain.addr().port(),
        secure = secure.addr().port(),
        tunnel = tunnel_target.addr().port(),
        ca_file = ca_file.display(),
        other_ca_file = other_ca_file.display(),
    );
    let h = Harness::start_with(http, gateway, &[("egress.yaml", services)]).await;
    Egress {
        h,
        http_egress: SocketAddr::from(([127, 0, 0, 1], egress)),
        tunnels: SocketAddr::from(([127, 0, 0, 1], tunnels)),
        plain,
        secure,
        tunnel_target,
        ca,
        _certs: certs,
    }
}

/// `GET uri` in absolute-form on a fresh connection to the egress listener.
async fn absolute(
    proxy: SocketAddr,
    uri: &str,
    headers: &[(&str, &str)],
) -> switchyard_testkit::Response {
    let mut req = Request::builder().method(Method::GET).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    H1Conn::connect(proxy)
        .await
        .unwrap()
        .send(req.body(Bytes::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {uri} via {proxy}: {e}"))
}

/// `GET path` with `Host: host` (origin-form) on a fresh connection to the egress listener.
async fn origin(proxy: SocketAddr, host: &str, path: &str) -> switchyard_testkit::Response {
    H1Conn::connect(proxy)
        .await
        .unwrap()
        .send(request(Method::GET, host, path).body(Bytes::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {path} (Host: {host}) via {proxy}: {e}"))
}

fn assert_refused(r: &switchyard_testkit::Response, status: u16, reason: &str, body: &str) {
    assert_eq!(r.status.as_u16(), status, "{r:?}");
    assert_eq!(r.header("x-switchyard-error"), Some(reason), "{r:?}");
    assert!(r.text().contains(body), "body should name {body:?}: {r:?}");
}

#[tokio::test]
async fn http_egress_allows_listed_hosts_only_and_originates_tls() {
    let e = start().await;
    let proxy = e.http_egress;
    let port = e.plain.addr().port();

    // Unlisted hosts are refused, in absolute-form and in origin-form with Host.
    let r = absolute(proxy, "http://api.evil.test/x", &[]).await;
    assert_refused(
        &r,
        403,
        "egress_denied",
        "no ExternalService allows api.evil.test:80",
    );
    let r = origin(proxy, "api.evil.test:8080", "/x").await;
    assert_refused(
        &r,
        403,
        "egress_denied",
        "no ExternalService allows api.evil.test:8080",
    );
    // A listed host on an unlisted port is refused too.
    let r = absolute(proxy, "http://api.payments.test/x", &[]).await;
    assert_refused(
        &r,
        403,
        "egress_denied",
        "no ExternalService allows api.payments.test:80",
    );
    // A TLS (tunnel-only) port is not reachable as plain HTTP.
    let tunnel_port = e.tunnel_target.addr().port();
    let r = origin(proxy, &format!("a.tls.test:{tunnel_port}"), "/").await;
    assert_refused(
        &r,
        403,
        "egress_denied",
        "for TLS tunnels (the EgressConnect listener) only",
    );
    assert_eq!(e.plain.request_count(), 0);

    // A listed host reaches the backend (static address), in origin-form, without internal headers.
    let r = absolute(
        proxy,
        &format!("http://api.payments.test:{port}/pay?amount=5"),
        &[
            ("x-switchyard-identity", "spiffe://evil/x"),
            ("x-forwarded-client-cert", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["backend"], "plain");
    assert_eq!(body["path"], "/pay");
    assert_eq!(body["query"], "amount=5");
    assert_eq!(body["host"], format!("api.payments.test:{port}"));
    assert!(body["headers"]["x-switchyard-identity"].is_null(), "{body}");
    assert!(
        body["headers"]["x-forwarded-client-cert"].is_null(),
        "{body}"
    );
    let r = origin(proxy, &format!("API.Payments.test:{port}"), "/host-form").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["path"], "/host-form");
    assert_eq!(e.plain.request_count(), 2);

    // TLS origination: the app speaks HTTP, the backend saw TLS with the host as SNI.
    let r = absolute(proxy, "http://secure.payments.test/tls?x=1", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}\n{}", e.h.gw.logs());
    assert_eq!(r.json()["backend"], "secure");
    assert_eq!(r.json()["path"], "/tls");
    let seen = e.secure.requests();
    let tls = seen
        .last()
        .and_then(|r| r.tls.clone())
        .expect("the backend saw TLS");
    assert_eq!(tls.sni.as_deref(), Some("secure.payments.test"));
    // Host names the target port, which is not 443 here.
    let target = format!("secure.payments.test:{}", e.secure.addr().port());
    assert_eq!(seen.last().unwrap().host.as_deref(), Some(target.as_str()));

    // A caFile that did not sign the server's certificate: 502 egress_tls_failed, reason logged.
    let before = e.secure.request_count();
    let r = absolute(proxy, "http://wrong.payments.test/", &[]).await;
    assert_refused(
        &r,
        502,
        "egress_tls_failed",
        "TLS to wrong.payments.test:80 failed",
    );
    assert_eq!(e.secure.request_count(), before);
    wait_log(&e.h, "egress TLS origination failed").await;

    // An allowed name that does not resolve: 502 with the reason.
    let r = absolute(proxy, "http://nx.invalid/", &[]).await;
    assert_refused(&r, 502, "egress_unresolved", "cannot resolve nx.invalid");

    // CONNECT on the HTTP egress listener: pingora refuses it before any hook (405).
    let reply = connect(proxy, &format!("a.tls.test:{tunnel_port}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 405, "{reply:?}");
}

#[tokio::test]
async fn connect_tunnels_check_the_allowlist_and_the_sni() {
    let e = start().await;
    let port = e.tunnel_target.addr().port();

    // Unlisted host: 403 with the reason, and nothing reaches any backend.
    let reply = connect(e.tunnels, "api.evil.test:443").await.unwrap();
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("x-switchyard-error").as_deref(),
        Some("egress_denied")
    );
    assert!(
        reply
            .body
            .contains("no ExternalService allows api.evil.test:443"),
        "{reply:?}"
    );
    // A plain-HTTP port is not a tunnel target.
    let plain = e.plain.addr().port();
    let reply = connect(e.tunnels, &format!("api.payments.test:{plain}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.body.contains("only, not a CONNECT tunnel"),
        "{reply:?}"
    );

    // A listed host (wildcard pattern): the client's own TLS goes through, SNI = the host.
    let host = "api.tls.test";
    let reply = connect(e.tunnels, &format!("{host}:{port}")).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut conn = tls_http1(reply.stream, host, &e.ca.pem()).await.unwrap();
    let r = conn.get(host, "/through").await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["backend"], "tunnel");
    assert_eq!(r.json()["path"], "/through");
    let seen = e.tunnel_target.requests();
    assert_eq!(
        seen.last()
            .and_then(|r| r.tls.clone())
            .and_then(|t| t.sni)
            .as_deref(),
        Some(host)
    );
    // Keep-alive inside the tunnel.
    assert_eq!(
        conn.get(host, "/again").await.unwrap().status,
        StatusCode::OK
    );
    drop(conn);

    // An SNI that differs from the CONNECT host: closed without connecting upstream.
    let accepts = e.tunnel_target.connection_count();
    let reply = connect(e.tunnels, &format!("{host}:{port}")).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let refused = tls_http1(reply.stream, "other.tls.test", &e.ca.pem()).await;
    assert!(refused.is_err(), "the handshake must fail");
    wait_log(&e.h, "SNI differs from the CONNECT host").await;
    assert_eq!(
        e.tunnel_target.connection_count(),
        accepts,
        "the upstream saw no connection"
    );

    // Only CONNECT is spoken on the tunnel listener.
    let r = origin(e.tunnels, host, "/").await;
    assert_eq!(r.status.as_u16(), 405, "{r:?}");
}

/// Waits (bounded) until the gateway log contains `needle`.
async fn wait_log(h: &Harness, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.gw.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
