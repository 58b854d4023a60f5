//! Mesh mTLS end to end: the real control service (its CA) and a real gateway subscribed to it,
//! with a `switchyard.dev/EastWest` listener and an HTTPS mesh listener (client certificates
//! Optional). A rustls client dials them with SNI `gateway.ZONE.TD` and the trust bundle:
//! every bad peer is refused in the handshake and a valid gateway certificate gets a response;
//! the mesh listener takes optional workload certificates. Rotation is in `mtls_rotation`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_gateway::identity::PeerIdentity;
use switchyard_testkit::{
    free_port, mtls_config, mtls_get, mtls_get_with, plaintext_get, ConfigDir, ControlProcess,
    EchoBackend, GatewayProcess, MtlsFailure, MtlsReply, TestCa, TokenFiles,
};
use tempfile::TempDir;

use crate::common::{backend_yaml, bin};

/// East-west requests name the Backend the source gateway chose (see gateway/src/eastwest.rs).
pub const EW_BACKEND: &[(&str, &str)] = &[("x-switchyard-backend", "default/local")];

pub(crate) const OPERATOR_TOKEN: &str = "op-secret";
pub(crate) const GATEWAY_TOKEN: &str = "gw-secret";
pub(crate) const TD: &str = "switchyard.local";
pub(crate) const ZONE: &str = "zone-a";
pub(crate) const NAME: &str = "gw-a1";
pub(crate) const HOST: &str = "app.test";
/// The mesh listener's own (SNI) certificate name.
const MESH_SNI: &str = "mesh.test";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// SNI of zone-a's gateways.
pub(crate) fn ew_sni() -> String {
    format!("gateway.{ZONE}.{TD}")
}

/// A control service with its CA, one gateway of zone-a and its echo backend.
pub(crate) struct Mesh {
    _dir: ConfigDir,
    _tokens: TokenFiles,
    pub(crate) control_state: TempDir,
    pub(crate) control: ControlProcess,
    pub(crate) gw: GatewayProcess,
    _gw_state: TempDir,
    pub(crate) ew: SocketAddr,
    mesh: SocketAddr,
    listener_ca: TestCa,
    pub(crate) scratch: TempDir,
    control_args: Vec<String>,
    gw_args: Vec<String>,
    _backend: EchoBackend,
}

impl Mesh {
    pub(crate) async fn start(cert_ttl: &str) -> Mesh {
        let backend = EchoBackend::start("local").await;
        let dir = ConfigDir::new();
        let listener_ca = TestCa::new("listener-ca");
        let (cert, key) = listener_ca.issue(&[MESH_SNI]).write(dir.path(), "mesh");
        let ew = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mesh = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {NAME}
  labels: {{switchyard.dev/zone: {ZONE}}}
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: east-west, port: {ew_port}, protocol: switchyard.dev/EastWest}}
    - name: mesh
      port: {mesh_port}
      protocol: HTTPS
      tls:
        certificateRefs: [{{name: mesh-cert}}]
        options: {{switchyard.dev/client-certificate: Optional}}
---
apiVersion: switchyard.dev/v1alpha1
kind: TLSCertificate
metadata: {{name: mesh-cert}}
spec: {{certFile: {cert}, keyFile: {key}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: {NAME}}}]
  hostnames: [{HOST}]
  rules:
    - backendRefs: [{{group: switchyard.dev, kind: Backend, name: local}}]
{backend}",
            ew_port = ew.port(),
            mesh_port = mesh.port(),
            cert = cert.display(),
            key = key.display(),
            backend = backend_yaml("local", &[backend.addr()]),
        );
        dir.write("mesh.yaml", &yaml);
        let tokens = TokenFiles::new(OPERATOR_TOKEN, GATEWAY_TOKEN);
        let control_state = tempfile::Builder::new()
            .prefix("switchyard-mtls-control-")
            .tempdir()
            .unwrap();
        let control_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args: Vec<String> = [
            "control",
            "--config-dir",
            &dir.path().display().to_string(),
            "--state-dir",
            &control_state.path().display().to_string(),
            "--listen",
            &control_addr.to_string(),
            "--token-file",
            &tokens.operator().display().to_string(),
            "--gateway-token-file",
            &tokens.gateway().display().to_string(),
            "--atomic",
            "off",
            "--cert-ttl",
            cert_ttl,
        ]
        .map(String::from)
        .to_vec();
        let control = ControlProcess::start(&bin(), &args, &[]).await;
        let control_args = args;
        let gw_state = tempfile::Builder::new()
            .prefix("switchyard-mtls-gw-")
            .tempdir()
            .unwrap();
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let gw_args: Vec<String> = [
            "gateway",
            "--control",
            &format!("http://{control_addr}"),
            "--zone",
            ZONE,
            "--name",
            NAME,
            "--state-dir",
            &gw_state.path().display().to_string(),
            "--admin",
            &admin.to_string(),
            "--token-file",
            &tokens.gateway().display().to_string(),
            "--threads",
            "2",
            "--bundle-refresh",
            "500ms",
        ]
        .map(String::from)
        .to_vec();
        let mut gw = GatewayProcess::spawn(&bin(), &gw_args, &[]).unwrap();
        let gw_args_kept = gw_args.clone();
        if let Err(e) = gw.wait_ready(WAIT).await {
            panic!(
                "gateway not ready: {e}\n--- gateway ---\n{}\n--- control ---\n{}",
                gw.logs(),
                control.logs()
            );
        }
        Mesh {
            _dir: dir,
            _tokens: tokens,
            control_state,
            control,
            gw,
            _gw_state: gw_state,
            ew,
            mesh,
            listener_ca,
            scratch: tempfile::tempdir().unwrap(),
            control_args,
            gw_args: gw_args_kept,
            _backend: backend,
        }
    }

    /// Restarts the control service on the same address and state dir, `down` after killing it.
    pub(crate) async fn restart_control(&mut self, down: Duration) {
        self.control.kill();
        tokio::time::sleep(down).await;
        self.control = ControlProcess::start(&bin(), &self.control_args, &[]).await;
    }

    /// Restarts the gateway with the same arguments (state dir) and waits until it is ready.
    pub(crate) async fn restart_gateway(&mut self) {
        self.gw.kill();
        self.gw = GatewayProcess::start(&bin(), &self.gw_args).await;
    }

    pub(crate) fn ca_dir(&self) -> PathBuf {
        self.control_state.path().join("ca")
    }

    pub(crate) fn logs(&self) -> String {
        format!(
            "--- gateway ---\n{}\n--- control ---\n{}",
            self.gw.logs(),
            self.control.logs()
        )
    }

    /// `switchyard cert issue --ca-dir DIR ARGS`; returns (certificate PEM, key PEM).
    pub(crate) fn issue(&self, ca_dir: &Path, args: &[&str]) -> (String, String) {
        let stem = format!("c{}", fastrand_name());
        let cert = self.scratch.path().join(format!("{stem}.pem"));
        let key = self.scratch.path().join(format!("{stem}.key"));
        let out = Command::new(bin())
            .args(["cert", "issue", "--ca-dir"])
            .arg(ca_dir)
            .args(args)
            .arg("--out-cert")
            .arg(&cert)
            .arg("--out-key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cert issue {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read_to_string(cert).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        )
    }

    /// The control's trust bundle (gateway token).
    pub(crate) async fn bundle(&self) -> (u64, String) {
        let r = self
            .control
            .get_with_token("/v1/bundle", Some(GATEWAY_TOKEN))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        (
            v["version"].as_u64().unwrap(),
            v["bundle"].as_str().unwrap().to_string(),
        )
    }

    /// The gateway's `/identity`.
    pub(crate) async fn identity(&self) -> Value {
        self.gw.admin_get("/identity").await.unwrap().json()
    }

    /// GET through the east-west listener with `identity` as the client certificate.
    pub(crate) async fn ew_get(
        &self,
        roots: &str,
        identity: Option<(&str, &str)>,
    ) -> Result<MtlsReply, MtlsFailure> {
        let config = Arc::new(mtls_config(roots, identity).unwrap());
        mtls_get_with(self.ew, &ew_sni(), config, HOST, "/ew", EW_BACKEND).await
    }
}

fn fastrand_name() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A refusal in the handshake: an error, and not one byte of an HTTP response.
fn assert_refused(what: &str, r: Result<MtlsReply, MtlsFailure>, alert: &str, logs: &str) {
    match r {
        Ok(reply) => panic!("{what}: expected a refusal, got {}\n{logs}", reply.text),
        Err(f) => {
            assert!(
                f.received.is_empty(),
                "{what}: {f}, but data came back: {:?}",
                String::from_utf8_lossy(&f.received)
            );
            assert!(
                f.stage == "handshake" || f.stage == "read",
                "{what}: failed at {}: {}",
                f.stage,
                f.error
            );
            assert!(f.error.contains(alert), "{what}: expected {alert}, got {f}");
        }
    }
}

/// Signs a leaf for `uri` with the root key of `ca_dir` directly (the CA itself refuses to
/// issue such names).
fn forge_with_root(ca_dir: &Path, uri: &str) -> (String, String) {
    let root_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("root.key")).unwrap())
            .unwrap();
    let root_params = rcgen::CertificateParams::from_ca_cert_pem(
        &std::fs::read_to_string(ca_dir.join("root.pem")).unwrap(),
    )
    .unwrap();
    let root = root_params.self_signed(&root_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &root, &root_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn east_west_refuses_every_bad_peer_and_serves_a_gateway() {
    let mesh = Mesh::start("1h").await;
    let logs = mesh.logs();
    let (_, bundle) = mesh.bundle().await;
    let ca = mesh.ca_dir();

    // A gateway of zone-b, issued offline from the control's CA dir: served.
    let (cert, key) = mesh.issue(&ca, &["--zone", "zone-b", "--gateway", "gw-b1"]);
    let reply = mesh
        .ew_get(&bundle, Some((&cert, &key)))
        .await
        .unwrap_or_else(|e| panic!("valid gateway refused: {e}\n{logs}"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.text.contains("\"backend\":\"local\""),
        "{}",
        reply.text
    );
    let served = PeerIdentity::from_certificate(&reply.server_cert).unwrap();
    assert_eq!(
        served.spiffe_id,
        format!("spiffe://{TD}/zone/{ZONE}/gateway/{NAME}")
    );
    let id = mesh.identity().await;
    assert_eq!(id["spiffe_id"], served.spiffe_id);
    assert_eq!(id["dns_name"], ew_sni());

    // The CA endpoints answer only their role's token.
    let r = mesh
        .control
        .post_with_token("/v1/ca/rotate", Some(GATEWAY_TOKEN), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = mesh
        .control
        .get_with_token("/v1/bundle", Some(OPERATOR_TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = mesh
        .control
        .post_with_token(
            "/v1/certs",
            Some(GATEWAY_TOKEN),
            &json!({"csr": "garbage", "zone": "zone-b", "name": "gw-b1"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // No client certificate.
    assert_refused(
        "no certificate",
        mesh.ew_get(&bundle, None).await,
        "CertificateRequired",
        &logs,
    );
    // A gateway certificate from another CA.
    let foreign = mesh.scratch.path().join("foreign-ca");
    let out = Command::new(bin())
        .args(["cert", "init-ca", "--dir"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (fc, fk) = mesh.issue(&foreign, &["--zone", "zone-b", "--gateway", "gw-b1"]);
    assert_refused(
        "another CA",
        mesh.ew_get(&bundle, Some((&fc, &fk))).await,
        "UnknownCA",
        &logs,
    );
    // A workload identity from the right CA.
    let (wc, wk) = mesh.issue(
        &ca,
        &["--spiffe-id", &format!("spiffe://{TD}/ns/shop/sa/cart")],
    );
    assert_refused(
        "workload SAN",
        mesh.ew_get(&bundle, Some((&wc, &wk))).await,
        "AccessDenied",
        &logs,
    );
    // A gateway identity of another trust domain, signed by the right root.
    let (oc, ok) = forge_with_root(&ca, "spiffe://other.local/zone/zone-b/gateway/gw-b1");
    assert_refused(
        "other trust domain",
        mesh.ew_get(&bundle, Some((&oc, &ok))).await,
        "AccessDenied",
        &logs,
    );
    // An expired gateway certificate from the right CA.
    let (ec, ek) = mesh.issue(
        &ca,
        &["--zone", "zone-b", "--gateway", "gw-b1", "--ttl", "1"],
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused(
        "expired",
        mesh.ew_get(&bundle, Some((&ec, &ek))).await,
        "CertificateExpired",
        &logs,
    );
    // Plaintext HTTP to the TLS port gets no HTTP response.
    let plain = plaintext_get(mesh.ew, HOST).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&plain).contains("HTTP/1."),
        "plaintext got {:?}",
        String::from_utf8_lossy(&plain)
    );
    // And the listener still serves the valid gateway.
    assert_eq!(
        mesh.ew_get(&bundle, Some((&cert, &key)))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_listener_takes_optional_workload_certificates() {
    let mesh = Mesh::start("1h").await;
    let logs = mesh.logs();
    let roots = mesh.listener_ca.pem();
    let get = |identity: Option<(String, String)>| {
        let config = mtls_config(
            &roots,
            identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        )
        .unwrap();
        mtls_get(mesh.mesh, MESH_SNI, Arc::new(config), HOST, "/mesh")
    };
    let none = get(None).await.unwrap_or_else(|e| panic!("{e}\n{logs}"));
    assert_eq!(none.status, 200, "{}", none.text);
    let workload = mesh.issue(
        &mesh.ca_dir(),
        &["--spiffe-id", &format!("spiffe://{TD}/ns/shop/sa/cart")],
    );
    let with = get(Some(workload))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{logs}"));
    assert_eq!(with.status, 200, "{}", with.text);
    let foreign = mesh.scratch.path().join("foreign-ca");
    let out = Command::new(bin())
        .args(["cert", "init-ca", "--dir"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(out.status.success());
    let forged = mesh.issue(
        &foreign,
        &["--spiffe-id", &format!("spiffe://{TD}/ns/shop/sa/cart")],
    );
    assert_refused(
        "foreign workload",
        get(Some(forged)).await,
        "UnknownCA",
        &logs,
    );
}
