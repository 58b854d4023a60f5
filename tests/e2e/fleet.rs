//! Shared setup for the control-service tests: one `switchyard control` over a config dir and a
//! fleet of gateways subscribed to it, each with its own Gateway object, listener and state dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_testkit::{
    free_port, try_get, ConfigDir, ControlProcess, EchoBackend, GatewayProcess, Response,
    TokenFiles,
};
use tempfile::TempDir;

use crate::common::{backend_yaml, bin};

pub const OPERATOR_TOKEN: &str = "op-secret";
pub const GATEWAY_TOKEN: &str = "gw-secret";
/// The Host every route in these tests matches.
pub const HOST: &str = "app.test";
/// The bound on every wait for the control plane (propagation, convergence, restarts).
pub const WAIT: Duration = Duration::from_secs(20);

/// The default fleet: two gateways in zone-a, one in zone-b.
pub const THREE: &[(&str, &str)] = &[
    ("gw-a1", "zone-a"),
    ("gw-a2", "zone-a"),
    ("gw-b1", "zone-b"),
];

/// The HTTPRoute `web` at version `v`, attached to every Gateway in `gateways`: tags each
/// response with `x-version: v` and sends it to backend `even` or `odd` by parity, so one
/// response shows both which generation routed it and whether it mixed two.
pub fn route_version(v: u32, gateways: &[&str]) -> String {
    let backend = if v.is_multiple_of(2) { "even" } else { "odd" };
    let parents: Vec<String> = gateways.iter().map(|g| format!("{{name: {g}}}")).collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web}}\nspec:\n  parentRefs: [{}]\n  hostnames: [{HOST}]\n  rules:\n    - filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-version, value: \"{v}\"}}]}}}}]\n      backendRefs: [{{group: switchyard.dev, kind: Backend, name: {backend}}}]\n",
        parents.join(", ")
    )
}

/// The backend a response of version `v` must come from.
pub fn backend_for(v: u32) -> &'static str {
    if v.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

/// One Gateway object per instance (named like it, labelled with its zone) with one HTTP
/// listener on the instance's port, or on the port `moved` gives for its name.
pub fn gateways_yaml(gws: &[FleetGateway], moved: &[(&str, u16)]) -> String {
    let mut out = String::new();
    for g in gws {
        let port = moved
            .iter()
            .find(|(name, _)| *name == g.name)
            .map_or(g.http.port(), |(_, p)| *p);
        out.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  labels: {{switchyard.dev/zone: {zone}}}\nspec:\n  gatewayClassName: switchyard\n  addresses: [{{type: IPAddress, value: 127.0.0.1}}]\n  listeners:\n    - {{name: http, port: {port}, protocol: HTTP}}\n",
            name = g.name,
            zone = g.zone,
        ));
    }
    out
}

/// One gateway instance: its identity, addresses, state dir and (while running) process.
pub struct FleetGateway {
    pub name: String,
    pub zone: String,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub state: TempDir,
    /// Passed as `--gateway` when its zone has several instances.
    pub gateway_object: Option<String>,
    pub proc: Option<GatewayProcess>,
}

impl FleetGateway {
    pub fn process(&self) -> &GatewayProcess {
        self.proc
            .as_ref()
            .unwrap_or_else(|| panic!("gateway {} is not running", self.name))
    }

    /// `GET /` with the test Host through this gateway's listener (fresh connection).
    pub async fn try_get(&self) -> std::io::Result<Response> {
        try_get(self.http, HOST, "/", &[]).await
    }

    /// The admin `/config` document.
    pub async fn config(&self) -> Value {
        self.process().config().await
    }

    pub fn logs(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.logs())
            .unwrap_or_else(|| "<not running>".into())
    }
}

/// A control service, its config dir and state dir, two echo backends and the gateways.
pub struct Fleet {
    pub dir: ConfigDir,
    pub tokens: TokenFiles,
    pub control_state: TempDir,
    pub control_addr: SocketAddr,
    pub control: Option<ControlProcess>,
    pub atomic: String,
    pub extra_control_args: Vec<String>,
    pub gateways: Vec<FleetGateway>,
    /// The `even` and `odd` echo backends, alive as long as the fleet.
    _backends: [EchoBackend; 2],
}

impl Fleet {
    /// The default three gateways, route version 1, `--atomic fleet`.
    pub async fn start() -> Fleet {
        Self::start_with(THREE, "fleet", &[]).await
    }

    /// Writes the Gateways, backends and route version 1, starts the control service with
    /// `--atomic atomic` plus `control_args`, then each gateway, and waits until all converge.
    pub async fn start_with(
        instances: &[(&str, &str)],
        atomic: &str,
        control_args: &[&str],
    ) -> Fleet {
        let even = EchoBackend::start("even").await;
        let odd = EchoBackend::start("odd").await;
        let dir = ConfigDir::new();
        let gateways: Vec<FleetGateway> = instances
            .iter()
            .map(|(name, zone)| {
                let shared = instances.iter().filter(|(_, z)| z == zone).count() > 1;
                FleetGateway {
                    name: name.to_string(),
                    zone: zone.to_string(),
                    http: SocketAddr::from(([127, 0, 0, 1], free_port())),
                    admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
                    state: tempfile::Builder::new()
                        .prefix(&format!("switchyard-{name}-state-"))
                        .tempdir()
                        .expect("gateway state dir"),
                    gateway_object: shared.then(|| format!("default/{name}")),
                    proc: None,
                }
            })
            .collect();
        dir.write(
            "backends.yaml",
            &[
                backend_yaml("even", &[even.addr()]),
                backend_yaml("odd", &[odd.addr()]),
            ]
            .concat(),
        );
        let mut fleet = Fleet {
            dir,
            tokens: TokenFiles::new(OPERATOR_TOKEN, GATEWAY_TOKEN),
            control_state: tempfile::Builder::new()
                .prefix("switchyard-control-state-")
                .tempdir()
                .expect("control state dir"),
            control_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            control: None,
            atomic: atomic.to_string(),
            extra_control_args: control_args.iter().map(|s| s.to_string()).collect(),
            gateways,
            _backends: [even, odd],
        };
        fleet.write_version(1);
        fleet.start_control().await;
        for i in 0..fleet.gateways.len() {
            fleet.start_gateway(i).await;
        }
        let g = fleet.wait_converged("the first generation").await;
        for i in 0..fleet.gateways.len() {
            fleet.expect_version(i, 1).await;
            let c = fleet.gateways[i].config().await;
            assert_eq!(c["generation"], g, "{c}\n{}", fleet.logs());
        }
        fleet
    }

    pub fn names(&self) -> Vec<&str> {
        self.gateways.iter().map(|g| g.name.as_str()).collect()
    }

    /// Rewrites `routes.yaml` (atomically): the Gateways and route version `v`.
    pub fn write_version(&self, v: u32) {
        self.write_mesh(v, &[]);
    }

    /// Rewrites `routes.yaml` in one atomic write: the Gateways (listening on the ports in
    /// `moved` for the instances named there) and route version `v`. One file, so one edit
    /// is one generation.
    pub fn write_mesh(&self, v: u32, moved: &[(&str, u16)]) {
        let yaml = format!(
            "{}---\n{}",
            gateways_yaml(&self.gateways, moved),
            route_version(v, &self.names())
        );
        self.dir.write("routes.yaml", &yaml);
    }

    pub fn control(&self) -> &ControlProcess {
        self.control
            .as_ref()
            .expect("the control service is running")
    }

    /// `http://127.0.0.1:PORT` of the control service (the same across restarts).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Starts (or restarts) the control service on the same address and state dir.
    pub async fn start_control(&mut self) {
        let mut args: Vec<String> = vec![
            "control".into(),
            "--config-dir".into(),
            self.dir.path().display().to_string(),
            "--state-dir".into(),
            self.control_state.path().display().to_string(),
            "--listen".into(),
            self.control_addr.to_string(),
            "--token-file".into(),
            self.tokens.operator().display().to_string(),
            "--gateway-token-file".into(),
            self.tokens.gateway().display().to_string(),
            "--atomic".into(),
            self.atomic.clone(),
            "--debounce-ms".into(),
            "50".into(),
        ];
        args.extend(self.extra_control_args.iter().cloned());
        self.control = Some(ControlProcess::start(&bin(), &args, &[]).await);
    }

    /// SIGKILL the control service.
    pub fn kill_control(&mut self) {
        if let Some(mut c) = self.control.take() {
            c.kill();
        }
    }

    /// The arguments gateway `i` runs with.
    pub fn gateway_args(&self, i: usize) -> Vec<String> {
        let g = &self.gateways[i];
        let mut args: Vec<String> = vec![
            "gateway".into(),
            "--control".into(),
            self.control_url(),
            "--zone".into(),
            g.zone.clone(),
            "--name".into(),
            g.name.clone(),
            "--state-dir".into(),
            g.state.path().display().to_string(),
            "--admin".into(),
            g.admin.to_string(),
            "--token-file".into(),
            self.tokens.gateway().display().to_string(),
            "--threads".into(),
            "2".into(),
        ];
        if let Some(object) = &g.gateway_object {
            args.extend(["--gateway".into(), object.clone()]);
        }
        args
    }

    /// Starts (or restarts) gateway `i` with its state dir and waits until `/ready` is 200.
    pub async fn start_gateway(&mut self, i: usize) {
        let args = self.gateway_args(i);
        let mut gw = GatewayProcess::spawn(&bin(), &args, &[])
            .unwrap_or_else(|e| panic!("spawn gateway {args:?}: {e}"));
        if let Err(e) = gw.wait_ready(WAIT).await {
            let logs = gw.logs();
            gw.kill();
            panic!(
                "gateway {} not ready: {e}\n--- its logs ---\n{logs}\n{}",
                self.gateways[i].name,
                self.logs()
            );
        }
        self.gateways[i].proc = Some(gw);
    }

    /// SIGKILL gateway `i`.
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(mut p) = self.gateways[i].proc.take() {
            p.kill();
        }
    }

    /// The control's and every gateway's logs, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = format!(
            "--- control logs ---\n{}\n",
            self.control
                .as_ref()
                .map(|c| c.logs())
                .unwrap_or_else(|| "<not running>".into())
        );
        for g in &self.gateways {
            s.push_str(&format!("--- {} logs ---\n{}\n", g.name, g.logs()));
        }
        s
    }

    /// `/v1/status` with the operator token.
    pub async fn status(&self) -> Value {
        self.control().status().await
    }

    /// Polls `/v1/status` until `done` holds; panics with every log after [`WAIT`].
    pub async fn wait_status(&self, what: &str, done: impl FnMut(&Value) -> bool) -> Value {
        self.control()
            .wait_status(what, WAIT, done, || self.logs())
            .await
    }

    /// The names of the gateways whose process runs.
    fn running(&self) -> Vec<&str> {
        self.gateways
            .iter()
            .filter(|g| g.proc.is_some())
            .map(|g| g.name.as_str())
            .collect()
    }

    /// Waits until every running gateway is listed, live and has applied the current
    /// generation, and the document says `converged`; returns that generation.
    pub async fn wait_converged(&self, what: &str) -> u64 {
        let running = self.running();
        let s = self
            .wait_status(&format!("{what}: {running:?} converged"), |s| {
                all_applied(s, &running, s["generation"].as_u64())
            })
            .await;
        s["generation"].as_u64().unwrap()
    }

    /// Waits for a generation newer than `after` that every running gateway applied.
    pub async fn wait_generation_after(&self, after: u64, what: &str) -> u64 {
        let running = self.running();
        let s = self
            .wait_status(&format!("{what}: a generation after {after}"), |s| {
                s["generation"].as_u64().is_some_and(|g| g > after)
                    && all_applied(s, &running, s["generation"].as_u64())
            })
            .await;
        s["generation"].as_u64().unwrap()
    }

    /// One request through gateway `i` must show route version `v` from the right backend.
    pub async fn expect_version(&self, i: usize, v: u32) {
        let g = &self.gateways[i];
        let r = g
            .try_get()
            .await
            .unwrap_or_else(|e| panic!("GET through {}: {e}\n{}", g.name, self.logs()));
        assert_eq!(r.status, 200, "{}: {r:?}\n{}", g.name, self.logs());
        assert_eq!(
            (r.header("x-version"), r.header("x-backend")),
            (Some(v.to_string().as_str()), Some(backend_for(v))),
            "{} should serve route version {v}: {r:?}\n{}",
            g.name,
            self.logs()
        );
    }

    /// Polls gateway `i` until it serves route version `v` (bounded by [`WAIT`]).
    pub async fn wait_version(&self, i: usize, v: u32) {
        let g = &self.gateways[i];
        let deadline = Instant::now() + WAIT;
        loop {
            let r = g.try_get().await;
            if let Ok(r) = &r {
                if r.header("x-version") == Some(v.to_string().as_str()) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never served version {v}: {r:?}\n{}",
                g.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.expect_version(i, v).await;
    }

    /// Runs `switchyard SUBCOMMAND --control URL --token-file OPERATOR args..` (off the runtime).
    pub async fn cli(&self, subcommand: &str, args: &[&str]) -> Output {
        self.cli_with_token_file(subcommand, args, self.tokens.operator())
            .await
    }

    pub async fn cli_with_token_file(
        &self,
        subcommand: &str,
        args: &[&str],
        token_file: PathBuf,
    ) -> Output {
        let mut cmd = Command::new(bin());
        cmd.arg(subcommand)
            .arg("--control")
            .arg(self.control_url())
            .arg("--token-file")
            .arg(token_file)
            .args(args)
            .env_remove("SWITCHYARD_TOKEN");
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join the CLI thread")
            .expect("run the switchyard CLI")
    }
}

/// Every gateway named in `names` is listed, live, converged and applied `generation`, and the
/// document says `converged`.
pub fn all_applied(s: &Value, names: &[&str], generation: Option<u64>) -> bool {
    let Some(generation) = generation else {
        return false;
    };
    s["converged"] == true
        && names.iter().all(|n| {
            gateway_entry(s, n).is_some_and(|g| {
                g["applied"].as_u64() == Some(generation)
                    && g["live"] == true
                    && g["state"] == "converged"
            })
        })
}

/// The status entry of gateway `name`.
pub fn gateway_entry<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["gateways"].as_array()?.iter().find(|g| g["name"] == name)
}

/// stdout and stderr of a CLI run, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
