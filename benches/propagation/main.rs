//! Config propagation latency, file write -> every gateway acked, through one `switchyard control`
//! and three subscribed gateways (real processes, everything on 127.0.0.1), at 10, 1,000 and
//! 10,000 routes.
//!
//! Run: `cargo bench -p switchyard-benches --bench propagation` (~2 min for all three sizes).
//! `cargo bench` does not build the `switchyard` binary: the bench runs
//! `cargo build --release -p switchyard` itself when `<target>/release/switchyard` is missing, and
//! warns when that binary is older than the sources (rebuild it yourself then).
//! Knobs: `SWITCHYARD_BENCH_SIZES=10,1000` (route counts), `SWITCHYARD_BIN=path` (the binary),
//! `SWITCHYARD_BENCH_LOGS=dir` (keep every process's log there).
//!
//! Per size: a config dir with one Gateway object per gateway instance, `gw-a1` and `gw-a2`
//! labelled `switchyard.dev/zone: zone-a`, `gw-b1` labelled zone-b (one HTTP listener each on
//! a free port: two processes on one host cannot share a listener port, pingora binds without
//! SO_REUSEPORT and its listener gives up after 30 s), four Backends on a loopback port nobody
//! listens on, and N HTTPRoutes from [`switchyard_benches::synthetic_routes`] attached to every
//! Gateway (each gateway carries all N routes). `control --atomic fleet`; the zone-a instances
//! pass `--gateway default/NAME`, gw-b1 uses the default (the zone's only Gateway).
//! After the first generation is applied everywhere, each change records t0, replaces one route
//! file atomically (temp file + fsync + rename) and polls `/v1/status` every 5 ms until every
//! gateway's `applied` is the new generation. Latency = max over gateways of
//! `acked_at_unix_ms - t0`; `last_commit.flip_skew_ms` is collected too. Every wait is bounded,
//! a timed-out change counts as an infinite latency (and is listed), and every process is
//! killed on drop, also when the bench panics.
//!
//! Prints a table and writes it as markdown to `benches/results/propagation-last.md`
//! (gitignored, like `benches/peers/last-run.txt`: a dated copy is what gets committed).
//!
//! Layout: this file (sizes, the per-size flow and the measurement loop), `mesh` (config dir and
//! processes), `status` (`/v1/status` client and waits), `report` (results, table, markdown),
//! `binary` (finding/building the binary), `sys` (clock, cores, /proc).

mod binary;
mod mesh;
mod report;
mod status;
mod sys;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use binary::{switchyard_bin, workspace_root};
use mesh::{Config, Mesh};
use report::{markdown, max, ms, table, SizeResult};
use status::{flip_skew, wait_converged, wait_for_change, Change, StatusClient};
use sys::{cores, rss_kib, unix_ms, CpuSample};

/// The target: p99 of propagation at 10,000 routes.
const TARGET_P99_MS: f64 = 250.0;
const TARGET_ROUTES: usize = 10_000;
/// What the issue compares against.
const ISTIO_NOTE: &str = "Istio pushes: under 1 s to about 20 s at scale";

const DEFAULT_SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Poll period of `/v1/status` while a change propagates.
const POLL: Duration = Duration::from_millis(5);
/// One change not applied by every gateway within this is a timeout.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Control `/healthz`, gateways' `/ready`, and the first generation applied everywhere.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// One `/v1/status` request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Quiet time between two changes (not measured).
const SETTLE: Duration = Duration::from_millis(100);
const DEBOUNCE_MS: u64 = 50;

/// (instance name, zone) of the three gateways; the first one's RSS is reported.
const GATEWAYS: [(&str, &str); 3] = [
    ("gw-a1", "zone-a"),
    ("gw-a2", "zone-a"),
    ("gw-b1", "zone-b"),
];

/// How many changes, and the wall-clock cap on them, at `routes` routes.
fn plan(routes: usize) -> (usize, Duration) {
    if routes >= 10_000 {
        (15, Duration::from_secs(300))
    } else {
        (30, Duration::from_secs(180))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("propagation: skipped (run it with `cargo bench -p switchyard-benches --bench propagation`)");
        return;
    }
    let sizes = sizes();
    let root = workspace_root();
    let bin = switchyard_bin(&root);
    println!(
        "propagation: {} on {} cores; sizes {sizes:?}; control --atomic fleet --debounce-ms {DEBOUNCE_MS}",
        bin.display(),
        cores()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Vec::new();
    for routes in sizes {
        let started = Instant::now();
        let result = rt.block_on(run_size(&bin, routes));
        println!(
            "[{routes} routes] {} in {:.0} s",
            result.summary(),
            started.elapsed().as_secs_f64()
        );
        results.push(result);
    }

    let table = table(&results);
    println!("\n{table}");
    for r in &results {
        for note in &r.notes {
            println!("note ({} routes): {note}", r.routes);
        }
        if let Some(e) = &r.error {
            println!("FAILED ({} routes): {e}", r.routes);
        }
    }
    let out = root.join("benches/results/propagation-last.md");
    let md = markdown(&root, &bin, &table, &results);
    match fs::create_dir_all(out.parent().expect("results dir")).and_then(|_| fs::write(&out, md)) {
        Ok(()) => println!("\nwritten: {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
    if results.iter().any(|r| r.error.is_some() || r.timeouts > 0) {
        std::process::exit(1);
    }
}

/// `SWITCHYARD_BENCH_SIZES=10,1000` or the defaults.
fn sizes() -> Vec<usize> {
    match std::env::var("SWITCHYARD_BENCH_SIZES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                let s = s.trim().replace('_', "");
                match s.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => panic!("SWITCHYARD_BENCH_SIZES: {s:?} is not a route count > 0"),
                }
            })
            .collect(),
        _ => DEFAULT_SIZES.to_vec(),
    }
}

/// One size: start the mesh, wait for the first generation, run the changes, read RSS.
async fn run_size(bin: &Path, routes: usize) -> SizeResult {
    let mut result = SizeResult::new(routes);
    let mut mesh = None;
    if let Err(e) = measure(bin, routes, &mut result, &mut mesh).await {
        let logs = mesh.as_ref().map(Mesh::log_tails).unwrap_or_default();
        result.error = Some(format!("{e}{logs}"));
    }
    if let (Some(m), Ok(dir)) = (&mesh, std::env::var("SWITCHYARD_BENCH_LOGS")) {
        m.keep_logs(Path::new(&dir), routes);
    }
    // Dropping the mesh kills every process (also on panic, by unwinding).
    drop(mesh);
    result
}

async fn measure(
    bin: &Path,
    routes: usize,
    result: &mut SizeResult,
    slot: &mut Option<Mesh>,
) -> Result<(), String> {
    let (changes, cap) = plan(routes);
    let config = Config::write(routes);
    let mesh = slot.insert(Mesh::spawn_control(bin, config)?);
    mesh.start(bin).await?;
    let mut status = StatusClient::new(mesh.control.addr, &mesh.operator_token);

    // First generation, applied by all three.
    let first = wait_converged(&mut status, mesh, STARTUP_TIMEOUT)
        .await
        .map_err(|e| format!("first generation: {e}"))?;
    result.first_generation_ms = Some(unix_ms() - mesh.control.started_unix_ms);
    if first.generation != 1 {
        result.notes.push(format!(
            "the first generation all gateways applied was {}",
            first.generation
        ));
    }

    // Idle cost: no file changes for one second.
    let control_pid = mesh.control.child.id();
    let gateway_pid = mesh.gateways[0].pid();
    let idle = CpuSample::take(&[control_pid]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.control_idle_cores = idle.cores(0);

    let busy = CpuSample::take(&[control_pid, gateway_pid]);
    let cap_deadline = Instant::now() + cap;
    for k in 0..changes {
        if Instant::now() >= cap_deadline {
            result.capped = true;
            break;
        }
        // The baseline: the generation every gateway has applied right now.
        let generation = wait_converged(&mut status, mesh, CHANGE_TIMEOUT)
            .await
            .map_err(|e| format!("before change {k}: {e}"))?
            .generation;
        let (rel, yaml) = mesh.config.changed_route(k);
        let t0 = unix_ms();
        mesh.config.dir.write(&rel, &yaml);
        result.write_ms.push(unix_ms() - t0);
        match wait_for_change(&mut status, mesh, generation, t0).await? {
            Change::Applied {
                status: s,
                latency_ms,
                observed_ms,
            } => {
                if s.generation != generation + 1 {
                    result.notes.push(format!(
                        "change {k}: generation went {generation} -> {}",
                        s.generation
                    ));
                }
                if let Some(files) = s.raw["changed_files"].as_array() {
                    if !files
                        .iter()
                        .any(|f| f.as_str().is_some_and(|f| f.ends_with(&rel)))
                    {
                        result.notes.push(format!(
                            "change {k}: generation {} lists changed_files {} without {rel}",
                            s.generation, s.raw["changed_files"]
                        ));
                    }
                }
                if latency_ms < 0.0 {
                    result.notes.push(format!(
                        "change {k}: generation {} was acked {:.1} ms before the write",
                        s.generation, -latency_ms
                    ));
                }
                let generation = s.generation;
                result.latency_ms.push(latency_ms);
                result.observed_ms.push(observed_ms);
                let control_ms = max(&s
                    .gateways
                    .iter()
                    .filter_map(|g| g.propagation_ms)
                    .collect::<Vec<_>>());
                if let Some(p) = control_ms {
                    result.control_ms.push(p);
                }
                let published = s.raw["published_at_unix_ms"].as_f64().map(|p| p - t0);
                let skew = flip_skew(&mut status, s).await;
                match skew {
                    Some(skew) => result.flip_skew_ms.push(skew),
                    None => result.notes.push(format!(
                        "change {k}: no last_commit for generation {generation} within 1 s"
                    )),
                }
                result.per_change.push(format!(
                    "| {k} | {rel} | {generation} | {} | {} | {} | {} | {} |",
                    ms(published),
                    ms(Some(latency_ms)),
                    ms(Some(observed_ms)),
                    ms(control_ms),
                    ms(skew)
                ));
            }
            Change::TimedOut(detail) => {
                result.timeouts += 1;
                result.latency_ms.push(f64::INFINITY);
                result
                    .notes
                    .push(format!("change {k} ({rel}) timed out: {detail}"));
            }
        }
        tokio::time::sleep(SETTLE).await;
    }
    mesh.check_alive()?;
    result.control_busy_cores = busy.cores(0);
    result.gateway_busy_cores = busy.cores(1);
    result.control_rss_kib = rss_kib(control_pid);
    result.gateway_rss_kib = rss_kib(gateway_pid);
    Ok(())
}
