//! The deploy files against the real processes: the gateway's admin listener answers the probe
//! (and scrape) paths the Kubernetes manifests use, and the control service starts from the
//! control Deployment's own arguments with the Secret's tokens and the ConfigMap's route files,
//! publishes them, and exports the metrics the dashboard queries.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use serde_yaml::Value;
use switchyard_gateway::metrics::catalogue::{self, MetricKind};
use switchyard_testkit::{free_port, ConfigDir, ControlProcess, GatewayProcess};

use crate::control_metrics::CONTROL_METRICS;
use crate::k8s;
use crate::yaml::{at, labels_at, seq_at, str_at};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// The admin paths the gateway Deployments probe (readiness, liveness) or scrape.
fn gateway_paths() -> (BTreeSet<String>, BTreeSet<String>) {
    let (_, docs) = k8s::manifests();
    let mut probes = BTreeSet::new();
    let mut scrape = BTreeSet::new();
    for (d, c, args) in k8s::switchyard_containers(&docs) {
        if args.sub != "gateway" {
            continue;
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            probes.insert(str_at(c, &format!("{probe}.httpGet.path"), d).to_string());
        }
        let ann = labels_at(&d.value, "spec.template.metadata.annotations", d);
        scrape.extend(ann.get("prometheus.io/path").cloned());
    }
    assert!(!probes.is_empty(), "the gateway Deployments have probes");
    (probes, scrape)
}

/// A standalone gateway with one listener on a free port.
async fn gateway() -> (GatewayProcess, ConfigDir) {
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: probe}}\nspec:\n  gatewayClassName: switchyard\n  addresses: [{{type: IPAddress, value: 127.0.0.1}}]\n  listeners: [{{name: http, port: {port}, protocol: HTTP}}]\n"
        ),
    );
    let args: Vec<String> = [
        "gateway".to_string(),
        "--config-dir".into(),
        dir.path().display().to_string(),
        "--admin".into(),
        format!("127.0.0.1:{}", free_port()),
        "--threads".into(),
        "1".into(),
    ]
    .into();
    (GatewayProcess::start(bin(), &args).await, dir)
}

#[tokio::test]
async fn the_gateway_admin_answers_the_probe_paths_of_the_manifests() {
    let (probes, _) = gateway_paths();
    let (gw, _dir) = gateway().await;
    for path in &probes {
        let r = gw
            .admin_get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", gw.logs()));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET {path} on the admin listener: {}",
            r.text()
        );
    }
}

/// The scrape path of the manifests serves catalogue metrics of the right types.
#[tokio::test]
async fn the_gateway_admin_serves_the_scrape_path_with_catalogue_metrics() {
    let (_, scrape) = gateway_paths();
    let (gw, _dir) = gateway().await;
    for path in &scrape {
        let r = gw
            .admin_get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", gw.logs()));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET {path} on the admin listener: {}",
            r.text()
        );
        let body = r.text();
        let mut families = 0;
        for line in body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
            if !name.starts_with("switchyard_") {
                continue;
            }
            let def = catalogue::find(name)
                .unwrap_or_else(|| panic!("{path}: {name} is not in the catalogue"));
            let want = match def.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            assert_eq!(kind, want, "{name}");
            families += 1;
        }
        assert!(families > 0, "{path}: no switchyard_ metrics:\n{body}");
    }
}

#[tokio::test]
async fn the_control_service_runs_the_deployments_args_with_the_secret_and_the_configmap() {
    let (_, docs) = k8s::manifests();
    let set = k8s::route_set(&docs);
    let containers = k8s::switchyard_containers(&docs);
    let (d, c, _) = containers
        .iter()
        .find(|(_, _, a)| a.sub == "control")
        .expect("a control container");
    let secret = docs
        .iter()
        .find(|s| at(&s.value, "kind").and_then(Value::as_str) == Some("Secret"))
        .expect("a Secret");
    let tokens = labels_at(&secret.value, "stringData", secret);
    let mut env = Vec::new();
    for e in seq_at(c, "env") {
        let name = str_at(e, "name", d);
        let value = match at(e, "valueFrom.secretKeyRef.key").and_then(Value::as_str) {
            Some(key) => tokens[key].clone(),
            None => at(e, "value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        env.push((name.to_string(), value));
    }
    // The Deployment's own arguments, with the paths and address of this machine.
    let state = tempfile::tempdir().expect("a state dir");
    let listen = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = crate::yaml::strings(seq_at(c, "args"), d)
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--config-dir", _)) => format!("--config-dir={}", set.dir.display()),
            Some(("--state-dir", _)) => format!("--state-dir={}", state.path().display()),
            Some(("--listen", _)) => format!("--listen={listen}"),
            _ => a,
        })
        .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let control = ControlProcess::start(bin(), &args, &env_refs).await;
    let status = control
        .wait_status(
            "the ConfigMap's routes published",
            Duration::from_secs(20),
            |s| s["generation"].as_u64().is_some_and(|g| g >= 1),
            || control.logs(),
        )
        .await;
    assert!(
        status["last_rejection"].is_null(),
        "the ConfigMap's routes were rejected: {status:#}"
    );

    let metrics = control.metrics().await;
    let mut seen = BTreeSet::new();
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        let (_, want, _) = CONTROL_METRICS
            .iter()
            .find(|m| m.0 == name)
            .unwrap_or_else(|| panic!("/metrics has {name}, which the dashboard's table lacks"));
        assert_eq!(kind, *want, "{name}");
        seen.insert(name.to_string());
    }
    assert!(
        seen.contains("switchyard_control_generation"),
        "/metrics:\n{metrics}"
    );
}

/// Writes one version of a ConfigMap the way the kubelet does: the files in a timestamped
/// hidden directory (which the loader skips until `..data` points at it), modified `age` ago
/// (the kubelet writes each version when it syncs it).
fn write_version(mount: &Path, version: &str, files: &[(String, String)], age: Duration) {
    let dir = mount.join(format!("..{version}"));
    std::fs::create_dir(&dir).expect("a version dir");
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a key");
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open a key");
        file.set_modified(std::time::SystemTime::now() - age)
            .expect("set its mtime");
    }
}

/// The kubelet's swap: a new `..data` link renamed over the old one, and one symlink per key
/// through `..data` (created once).
fn swap_to(mount: &Path, version: &str, files: &[(String, String)]) {
    let tmp = mount.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("link ..data_tmp");
    std::fs::rename(&tmp, mount.join("..data")).expect("rename over ..data");
    for (name, _) in files {
        let link = mount.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link a key");
        }
    }
}

#[tokio::test]
async fn a_configmap_update_swapped_in_by_symlink_is_published() {
    let (_, docs) = k8s::manifests();
    let set = k8s::route_set(&docs);
    let files: Vec<(String, String)> = switchyard_config::read_dir(&set.dir)
        .expect("read the ConfigMap's files")
        .into_iter()
        .map(|f| {
            (
                f.path
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned(),
                f.contents,
            )
        })
        .collect();
    let edited: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.replace("weight: 90", "weight: 80")
                    .replace("weight: 10", "weight: 20"),
            )
        })
        .collect();
    assert_ne!(
        edited, files,
        "the ConfigMap's canary weights 90/10 are what this test edits"
    );
    // Both versions are on disk before the control service starts, so that the only event
    // of the update is the swap itself (the kubelet writes the new version just before it,
    // and a watch on a brand-new directory may miss those writes).
    let mount = tempfile::tempdir().expect("a mount dir");
    write_version(
        mount.path(),
        "2026_11_21_00_00_00.1",
        &files,
        Duration::from_secs(60),
    );
    write_version(
        mount.path(),
        "2026_11_21_00_01_00.2",
        &edited,
        Duration::ZERO,
    );
    swap_to(mount.path(), "2026_11_21_00_00_00.1", &files);
    let state = tempfile::tempdir().expect("a state dir");
    let args: Vec<String> = [
        "control".to_string(),
        format!("--config-dir={}", mount.path().display()),
        format!("--state-dir={}", state.path().display()),
        format!("--listen=127.0.0.1:{}", free_port()),
    ]
    .into();
    let env = [
        ("SWITCHYARD_TOKEN", "op-token"),
        ("SWITCHYARD_GATEWAY_TOKEN", "gw-token"),
    ];
    let control = ControlProcess::start(bin(), &args, &env).await;
    let first = control
        .wait_status(
            "the mounted routes published",
            Duration::from_secs(20),
            |s| s["generation"].as_u64().is_some(),
            || control.logs(),
        )
        .await["generation"]
        .as_u64()
        .expect("a generation");

    swap_to(mount.path(), "2026_11_21_00_01_00.2", &edited);
    let status = control
        .wait_status(
            "the swapped-in ConfigMap published",
            Duration::from_secs(10),
            |s| s["generation"].as_u64().is_some_and(|g| g > first),
            || control.logs(),
        )
        .await;
    assert!(status["last_rejection"].is_null(), "{status:#}");
}
