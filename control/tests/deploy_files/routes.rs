//! The route files a deploy ships (the Kubernetes ConfigMap's entries, the compose example's
//! directory), built with the real validator, `switchyard_config::build`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use switchyard_config::{Diagnostics, GatewayConfig, Generation, SourceFile};
use tempfile::TempDir;

/// A built route-file set and the directory it was read from (for the live tests).
pub struct RouteSet {
    pub generation: Generation,
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
}

impl RouteSet {
    /// The Gateway a gateway started with `--zone zone` serves: the only one with that zone.
    pub fn gateway_for_zone(&self, zone: &str, ctx: &str) -> &GatewayConfig {
        let found: Vec<&GatewayConfig> = self
            .generation
            .gateways
            .iter()
            .filter(|g| g.zone.as_deref() == Some(zone))
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "{ctx}: --zone {zone} needs exactly one Gateway labelled switchyard.dev/zone: {zone} in {}, found {}",
                self.dir.display(),
                found.len()
            ),
        }
    }

    /// The zones of the set's Gateways.
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self
            .generation
            .gateways
            .iter()
            .filter_map(|g| g.zone.clone())
            .collect();
        z.sort();
        z.dedup();
        z
    }
}

/// A Gateway's listeners by name, with their ports.
pub fn listener_ports(gw: &GatewayConfig) -> BTreeMap<String, u16> {
    gw.ports
        .iter()
        .flat_map(|p| p.listeners.iter().map(move |l| (l.name.clone(), p.port)))
        .collect()
}

/// Reads and builds a directory of route files; panics with every diagnostic.
/// `origin` names where the files come from in the deploy files, for the error message.
pub fn build_dir(dir: &Path, origin: &str) -> RouteSet {
    match build(dir) {
        Ok(generation) => RouteSet {
            generation,
            dir: dir.to_path_buf(),
            _tmp: None,
        },
        Err(diags) => panic!(
            "{origin}: the route files do not validate (read from {}):\n{diags}",
            dir.display()
        ),
    }
}

/// Writes `files` (name, contents) to a temporary directory and builds it.
pub fn build_files(files: &BTreeMap<String, String>, origin: &str) -> RouteSet {
    let tmp = tempfile::Builder::new()
        .prefix("switchyard-deploy-routes-")
        .tempdir()
        .expect("create a temporary route dir");
    for (name, text) in files {
        std::fs::write(tmp.path().join(name), text).expect("write a route file");
    }
    let mut set = build_dir(tmp.path(), origin);
    if set._tmp.is_none() {
        set._tmp = Some(tmp);
    }
    set
}

fn build(dir: &Path) -> Result<Generation, Diagnostics> {
    let files: Vec<SourceFile> = switchyard_config::read_dir(dir)?;
    switchyard_config::build(&files)
}
