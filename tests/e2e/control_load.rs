//! Reload under load through the control service: clients on keep-alive connections drive two
//! gateways (one per zone) while 100 generations are published, each acknowledged by both
//! before the next. Nothing fails, no response mixes generations, and no client goes back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::H1Conn;

use crate::fleet::{backend_for, Fleet, HOST};

const GENERATIONS: u32 = 100;
const CLIENTS_PER_GATEWAY: usize = 3;
/// Bound on publishing all generations.
const PUBLISH_BOUND: Duration = Duration::from_secs(180);

/// What one client saw.
struct ClientReport {
    gateway: String,
    ok: u64,
    sent: u64,
    versions: BTreeMap<u32, u64>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_generations_under_load_fail_nothing() {
    let fleet = Fleet::start_with(&[("gw-a1", "zone-a"), ("gw-b1", "zone-b")], "fleet", &[]).await;
    let first = fleet.wait_converged("start").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for g in &fleet.gateways {
        for _ in 0..CLIENTS_PER_GATEWAY {
            let mut conn = H1Conn::connect(g.http).await.unwrap();
            let (stop, gateway) = (stop.clone(), g.name.clone());
            clients.push(tokio::spawn(async move {
                let deadline = Instant::now() + PUBLISH_BOUND + Duration::from_secs(30);
                let mut report = ClientReport {
                    gateway,
                    ok: 0,
                    sent: 0,
                    versions: BTreeMap::new(),
                    failures: Vec::new(),
                };
                let mut last = 0u32;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match conn.get(HOST, "/").await {
                        Ok(r) if r.status == 200 => {
                            let v = r
                                .header("x-version")
                                .and_then(|v| v.parse::<u32>().ok())
                                .unwrap_or(u32::MAX);
                            let backend = r.header("x-backend").unwrap_or("none").to_string();
                            if v == u32::MAX || backend != backend_for(v) {
                                report
                                    .failures
                                    .push(format!("version {v} answered by {backend}"));
                            }
                            if v < last {
                                report
                                    .failures
                                    .push(format!("went back from {last} to {v}"));
                            }
                            last = v;
                            *report.versions.entry(v).or_default() += 1;
                            report.ok += 1;
                        }
                        Ok(r) => report.failures.push(format!("status {}", r.status)),
                        Err(e) => report.failures.push(format!("error {e}")),
                    }
                    // Stop hammering once failures pile up; they are reported below.
                    if report.failures.len() > 20 {
                        break;
                    }
                }
                report.sent = conn.requests_sent();
                report
            }));
        }
    }

    // Publish version 2..=101, one file rewrite per generation, each acknowledged by both
    // gateways before the next.
    let started = Instant::now();
    let mut generation_of = BTreeMap::from([(1u32, first)]);
    let mut last = first;
    for v in 2..=GENERATIONS + 1 {
        fleet.write_version(v);
        last = fleet
            .wait_generation_after(last, &format!("route version {v}"))
            .await;
        generation_of.insert(v, last);
        assert!(
            started.elapsed() < PUBLISH_BOUND,
            "publishing took over {PUBLISH_BOUND:?} (at version {v})"
        );
    }
    let publish_time = started.elapsed();
    // Let the clients see the final generation, then stop them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let r = c.await.unwrap();
        assert!(
            r.failures.is_empty(),
            "{} client failures: {:?}\n{}",
            r.gateway,
            r.failures,
            fleet.logs()
        );
        assert_eq!(r.sent, r.ok, "every request on one keep-alive connection");
        assert!(
            r.ok > 100,
            "a client on {} made only {} requests",
            r.gateway,
            r.ok
        );
        for v in r.versions.keys() {
            assert!(generation_of.contains_key(v), "unpublished version {v}");
        }
        assert_eq!(
            r.versions.keys().next_back(),
            Some(&(GENERATIONS + 1)),
            "a client on {} never saw the last version: {:?}",
            r.gateway,
            r.versions
        );
        total += r.ok;
    }
    let gens: Vec<u64> = generation_of.values().copied().collect();
    assert!(
        gens.windows(2).all(|w| w[0] < w[1]),
        "generation numbers only grow: {gens:?}"
    );
    for (i, g) in fleet.gateways.iter().enumerate() {
        assert_eq!(g.config().await["generation"], last, "{}", fleet.logs());
        fleet.expect_version(i, GENERATIONS + 1).await;
    }
    eprintln!(
        "control load: {GENERATIONS} generations in {publish_time:?}, {total} requests, 0 failures"
    );
}
