//! The control service with a fleet of three gateways in two zones: edits propagate, gateways
//! outlive the control service and restart from their persisted generation, generation numbers
//! survive a control restart, bad edits and rollbacks show in `switchyard status`, one gateway
//! that cannot stage blocks a fleet-atomic commit, and tokens guard the API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_testkit::{try_get, GatewayProcess, H1Conn, TokenFiles};

use crate::common::bin;
use crate::fleet::{gateway_entry, output_text, Fleet, GATEWAY_TOKEN, HOST, OPERATOR_TOKEN, THREE};

/// Indexes into [`THREE`].
const A1: usize = 0;
const A2: usize = 1;
const B1: usize = 2;

#[tokio::test]
async fn an_edit_reaches_every_gateway() {
    let fleet = Fleet::start().await;
    let g1 = fleet.wait_converged("start").await;

    fleet.write_version(2);
    let g2 = fleet.wait_generation_after(g1, "route version 2").await;
    let status = fleet.status().await;
    assert_eq!(status["atomic"], "fleet", "{status:#}");
    assert!(
        status["changed_files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "routes.yaml")),
        "changed_files names routes.yaml: {status:#}"
    );
    let mut configs = Vec::new();
    for (i, g) in fleet.gateways.iter().enumerate() {
        fleet.expect_version(i, 2).await;
        let c = g.config().await;
        assert_eq!(c["generation"], g2, "{}: {c}\n{}", g.name, fleet.logs());
        assert_eq!(c["zone"], g.zone.as_str(), "{}: {c}", g.name);
        assert_eq!(
            c["gateway"],
            format!("default/{}", g.name),
            "{}: {c}",
            g.name
        );
        configs.push(c);
        let entry = gateway_entry(&status, &g.name).unwrap();
        assert_eq!(entry["zone"], g.zone.as_str(), "{entry}");
        assert_eq!(entry["lag"], 0, "{entry}");
    }
    let out = fleet.cli("status", &[]).await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", fleet.logs());
    for (name, zone) in THREE {
        assert!(text.contains(name) && text.contains(zone), "{text}");
    }
    let json = fleet.cli("status", &["--json"]).await;
    assert_eq!(json.status.code(), Some(0), "{}", output_text(&json));
    let doc: Value = serde_json::from_slice(&json.stdout).expect("status --json prints JSON");
    assert_eq!(doc["generation"], g2, "{doc:#}");
    for c in configs {
        assert_eq!(c["source"], "control", "/config names its source: {c}");
    }
}

#[tokio::test]
async fn gateways_keep_serving_when_the_control_is_killed() {
    let mut fleet = Fleet::start().await;
    let mut conns = Vec::new();
    for g in &fleet.gateways {
        conns.push(H1Conn::connect(g.http).await.unwrap());
    }
    fleet.kill_control();
    // Long enough for every gateway to notice the dead subscription and retry a few times.
    let until = Instant::now() + Duration::from_secs(3);
    let mut served = 0;
    while Instant::now() < until {
        for (i, conn) in conns.iter_mut().enumerate() {
            let r = conn.get(HOST, "/").await.unwrap_or_else(|e| {
                panic!(
                    "{} after the kill: {e}\n{}",
                    fleet.gateways[i].name,
                    fleet.logs()
                )
            });
            assert_eq!(r.header("x-version"), Some("1"), "{r:?}\n{}", fleet.logs());
            fleet.expect_version(i, 1).await; // and on a new connection
            served += 2;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for g in &fleet.gateways {
        let ready = g.process().admin_get("/ready").await.unwrap();
        assert_eq!(ready.status, 200, "{}: {ready:?}\n{}", g.name, fleet.logs());
    }
    assert!(served > 30, "only {served} requests");
}

#[tokio::test]
async fn a_gateway_restarted_while_the_control_is_down_serves_its_persisted_generation() {
    let mut fleet = Fleet::start().await;
    let g1 = fleet.wait_converged("start").await;
    fleet.write_version(2);
    let g2 = fleet.wait_generation_after(g1, "route version 2").await;
    let before = fleet.gateways[B1].config().await;

    fleet.kill_control();
    fleet.kill_gateway(B1);
    let persisted = fleet.gateways[B1].state.path().join("last-generation.json");
    assert!(persisted.exists(), "{} missing", persisted.display());
    fleet.start_gateway(B1).await; // waits for /ready 200, with the control still down
    let after = fleet.gateways[B1].config().await;
    assert_eq!(after["generation"], g2, "{after}\n{}", fleet.logs());
    assert_eq!(after["digest"], before["digest"], "{after}");
    for i in 0..fleet.gateways.len() {
        fleet.expect_version(i, 2).await;
    }

    // Once the control service is back, the restarted gateway counts as converged again.
    fleet.start_control().await;
    assert_eq!(fleet.wait_converged("control back").await, g2);
    fleet.write_version(3);
    fleet.wait_generation_after(g2, "route version 3").await;
    fleet.expect_version(B1, 3).await;
}

#[tokio::test]
async fn a_restarted_control_continues_the_generation_numbers() {
    let mut fleet = Fleet::start().await;
    let mut g = fleet.wait_converged("start").await;
    for v in 2..=3 {
        fleet.write_version(v);
        g = fleet
            .wait_generation_after(g, &format!("route version {v}"))
            .await;
    }
    let before = fleet.status().await;
    let highest = before["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["generation"].as_u64())
        .max()
        .unwrap();
    assert!(highest >= g, "{before:#}");

    fleet.kill_control();
    fleet.start_control().await;
    // Unchanged files: the same generation, and the gateways keep it.
    assert_eq!(fleet.wait_converged("restarted control").await, g);
    let status = fleet.status().await;
    assert_eq!(status["digest"], before["digest"], "{status:#}");
    for gw in &fleet.gateways {
        let c = gw.config().await;
        assert_eq!(c["generation"], g, "{}: {c}\n{}", gw.name, fleet.logs());
    }

    fleet.write_version(4);
    let next = fleet.wait_generation_after(g, "route version 4").await;
    assert!(
        next > highest,
        "generation {next} after the restart is not above {highest}\n{}",
        fleet.logs()
    );
    for i in 0..fleet.gateways.len() {
        fleet.expect_version(i, 4).await;
    }
}

#[tokio::test]
async fn an_invalid_edit_is_reported_with_file_and_line_and_changes_nothing() {
    let fleet = Fleet::start().await;
    let g1 = fleet.wait_converged("start").await;
    let broken = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: broken}\nspec:\n  parentRefs: [{name: gw-a1}]\n  rules:\n    - backendRefs: [{group: switchyard.dev, kind: Backend, name: even}]\n      colour: blue\n";
    let line = broken.lines().position(|l| l.contains("colour")).unwrap() + 1;
    let at = format!("broken.yaml:{line}:");
    fleet.dir.write("broken.yaml", broken);

    let status = fleet
        .wait_status("the rejection of broken.yaml", |s| {
            !s["last_rejection"].is_null()
        })
        .await;
    let errors = status["last_rejection"]["errors"].to_string();
    assert!(
        errors.contains(&at) && errors.contains("colour"),
        "{at}: {status:#}"
    );
    assert_eq!(status["generation"], g1, "{status:#}");

    let out = fleet.cli("status", &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&at) && l.contains("colour")),
        "switchyard status shows {at}:\n{}",
        output_text(&out)
    );
    // The rejected set changed nothing: every gateway still applied the current generation.
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // Give a wrongly accepted set time to arrive, then check nothing moved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, g) in fleet.gateways.iter().enumerate() {
        fleet.expect_version(i, 1).await;
        let c = g.config().await;
        assert_eq!(c["generation"], g1, "{}: {c}\n{}", g.name, fleet.logs());
    }

    // Fixed: the next valid change is published and status stops showing the old error.
    fleet.dir.remove("broken.yaml");
    fleet.write_version(2);
    fleet.wait_generation_after(g1, "route version 2").await;
    let out = fleet.cli("status", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&at),
        "a fixed error still shows:\n{}",
        output_text(&out)
    );
}

#[tokio::test]
async fn a_rollback_takes_effect_until_the_next_edit() {
    let fleet = Fleet::start().await;
    let g1 = fleet.wait_converged("start").await;
    fleet.write_version(2);
    let g2 = fleet.wait_generation_after(g1, "route version 2").await;

    let out = fleet.cli("rollback", &["--to", &g1.to_string()]).await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", fleet.logs());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("rolled back to generation {g1} as generation ");
    let m: u64 = stdout
        .split_once(&prefix)
        .and_then(|(_, rest)| {
            rest.trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {prefix:?}N in:\n{text}"));
    assert!(m > g2, "rollback got generation {m}, not above {g2}");
    let status = fleet
        .wait_status("the rollback generation converged", |s| {
            s["generation"] == m && s["converged"] == true
        })
        .await;
    assert_eq!(fleet.wait_converged("rollback").await, m);
    assert_eq!(status["rollback"]["to"], g1, "{status:#}");
    let entry = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["generation"] == m)
        .unwrap_or_else(|| panic!("generation {m} not in history: {status:#}"));
    assert_eq!(entry["rollback_of"], g1, "{status:#}");
    for (i, g) in fleet.gateways.iter().enumerate() {
        fleet.expect_version(i, 1).await;
        assert_eq!(g.config().await["generation"], m, "{}", fleet.logs());
    }

    // An unknown generation is refused and changes nothing.
    let out = fleet.cli("rollback", &["--to", "9999"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(fleet.status().await["generation"], m);

    // The next file edit supersedes the rollback.
    fleet.write_version(3);
    let g3 = fleet.wait_generation_after(m, "route version 3").await;
    let status = fleet.status().await;
    assert!(status["rollback"].is_null(), "{status:#}");
    assert!(g3 > m);
    for i in 0..fleet.gateways.len() {
        fleet.expect_version(i, 3).await;
    }
}

/// The edit only zone-b's gateway cannot stage: route version `v`, and gw-b1's Gateway moves
/// its listener to a new port. The set is valid, so the control publishes it; a running
/// gateway cannot bind a new listener, so gw-b1 refuses it (NACK) while zone-a could apply it.
fn zone_b_breaking_edit(fleet: &Fleet, v: u32) {
    fleet.write_mesh(v, &[("gw-b1", switchyard_testkit::free_port())]);
}

/// Requests through zone-a's gateways on keep-alive connections until stopped; returns every
/// `x-version` seen (or the error) per gateway.
fn sample_zone_a(fleet: &Fleet, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    let addrs = [fleet.gateways[A1].http, fleet.gateways[A2].http];
    tokio::spawn(async move {
        let mut conns = Vec::new();
        for a in addrs {
            conns.push(H1Conn::connect(a).await.unwrap());
        }
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for c in conns.iter_mut() {
                seen.push(match c.get(HOST, "/").await {
                    Ok(r) => r.header("x-version").unwrap_or("none").to_string(),
                    Err(e) => format!("error {e}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    })
}

#[tokio::test]
async fn a_gateway_that_cannot_stage_blocks_a_fleet_atomic_commit() {
    let fleet = Fleet::start_with(THREE, "fleet", &["--stage-timeout-ms", "3000"]).await;
    let g1 = fleet.wait_converged("start").await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_zone_a(&fleet, stop.clone());

    zone_b_breaking_edit(&fleet, 2);
    let status = fleet
        .wait_status("the commit to be abandoned", |s| {
            s["last_abandoned"]["generation"]
                .as_u64()
                .is_some_and(|g| g > g1)
        })
        .await;
    // Keep sampling well past the point where an unblocked commit would have flipped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.await.unwrap();
    assert!(seen.len() > 20, "only {} samples", seen.len());
    assert!(
        seen.iter().all(|v| v == "1"),
        "zone-a flipped or failed during a blocked commit: {:?}\n{status:#}\n{}",
        seen.iter().filter(|v| *v != "1").collect::<Vec<_>>(),
        fleet.logs()
    );

    let abandoned = &status["last_abandoned"];
    let reason = abandoned["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gw-b1"), "{status:#}");
    let b1 = gateway_entry(&status, "gw-b1").unwrap();
    assert!(!b1["last_error"].is_null(), "gw-b1's NACK: {status:#}");
    for i in [A1, A2, B1] {
        let g = &fleet.gateways[i];
        fleet.expect_version(i, 1).await;
        let c = g.config().await;
        assert_eq!(
            c["generation"],
            g1,
            "{}: {c}\n{status:#}\n{}",
            g.name,
            fleet.logs()
        );
        let entry = gateway_entry(&fleet.status().await, &g.name)
            .cloned()
            .unwrap();
        assert_eq!(entry["applied"], g1, "{entry}");
    }
    let metrics = fleet.control().metrics().await;
    for name in [
        "switchyard_control_commits_abandoned_total",
        "switchyard_control_nacks_total",
    ] {
        assert!(metric(&metrics, name) >= 1.0, "{name}:\n{metrics}");
    }
}

#[tokio::test]
async fn with_atomic_off_the_same_edit_reaches_zone_a() {
    let fleet = Fleet::start_with(THREE, "off", &["--stage-timeout-ms", "3000"]).await;
    let g1 = fleet.wait_converged("start").await;
    zone_b_breaking_edit(&fleet, 2);
    fleet.wait_version(A1, 2).await;
    fleet.wait_version(A2, 2).await;
    let status = fleet
        .wait_status("gw-b1's NACK", |s| {
            gateway_entry(s, "gw-b1").is_some_and(|b| !b["last_error"].is_null())
        })
        .await;
    let g2 = status["generation"].as_u64().unwrap();
    assert!(g2 > g1, "{status:#}");
    for i in [A1, A2] {
        let c = fleet.gateways[i].config().await;
        assert_eq!(c["generation"], g2, "{c}\n{}", fleet.logs());
    }
    fleet.expect_version(B1, 1).await;
    assert_eq!(fleet.gateways[B1].config().await["generation"], g1);
    let out = fleet.cli("status", &[]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "gw-b1 did not apply the current generation: {}",
        output_text(&out)
    );
}

/// The sum of a Prometheus metric's samples over all label sets (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test]
async fn wrong_tokens_get_401_without_config() {
    let fleet = Fleet::start().await;
    let g1 = fleet.wait_converged("start").await;
    let control = fleet.control();
    let status = fleet.status().await;
    let digest = status["digest"].as_str().unwrap().to_string();
    let secrets = ["web", HOST, digest.as_str(), "gw-a1", "routes.yaml", "even"];
    // Every refusal is checked; the problems are reported together.
    let mut problems = Vec::new();
    let mut check = |what: &str, r: switchyard_testkit::Response| {
        let body = r.text();
        for s in secrets {
            assert!(!body.contains(s), "{what} leaks {s:?}: {body}");
        }
        if r.status != 401 || body != "unauthorized\n" {
            problems.push(format!("{what}: {} {body:?}", r.status));
        }
    };
    let addr = control.addr();
    let host = addr.to_string();
    check(
        "no token",
        control.get_with_token("/v1/status", None).await.unwrap(),
    );
    check(
        "wrong token",
        control
            .get_with_token("/v1/status", Some("op-secret-not"))
            .await
            .unwrap(),
    );
    check(
        "gateway token on /v1/status",
        control
            .get_with_token("/v1/status", Some(GATEWAY_TOKEN))
            .await
            .unwrap(),
    );
    check(
        "no Bearer scheme",
        try_get(
            addr,
            &host,
            "/v1/status",
            &[("authorization", OPERATOR_TOKEN)],
        )
        .await
        .unwrap(),
    );
    check(
        "gateway token on /metrics",
        control
            .get_with_token("/metrics", Some(GATEWAY_TOKEN))
            .await
            .unwrap(),
    );
    check(
        "gateway token on /v1/rollback",
        control
            .post_with_token(
                "/v1/rollback",
                Some(GATEWAY_TOKEN),
                &serde_json::json!({"previous": true}),
            )
            .await
            .unwrap(),
    );
    check(
        "operator token on /v1/watch",
        control
            .get_with_token("/v1/watch?zone=zone-a&name=intruder", Some(OPERATOR_TOKEN))
            .await
            .unwrap(),
    );
    // The right token does see the config (so the checks above are meaningful).
    let ok = control
        .get_with_token("/v1/status", Some(OPERATOR_TOKEN))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains(&digest) && ok.text().contains("gw-a1"));
    assert_eq!(
        fleet.status().await["generation"],
        g1,
        "nothing rolled back"
    );

    // The CLI with a wrong token exits 2 and prints no config.
    let wrong = TokenFiles::new("nope", "nope");
    let out = fleet
        .cli_with_token_file("status", &[], wrong.operator())
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&digest));

    // A gateway with the wrong token gets no generation and is not listed.
    let mut args = fleet.gateway_args(B1);
    let state = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", switchyard_testkit::free_port());
    for (flag, value) in [
        ("--token-file", wrong.gateway().display().to_string()),
        ("--name", "intruder".to_string()),
        ("--state-dir", state.path().display().to_string()),
        ("--admin", admin),
    ] {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value;
    }
    let mut intruder = GatewayProcess::spawn(&bin(), &args, &[]).unwrap();
    let ready = intruder.wait_ready(Duration::from_secs(3)).await;
    assert!(
        ready.is_err(),
        "a gateway with a wrong token became ready:\n{}",
        intruder.logs()
    );
    let status = fleet.status().await;
    assert!(gateway_entry(&status, "intruder").is_none(), "{status:#}");
    assert!(
        problems.is_empty(),
        "not 401 \"unauthorized\\n\": {problems:#?}"
    );
}
