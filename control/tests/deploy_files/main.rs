//! Offline validation of the deploy files in `deploy/`: the Kubernetes manifests, the compose
//! example, the systemd units, the Dockerfile and the Grafana dashboard must parse, carry the
//! fields their kinds need, and agree with the code: command lines use flags the real binary
//! accepts, ports match the flags and the Gateway listeners of the route files they ship
//! (validated by `switchyard_config`), probe paths answer on a real gateway, and the
//! dashboard's queries name only metrics (and labels) of the catalogue.

mod cli;
mod compose;
mod control_metrics;
mod dashboard;
mod docker;
mod k8s;
mod k8s_agree;
mod live;
mod promql;
mod routes;
mod systemd;
mod yaml;

use std::path::PathBuf;

/// The image every deploy file runs: the name in `deploy/docker/Dockerfile`'s build command,
/// tagged with the workspace version.
pub fn image() -> String {
    format!("switchyard/switchyard:{}", env!("CARGO_PKG_VERSION"))
}

/// `deploy/` in the repository.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Reads a file under `deploy/`, naming it on failure.
pub fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Pingora's `graceful_shutdown_timeout_seconds` as the gateway sets it (gateway/src/server.rs):
/// after the grace period, the runtimes get this long to finish before the process exits.
pub const RUNTIME_SHUTDOWN_S: u64 = 5;
