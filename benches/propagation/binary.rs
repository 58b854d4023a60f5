//! Finding the `switchyard` binary the bench runs: `SWITCHYARD_BIN`, or the release build next
//! to the bench (built when missing, with a warning when older than its sources).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// `SWITCHYARD_BIN`, or `<target>/release/switchyard` next to this bench's own `deps/` dir,
/// built with `cargo build --release -p switchyard` when it is missing.
pub(crate) fn switchyard_bin(root: &Path) -> PathBuf {
    if let Ok(bin) = std::env::var("SWITCHYARD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/release/deps/propagation-HASH
    let release = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target/release"));
    let bin = release.join("switchyard");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        println!(
            "propagation: {} is missing; running `cargo build --release -p switchyard`",
            bin.display()
        );
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "switchyard"])
            .current_dir(root)
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --release -p switchyard: {status}"
        );
        assert!(
            bin.exists(),
            "{} still missing after the build",
            bin.display()
        );
    } else if stale(root, &bin) {
        println!(
            "propagation: WARNING {} is older than the sources; run `cargo build --release -p switchyard`",
            bin.display()
        );
    }
    bin
}

/// Whether a file under config/, gateway/ or control/ `src` is newer than `bin`.
pub(crate) fn stale(root: &Path, bin: &Path) -> bool {
    match (
        fs::metadata(bin).and_then(|m| m.modified()),
        newest_source(root),
    ) {
        (Ok(built), Some(newest)) => newest > built,
        _ => false,
    }
}

/// The newest mtime among the binary's sources (config, gateway, control).
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>, depth: usize) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 8 {
                walk(&path, newest, depth + 1);
            } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(Some(m));
            }
        }
    }
    let mut newest = None;
    for dir in ["config/src", "gateway/src", "control/src"] {
        walk(&root.join(dir), &mut newest, 0);
    }
    newest
}
