//! Route-file watching (standalone gateways and the control service): a debounced, recursive watch of the route directory that
//! re-reads and re-validates the whole set on every change and hands valid sets to the live
//! configuration. The read is retried until the files stop changing, so a file caught
//! mid-write is never taken for the whole set, and an empty file is given time to fill.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use std::sync::mpsc;

use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;

use switchyard_config::{list_dir, Builder, Diagnostics, Generation, SourceError, SourceFile};
use thiserror::Error;
use tracing::{info, warn};

use crate::live::LiveConfig;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch { path: String, source: notify::Error },
    #[error("cannot start the watch thread: {0}")]
    Thread(String),
}

/// How often a read is retried while the files keep changing under it.
const STABLE_READ_ATTEMPTS: usize = 5;

/// Path, size and modification time of every file in a set.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The set's [`Fingerprint`], to detect writes during a read.
fn fingerprint(dir: &Path) -> Fingerprint {
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

/// A file whose modification time is this close to the read that saw it may still change
/// without its size or time changing visibly (coarse file-system clocks): it is read again.
const RACY: Duration = Duration::from_millis(50);

/// Reads a route directory, reusing the contents of files whose size and modification time
/// did not change since the last read (10,000 files are read in milliseconds instead of a
/// quarter of a second). A file modified just before a read is never reused from it.
#[derive(Debug, Default)]
pub struct DirReader {
    files: HashMap<PathBuf, CachedFile>,
}

#[derive(Debug)]
struct CachedFile {
    len: u64,
    modified: SystemTime,
    contents: String,
}

impl DirReader {
    /// [`read_dir`](switchyard_config::read_dir), with the reuse, retried (`settle` apart) while
    /// files change under the read: the sizes and times seen while reading are checked once
    /// more afterwards. An empty file is most often one being rewritten in place, so it gets
    /// the same settling time.
    pub fn read_stable(
        &mut self,
        dir: &Path,
        settle: Duration,
    ) -> Result<Vec<SourceFile>, SourceError> {
        let mut attempt = 1;
        loop {
            let (files, seen) = self.read(dir)?;
            let settled = !seen.iter().any(|(_, len, _)| *len == 0) && fingerprint(dir) == seen;
            if settled || attempt >= STABLE_READ_ATTEMPTS {
                return Ok(files);
            }
            attempt += 1;
            std::thread::sleep(settle);
        }
    }

    /// Reads the set; also returns the fingerprint taken while reading.
    fn read(&mut self, dir: &Path) -> Result<(Vec<SourceFile>, Fingerprint), SourceError> {
        let paths = list_dir(dir)?;
        let read_at = SystemTime::now();
        let mut next = HashMap::with_capacity(paths.len());
        let mut files = Vec::with_capacity(paths.len());
        let mut seen = Vec::with_capacity(paths.len());
        for path in paths {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            seen.push((path.clone(), len, modified));
            let reusable = self.files.remove(&path).filter(|c| {
                Some(c.modified) == modified && c.len == len && c.modified + RACY < read_at
            });
            let contents = match reusable {
                Some(c) => c.contents,
                None => {
                    let bytes = std::fs::read(&path).map_err(|source| SourceError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                    String::from_utf8(bytes)
                        .map_err(|_| SourceError::NotUtf8 { path: path.clone() })?
                }
            };
            if let Some(modified) = modified {
                let cached = CachedFile {
                    len,
                    modified,
                    contents: contents.clone(),
                };
                next.insert(path.clone(), cached);
            }
            files.push(SourceFile { path, contents });
        }
        self.files = next;
        Ok((files, seen))
    }
}

/// Reads and builds a route directory incrementally: files unchanged since the last load are
/// neither read (the [`DirReader`]) nor parsed (the [`Builder`]) again. The standalone gateway
/// and the control service each keep one.
#[derive(Debug, Default)]
pub struct Loader {
    pub reader: DirReader,
    pub builder: Builder,
}

impl Loader {
    /// Reads the set once stable and builds it; a read error is a diagnostic naming the path.
    pub fn load(&mut self, dir: &Path, settle: Duration) -> Result<Generation, Diagnostics> {
        let files = self.reader.read_stable(dir, settle)?;
        self.builder.build(&files)
    }
}

/// Revalidates `dir` and applies it to `live`; errors are logged and the last good
/// generation keeps serving.
pub fn reload(dir: &Path, live: &LiveConfig, settle: Duration, loader: &mut Loader) {
    match loader.load(dir, settle) {
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

/// Keeps the watch alive; dropping it stops watching (and ends the debounce thread).
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` recursively and reloads `live` after each burst of changes, with the
/// `loader` that loaded the first generation.
pub fn watch(
    dir: PathBuf,
    live: Arc<LiveConfig>,
    debounce: Duration,
    loader: Loader,
) -> Result<DirWatcher, WatchError> {
    let watch_dir = dir.clone();
    let loader = Mutex::new(loader);
    watch_changes(dir, debounce, move || {
        let mut loader = loader.lock().unwrap_or_else(PoisonError::into_inner);
        reload(&watch_dir, &live, debounce, &mut loader)
    })
}

/// Watches `dir` recursively and calls `on_change` (on the watcher's own thread) once route
/// files have been quiet for `debounce` after a change, or at the latest after
/// [`MAX_DEBOUNCE_ROUNDS`] debounce periods of continuous changes.
///
/// Only changes count: inotify also reports opens and reads (notify's `Access` events), and
/// counting those would make every re-read of the set trigger the next one.
pub fn watch_changes(
    dir: PathBuf,
    debounce: Duration,
    on_change: impl Fn() + Send + 'static,
) -> Result<DirWatcher, WatchError> {
    let watch_err = |source| WatchError::Watch {
        path: dir.display().to_string(),
        source,
    };
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if is_change(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "file watch error"),
        })
        .map_err(watch_err)?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(watch_err)?;
    std::thread::Builder::new()
        .name("switchyard-watch".into())
        .spawn(move || {
            // Ends when the watcher (and with it the sender) is dropped.
            while rx.recv().is_ok() {
                for _ in 0..MAX_DEBOUNCE_ROUNDS {
                    match rx.recv_timeout(debounce) {
                        Ok(()) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                // Events that arrived during the wait are covered by this read.
                while rx.try_recv().is_ok() {}
                on_change();
            }
        })
        .map_err(|e| WatchError::Thread(e.to_string()))?;
    Ok(DirWatcher { _watcher: watcher })
}

/// A burst of changes longer than this many debounce periods is read anyway.
pub const MAX_DEBOUNCE_ROUNDS: usize = 20;

/// A create, modify or remove of a route file (or of a directory, or a rescan request).
fn is_change(event: &notify::Event) -> bool {
    use notify::EventKind;
    match event.kind {
        EventKind::Access(_) => false,
        EventKind::Other => true,
        _ => event.paths.is_empty() || event.paths.iter().any(|p| is_route_file(p)),
    }
}

/// Route files and directories (a removed directory may have held route files), and the
/// kubelet's ConfigMap links and directories (`..data`, `..data_tmp`, `..2026_11_21_...`):
/// a ConfigMap update is one rename of `..data`, whose name has an "extension".
fn is_route_file(path: &Path) -> bool {
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".."))
    {
        return true;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml") | Some("yml") => true,
        Some(_) => false,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_and_reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        use notify::{Event, EventKind};
        let yaml = PathBuf::from("/r/routes.yaml");
        let ev = |kind| Event::new(kind).add_path(yaml.clone());
        assert!(!is_change(&ev(EventKind::Access(AccessKind::Open(
            AccessMode::Read
        )))));
        assert!(!is_change(&ev(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(is_change(&ev(EventKind::Modify(ModifyKind::Any))));
        assert!(is_change(&ev(EventKind::Create(CreateKind::File))));
        let other = Event::new(EventKind::Modify(ModifyKind::Any)).add_path("/r/notes.md".into());
        assert!(!is_change(&other));
        // A ConfigMap update: the kubelet renames `..data_tmp` over `..data`.
        let swap = Event::new(EventKind::Modify(ModifyKind::Name(
            notify::event::RenameMode::Both,
        )))
        .add_path("/r/..data_tmp".into())
        .add_path("/r/..data".into());
        assert!(is_change(&swap));
    }

    #[test]
    fn the_reader_reuses_stable_files_and_sees_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "a: 1\n").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "b: 1\n").unwrap();
        let mut reader = DirReader::default();
        let (first, _) = reader.read(dir.path()).unwrap();
        assert_eq!(first.len(), 2);
        // Same size, written right after the read: a racy file is read again.
        std::fs::write(&a, "a: 2\n").unwrap();
        let (second, _) = reader.read(dir.path()).unwrap();
        assert_eq!(second[0].contents, "a: 2\n");
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        std::fs::write(dir.path().join("c.yaml"), "c: 1\n").unwrap();
        let (third, _) = reader.read(dir.path()).unwrap();
        let names: Vec<_> = third
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.yaml", "c.yaml"]);
        assert_eq!(third, switchyard_config::read_dir(dir.path()).unwrap());
    }
}
