//! Listener certificates reload from disk: a running gateway's HTTPS listener picks up a
//! renewed certificate (files outside the route directory) without a new generation, keeps
//! serving the previous one while the files are garbage, and follows a generation that moves
//! the certificate to other files.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_testkit::egress::presented_certificate;
use switchyard_testkit::tls::certs_from_pem;
use switchyard_testkit::{free_port, EchoBackend, TestCa, TestCert};

use crate::common::{backend_yaml, Harness};

const HOST: &str = "site.test";

fn gateway(http: u16, https: u16, cert_dir: &Path) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: http, port: {http}, protocol: HTTP}}
    - name: https
      port: {https}
      protocol: HTTPS
      tls: {{certificateRefs: [{{group: switchyard.dev, kind: TLSCertificate, name: site}}]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: TLSCertificate
metadata: {{name: site}}
spec: {{certFile: "{dir}/tls.crt", keyFile: "{dir}/tls.key"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: site}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{group: switchyard.dev, kind: Backend, name: web}}]}}]
"#,
        dir = cert_dir.display()
    )
}

fn der(cert: &TestCert) -> Vec<u8> {
    certs_from_pem(&cert.cert_pem).unwrap()[0].to_vec()
}

/// Writes the pair the way a renewal tool without atomic renames would: in place.
fn install(dir: &Path, cert: &TestCert) {
    std::fs::write(dir.join("tls.key"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &cert.cert_pem).unwrap();
}

/// Waits (bounded) until new handshakes present `want`; returns how long it took.
async fn wait_presented(addr: SocketAddr, ca: &TestCa, want: &[u8], h: &Harness) -> Duration {
    let start = Instant::now();
    loop {
        let got = presented_certificate(addr, HOST, &ca.pem()).await.unwrap();
        if got.as_ref() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the listener never presented the new certificate\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn listener_certificates_reload_from_disk() {
    let web = EchoBackend::start("web").await;
    let ca = TestCa::new("reload-ca");
    let certs = tempfile::tempdir().unwrap();
    let first = ca.issue(&[HOST]);
    install(certs.path(), &first);
    let (http, https) = (free_port(), free_port());
    let h = Harness::start_with(
        http,
        gateway(http, https, certs.path()),
        &[("backends.yaml", backend_yaml("web", &[web.addr()]))],
    )
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], https));
    let got = presented_certificate(addr, HOST, &ca.pem()).await.unwrap();
    assert_eq!(got.as_ref(), der(&first).as_slice());
    let generation = h.gw.config().await["generation"].clone();

    // A renewal on disk: new handshakes get it, with no new generation.
    let second = ca.issue(&[HOST]);
    install(certs.path(), &second);
    let took = wait_presented(addr, &ca, &der(&second), &h).await;
    assert_eq!(h.gw.config().await["generation"], generation);
    println!("renewed certificate served after {took:?}");

    // Garbage: the listener keeps serving the previous certificate and says why.
    let bad = certs.path().join("tls.crt");
    std::fs::write(&bad, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(h
        .gw
        .logs()
        .contains("still serving the previous certificate")
        && h.gw.logs().contains(&bad.display().to_string()))
    {
        assert!(
            Instant::now() < deadline,
            "no error logged:\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let got = presented_certificate(addr, HOST, &ca.pem()).await.unwrap();
        assert_eq!(got.as_ref(), der(&second).as_slice());
        // Requests still flow.
        let (_, mut conn) =
            switchyard_testkit::TlsConn::connect(addr, HOST, &ca.pem(), &[b"http/1.1"])
                .await
                .unwrap();
        assert_eq!(conn.get(HOST, "/").await.unwrap().json()["backend"], "web");
    }

    // A valid pair again: picked up.
    let third = ca.issue(&[HOST]);
    install(certs.path(), &third);
    wait_presented(addr, &ca, &der(&third), &h).await;

    // A generation that moves the certificate to other files: the watch follows it.
    let moved = tempfile::tempdir().unwrap();
    let fourth = ca.issue(&[HOST]);
    install(moved.path(), &fourth);
    h.dir
        .write("gateway.yaml", &gateway(http, https, moved.path()));
    wait_presented(addr, &ca, &der(&fourth), &h).await;
    let fifth = ca.issue(&[HOST]);
    install(moved.path(), &fifth);
    wait_presented(addr, &ca, &der(&fifth), &h).await;
    // The old files no longer matter.
    install(certs.path(), &ca.issue(&[HOST]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = presented_certificate(addr, HOST, &ca.pem()).await.unwrap();
    assert_eq!(got.as_ref(), der(&fifth).as_slice());
}
