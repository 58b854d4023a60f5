//! Route-file watching (standalone gateways and the control service): a debounced, recursive watch of the route directory that
//! re-reads and re-validates the whole set on every change and hands valid sets to the live
//! configuration. The read is retried until the files stop changing, so a file caught
//! mid-write is never taken for the whole set, and an empty file is given time to fill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode, DebounceEventResult, Debouncer};
use switchyard_config::{list_dir, Diagnostics, Generation};
use thiserror::Error;
use tracing::{info, warn};

use crate::live::LiveConfig;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        source: notify_debouncer_mini::notify::Error,
    },
}

/// How often a read is retried while the files keep changing under it.
const STABLE_READ_ATTEMPTS: usize = 5;

/// Size and modification time of every file in the set, to detect writes during a read.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(paths) = list_dir(dir) else {
        return Vec::new();
    };
    paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

/// Reads and builds the whole set, retrying while files change under the read.
pub fn load_stable(dir: &Path, settle: Duration) -> Result<Generation, Diagnostics> {
    read_stable(dir, settle, || switchyard_config::build_dir(dir))
}

/// Runs `read` (which reads `dir`) until the files did not change during the read, at most
/// a few times, `settle` apart; returns the last result.
pub fn read_stable<T>(dir: &Path, settle: Duration, mut read: impl FnMut() -> T) -> T {
    let mut attempt = 1;
    loop {
        let before = fingerprint(dir);
        let result = read();
        // An empty file is most often one being rewritten in place (truncated, not yet
        // written): give it the same settling time as a file that changed during the read.
        let settled = !before.iter().any(|(_, len, _)| *len == 0) && fingerprint(dir) == before;
        if settled || attempt >= STABLE_READ_ATTEMPTS {
            return result;
        }
        attempt += 1;
        std::thread::sleep(settle);
    }
}

/// Revalidates `dir` and applies it to `live`; errors are logged and the last good
/// generation keeps serving.
pub fn reload(dir: &Path, live: &LiveConfig, settle: Duration) {
    match load_stable(dir, settle) {
        Ok(generation) => match live.apply(generation) {
            Ok(Some(n)) => info!(generation = n, dir = %dir.display(), "reloaded route files"),
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "new generation failed to compile; keeping the last good one")
            }
        },
        Err(diags) => {
            for d in &diags.0 {
                warn!("{d}");
            }
            warn!(
                errors = diags.0.len(),
                "route files rejected; keeping the last good generation"
            );
            live.reject(diags.to_string());
        }
    }
}

/// Keeps the watch alive; dropping it stops watching.
pub struct DirWatcher {
    _debouncer: Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
}

/// Watches `dir` recursively and reloads `live` after each burst of changes.
pub fn watch(
    dir: PathBuf,
    live: Arc<LiveConfig>,
    debounce: Duration,
) -> Result<DirWatcher, WatchError> {
    let watch_dir = dir.clone();
    watch_changes(dir, debounce, move || reload(&watch_dir, &live, debounce))
}

/// Watches `dir` recursively and calls `on_change` (on the watcher's thread) after each burst
/// of changes to route files.
pub fn watch_changes(
    dir: PathBuf,
    debounce: Duration,
    on_change: impl Fn() + Send + 'static,
) -> Result<DirWatcher, WatchError> {
    let mut debouncer = new_debouncer(debounce, move |res: DebounceEventResult| match res {
        Ok(events) => {
            if events.iter().any(|e| is_route_file(&e.path)) {
                on_change();
            }
        }
        Err(e) => warn!(error = %e, "file watch error"),
    })
    .map_err(|source| WatchError::Watch {
        path: dir.display().to_string(),
        source,
    })?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            path: dir.display().to_string(),
            source,
        })?;
    Ok(DirWatcher {
        _debouncer: debouncer,
    })
}

/// Route files and directories (a removed directory may have held route files).
fn is_route_file(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml") | Some("yml") => true,
        Some(_) => false,
        None => true,
    }
}
