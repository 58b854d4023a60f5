//! The control service's state directory: the generation counter, written before a number is
//! used so a restart never reuses one, and the last K generations (metadata and the full file
//! set), kept for rollback and for restarting without re-reading history.
//!
//! Layout: `control.json` (`{"last_generation": N}`), and `generations/N.meta.json` plus
//! `generations/N.files.json` per kept generation. Every write is atomic (temporary file,
//! fsync, rename).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_config::SourceFile;
use switchyard_gateway::protocol::WireFile;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("generation {0} is not kept (see `switchyard status` for the history)")]
    Unknown(u64),
}

/// What is remembered about a published generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub generation: u64,
    /// Digest of the published set.
    pub digest: String,
    /// Digest of the files on disk when it was published (differs from `digest` for a
    /// rollback, which publishes old files while the disk holds newer ones).
    pub disk_digest: String,
    pub published_at_unix_ms: u64,
    pub saved_at_unix_ms: u64,
    pub changed_files: Vec<String>,
    pub rollback_of: Option<u64>,
    /// Staged but never committed.
    #[serde(default)]
    pub abandoned: bool,
}

#[derive(Serialize, Deserialize)]
struct Counter {
    last_generation: u64,
}

pub struct Store {
    dir: PathBuf,
    keep: usize,
    last_generation: u64,
    /// Kept generations, oldest first.
    history: Vec<Meta>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Opens (creating) the state directory and reads the counter and history metadata.
    pub fn open(dir: &Path, keep: usize) -> Result<Store, StoreError> {
        let generations = dir.join("generations");
        fs::create_dir_all(&generations).map_err(io_err(&generations))?;
        let counter = dir.join("control.json");
        let last_generation = if counter.exists() {
            read_json::<Counter>(&counter)?.last_generation
        } else {
            0
        };
        let mut history = Vec::new();
        for entry in fs::read_dir(&generations).map_err(io_err(&generations))? {
            let path = entry.map_err(io_err(&generations))?.path();
            let is_meta = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".meta.json") && !n.starts_with('.'));
            if is_meta {
                match read_json::<Meta>(&path) {
                    Ok(meta) => history.push(meta),
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable history entry"),
                }
            }
        }
        history.sort_by_key(|m| m.generation);
        // The counter is written first, so it can only be ahead of the history; take the
        // larger anyway, in case the counter file was restored from an older backup.
        let last_generation = last_generation.max(history.last().map_or(0, |m| m.generation));
        Ok(Store {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
            last_generation,
            history,
        })
    }

    /// Reserves the next generation number, durably, before it is used.
    pub fn next_number(&mut self) -> Result<u64, StoreError> {
        let next = self.last_generation + 1;
        let bytes = serde_json::to_vec(&Counter {
            last_generation: next,
        })
        .map_err(|e| StoreError::Format {
            path: "control.json".into(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join("control.json"), &bytes)?;
        self.last_generation = next;
        Ok(next)
    }

    #[cfg(test)]
    pub fn last_number(&self) -> u64 {
        self.last_generation
    }

    /// Kept generations, oldest first.
    pub fn history(&self) -> &[Meta] {
        &self.history
    }

    fn meta_path(&self, n: u64) -> PathBuf {
        self.dir.join("generations").join(format!("{n}.meta.json"))
    }

    fn files_path(&self, n: u64) -> PathBuf {
        self.dir.join("generations").join(format!("{n}.files.json"))
    }

    /// Records a published generation and its files, dropping the oldest beyond K.
    pub fn record(&mut self, meta: Meta, files: &[SourceFile]) -> Result<(), StoreError> {
        let wire: Vec<WireFile> = files
            .iter()
            .map(|f| WireFile {
                path: f.path.display().to_string(),
                contents: f.contents.clone(),
            })
            .collect();
        let fmt = |e: serde_json::Error| StoreError::Format {
            path: "generation".into(),
            reason: e.to_string(),
        };
        let n = meta.generation;
        write_atomic(
            &self.files_path(n),
            &serde_json::to_vec(&wire).map_err(fmt)?,
        )?;
        write_atomic(&self.meta_path(n), &serde_json::to_vec(&meta).map_err(fmt)?)?;
        self.history.retain(|m| m.generation != n);
        self.history.push(meta);
        self.history.sort_by_key(|m| m.generation);
        while self.history.len() > self.keep {
            let old = self.history.remove(0).generation;
            let _ = fs::remove_file(self.meta_path(old));
            let _ = fs::remove_file(self.files_path(old));
        }
        Ok(())
    }

    /// Marks a generation as staged but never committed.
    pub fn mark_abandoned(&mut self, n: u64) -> Result<(), StoreError> {
        let Some(meta) = self.history.iter_mut().find(|m| m.generation == n) else {
            return Ok(());
        };
        meta.abandoned = true;
        let bytes = serde_json::to_vec(&*meta).map_err(|e| StoreError::Format {
            path: "generation".into(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.meta_path(n), &bytes)
    }

    /// The files of a kept generation.
    pub fn files(&self, n: u64) -> Result<Vec<SourceFile>, StoreError> {
        if !self.history.iter().any(|m| m.generation == n) {
            return Err(StoreError::Unknown(n));
        }
        let wire: Vec<WireFile> = read_json(&self.files_path(n))?;
        Ok(wire
            .into_iter()
            .map(|f| SourceFile::new(f.path, f.contents))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u64) -> Meta {
        Meta {
            generation: n,
            digest: format!("d{n}"),
            disk_digest: format!("d{n}"),
            published_at_unix_ms: n,
            saved_at_unix_ms: n,
            changed_files: vec!["a.yaml".into()],
            rollback_of: None,
            abandoned: false,
        }
    }

    #[test]
    fn numbers_survive_a_restart_and_history_keeps_the_last_k() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 2).unwrap();
        assert_eq!(store.next_number().unwrap(), 1);
        let files = vec![SourceFile::new("/x/a.yaml", "kind: Gateway\n")];
        for n in 1..=3 {
            if n > 1 {
                assert_eq!(store.next_number().unwrap(), n);
            }
            store.record(meta(n), &files).unwrap();
        }
        // A number reserved but never recorded is not reused either.
        assert_eq!(store.next_number().unwrap(), 4);
        drop(store);

        let mut store = Store::open(dir.path(), 2).unwrap();
        assert_eq!(store.last_number(), 4);
        assert_eq!(store.next_number().unwrap(), 5);
        let kept: Vec<u64> = store.history().iter().map(|m| m.generation).collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(store.files(3).unwrap(), files);
        assert!(matches!(store.files(1), Err(StoreError::Unknown(1))));
        store.mark_abandoned(3).unwrap();
        let store = Store::open(dir.path(), 2).unwrap();
        assert!(store.history()[1].abandoned);
    }
}
