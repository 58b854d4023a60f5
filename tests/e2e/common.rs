//! Shared setup for the end-to-end tests: YAML builders and a gateway started on a config dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_testkit::{free_port, ConfigDir, GatewayProcess};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// A Gateway named `gw` on 127.0.0.1 with one HTTP listener, routes from all namespaces.
pub fn gateway_yaml(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: switchyard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - name: http
      port: {port}
      protocol: HTTP
      allowedRoutes: {{namespaces: {{from: All}}}}
"#
    )
}

/// A Backend with the given endpoints.
pub fn backend_yaml(name: &str, addrs: &[SocketAddr]) -> String {
    let mut s = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: {name}\nspec:\n  endpoints:"
    );
    if addrs.is_empty() {
        s.push_str(" []\n");
    }
    for a in addrs {
        s.push_str(&format!("\n    - address: \"{a}\""));
    }
    s.push('\n');
    s
}

/// A backendRef list item for a Backend.
pub fn backend_ref(name: &str, weight: u32) -> String {
    format!("{{group: switchyard.dev, kind: Backend, name: {name}, weight: {weight}}}")
}

/// Waits (at most 10 s) until `addr` accepts connections: the admin listener that answers
/// `/ready` is a service of its own and may be up a moment before the proxy's listeners.
pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running gateway over a config dir.
pub struct Harness {
    pub dir: ConfigDir,
    pub gw: GatewayProcess,
    /// The HTTP listener.
    pub http: SocketAddr,
}

impl Harness {
    /// Writes `gateway.yaml` for a fresh port plus `files`, and starts the gateway.
    pub async fn start(files: &[(&str, String)]) -> Harness {
        let port = free_port();
        Self::start_with(port, gateway_yaml(port), files).await
    }

    pub async fn start_with(port: u16, gateway: String, files: &[(&str, String)]) -> Harness {
        Self::start_with_args(port, gateway, files, &[]).await
    }

    /// [`Harness::start_with`] with extra gateway arguments (e.g. `--access-log PATH`).
    pub async fn start_with_args(
        port: u16,
        gateway: String,
        files: &[(&str, String)],
        extra: &[&str],
    ) -> Harness {
        let dir = ConfigDir::new();
        dir.write("gateway.yaml", &gateway);
        for (name, yaml) in files {
            dir.write(name, yaml);
        }
        let admin = free_port();
        let mut args: Vec<String> = [
            "gateway",
            "--config-dir",
            &dir.path().display().to_string(),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--threads",
            "2",
            "--debounce-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let gw = GatewayProcess::start(&bin(), &args).await;
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(http).await;
        Harness { dir, gw, http }
    }

    /// Waits until the gateway's last rejection mentions `needle` (bounded); returns /config.
    pub async fn wait_rejection(&self, needle: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = self.gw.config().await;
            if c["last_error"].as_str().is_some_and(|e| e.contains(needle)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never rejected a set with {needle:?}: {c}\nlogs:\n{}",
                self.gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
