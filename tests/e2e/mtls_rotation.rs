//! Rotation end to end: gateway certificates renewing every few seconds and a CA root rotation
//! under a bounded load through the east-west listener (zero failures), the gateway riding out
//! a control-service outage (and its own restart meanwhile) on its current certificate, and
//! the standalone `--mesh-ca-dir` identity.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::{json, Value};
use switchyard_testkit::{
    free_port, mtls_config, mtls_get_with, ConfigDir, ControlProcess, EchoBackend, GatewayProcess,
};

use crate::common::{backend_yaml, bin};

use crate::mtls::{
    ew_sni, Mesh, EW_BACKEND, GATEWAY_TOKEN, HOST, NAME, OPERATOR_TOKEN, TD, WAIT, ZONE,
};

/// What the load client presents and trusts, refreshed from the control service like a
/// gateway of zone-b would (`/v1/certs` with a fresh key, `/v1/bundle`).
async fn refresh_client(control: &ControlProcess) -> Result<Arc<ClientConfig>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| e.to_string())?;
    let r = control
        .post_with_token(
            "/v1/certs",
            Some(GATEWAY_TOKEN),
            &json!({"csr": csr, "zone": "zone-b", "name": "gw-load"}),
        )
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("/v1/certs answered {}: {}", r.status, r.text()));
    }
    let v = r.json();
    let b = control
        .get_with_token("/v1/bundle", Some(GATEWAY_TOKEN))
        .await
        .map_err(|e| e.to_string())?
        .json();
    let config = mtls_config(
        b["bundle"].as_str().unwrap_or_default(),
        Some((
            v["certificate"].as_str().unwrap_or_default(),
            &key.serialize_pem(),
        )),
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_root_rotate_under_load_without_failures() {
    let mesh = Arc::new(Mesh::start("4s").await);
    let config = Arc::new(Mutex::new(refresh_client(&mesh.control).await.unwrap()));
    let first_version = mesh.bundle().await.0;
    // The listener answers before the load starts (bounded wait).
    let ready_by = Instant::now() + WAIT;
    loop {
        let c = config.lock().unwrap().clone();
        match mtls_get_with(mesh.ew, &ew_sni(), c, HOST, "/warmup", EW_BACKEND).await {
            Ok(r) if r.status == 200 => break,
            other if Instant::now() > ready_by => {
                panic!("east-west not serving: {other:?}\n{}", mesh.logs())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(13);
    let refresher = {
        let (mesh, config) = (mesh.clone(), config.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(400)).await;
                match refresh_client(&mesh.control).await {
                    Ok(c) => *config.lock().unwrap() = c,
                    Err(e) => eprintln!("client refresh failed: {e}"),
                }
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (mesh, config) = (mesh.clone(), config.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failures, mut served) = (0u64, Vec::new(), BTreeSet::new());
            while Instant::now() < deadline {
                let c = config.lock().unwrap().clone();
                match mtls_get_with(mesh.ew, &ew_sni(), c, HOST, "/load", EW_BACKEND).await {
                    Ok(r) if r.status == 200 => {
                        ok += 1;
                        served.insert(r.server_cert);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (ok, failures, served)
        }));
    }
    // The gateway's own view of its serial, sampled through the load.
    let mut serials = BTreeSet::new();
    let mut rotated = None;
    while Instant::now() < deadline {
        if let Some(s) = mesh.identity().await["serial"].as_str() {
            serials.insert(s.to_string());
        }
        if rotated.is_none() && Instant::now() + Duration::from_secs(9) > deadline {
            let r = mesh
                .control
                .post_with_token("/v1/ca/rotate", Some(OPERATOR_TOKEN), &json!({}))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            rotated = r.json()["bundleVersion"].as_u64();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    refresher.await.unwrap();
    let (mut ok, mut failures, mut served) = (0, Vec::new(), BTreeSet::new());
    for w in workers {
        let (o, f, s) = w.await.unwrap();
        ok += o;
        failures.extend(f);
        served.extend(s);
    }
    let logs = mesh.logs();
    assert!(
        failures.is_empty(),
        "{} failures of {}: {:?}\n{logs}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 50, "only {ok} requests\n{logs}");
    assert!(
        served.len() >= 3,
        "served certificates: {}\n{logs}",
        served.len()
    );
    assert!(
        serials.len() >= 3,
        "serials seen at /identity: {serials:?}\n{logs}"
    );
    assert!(rotated.unwrap() > first_version);
    println!(
        "rotation under load: {ok} requests, 0 failures, {} served certificates, {} serials",
        served.len(),
        serials.len()
    );

    // A client trusting only the new root (the current root.pem of the CA dir) with a
    // certificate of that root succeeds once the gateway serves a certificate of it.
    let new_root = std::fs::read_to_string(mesh.ca_dir().join("root.pem")).unwrap();
    let (cert, key) = mesh.issue(&mesh.ca_dir(), &["--zone", "zone-b", "--gateway", "gw-b1"]);
    let until = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        match mesh.ew_get(&new_root, Some((&cert, &key))).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < until => {
                eprintln!("new-root client not yet served: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("a client trusting only the new root failed: {e}\n{logs}"),
        }
    };
    assert_eq!(reply.status, 200);
    let id = mesh.identity().await;
    assert!(
        id["bundle_version"].as_u64().unwrap() >= rotated.unwrap(),
        "{id}"
    );
    assert_eq!(id["last_renewal_error"], Value::Null, "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_gateway_needs_a_mesh_ca_dir_for_an_east_west_listener() {
    let backend = EchoBackend::start("local").await;
    let dir = ConfigDir::new();
    let ew = SocketAddr::from(([127, 0, 0, 1], free_port()));
    dir.write(
        "gw.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {NAME}
  labels: {{switchyard.dev/zone: {ZONE}}}
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: east-west, port: {port}, protocol: switchyard.dev/EastWest}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: {NAME}}}]
  rules:
    - backendRefs: [{{group: switchyard.dev, kind: Backend, name: local}}]
{backend}",
            port = ew.port(),
            backend = backend_yaml("local", &[backend.addr()]),
        ),
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let base: Vec<String> = vec![
        "gateway".into(),
        "--config-dir".into(),
        dir.path().display().to_string(),
        "--admin".into(),
        admin.to_string(),
    ];
    // No way to get certificates: a startup error naming the port and the fix.
    let mut gw = GatewayProcess::spawn(&bin(), &base, &[]).unwrap();
    let status = gw.wait_exit(WAIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let logs = gw.logs();
    assert!(
        logs.contains(&format!("{} (switchyard.dev/EastWest)", ew.port()))
            && logs.contains("--mesh-ca-dir"),
        "{logs}"
    );

    // With a local CA dir the east-west listener serves gateways of that CA.
    let scratch = tempfile::tempdir().unwrap();
    let ca = scratch.path().join("ca");
    let run = |args: &[&str]| {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "cert",
        "init-ca",
        "--dir",
        ca.to_str().unwrap(),
        "--trust-domain",
        TD,
    ]);
    let mut args = base.clone();
    args.extend(
        [
            "--mesh-ca-dir",
            ca.to_str().unwrap(),
            "--zone",
            ZONE,
            "--name",
            NAME,
            "--mesh-cert-ttl",
            "1h",
        ]
        .map(String::from),
    );
    let gw = GatewayProcess::start(&bin(), &args).await;
    let (cert, key) = (scratch.path().join("c.pem"), scratch.path().join("c.key"));
    run(&[
        "cert",
        "issue",
        "--ca-dir",
        ca.to_str().unwrap(),
        "--zone",
        "zone-b",
        "--gateway",
        "gw-b1",
        "--out-cert",
        cert.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    let roots = std::fs::read_to_string(ca.join("bundle.pem")).unwrap();
    let (cert, key) = (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    );
    let config = Arc::new(mtls_config(&roots, Some((&cert, &key))).unwrap());
    let reply = mtls_get_with(ew, &ew_sni(), config, HOST, "/", EW_BACKEND)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = gw.admin_get("/identity").await.unwrap().json();
    assert_eq!(
        id["spiffe_id"],
        format!("spiffe://{TD}/zone/{ZONE}/gateway/{NAME}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_rides_out_a_control_outage_and_a_restart_keeps_the_bundle() {
    let mut mesh = Mesh::start("9s").await;
    let (version, bundle) = mesh.bundle().await;
    let (cert, key) = mesh.issue(&mesh.ca_dir(), &["--zone", "zone-b", "--gateway", "gw-b1"]);
    // Wait for a renewal, so the outage starts with a whole renewal period (6 s) ahead.
    let first = mesh.identity().await["serial"].clone();
    let until = Instant::now() + WAIT;
    let renewed = loop {
        let s = mesh.identity().await["serial"].clone();
        if s != first {
            break s;
        }
        assert!(Instant::now() < until, "no renewal\n{}", mesh.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Down for 7 s: the renewal at 6 s fails and is retried; the current certificate (valid
    // 9 s) keeps serving meanwhile, also after a gateway restart (persisted generation and
    // saved certificate).
    let outage = {
        let control_down = Instant::now();
        mesh.control.kill();
        mesh.restart_gateway().await;
        let mut served = 0;
        while control_down.elapsed() < Duration::from_secs(7) {
            let r = mesh.ew_get(&bundle, Some((&cert, &key))).await;
            assert_eq!(r.map(|r| r.status).ok(), Some(200), "{}", mesh.logs());
            served += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        served
    };
    let during = mesh.identity().await;
    assert_eq!(during["serial"], renewed, "{during}");
    assert!(during["last_renewal_error"].is_string(), "{during}");
    mesh.restart_control(Duration::ZERO).await;
    // The restarted control service kept its CA and bundle.
    assert_eq!(mesh.bundle().await, (version, bundle.clone()));
    let until = Instant::now() + WAIT;
    loop {
        let id = mesh.identity().await;
        if id["serial"] != renewed && id["last_renewal_error"] == Value::Null {
            break;
        }
        assert!(
            Instant::now() < until,
            "no renewal after the restart: {id}\n{}",
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = mesh.ew_get(&bundle, Some((&cert, &key))).await.unwrap();
    assert_eq!(r.status, 200);
    println!("control outage: {outage} requests served on the old certificate");
}
