//! The on-disk form of a CA dir: `root.pem` and `root.key` (mode 0600) hold the current root
//! when the CA generated it, `next.pem` and `next.key` a staged rotation's root, `bundle.json`
//! the trust domain, the bundle version, the current and staged roots and the retired roots
//! still in the bundle with the time each is dropped, and
//! `bundle.pem` the bundle itself for operators. Every write is a temp file plus a rename, so
//! readers (the offline `switchyard cert` commands, a gateway's `--mesh-ca-dir`) never see a
//! torn file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{file_error, PkiError};

pub const ROOT_CERT: &str = "root.pem";
pub const ROOT_KEY: &str = "root.key";
/// A staged root: in the bundle already, signing from `NextRoot::activate_at_unix`.
pub const NEXT_CERT: &str = "next.pem";
pub const NEXT_KEY: &str = "next.key";
pub const STATE: &str = "bundle.json";
pub const BUNDLE_PEM: &str = "bundle.pem";

/// `bundle.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub trust_domain: String,
    /// Bumped whenever the bundle's contents change.
    pub version: u64,
    /// The root leaves are signed by (PEM).
    pub current: String,
    /// Older roots still trusted until `drop_at_unix`.
    #[serde(default)]
    pub retired: Vec<RetiredRoot>,
    /// True when the root comes from operator-supplied files (not rotated here).
    #[serde(default)]
    pub operator_root: bool,
    /// A rotation in progress: the new root (next.pem, next.key) is trusted at once and signs
    /// from `activate_at_unix`, when the current one retires for `overlap_secs`.
    #[serde(default)]
    pub next: Option<NextRoot>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextRoot {
    pub pem: String,
    pub activate_at_unix: u64,
    pub overlap_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetiredRoot {
    pub pem: String,
    pub drop_at_unix: u64,
}

pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Reads `bundle.json`; `Ok(None)` when the dir has none yet.
pub fn read_state(dir: &Path) -> Result<Option<State>, PkiError> {
    let p = path(dir, STATE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&p, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| file_error(&p, format!("not a CA bundle state: {e}")))
}

/// Writes `bundle.json` and `bundle.pem` (the roots in `bundle_pem`).
pub fn write_state(dir: &Path, state: &State, bundle_pem: &str) -> Result<(), PkiError> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| file_error(dir, e))?;
    write_atomic(&path(dir, BUNDLE_PEM), bundle_pem.as_bytes(), 0o644)?;
    write_atomic(&path(dir, STATE), &json, 0o644)
}

/// Writes `bytes` to `target` through a temp file in the same dir (created with `mode`) and a
/// rename.
pub fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_error(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| file_error(target, e))
}
