//! Listener certificates reload from disk: the certificate and key files of the live
//! generation are watched (their directories, so atomic renames and symlink swaps are seen),
//! and after a quiet period every certificate with a file in a changed directory is read
//! again. A pair that loads and differs from the one in use is swapped into its [`CertSlot`],
//! so new handshakes present it at once; a bad or half-written file is logged (file and
//! reason) and the previous key keeps serving, until the next change. The watch follows
//! generation swaps: when the live generation changes, the set of watched files is rebuilt
//! and the files are read once more, so a change made while the generation compiled is not
//! missed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use thiserror::Error;
use tracing::{info, warn};

use crate::live::LiveConfig;
use crate::runtime::Runtime;
use crate::tls::{load_certified_key, CertSlot};

/// Quiet time after the last change before the files are read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the thread looks for a new generation when no file changes.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum CertWatchError {
    #[error("cannot watch certificate files: {0}")]
    Notify(#[from] notify::Error),
    #[error("cannot start the certificate watch thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the certificate watch thread for `live`. It ends when `live` is dropped.
pub fn start(live: &Arc<LiveConfig>) -> Result<(), CertWatchError> {
    let (tx, rx) = mpsc::channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    let weak = Arc::downgrade(live);
    std::thread::Builder::new()
        .name("switchyard-certwatch".into())
        .spawn(move || run(weak, watcher, rx))
        .map_err(CertWatchError::Thread)?;
    Ok(())
}

/// The watched certificates of one generation.
struct Armed {
    runtime: Arc<Runtime>,
    slots: Vec<Arc<CertSlot>>,
    /// Watched directory -> slots with a file in it.
    dirs: BTreeMap<PathBuf, Vec<usize>>,
}

fn run(
    live: Weak<LiveConfig>,
    mut watcher: RecommendedWatcher,
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
) {
    let mut armed: Option<Armed> = None;
    let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut due: Option<Instant> = None;
    loop {
        let Some(live) = live.upgrade() else { return };
        let current = live.current();
        drop(live);
        if armed
            .as_ref()
            .is_none_or(|a| !Arc::ptr_eq(&a.runtime, &current))
        {
            armed = Some(arm(&mut watcher, armed.take(), current));
        }
        let Some(a) = &armed else { continue };
        let wait = due.map_or(TICK, |d| {
            d.saturating_duration_since(Instant::now()).min(TICK)
        });
        match rx.recv_timeout(wait) {
            Ok(Ok(event)) => {
                if matches!(event.kind, EventKind::Access(_)) {
                    continue;
                }
                for path in &event.paths {
                    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    if a.dirs.contains_key(&dir) {
                        changed.insert(dir);
                        due = Some(Instant::now() + DEBOUNCE);
                    }
                }
            }
            Ok(Err(e)) => warn!(error = %e, "certificate watch error"),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if due.is_some_and(|d| Instant::now() >= d) {
            due = None;
            let dirs = std::mem::take(&mut changed);
            reload(&a.slots, &a.dirs, &dirs);
        }
    }
}

/// Watches the directories of `runtime`'s certificate files, unwatching those no longer used.
fn arm(watcher: &mut RecommendedWatcher, old: Option<Armed>, runtime: Arc<Runtime>) -> Armed {
    let slots: Vec<Arc<CertSlot>> = runtime
        .ports()
        .iter()
        .filter_map(|p| p.certificates.as_ref())
        .flat_map(|c| c.slots().iter().cloned())
        .collect();
    let dirs = index(&slots);
    let old_dirs: BTreeSet<PathBuf> = old
        .map(|a| a.dirs.into_keys().collect())
        .unwrap_or_default();
    for dir in old_dirs.iter().filter(|d| !dirs.contains_key(*d)) {
        let _ = watcher.unwatch(dir);
    }
    for dir in dirs.keys().filter(|d| !old_dirs.contains(*d)) {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => info!(dir = %dir.display(), "watching certificate files"),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch certificate files; they reload only with a new generation")
            }
        }
    }
    // Files may have changed between the generation's compile and this watch: read them once.
    reload(&slots, &dirs, &dirs.keys().cloned().collect());
    Armed {
        runtime,
        slots,
        dirs,
    }
}

/// Directory -> the slots with a file in it.
fn index(slots: &[Arc<CertSlot>]) -> BTreeMap<PathBuf, Vec<usize>> {
    let mut dirs: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, slot) in slots.iter().enumerate() {
        for file in [&slot.files.cert_file, &slot.files.key_file] {
            let list = dirs.entry(absolute_dir(file)).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    dirs
}

/// The absolute directory of `file`, as notify reports event paths.
fn absolute_dir(file: &Path) -> PathBuf {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or(abs)
}

/// Reads again every certificate with a file in `dirs`, swapping in those that changed.
fn reload(
    slots: &[Arc<CertSlot>],
    index: &BTreeMap<PathBuf, Vec<usize>>,
    dirs: &BTreeSet<PathBuf>,
) {
    let mut todo: BTreeSet<usize> = BTreeSet::new();
    for dir in dirs {
        todo.extend(index.get(dir).into_iter().flatten().copied());
    }
    for i in todo {
        let slot = &slots[i];
        let files = &slot.files;
        match load_certified_key(&files.cert_file, &files.key_file) {
            Ok(key) => {
                if key.cert == slot.current().cert {
                    continue;
                }
                slot.replace(key);
                info!(
                    certificate = %files.id,
                    cert_file = %files.cert_file.display(),
                    "listener certificate reloaded from disk"
                );
            }
            Err(e) => warn!(
                certificate = %files.id,
                error = %e,
                "listener certificate files changed but do not load; still serving the previous certificate"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{CertificateFiles, ObjRef};

    fn write_pair(dir: &Path, name: &str) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    }

    #[test]
    fn reload_swaps_good_pairs_and_keeps_the_old_key_on_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "one.test");
        let files = CertificateFiles {
            id: ObjRef::new("default", "site"),
            cert_file: dir.path().join("tls.crt"),
            key_file: dir.path().join("tls.key"),
        };
        let slots = vec![CertSlot::load(&files).unwrap()];
        let slot = &slots[0];
        let first = slot.current();
        let index = index(&slots);
        let changed = BTreeSet::from([absolute_dir(&files.key_file)]);
        let reload_now = || reload(&slots, &index, &changed);
        // An unrelated directory changing reloads nothing.
        reload(
            &slots,
            &index,
            &BTreeSet::from([PathBuf::from("/elsewhere")]),
        );
        assert!(Arc::ptr_eq(&slot.current(), &first));
        std::fs::write(dir.path().join("tls.crt"), b"garbage").unwrap();
        reload_now();
        assert!(
            Arc::ptr_eq(&slot.current(), &first),
            "a bad file keeps the old key"
        );
        write_pair(dir.path(), "two.test");
        reload_now();
        assert_ne!(slot.current().cert, first.cert, "a good pair is swapped in");
    }
}
