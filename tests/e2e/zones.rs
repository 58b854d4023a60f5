//! Zones end to end: three zones, one real gateway each, on loopback. Each gateway is
//! standalone over the same route files, issues its mesh certificate from one CA dir
//! (`switchyard cert init-ca`), and has an HTTP listener and a `switchyard.dev/EastWest`
//! listener. Backend `cart` has two endpoints in zone-a and one each in zone-b and zone-c
//! ([`FaultyBackend`]s that die and come back on cue), with fast active health checks.
//! Backend `stock` has a single endpoint, zone-b's.
//!
//! Shown: local preference; failover to zone-b when every zone-a endpoint dies and failback when
//! they return; failover moving on to zone-c when zone-b's gateway itself dies; and no loops:
//! an east-west request is served from the receiving zone only, never forwarded again.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    free_port, mtls_config, mtls_get_with, try_get, ConfigDir, FaultyBackend, GatewayProcess, Mode,
};
use tempfile::TempDir;

use crate::common::bin;

const HOST: &str = "shop.test";
/// Route to Backend `stock`, whose only endpoint is zone-b's.
const STOCK_HOST: &str = "stock.test";
const TRUST_DOMAIN: &str = "mesh.test";
/// Bound on waiting for health checks and outlier detection to move traffic.
const SETTLE: Duration = Duration::from_secs(10);

/// One zone: its gateway process, listeners and endpoints of `cart`.
struct Zone {
    name: &'static str,
    http: SocketAddr,
    east_west: SocketAddr,
    admin: SocketAddr,
    endpoints: Vec<FaultyBackend>,
    gw: Option<GatewayProcess>,
}

struct Mesh {
    dir: ConfigDir,
    ca: TempDir,
    zones: Vec<Zone>,
}

fn run_cli(args: &[&str]) {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "switchyard {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files(zones: &[Zone]) -> String {
    let mut s = String::new();
    for z in zones {
        s.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw-{zone}\n  labels: {{switchyard.dev/zone: {zone}}}\nspec:\n  gatewayClassName: switchyard\n  addresses: [{{type: IPAddress, value: 127.0.0.1}}]\n  listeners:\n    - {{name: http, port: {http}, protocol: HTTP}}\n    - {{name: east-west, port: {ew}, protocol: switchyard.dev/EastWest}}\n",
            zone = z.name,
            http = z.http.port(),
            ew = z.east_west.port(),
        ));
    }
    s.push_str("---\napiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: cart}\nspec:\n  endpoints:\n");
    for z in zones {
        for e in &z.endpoints {
            s.push_str(&format!(
                "    - {{address: \"{}\", zone: {}}}\n",
                e.addr(),
                z.name
            ));
        }
    }
    s.push_str(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: cart}\nspec:\n  targetRefs: [{group: switchyard.dev, kind: Backend, name: cart}]\n  healthCheck: {interval: 200ms, timeout: 150ms, healthyThreshold: 1, unhealthyThreshold: 1, http: {path: /healthz}}\n  locality: {failover: [zone-b, zone-c, zone-a]}\n",
    );
    let parents: Vec<String> = zones
        .iter()
        .map(|z| format!("{{name: gw-{}}}", z.name))
        .collect();
    s.push_str(&format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: shop}}\nspec:\n  parentRefs: [{}]\n  hostnames: [{HOST}]\n  rules:\n    - backendRefs: [{{group: switchyard.dev, kind: Backend, name: cart}}]\n      retry: {{attempts: 2}}\n",
        parents.join(", ")
    ));
    let b = &zones[1];
    s.push_str(&format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {{name: stock}}\nspec:\n  endpoints: [{{address: \"{}\", zone: {}}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: stock}}\nspec:\n  parentRefs: [{}]\n  hostnames: [{STOCK_HOST}]\n  rules:\n    - backendRefs: [{{group: switchyard.dev, kind: Backend, name: stock}}]\n",
        b.endpoints[0].addr(),
        b.name,
        parents.join(", ")
    ));
    s.push_str("---\napiVersion: switchyard.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: shop}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop}]\n  retry: {on: [connect-failure, reset, gateway-error]}\n");
    s
}

impl Mesh {
    async fn start() -> Mesh {
        let mut zones = Vec::new();
        for (name, n) in [("zone-a", 2), ("zone-b", 1), ("zone-c", 1)] {
            let mut endpoints = Vec::new();
            for i in 0..n {
                endpoints.push(FaultyBackend::start(&format!("{name}-{i}"), Mode::Ok).await);
            }
            let port = |_| SocketAddr::from(([127, 0, 0, 1], free_port()));
            zones.push(Zone {
                name,
                http: port(()),
                east_west: port(()),
                admin: port(()),
                endpoints,
                gw: None,
            });
        }
        let dir = ConfigDir::new();
        dir.write("mesh.yaml", &files(&zones));
        let ca = TempDir::new().expect("ca dir");
        let ca_path = ca.path().join("ca");
        run_cli(&[
            "cert",
            "init-ca",
            "--dir",
            &ca_path.display().to_string(),
            "--trust-domain",
            TRUST_DOMAIN,
        ]);
        let mut mesh = Mesh { dir, ca, zones };
        for i in 0..mesh.zones.len() {
            mesh.start_gateway(i).await;
        }
        mesh
    }

    fn ca_dir(&self) -> std::path::PathBuf {
        self.ca.path().join("ca")
    }

    async fn start_gateway(&mut self, i: usize) {
        let ca = self.ca_dir();
        let z = &mut self.zones[i];
        let args: Vec<String> = [
            "gateway",
            "--config-dir",
            &self.dir.path().display().to_string(),
            "--gateway",
            &format!("gw-{}", z.name),
            "--zone",
            z.name,
            "--name",
            &format!("gw-{}", z.name),
            "--mesh-ca-dir",
            &ca.display().to_string(),
            "--admin",
            &z.admin.to_string(),
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut gw = GatewayProcess::start(&bin(), &args).await;
        gw.wait_ready(Duration::from_secs(20))
            .await
            .expect("gateway ready");
        z.gw = Some(gw);
    }

    fn zone(&self, name: &str) -> &Zone {
        self.zones.iter().find(|z| z.name == name).expect("zone")
    }

    /// Traffic requests each zone's endpoints have served so far.
    fn served(&self) -> [u64; 3] {
        let count = |z: &Zone| z.endpoints.iter().map(|e| e.traffic_requests()).sum();
        [
            count(&self.zones[0]),
            count(&self.zones[1]),
            count(&self.zones[2]),
        ]
    }

    /// Sends `n` requests to zone `via`'s HTTP listener; returns the `x-backend` of each (the
    /// serving endpoint's name) or the status of a failure.
    async fn send(&self, via: &str, n: usize) -> Vec<String> {
        let addr = self.zone(via).http;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match try_get(addr, HOST, "/", &[]).await {
                Ok(r) if r.status == 200 => {
                    out.push(r.header("x-backend").unwrap_or("?").to_string())
                }
                Ok(r) => out.push(format!(
                    "status {} {}",
                    r.status,
                    r.header("x-switchyard-error").unwrap_or("")
                )),
                Err(e) => out.push(format!("error {e}")),
            }
        }
        out
    }

    /// Waits until zone `zone`'s gateway counts none of its local endpoints of `cart` as
    /// available (its health checks noticed they died).
    async fn wait_local_down(&self, zone: &str) {
        let gw = self.zone(zone).gw.as_ref().expect("gateway running");
        let deadline = Instant::now() + SETTLE;
        loop {
            let body = gw.admin_get("/backends").await.map(|r| r.json());
            let down = body.as_ref().is_ok_and(|b| {
                b["backends"].as_array().is_some_and(|list| {
                    list.iter()
                        .filter(|x| x["backend"] == "default/cart")
                        .all(|x| {
                            x["endpoints"]
                                .as_array()
                                .is_some_and(|e| e.iter().all(|e| e["available"] == false))
                        })
                })
            });
            if down {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{zone}'s endpoints never went down: {body:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until a request via `via` is served by an endpoint of zone `zone`; returns how
    /// many requests failed meanwhile (printed with the time it took, with `--nocapture`).
    async fn wait_served_by(&self, via: &str, zone: &str) -> u32 {
        let started = Instant::now();
        let deadline = started + SETTLE;
        let (mut sent, mut failed) = (0, 0);
        loop {
            let got = self.send(via, 1).await;
            sent += 1;
            if got[0].starts_with(zone) {
                let took = started.elapsed();
                eprintln!("traffic via {via} reached {zone} after {took:?} ({failed} of {sent} requests failed meanwhile)");
                return failed;
            }
            if got[0].starts_with("status") || got[0].starts_with("error") {
                failed += 1;
            }
            assert!(
                Instant::now() < deadline,
                "traffic via {via} never reached {zone} within {SETTLE:?}; last: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn all_from(got: &[String], zone: &str) -> bool {
    got.iter().all(|b| b.starts_with(zone))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_preference_failover_and_failback() {
    let mesh = Mesh::start().await;
    // Local preference: zone-a's gateway keeps zone-a's traffic on zone-a's endpoints.
    let before = mesh.served();
    let got = mesh.send("zone-a", 40).await;
    assert!(all_from(&got, "zone-a"), "{got:?}");
    let after = mesh.served();
    assert_eq!(after[0] - before[0], 40);
    assert_eq!((after[1], after[2]), (before[1], before[2]));
    // And each zone serves its own.
    assert!(all_from(&mesh.send("zone-b", 10).await, "zone-b"));
    assert!(all_from(&mesh.send("zone-c", 10).await, "zone-c"));

    // Every zone-a endpoint dies: traffic fails over to zone-b (first in the order), through
    // zone-b's east-west gateway.
    for e in &mesh.zone("zone-a").endpoints {
        e.kill().await;
    }
    // Before the health checks notice, a retry has tried both dead local endpoints and moves
    // on to zone-b: no request fails.
    assert_eq!(mesh.wait_served_by("zone-a", "zone-b").await, 0);
    let got = mesh.send("zone-a", 40).await;
    assert!(all_from(&got, "zone-b"), "{got:?}");
    // Metrics: zone-a's gateway saw them answered from zone-b (the east-west hop), and zone-b's
    // east-west listener served them from its own zone.
    let scrape = |zone: &str| {
        let gw = mesh.zone(zone).gw.as_ref().expect("running");
        async move {
            let r = gw.admin_get("/metrics").await.expect("GET /metrics");
            crate::metrics::parse_exposition(&r.text())
        }
    };
    let ok = [
        ("route", "default/shop"),
        ("backend", "default/cart"),
        ("code", "200"),
    ];
    let a = scrape("zone-a").await;
    let mut via_b = vec![("zone", "zone-a"), ("endpoint_zone", "zone-b")];
    via_b.extend(ok);
    assert!(crate::metrics::sum(&a, "switchyard_requests_total", &via_b) >= 40.0);
    let b = scrape("zone-b").await;
    let inbound = [
        ("zone", "zone-b"),
        ("listener", "east-west"),
        ("route", ""),
        ("backend", "default/cart"),
        ("endpoint_zone", "zone-b"),
        ("code", "200"),
    ];
    assert!(crate::metrics::sum(&b, "switchyard_requests_total", &inbound) >= 40.0);

    // They come back: failback, with no action.
    for e in &mesh.zone("zone-a").endpoints {
        e.restart().await;
    }
    assert_eq!(mesh.wait_served_by("zone-a", "zone-a").await, 0);
    let got = mesh.send("zone-a", 40).await;
    assert!(all_from(&got, "zone-a"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_no_endpoint_in_the_zone_is_served_from_another_zone() {
    let mesh = Mesh::start().await;
    // `stock` lives in zone-b only: zone-a's and zone-c's gateways have nothing local for it
    // and send it through zone-b's east-west listener; zone-b serves it locally.
    let before = mesh.zone("zone-b").endpoints[0].traffic_requests();
    for via in ["zone-a", "zone-c", "zone-b"] {
        for _ in 0..10 {
            let r = try_get(mesh.zone(via).http, STOCK_HOST, "/", &[])
                .await
                .expect("response");
            assert_eq!(
                (r.status.as_u16(), r.header("x-backend")),
                (200, Some("zone-b-0")),
                "via {via}: {:?}",
                r.header("x-switchyard-error")
            );
        }
    }
    assert_eq!(
        mesh.zone("zone-b").endpoints[0].traffic_requests() - before,
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_remote_gateway_moves_failover_to_the_next_zone() {
    let mut mesh = Mesh::start().await;
    for e in &mesh.zone("zone-a").endpoints {
        e.kill().await;
    }
    mesh.wait_local_down("zone-a").await;
    mesh.wait_served_by("zone-a", "zone-b").await;
    // zone-b's gateway dies (its endpoint is fine): connect failures to its east-west address
    // are retried on zone-c at once and eject the path, so no request fails.
    let b = mesh.zones.iter_mut().find(|z| z.name == "zone-b").unwrap();
    drop(b.gw.take());
    let b_before = mesh.zone("zone-b").endpoints[0].traffic_requests();
    let got = mesh.send("zone-a", 60).await;
    assert!(all_from(&got, "zone-c"), "{got:?}");
    assert_eq!(
        mesh.zone("zone-b").endpoints[0].traffic_requests(),
        b_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn east_west_requests_are_served_locally_and_never_loop() {
    let mesh = Mesh::start().await;
    // zone-a and zone-b have no endpoint left; zone-c has one.
    for z in ["zone-a", "zone-b"] {
        for e in &mesh.zone(z).endpoints {
            e.kill().await;
        }
    }
    // zone-a fails over to zone-b, whose gateway has nothing local and answers 503 instead of
    // forwarding; zone-a then tries zone-c, which serves it.
    mesh.wait_served_by("zone-a", "zone-c").await;
    let got = mesh.send("zone-a", 20).await;
    assert!(all_from(&got, "zone-c"), "{got:?}");

    // Straight to zone-b's east-west listener, as another zone's gateway: zone-b must not
    // forward to zone-c (or back to zone-a). 503, and zone-c's endpoint sees nothing.
    let ca = mesh.ca_dir();
    let certs = TempDir::new().unwrap();
    let (cert, key) = (certs.path().join("gw.pem"), certs.path().join("gw.key"));
    run_cli(&[
        "cert",
        "issue",
        "--ca-dir",
        &ca.display().to_string(),
        "--zone",
        "zone-a",
        "--gateway",
        "probe",
        "--out-cert",
        &cert.display().to_string(),
        "--out-key",
        &key.display().to_string(),
    ]);
    mesh.wait_local_down("zone-b").await;
    let c_before = mesh.zone("zone-c").endpoints[0].traffic_requests();
    let resp = east_west_get(
        mesh.zone("zone-b").east_west,
        &format!("gateway.zone-b.{TRUST_DOMAIN}"),
        &ca.join("bundle.pem"),
        &cert,
        &key,
        "default/cart",
    )
    .await;
    assert_eq!(resp.0, 503, "{resp:?}");
    assert_eq!(resp.1.as_deref(), Some("no_healthy_endpoints"));
    assert_eq!(
        mesh.zone("zone-c").endpoints[0].traffic_requests(),
        c_before
    );

    // With every zone dead, a request ends at once with 503 rather than bouncing around.
    for e in &mesh.zone("zone-c").endpoints {
        e.kill().await;
    }
    let started = Instant::now();
    let r = try_get(mesh.zone("zone-a").http, HOST, "/", &[])
        .await
        .expect("response");
    assert_eq!(r.status, 503);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// One GET over mTLS to an east-west listener naming `backend`: (status, reason header).
async fn east_west_get(
    addr: SocketAddr,
    sni: &str,
    bundle: &Path,
    cert: &Path,
    key: &Path,
    backend: &str,
) -> (u16, Option<String>) {
    let read = |p: &Path| std::fs::read_to_string(p).expect("read PEM");
    let config = mtls_config(&read(bundle), Some((&read(cert), &read(key)))).expect("mTLS config");
    let reply = mtls_get_with(
        addr,
        sni,
        Arc::new(config),
        HOST,
        "/",
        &[("x-switchyard-backend", backend)],
    )
    .await
    .unwrap_or_else(|e| panic!("east-west request: {e}"));
    let reason = reply
        .text
        .lines()
        .find_map(|l| l.strip_prefix("x-switchyard-error: "))
        .map(|v| v.trim().to_string());
    (reply.status, reason)
}
