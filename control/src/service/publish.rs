//! Turns route files into published generations: reads the directory once the files are
//! stable, validates the whole set, cuts each Gateway's view, reserves the next number
//! durably, hands the publication to the fleet and records it for rollback. Invalid sets are
//! rejected with every error and the last good generation stays published. Rollback
//! republishes a kept generation under a new number.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use switchyard_config::{Builder, SourceFile, View};
use switchyard_gateway::protocol::{Payload, WireFile};
use thiserror::Error;
use tracing::{debug, error, info, warn};

use super::fleet::{unix_ms, Publication, ViewBody};
use super::store::{Meta, StoreError};
use super::{Control, Rejection, RollbackState};

#[derive(Debug, Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("generation {0} no longer builds:\n{1}")]
    Invalid(u64, String),
    #[error("there is no earlier generation to roll back to")]
    NoPrevious,
}

/// Which generation a rollback republishes.
#[derive(Debug, Clone, Copy)]
pub enum RollbackTarget {
    To(u64),
    Previous,
}

fn file_hashes(files: &[SourceFile]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|f| {
            (
                f.path.display().to_string(),
                hex::encode(Sha256::digest(f.contents.as_bytes())),
            )
        })
        .collect()
}

/// Files added, changed or removed since `before`, relative to the config dir, and the newest
/// modification time among those still present.
fn changes(
    dir: &Path,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> (Vec<String>, SystemTime) {
    let mut changed = Vec::new();
    let mut saved_at: Option<SystemTime> = None;
    for (path, hash) in after {
        if before.get(path) != Some(hash) {
            changed.push(path.clone());
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            saved_at = saved_at.max(mtime);
        }
    }
    changed.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    let rel = changed
        .into_iter()
        .map(|p| {
            Path::new(&p)
                .strip_prefix(dir)
                .map(|r| r.display().to_string())
                .unwrap_or(p)
        })
        .collect();
    (rel, saved_at.unwrap_or_else(SystemTime::now))
}

/// Serializes each view once, for every gateway that serves it.
fn view_bodies(number: u64, digest: &str, views: Vec<View>) -> Vec<ViewBody> {
    views
        .into_iter()
        .map(|v| {
            let payload = Payload {
                generation: number,
                digest: digest.to_string(),
                gateway: v.gateway.to_string(),
                zone: v.zone.clone(),
                files: v
                    .files
                    .into_iter()
                    .map(|f| WireFile {
                        path: f.path.display().to_string(),
                        contents: f.contents,
                    })
                    .collect(),
            };
            // Serializing plain strings and numbers cannot fail.
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            ViewBody {
                gateway: v.gateway.to_string(),
                zone: v.zone,
                body: Bytes::from(body),
            }
        })
        .collect()
}

/// How a publication came about.
struct Origin {
    disk_digest: String,
    rollback_of: Option<u64>,
    /// A kept generation published again after a restart: its number, changed files and
    /// save time, instead of a new number and a diff against nothing.
    kept: Option<Meta>,
}

/// Reads the config dir (once stable) and publishes it if it changed and is valid.
pub fn on_change(ctl: &Control) {
    let mut loader = ctl.loader();
    let dir = &ctl.config_dir;
    let t_read = Instant::now();
    let read = loader.reader.read_stable(dir, ctl.settle);
    let files = match read {
        Ok(files) => files,
        Err(e) => {
            reject(ctl, vec![e.to_string()]);
            return;
        }
    };
    let disk_digest = switchyard_config::digest(&files);
    if ctl.source().disk_digest.as_deref() == Some(disk_digest.as_str()) {
        return;
    }
    let started = Instant::now();
    let read_ms = started.duration_since(t_read).as_secs_f64() * 1000.0;
    let built = loader.builder.build_with_views(&files);
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    ctl.metrics.build_seconds.observe(build_ms / 1000.0);
    debug!(
        read_ms,
        build_ms,
        files = files.len(),
        "route files read and built"
    );
    match built {
        Err(diags) => {
            ctl.source().disk_digest = Some(disk_digest);
            reject(ctl, diags.iter().map(|d| d.to_string()).collect());
        }
        Ok((generation, views)) => {
            let published = ctl.fleet().current().map(|p| p.digest.clone());
            if published.as_deref() == Some(generation.digest.as_str()) {
                // Back to what is published (e.g. an invalid edit undone): nothing to send.
                let mut source = ctl.source();
                source.disk_digest = Some(disk_digest);
                source.last_rejection = None;
                source.rollback = None;
                return;
            }
            let origin = Origin {
                disk_digest,
                rollback_of: None,
                kept: None,
            };
            if let Err(e) = publish(ctl, &files, generation.digest.clone(), views, origin) {
                error!(error = %e, "cannot publish; the last generation stays");
            }
        }
    }
}

fn reject(ctl: &Control, errors: Vec<String>) {
    for e in &errors {
        warn!("{e}");
    }
    warn!(
        errors = errors.len(),
        "route files rejected; the last good generation stays published"
    );
    ctl.metrics.rejections.inc();
    ctl.source().last_rejection = Some(Rejection {
        at: SystemTime::now(),
        errors,
    });
}

fn publish(
    ctl: &Control,
    files: &[SourceFile],
    digest: String,
    views: Vec<View>,
    origin: Origin,
) -> Result<u64, PublishError> {
    let hashes = file_hashes(files);
    let (changed_files, saved_at, number) = match &origin.kept {
        Some(meta) => (
            meta.changed_files.clone(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(meta.saved_at_unix_ms),
            meta.generation,
        ),
        None => {
            let (changed, saved_at) = changes(&ctl.config_dir, &ctl.source().files, &hashes);
            (changed, saved_at, ctl.store().next_number()?)
        }
    };
    let published_at = SystemTime::now();
    let t_views = Instant::now();
    let publication = Arc::new(Publication {
        number,
        digest: digest.clone(),
        published_at,
        saved_at,
        changed_files: changed_files.clone(),
        rollback_of: origin.rollback_of,
        views: view_bodies(number, &digest, views),
    });
    {
        let mut source = ctl.source();
        source.disk_digest = Some(origin.disk_digest.clone());
        source.files = hashes;
        source.last_rejection = None;
        source.rollback = origin.rollback_of.map(|to| RollbackState {
            to,
            at: published_at,
        });
    }
    let views_ms = t_views.elapsed().as_secs_f64() * 1000.0;
    let events = ctl.fleet().publish(publication, Instant::now());
    ctl.handle(events);
    ctl.notify();
    ctl.metrics.generation.set(number as i64);
    ctl.metrics.generations.inc();
    info!(
        generation = number,
        rollback_of = ?origin.rollback_of,
        changed = ?changed_files,
        views_ms,
        "published"
    );
    if origin.kept.is_none() {
        let meta = Meta {
            generation: number,
            digest,
            disk_digest: origin.disk_digest,
            published_at_unix_ms: unix_ms(published_at),
            saved_at_unix_ms: unix_ms(saved_at),
            changed_files,
            rollback_of: origin.rollback_of,
            abandoned: false,
        };
        ctl.store().record(meta, files)?;
    }
    Ok(number)
}

/// First publication after start: the files on disk, or the last kept generation when they
/// are unchanged since it (same number) or invalid.
pub fn startup(ctl: &Control) {
    let mut loader = ctl.loader();
    let dir = &ctl.config_dir;
    let files = loader.reader.read_stable(dir, ctl.settle);
    let last = ctl
        .store()
        .history()
        .iter()
        .rev()
        .find(|m| !m.abandoned)
        .cloned();
    let disk = files.map_err(|e| vec![e.to_string()]).and_then(|files| {
        let digest = switchyard_config::digest(&files);
        loader
            .builder
            .build_with_views(&files)
            .map(|built| (files, digest, built))
            .map_err(|d| d.iter().map(|d| d.to_string()).collect())
    });
    let (files, disk_digest, built) = match disk {
        Ok(ok) => ok,
        Err(errors) => {
            reject(ctl, errors);
            if let Some(meta) = last {
                info!(
                    generation = meta.generation,
                    "serving the last kept generation"
                );
                if let Err(e) = republish_kept(ctl, &mut loader.builder, &meta, None) {
                    error!(error = %e, "cannot republish the last kept generation");
                }
            }
            return;
        }
    };
    if let Some(meta) = last.filter(|m| m.disk_digest == disk_digest) {
        // Unchanged since the last run: same generation, same number (rollbacks included).
        info!(
            generation = meta.generation,
            "files unchanged since the last run"
        );
        if let Err(e) = republish_kept(ctl, &mut loader.builder, &meta, Some(disk_digest)) {
            error!(error = %e, "cannot republish the last kept generation");
        }
        return;
    }
    let (generation, views) = built;
    let origin = Origin {
        disk_digest,
        rollback_of: None,
        kept: None,
    };
    if let Err(e) = publish(ctl, &files, generation.digest.clone(), views, origin) {
        error!(error = %e, "cannot publish");
    }
}

/// Publishes a kept generation again under its own number.
fn republish_kept(
    ctl: &Control,
    builder: &mut Builder,
    meta: &Meta,
    disk_digest: Option<String>,
) -> Result<u64, PublishError> {
    let files = ctl.store().files(meta.generation)?;
    let (generation, views) = builder
        .build_with_views(&files)
        .map_err(|d| PublishError::Invalid(meta.generation, d.to_string()))?;
    let origin = Origin {
        disk_digest: disk_digest.unwrap_or_else(|| meta.disk_digest.clone()),
        rollback_of: meta.rollback_of,
        kept: Some(meta.clone()),
    };
    publish(ctl, &files, generation.digest.clone(), views, origin)
}

/// Republishes a kept generation under a new number; returns (new number, rolled-back-to).
pub fn rollback(ctl: &Control, target: RollbackTarget) -> Result<(u64, u64), PublishError> {
    let mut loader = ctl.loader();
    let current = ctl.fleet().current().map(|p| p.number);
    let to = match target {
        RollbackTarget::To(n) => n,
        RollbackTarget::Previous => ctl
            .store()
            .history()
            .iter()
            .rev()
            .filter(|m| !m.abandoned)
            .map(|m| m.generation)
            .find(|&n| current.is_some_and(|c| n < c))
            .ok_or(PublishError::NoPrevious)?,
    };
    let files = ctl.store().files(to)?;
    let (generation, views) = loader
        .builder
        .build_with_views(&files)
        .map_err(|d| PublishError::Invalid(to, d.to_string()))?;
    // The disk still holds the newer files: remember their digest, so that only a real
    // change to them supersedes the rollback.
    let disk_digest = ctl.source().disk_digest.clone().unwrap_or_default();
    let origin = Origin {
        disk_digest,
        rollback_of: Some(to),
        kept: None,
    };
    let n = publish(ctl, &files, generation.digest.clone(), views, origin)?;
    warn!(generation = n, rollback_of = to, "rollback published");
    Ok((n, to))
}
