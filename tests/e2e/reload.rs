//! Atomic reload under load: the route file is rewritten 50 times (valid versions, invalid
//! ones and partial writes) while clients keep sending over keep-alive connections. Nothing
//! fails, every response belongs to exactly one generation, and the last valid file wins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::{EchoBackend, H1Conn};

use crate::common::{backend_yaml, Harness};

/// Version `v` of the route: tags responses with `x-version: v` and sends version parity to
/// backend `even` or `odd`, so a response mixing two generations would show.
fn route_version(v: u32) -> String {
    let backend = if v.is_multiple_of(2) { "even" } else { "odd" };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: reload}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n    - filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-version, value: \"{v}\"}}]}}}}]\n      backendRefs: [{{group: switchyard.dev, kind: Backend, name: {backend}}}]\n"
    )
}

#[tokio::test]
async fn fifty_rewrites_under_load_fail_nothing() {
    let even = EchoBackend::start("even").await;
    let odd = EchoBackend::start("odd").await;
    let backends = [
        backend_yaml("even", &[even.addr()]),
        backend_yaml("odd", &[odd.addr()]),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", route_version(0)),
    ])
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut conn = H1Conn::connect(h.http).await.unwrap();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut ok, mut last_version, mut failures) = (0u32, 0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match conn.get("reload.test", "/").await {
                    Ok(r) if r.status == 200 => {
                        let v: u32 = r
                            .header("x-version")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(u32::MAX);
                        let expected = if v.is_multiple_of(2) { "even" } else { "odd" };
                        if r.json()["backend"] != expected {
                            failures
                                .push(format!("version {v} answered by {}", r.json()["backend"]));
                        }
                        if v < last_version {
                            failures.push(format!("version went back from {last_version} to {v}"));
                        }
                        last_version = v;
                        ok += 1;
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            (ok, last_version, failures, conn.requests_sent())
        }));
    }

    let mut last_valid = 0;
    for i in 1..=50u32 {
        match i % 5 {
            // Invalid YAML: rejected, the last good generation keeps serving.
            1 => {
                h.dir.write(
                    "route.yaml",
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: [unclosed\n",
                );
            }
            // A valid file that references a Backend that does not exist: rejected as a set.
            2 => {
                let ghost = route_version(i)
                    .replace("name: even", "name: ghost")
                    .replace("name: odd", "name: ghost");
                h.dir.write("route.yaml", &ghost);
            }
            // A partial write caught by the watcher, then completed in place.
            3 => {
                let full = route_version(i);
                h.dir
                    .write_in_place("route.yaml", &full.as_bytes()[..full.len() - 20]);
                tokio::time::sleep(Duration::from_millis(120)).await;
                h.dir.write_in_place("route.yaml", full.as_bytes());
                last_valid = i;
            }
            _ => {
                h.dir.write("route.yaml", &route_version(i));

                last_valid = i;
            }
        }
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    // The final state is the last valid file.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = switchyard_testkit::get(h.http, "reload.test", "/", &[]).await;
        if r.header("x-version") == Some(&last_valid.to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never converged to version {last_valid}: {r:?}\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, last, failures, sent) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "failures: {failures:?}\n{}",
            h.gw.logs()
        );
        assert!(ok > 50, "client made only {ok} requests");
        assert_eq!(sent as u32, ok, "all requests on one keep-alive connection");
        assert!(last <= last_valid);
        total += ok;
    }
    let config = h.gw.config().await;
    assert!(
        config["rejected"].as_u64().unwrap() >= 10,
        "invalid versions were rejected: {config}"
    );
    assert!(config["generation"].as_u64().unwrap() >= 20, "{config}");
    eprintln!("reload test: {total} requests, 0 failures, config {config}");
}
