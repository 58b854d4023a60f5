//! The processes under test: the config dir (Gateways, Backends, N routes) and the changes to
//! it, the control service and the three gateways (spawned, waited for, killed on drop), and
//! their logs.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use switchyard_benches::{synthetic_routes, BACKENDS};
use switchyard_testkit::client;
use switchyard_testkit::{free_port, ConfigDir, GatewayProcess};
use tempfile::TempDir;

use crate::sys::unix_ms;
use crate::{DEBOUNCE_MS, GATEWAYS, STARTUP_TIMEOUT};

/// The route files of one size, written once; changes rewrite one route.
pub(crate) struct Config {
    pub(crate) dir: ConfigDir,
    /// (path relative to the dir, original YAML) of every route file.
    routes: Vec<(String, String)>,
}

impl Config {
    /// One Gateway per instance, labelled with its zone (HTTP on a free port), Backends on a
    /// dead loopback port, and `routes` HTTPRoutes parented to every Gateway.
    pub(crate) fn write(routes: usize) -> Config {
        let dir = ConfigDir::new();
        let mut gateways = String::new();
        for (name, zone) in GATEWAYS {
            let port = free_port();
            let _ = write!(
                gateways,
                "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: default
  labels:
    switchyard.dev/zone: {zone}
spec:
  gatewayClassName: switchyard
  addresses:
    - type: IPAddress
      value: 127.0.0.1
  listeners:
    - name: http
      port: {port}
      protocol: HTTP
"
            );
        }
        // Nothing listens here: no request is sent, the config only needs an address.
        let dead = free_port();
        let mut backends = String::new();
        for b in 0..BACKENDS {
            let _ = write!(
                backends,
                "---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  name: backend-{b}
  namespace: default
spec:
  endpoints:
    - address: 127.0.0.1:{dead}
"
            );
        }
        // Plain writes for the initial set: nothing watches the dir yet.
        let plain = |rel: &str, yaml: &str| {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().expect("parent"))
                .and_then(|_| fs::write(&path, yaml))
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        };
        plain("gateways.yaml", &gateways);
        plain("backends.yaml", &backends);
        let parent_refs = "  parentRefs:\n    - name: edge\n";
        let mut all_parents = String::from("  parentRefs:\n");
        for (name, _) in GATEWAYS {
            let _ = writeln!(all_parents, "    - name: {name}");
        }
        let mut files = Vec::with_capacity(routes);
        for file in synthetic_routes(routes) {
            let path = file.path.to_string_lossy().into_owned();
            let Some(rel) = path.strip_prefix("conf/") else {
                continue;
            };
            if !rel.starts_with("routes/") {
                continue; // the lib's own Gateway and Backends are replaced above
            }
            assert!(
                file.contents.contains(parent_refs),
                "synthetic route {rel} no longer has `{parent_refs}`"
            );
            let yaml = file.contents.replace(parent_refs, &all_parents);
            plain(rel, &yaml);
            files.push((rel.to_string(), yaml));
        }
        assert_eq!(
            files.len(),
            routes,
            "synthetic_routes({routes}) route files"
        );
        Config { dir, routes: files }
    }

    /// Change `k`: one route (spread over the set) with its Exact path renamed.
    pub(crate) fn changed_route(&self, k: usize) -> (String, String) {
        let (rel, yaml) = &self.routes[(k * 7919 + 1) % self.routes.len()];
        let from = "value: /healthz}";
        assert!(yaml.contains(from), "{rel} has no `{from}`");
        (
            rel.clone(),
            yaml.replace(from, &format!("value: /healthz-{k}}}")),
        )
    }
}

/// The control process: killed and reaped on drop.
pub(crate) struct Control {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    log_path: PathBuf,
    pub(crate) started_unix_ms: f64,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One control service, three gateways, their config and state. Field order is drop order:
/// processes first, then the directories they use.
pub(crate) struct Mesh {
    pub(crate) gateways: Vec<GatewayProcess>,
    pub(crate) control: Control,
    pub(crate) config: Config,
    pub(crate) operator_token: String,
    gateway_token_file: PathBuf,
    _state: TempDir,
}

impl Mesh {
    /// Spawns the control service (the gateways come in [`Mesh::start`]).
    pub(crate) fn spawn_control(bin: &Path, config: Config) -> Result<Mesh, String> {
        let state = tempfile::Builder::new()
            .prefix("switchyard-propagation-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let s = state.path();
        let operator_token = format!("op-{:x}", (unix_ms() * 1e3) as u64);
        let gateway_token = format!("gw-{:x}", (unix_ms() * 7e3) as u64);
        let (op_file, gw_file) = (s.join("operator.token"), s.join("gateway.token"));
        fs::write(&op_file, format!("{operator_token}\n"))
            .and_then(|_| fs::write(&gw_file, format!("{gateway_token}\n")))
            .map_err(|e| format!("token files: {e}"))?;

        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log_path = s.join("control.log");
        let log = File::create(&log_path).map_err(|e| format!("control log: {e}"))?;
        let child = Command::new(bin)
            .arg("control")
            .arg("--config-dir")
            .arg(config.dir.path())
            .arg("--state-dir")
            .arg(s.join("control-state"))
            .args(["--listen", &addr.to_string()])
            .arg("--token-file")
            .arg(&op_file)
            .arg("--gateway-token-file")
            .arg(&gw_file)
            .args([
                "--atomic",
                "fleet",
                "--debounce-ms",
                &DEBOUNCE_MS.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {} control: {e}", bin.display()))?;
        Ok(Mesh {
            gateways: Vec::new(),
            control: Control {
                child,
                addr,
                log_path,
                started_unix_ms: unix_ms(),
            },
            config,
            operator_token,
            gateway_token_file: gw_file,
            _state: state,
        })
    }

    /// Waits for the control's `/healthz`, then spawns the gateways and waits for their `/ready`.
    pub(crate) async fn start(&mut self, bin: &Path) -> Result<(), String> {
        self.wait_control_healthy().await?;
        let url = format!("http://{}", self.control.addr);
        let gw_file = self.gateway_token_file.clone();
        for (name, zone) in GATEWAYS {
            let state_dir = self._state.path().join(format!("state-{name}"));
            let mut args: Vec<String> = [
                "gateway",
                "--control",
                &url,
                "--zone",
                zone,
                "--name",
                name,
                "--state-dir",
                &state_dir.to_string_lossy(),
                "--admin",
                &format!("127.0.0.1:{}", free_port()),
                "--token-file",
                &gw_file.to_string_lossy(),
                "--threads",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // zone-a has two Gateways: name the instance's own. zone-b's only one is the default.
            if GATEWAYS.iter().filter(|(_, z)| *z == zone).count() > 1 {
                args.extend(["--gateway".to_string(), format!("default/{name}")]);
            }
            let gw = GatewayProcess::spawn(bin, &args, &[])
                .map_err(|e| format!("spawn {} {args:?}: {e}", bin.display()))?;
            self.gateways.push(gw);
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for (gw, (name, _)) in self.gateways.iter_mut().zip(GATEWAYS) {
            let left = deadline.saturating_duration_since(Instant::now());
            gw.wait_ready(left)
                .await
                .map_err(|e| format!("gateway {name} not ready: {e}"))?;
        }
        Ok(())
    }

    async fn wait_control_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let host = self.control.addr.to_string();
        loop {
            self.check_alive()?;
            let r = tokio::time::timeout(
                Duration::from_secs(1),
                client::try_get(self.control.addr, &host, "/healthz", &[]),
            )
            .await;
            let last = match r {
                Ok(Ok(r)) if r.status == StatusCode::OK => return Ok(()),
                Ok(Ok(r)) => format!("/healthz answered {}", r.status),
                Ok(Err(e)) => format!("/healthz: {e}"),
                Err(_) => "/healthz took over 1 s".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "control not healthy after {STARTUP_TIMEOUT:?} ({last})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails when any process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.control.child.try_wait() {
            return Err(format!("the control service exited: {status}"));
        }
        for (gw, (name, _)) in self.gateways.iter_mut().zip(GATEWAYS) {
            if let Ok(Some(status)) = gw.try_status() {
                return Err(format!("gateway {name} exited: {status}"));
            }
        }
        Ok(())
    }

    /// Copies every process's log to `dir/ROUTES-NAME.log` (`SWITCHYARD_BENCH_LOGS=dir`).
    pub(crate) fn keep_logs(&self, dir: &Path, routes: usize) {
        let _ = fs::create_dir_all(dir);
        let _ = fs::copy(
            &self.control.log_path,
            dir.join(format!("{routes}-control.log")),
        );
        for (gw, (name, _)) in self.gateways.iter().zip(GATEWAYS) {
            let _ = fs::copy(gw.log_path(), dir.join(format!("{routes}-{name}.log")));
        }
    }

    /// The last lines of every process's log, for an error report.
    pub(crate) fn log_tails(&self) -> String {
        fn tail(text: &str, lines: usize) -> String {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        let control = fs::read_to_string(&self.control.log_path).unwrap_or_default();
        let mut out = format!("\n--- control log (tail) ---\n{}", tail(&control, 30));
        for (gw, (name, _)) in self.gateways.iter().zip(GATEWAYS) {
            let _ = write!(out, "\n--- {name} log (tail) ---\n{}", tail(&gw.logs(), 15));
        }
        out
    }
}
