//! `switchyard rollout`: a standalone gateway serves a blue/green split from a commented route
//! file; `set-weight`, `promote` and `abort` run as the real binary, edit the file in place,
//! and the watching gateway picks each edit up on its own.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use switchyard_testkit::{free_port, ConfigDir, EchoBackend, H1Conn};

use crate::common::{backend_yaml, bin, gateway_yaml, Harness};

const ROUTE: &str = "\
# Shop route: blue is live, green is the canary.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: default
spec:
  parentRefs: [{name: gw}]   # the test gateway

  rules:
    - backendRefs:
        # stable
        - group: switchyard.dev
          kind: Backend
          name: blue
          weight: 100   # all traffic
        # canary
        - {group: switchyard.dev, kind: Backend, name: green, weight: 0}
";

/// Runs `switchyard rollout ARGS --config-dir DIR --route shop` off the async runtime.
async fn rollout(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("rollout")
        .args(args)
        .arg("--config-dir")
        .arg(dir)
        .args(["--route", "shop"]);
    tokio::task::spawn_blocking(move || cmd.output().expect("run switchyard rollout"))
        .await
        .expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits (bounded) until the gateway's generation passes `after`; returns the new one.
async fn next_generation(h: &Harness, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = h.gw.config().await;
        let g = c["generation"].as_u64().unwrap_or(0);
        if g > after {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "generation stayed at {g}: {c}\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which backend answered each of `n` requests.
async fn counts(h: &Harness, n: usize) -> HashMap<String, usize> {
    let mut conn = H1Conn::connect(h.http).await.expect("connect");
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = conn.get("shop.test", "/").await.expect("request");
        assert_eq!(r.status, 200, "{r:?}");
        let b = r.json()["backend"].as_str().unwrap_or("?").to_string();
        *seen.entry(b).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn set_weight_promote_and_abort_edit_the_file_and_shift_traffic() {
    let blue = EchoBackend::start("blue").await;
    let green = EchoBackend::start("green").await;
    let backends = [
        backend_yaml("blue", &[blue.addr()]),
        backend_yaml("green", &[green.addr()]),
    ]
    .concat();
    let h = Harness::start(&[
        ("backends.yaml", backends),
        ("route.yaml", ROUTE.to_string()),
    ])
    .await;
    let g0 = h.gw.config().await["generation"].as_u64().unwrap_or(0);
    assert_eq!(counts(&h, 20).await, HashMap::from([("blue".into(), 20)]));

    // Canary at 50%: both weights change, the rest of the file does not.
    let out = rollout(
        h.dir.path(),
        &["set-weight", "--backend", "green", "--weight", "50"],
    )
    .await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        "route.yaml:16: default/shop rule 0 backendRef blue weight 100 -> 50\n\
         route.yaml:18: default/shop rule 0 backendRef green weight 0 -> 50\n"
    );
    let expected = ROUTE
        .replace("weight: 100   #", "weight: 50   #")
        .replace("green, weight: 0}", "green, weight: 50}");
    assert_eq!(
        h.dir.read("route.yaml"),
        expected,
        "comments and layout kept"
    );
    let g1 = next_generation(&h, g0).await;
    let seen = counts(&h, 200).await;
    assert!(
        seen.get("blue").is_some_and(|&n| n > 0) && seen.get("green").is_some_and(|&n| n > 0),
        "both backends get traffic at 50/50: {seen:?}"
    );

    // Promote: green takes everything.
    let out = rollout(h.dir.path(), &["promote", "--backend", "green"]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = h.dir.read("route.yaml");
    assert!(
        text.contains("# stable\n") && text.contains("# canary\n") && text.contains("\n\n  rules:")
    );
    assert!(text.contains("weight: 0   # all traffic") && text.contains("green, weight: 100}"));
    let g2 = next_generation(&h, g1).await;
    assert_eq!(counts(&h, 50).await, HashMap::from([("green".into(), 50)]));

    // Promoting again changes nothing and says so.
    let out = rollout(h.dir.path(), &["promote", "--backend", "green"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        stdout(&out)
    );

    // Abort: green back to 0, blue (the only other one) gets 100.
    let out = rollout(h.dir.path(), &["abort", "--backend", "green"]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        h.dir.read("route.yaml"),
        ROUTE,
        "back to the original bytes"
    );
    next_generation(&h, g2).await;
    assert_eq!(counts(&h, 50).await, HashMap::from([("blue".into(), 50)]));

    // Errors exit 2, name the file and line, and leave the file alone.
    let out = rollout(h.dir.path(), &["promote", "--backend", "purple"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "route.yaml:2: HTTPRoute default/shop: no rule has a backendRef named \"purple\""
        ),
        "{}",
        stderr(&out)
    );
    let out = rollout(
        h.dir.path(),
        &["set-weight", "--backend", "green", "--weight", "101"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(h.dir.read("route.yaml"), ROUTE);
}

#[tokio::test]
async fn an_edit_that_would_make_the_set_invalid_is_not_written() {
    // Green is referenced but has no Backend: the set is invalid, so no edit of it is written.
    let dir = ConfigDir::new();
    dir.write("gateway.yaml", &gateway_yaml(free_port()));
    dir.write(
        "backends.yaml",
        &backend_yaml("blue", &["127.0.0.1:9".parse().expect("addr")]),
    );
    dir.write("route.yaml", ROUTE);
    let out = rollout(
        dir.path(),
        &["set-weight", "--backend", "green", "--weight", "10"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("not writing route.yaml"), "{err}");
    assert!(
        err.contains("route.yaml:18:") && err.contains("green"),
        "diagnostics printed: {err}"
    );
    assert_eq!(dir.read("route.yaml"), ROUTE, "file untouched");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
