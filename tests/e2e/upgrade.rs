//! Zero-downtime upgrade and graceful shutdown: a second `switchyard gateway --upgrade` from the
//! same binary takes the listening sockets over under load without failing a request; an
//! upgrade whose config does not load, or that cannot get the sockets, leaves the old process
//! serving; SIGTERM drains in-flight requests, refuses new connections, answers `/ready` 503
//! and exits early once drained, or cuts what still runs at the end of the grace period. A
//! subscribed gateway upgrades from its persisted generation while the control service is down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_testkit::{
    free_port, spawn_load, try_get, ConfigDir, EchoBackend, GatewayProcess, H1Conn, LoadSpec,
};
use tokio::task::JoinHandle;

use crate::common::{backend_yaml, bin, gateway_yaml};
use crate::fleet::Fleet;

const HOST: &str = "up.test";

fn route_yaml() -> String {
    "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: up}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [up.test]\n  rules:\n    - backendRefs: [{group: switchyard.dev, kind: Backend, name: app}]\n".to_string()
}

/// A config dir for one HTTP port in front of `backend`, and the gateway's arguments.
struct Setup {
    dir: ConfigDir,
    http: SocketAddr,
    admin: SocketAddr,
}

impl Setup {
    fn new(backend: SocketAddr) -> Setup {
        let port = free_port();
        let dir = ConfigDir::new();
        dir.write(
            "gateway.yaml",
            &[
                gateway_yaml(port),
                backend_yaml("app", &[backend]),
                route_yaml(),
            ]
            .concat(),
        );
        Setup {
            dir,
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// `gateway --config-dir D --admin A --threads 2 --grace-period G` plus `extra`.
    fn args(&self, grace_s: u64, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "gateway",
            "--config-dir",
            &self.dir.path().display().to_string(),
            "--admin",
            &self.admin.to_string(),
            "--threads",
            "2",
            "--grace-period",
            &grace_s.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// Short connections: each request on a fresh connection, until stopped (at most 60 s).
struct ShortConns {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl ShortConns {
    fn start(http: SocketAddr, workers: usize) -> ShortConns {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match try_get(http, HOST, "/", &[]).await {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(r) => failures.push(format!("status {}: {}", r.status, r.text())),
                            Err(e) => failures.push(e.to_string()),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    (ok, failures)
                })
            })
            .collect();
        ShortConns { stop, tasks }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failures) = (0, Vec::new());
        for t in self.tasks {
            let (o, f) = t.await.expect("short-connection worker");
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
}

/// One admin answer: which process gave it and how many requests that process has proxied.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    pid: u32,
    requests: u64,
}

/// Polls `/backends` every 20 ms on fresh connections (the admin socket is shared during the
/// hand-over, so answers come from either process) until stopped.
fn sample_admin(admin: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let samples = Mutex::new(Vec::new());
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(r) = try_get(admin, &admin.to_string(), "/backends", &[]).await {
                let pid = r.header("x-switchyard-pid").and_then(|p| p.parse().ok());
                let body = r.json();
                let requests = body["backends"][0]["endpoints"][0]["requests"].as_u64();
                if let (Some(pid), Some(requests)) = (pid, requests) {
                    samples.lock().unwrap().push(Sample {
                        at: Instant::now(),
                        pid,
                        requests,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        samples.into_inner().unwrap()
    })
}

async fn admin_pid(admin: SocketAddr) -> Option<u32> {
    let r = try_get(admin, &admin.to_string(), "/healthz", &[])
        .await
        .ok()?;
    r.header("x-switchyard-pid")?.parse().ok()
}

#[tokio::test]
async fn upgrade_under_load_fails_nothing_and_keeps_the_generation() {
    let backend = EchoBackend::start("app").await;
    let s = Setup::new(backend.addr());
    let mut old = GatewayProcess::start(&bin(), &s.args(10, &[])).await;
    let before = old.config().await;

    // Keep-alive workers (paced, so each has a request in flight every few ms) and short
    // connections, for the whole upgrade.
    let load = spawn_load(
        LoadSpec::new(s.http, HOST, "/")
            .concurrency(4)
            .rate(400.0)
            .duration(Duration::from_secs(30)),
    );
    let short = ShortConns::start(s.http, 2);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_admin(s.admin, stop_sampling.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The "new binary": the same path, the same flags, plus --upgrade.
    let upgrade_started = Instant::now();
    let mut new = GatewayProcess::spawn(&bin(), &s.args(10, &["--upgrade"]), &[]).unwrap();
    let old_exit = old.wait_exit(Duration::from_secs(25)).await;
    let old_gone = upgrade_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop();
    let report = load.finish().await;
    let (short_ok, short_failures) = short.finish().await;
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap();

    let new_running = new.try_status().unwrap().is_none();
    let logs = || format!("--- old ---\n{}\n--- new ---\n{}", old.logs(), new.logs());
    assert!(
        old_exit.is_some_and(|s| s.success()),
        "old process did not exit cleanly: {old_exit:?}\n{}",
        logs()
    );
    assert!(new_running, "new process exited\n{}", logs());
    assert_eq!(report.errors, 0, "keep-alive load: {report}\n{}", logs());
    assert_eq!(
        report.status(200),
        report.total,
        "keep-alive load: {report}"
    );
    assert!(report.total > 1000, "keep-alive load too small: {report}");
    assert!(
        short_failures.is_empty(),
        "{} short connections failed, e.g. {:?}\n{}",
        short_failures.len(),
        &short_failures[..short_failures.len().min(5)],
        logs()
    );
    assert!(short_ok > 100, "short connections: only {short_ok}");

    // Both processes proxied requests during the hand-over: after the new process's first
    // proxied request, the old one still proxied more.
    let (old_pid, new_pid) = (old.pid(), new.pid());
    let first_new = samples
        .iter()
        .find(|x| x.pid == new_pid && x.requests > 0)
        .copied()
        .unwrap_or_else(|| panic!("the new process never proxied a request: {samples:?}"));
    let old_at_first_new = samples
        .iter()
        .filter(|x| x.pid == old_pid && x.at <= first_new.at)
        .map(|x| x.requests)
        .max()
        .unwrap_or(0);
    let old_later = samples
        .iter()
        .filter(|x| x.pid == old_pid && x.at > first_new.at)
        .map(|x| x.requests)
        .max()
        .unwrap_or(0);
    assert!(
        old_later > old_at_first_new,
        "the old process proxied nothing once the new one served ({old_at_first_new} -> {old_later}); samples: {samples:?}"
    );

    // The new process serves the same generation, and answers alone.
    let after = new.config().await;
    assert_eq!(after["digest"], before["digest"], "{after}");
    assert_eq!(after["generation"], before["generation"], "{after}");
    assert_eq!(admin_pid(s.admin).await, Some(new_pid));
    let r = try_get(s.http, HOST, "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    println!(
        "upgrade: old exited {old_gone:?} after the new process started; keep-alive {report}; short connections {short_ok} ok"
    );
}

#[tokio::test]
async fn a_failed_upgrade_leaves_the_old_gateway_serving() {
    let backend = EchoBackend::start("app").await;
    let s = Setup::new(backend.addr());
    let mut old = GatewayProcess::start(&bin(), &s.args(10, &[])).await;
    let old_pid = old.pid();
    let load = spawn_load(
        LoadSpec::new(s.http, HOST, "/")
            .concurrency(2)
            .rate(200.0)
            .duration(Duration::from_secs(40)),
    );
    let short = ShortConns::start(s.http, 1);

    // 1. The new process's config does not load: it exits before touching anything.
    let bad = ConfigDir::new();
    bad.write("gateway.yaml", &gateway_yaml(s.http.port()));
    bad.write("route.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: up}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n    - backendRefs: [{name: missing}]\n");
    let mut args = s.args(10, &["--upgrade"]);
    args[2] = bad.path().display().to_string();
    let mut broken = GatewayProcess::spawn(&bin(), &args, &[]).unwrap();
    let status = broken
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("an upgrade with a bad config exits");
    assert!(!status.success());
    let logs = broken.logs();
    assert!(
        logs.contains("route.yaml:7:") && logs.contains("missing"),
        "the error names the file and line: {logs}"
    );
    assert!(!logs.contains("SIGQUIT sent"), "{logs}");

    // 2. The new process waits on another upgrade socket: the old one ignores the SIGQUIT,
    //    the new one gets no sockets and gives up.
    let socks = tempfile::tempdir().unwrap();
    let other = socks.path().join("other.sock").display().to_string();
    let mut stranded = GatewayProcess::spawn(
        &bin(),
        &s.args(10, &["--upgrade", "--upgrade-sock", &other]),
        &[],
    )
    .unwrap();
    let status = stranded
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("a stranded upgrade gives up\n{}", stranded.logs()));
    assert!(!status.success(), "{}", stranded.logs());
    assert!(
        stranded.logs().contains("SIGQUIT sent"),
        "{}",
        stranded.logs()
    );

    // 3. A stray SIGQUIT with no new process waiting is ignored.
    old.signal("QUIT").unwrap();
    // 4. --takeover-pid must name a gateway: a sleep would be killed by a SIGQUIT.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mut args = s.args(10, &["--upgrade", "--takeover-pid"]);
    args.push(sleeper.id().to_string());
    let mut wrong = GatewayProcess::spawn(&bin(), &args, &[]).unwrap();
    let status = wrong.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| !s.success()), "{}", wrong.logs());
    assert!(
        wrong.logs().contains("not a `switchyard gateway` process"),
        "{}",
        wrong.logs()
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the sleep was left alone"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop();
    let report = load.finish().await;
    let (short_ok, short_failures) = short.finish().await;
    assert_eq!(
        old.logs().matches("SIGQUIT ignored").count(),
        2,
        "{}",
        old.logs()
    );
    assert!(
        old.try_status().unwrap().is_none(),
        "old process exited\n{}",
        old.logs()
    );
    assert!(
        old.logs().contains("SIGQUIT ignored"),
        "the old process ignored the SIGQUIT: {}",
        old.logs()
    );
    assert_eq!(report.errors, 0, "{report}\n{}", old.logs());
    assert_eq!(report.status(200), report.total, "{report}");
    assert!(short_failures.is_empty(), "{short_failures:?}");
    assert!(report.total > 100 && short_ok > 10, "{report}, {short_ok}");
    assert_eq!(admin_pid(s.admin).await, Some(old_pid));
}

/// Waits until `/ready` answers 503 (bounded); returns how long it took.
async fn wait_not_ready(admin: SocketAddr) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(r) = try_get(admin, &admin.to_string(), "/ready", &[]).await {
            if r.status == 503 {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "/ready never answered 503"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let backend = EchoBackend::start("app").await;
    let s = Setup::new(backend.addr());
    let grace = Duration::from_secs(8);
    let mut gw = GatewayProcess::start(&bin(), &s.args(grace.as_secs(), &[])).await;

    // An idle keep-alive connection and a slow request in flight.
    let mut idle = H1Conn::connect(s.http).await.unwrap();
    assert_eq!(idle.get(HOST, "/").await.unwrap().status, 200);
    let http = s.http;
    let slow = tokio::spawn(async move {
        let mut conn = H1Conn::connect(http).await?;
        conn.get(HOST, "/delay/2500").await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !backend.requests().iter().any(|r| r.path == "/delay/2500") {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    gw.terminate().unwrap();
    let term = Instant::now();
    wait_not_ready(s.admin).await;
    let healthz = try_get(s.admin, &s.admin.to_string(), "/healthz", &[])
        .await
        .unwrap();
    assert_eq!(healthz.status, 200, "/healthz stays 200 while draining");

    // New connections are refused once the listener is closed.
    let refused = loop {
        match tokio::net::TcpStream::connect(s.http).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break term.elapsed(),
            _ => {}
        }
        assert!(
            term.elapsed() < Duration::from_secs(2),
            "the listener still accepts 2 s after SIGTERM\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The idle keep-alive connection is closed by the gateway (after the 2 s keep-alive window).
    let idle_deadline = Instant::now() + Duration::from_secs(4);
    while !idle.is_closed() {
        assert!(
            Instant::now() < idle_deadline,
            "idle keep-alive connection still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The slow request completes; the process exits once drained, well before the grace period.
    let r = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("app"));
    let status = gw
        .wait_exit(grace + Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("no exit after SIGTERM\n{}", gw.logs()));
    let exited = term.elapsed();
    assert!(status.success(), "{status}\n{}", gw.logs());
    assert!(
        exited < grace,
        "exited {exited:?} after SIGTERM: the drain should end it before the {grace:?} grace period\n{}",
        gw.logs()
    );
    assert!(gw.logs().contains("drained"), "{}", gw.logs());
    println!("sigterm: refused after {refused:?}, exited after {exited:?}");
}

#[tokio::test]
async fn sigterm_cuts_a_request_still_running_after_the_grace_period() {
    let backend = EchoBackend::start("app").await;
    let s = Setup::new(backend.addr());
    let grace = Duration::from_secs(2);
    let mut gw = GatewayProcess::start(&bin(), &s.args(grace.as_secs(), &[])).await;
    let http = s.http;
    let slow = tokio::spawn(async move {
        let mut conn = H1Conn::connect(http).await?;
        conn.get(HOST, "/delay/10000").await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !backend.requests().iter().any(|r| r.path == "/delay/10000") {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.terminate().unwrap();
    let term = Instant::now();
    wait_not_ready(s.admin).await;
    // Grace period, then at most the 1 s runtime shutdown, plus process teardown.
    let bound = grace + Duration::from_secs(3);
    let status = gw
        .wait_exit(bound)
        .await
        .unwrap_or_else(|| panic!("still running {bound:?} after SIGTERM\n{}", gw.logs()));
    let exited = term.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        exited >= grace,
        "exited after {exited:?}, before the grace period"
    );
    let outcome = slow.await.unwrap();
    assert!(
        outcome.is_err(),
        "the request past the grace period was cut: {outcome:?}"
    );
    println!("sigterm past grace: exited after {exited:?}");
}

#[tokio::test]
async fn a_subscribed_gateway_upgrades_from_its_persisted_generation() {
    let mut fleet = Fleet::start_with(&[("gw-up", "zone-a")], "fleet", &[]).await;
    let g1 = fleet.wait_converged("start").await;
    fleet.write_version(2);
    let g2 = fleet.wait_generation_after(g1, "route version 2").await;
    let before = fleet.gateways[0].config().await;

    // With the control service down, the persisted copy is the only source of generation g2.
    fleet.kill_control();
    let http = fleet.gateways[0].http;
    let load = spawn_load(
        LoadSpec::new(http, crate::fleet::HOST, "/")
            .concurrency(2)
            .rate(200.0)
            .duration(Duration::from_secs(30))
            .record_header("x-version"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut old = fleet.gateways[0].proc.take().expect("gw-up runs");
    let mut args = fleet.gateway_args(0);
    args.push("--upgrade".into());
    let new = GatewayProcess::spawn(&bin(), &args, &[]).unwrap();
    let old_exit = old.wait_exit(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop();
    let report = load.finish().await;
    let logs = format!("--- old ---\n{}\n--- new ---\n{}", old.logs(), new.logs());
    assert!(
        old_exit.is_some_and(|s| s.success()),
        "{old_exit:?}\n{logs}"
    );
    assert!(
        new.logs().contains("serving the persisted generation"),
        "{logs}"
    );
    assert_eq!(report.errors, 0, "{report}\n{logs}");
    assert_eq!(report.status(200), report.total, "{report}");
    assert_eq!(report.header("2"), report.total, "only version 2: {report}");
    let after = new.config().await;
    assert_eq!(after["generation"], g2, "{after}");
    assert_eq!(after["digest"], before["digest"], "{after}");
    assert_eq!(admin_pid(fleet.gateways[0].admin).await, Some(new.pid()));

    // The new process follows the control service once it is back.
    fleet.gateways[0].proc = Some(new);
    fleet.start_control().await;
    assert_eq!(fleet.wait_converged("control back").await, g2);
    fleet.write_version(3);
    fleet.wait_generation_after(g2, "route version 3").await;
    fleet.wait_version(0, 3).await;
}

#[tokio::test]
async fn a_subscribed_gateway_upgraded_while_the_control_runs_keeps_converging() {
    let mut fleet = Fleet::start_with(&[("gw-live", "zone-a")], "fleet", &[]).await;
    let g1 = fleet.wait_converged("start").await;
    let mut old = fleet.gateways[0].proc.take().expect("gw-live runs");
    let mut args = fleet.gateway_args(0);
    args.extend([
        "--upgrade".into(),
        "--takeover-pid".into(),
        old.pid().to_string(),
    ]);
    let new = GatewayProcess::spawn(&bin(), &args, &[]).unwrap();
    let old_exit = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        old_exit.is_some_and(|s| s.success()),
        "{old_exit:?}\n{}\n{}",
        old.logs(),
        new.logs()
    );
    assert_eq!(new.config().await["generation"], g1);
    fleet.gateways[0].proc = Some(new);
    fleet.write_version(2);
    fleet.wait_generation_after(g1, "route version 2").await;
    fleet.wait_version(0, 2).await;
}
