//! Protocols through the gateway: HTTPS with SNI certificate selection, h2 over TLS (ALPN),
//! h2c, WebSocket, and h2c / TLS upstreams.

use switchyard_testkit::{free_port, get, ws_echo, EchoBackend, H2Conn, TestCa, TlsConn};

use crate::common::{backend_yaml, Harness};

fn route(name: &str, host: Option<&str>, backend: &str) -> String {
    let hosts = host
        .map(|h| format!("  hostnames: [{h}]\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n{hosts}  rules:\n    - backendRefs: [{{group: switchyard.dev, kind: Backend, name: {backend}}}]\n"
    )
}

#[tokio::test]
async fn https_sni_selects_certificates_and_alpn_h2() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let ca = TestCa::new("switchyard-test-ca");
    let dir = switchyard_testkit::ConfigDir::new();
    let (a_cert, a_key) = ca.issue(&["a.test"]).write(dir.path(), "a");
    let (b_cert, b_key) = ca.issue(&["b.test"]).write(dir.path(), "b");
    let http = free_port();
    let https = free_port();
    let gateway = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: http, port: {http}, protocol: HTTP}}
    - name: https-a
      port: {https}
      protocol: HTTPS
      hostname: a.test
      tls: {{certificateRefs: [{{group: switchyard.dev, kind: TLSCertificate, name: a}}]}}
    - name: https-b
      port: {https}
      protocol: HTTPS
      hostname: b.test
      tls: {{certificateRefs: [{{group: switchyard.dev, kind: TLSCertificate, name: b}}]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: TLSCertificate
metadata: {{name: a}}
spec: {{certFile: "{}", keyFile: "{}"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: TLSCertificate
metadata: {{name: b}}
spec: {{certFile: "{}", keyFile: "{}"}}
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display()
    );
    let files = [
        (
            "backends.yaml",
            [
                backend_yaml("a", &[a.addr()]),
                backend_yaml("b", &[b.addr()]),
            ]
            .concat(),
        ),
        (
            "routes.yaml",
            [
                route("ra", Some("a.test"), "a"),
                route("rb", Some("b.test"), "b"),
            ]
            .concat(),
        ),
    ];
    let h = Harness::start_with(http, gateway, &files).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], https));

    // Each name gets its own certificate (the client trusts only names in the cert it gets).
    let (alpn, mut conn) = TlsConn::connect(addr, "a.test", &ca.pem(), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    let r = conn.get("a.test", "/").await.unwrap();
    assert_eq!(r.json()["backend"], "a");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    let (_, mut conn) = TlsConn::connect(addr, "b.test", &ca.pem(), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(
        conn.get("b.test", "/").await.unwrap().json()["backend"],
        "b"
    );

    // h2 over TLS via ALPN.
    let (alpn, mut conn) = TlsConn::connect(addr, "b.test", &ca.pem(), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));
    assert!(conn.is_h2());
    let r = conn.get("b.test", "/h2").await.unwrap();
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.json()["backend"], "b");

    // The plain listener of the same Gateway still serves.
    assert_eq!(get(h.http, "a.test", "/", &[]).await.json()["backend"], "a");
}

#[tokio::test]
async fn h2c_downstream_and_websocket_passthrough() {
    let b = EchoBackend::start("echo").await;
    let h = Harness::start(&[
        ("b.yaml", backend_yaml("echo", &[b.addr()])),
        ("r.yaml", route("r", None, "echo")),
    ])
    .await;
    let h2 = H2Conn::connect_h2c(h.http).await.unwrap();
    for i in 0..5 {
        let r = h2.get("h2c.test", &format!("/s/{i}")).await.unwrap();
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(r.json()["path"], format!("/s/{i}"));
    }
    let echoed = ws_echo(h.http, "ws.test", "/ws", "hello through the gateway").await;
    assert_eq!(echoed, "hello through the gateway");
}

#[tokio::test]
async fn h2c_and_tls_upstreams() {
    let plain = EchoBackend::start("h2c-up").await;
    let ca = TestCa::new("upstream-ca");
    let cert = ca.issue(&["up.internal"]);
    let tls_up = EchoBackend::start_tls("tls-up", &cert).await;
    let dir = switchyard_testkit::ConfigDir::new();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let policies = format!(
        r#"---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {{name: h2c}}
spec:
  targetRefs: [{{group: switchyard.dev, kind: Backend, name: h2c-up}}]
  protocol: H2C
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {{name: tls}}
spec:
  targetRefs: [{{group: switchyard.dev, kind: Backend, name: tls-up}}]
  protocol: TLS
  tls: {{sni: up.internal, caFile: "{}", alpn: h2}}
"#,
        ca_path.display()
    );
    let h = Harness::start(&[
        (
            "b.yaml",
            [
                backend_yaml("h2c-up", &[plain.addr()]),
                backend_yaml("tls-up", &[tls_up.addr()]),
                policies,
            ]
            .concat(),
        ),
        (
            "r.yaml",
            [
                route("r1", Some("h2c.test"), "h2c-up"),
                route("r2", Some("tls.test"), "tls-up"),
            ]
            .concat(),
        ),
    ])
    .await;
    let j = get(h.http, "h2c.test", "/", &[]).await.json();
    assert_eq!(j["backend"], "h2c-up");
    assert_eq!(j["version"], "HTTP/2.0", "upstream spoke h2c: {j}");
    let r = get(h.http, "tls.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["backend"], "tls-up");
    assert_eq!(j["version"], "HTTP/2.0");
    let seen = tls_up.requests();
    let tls = seen[0].tls.as_ref().expect("request came over TLS");
    assert_eq!(tls.sni.as_deref(), Some("up.internal"));
}
