//! `switchyard control`: the one place where route files become live config for every gateway.
//!
//! - `publish`: watch → stable read → validate → per-Gateway views → numbered publication.
//! - `store`: the state dir (generation counter, last K generations for rollback and restart).
//! - `fleet`: which gateway runs what, and the two-phase (fleet- or zone-atomic) commit.
//! - `api`: the authenticated HTTP API (watch/ack for gateways; status, rollback, metrics).
//! - `metrics`: the Prometheus registry.
//! - `certs`: the mesh CA behind `/v1/certs`, `/v1/bundle` and `/v1/ca/rotate` (kept in
//!   STATE/ca, or an operator-supplied root).
//!
//! Locks are std mutexes held for short, synchronous sections only, never across an await;
//! `loader` serializes whole publications so numbers are assigned in order.

pub mod api;
pub mod certs;
pub mod fleet;
mod metrics;
pub mod publish;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde_json::json;
use switchyard_gateway::watch::Loader;
use tracing::{info, warn};

pub use fleet::Atomic;
use fleet::{unix_ms, Event, Fleet};
use metrics::Metrics;
use store::Store;

/// How the control service runs.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub operator_token: String,
    pub gateway_token: String,
    pub atomic: Atomic,
    pub stage_timeout: Duration,
    pub history: usize,
    pub debounce: Duration,
    pub stale_after: Duration,
    pub trust_domain: String,
    /// Lifetime of issued certificates.
    pub cert_ttl: Duration,
    /// Operator-supplied root (certificate, key).
    pub ca_files: Option<(PathBuf, PathBuf)>,
}

/// The last rejected set.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub at: SystemTime,
    pub errors: Vec<String>,
}

/// A rollback in force.
#[derive(Debug, Clone)]
pub struct RollbackState {
    pub to: u64,
    pub at: SystemTime,
}

/// What the control service knows of the files on disk.
#[derive(Debug, Default)]
pub struct SourceState {
    /// Digest of the set last read from disk (valid or not): an unchanged set is skipped.
    pub disk_digest: Option<String>,
    /// Path → content hash of the published set, for "files changed".
    pub files: BTreeMap<String, String>,
    pub last_rejection: Option<Rejection>,
    pub rollback: Option<RollbackState>,
}

pub struct Control {
    pub config_dir: PathBuf,
    /// Wait between reads while files are still changing.
    pub settle: Duration,
    fleet: Mutex<Fleet>,
    store: Mutex<Store>,
    source: Mutex<SourceState>,
    /// Bumped on every change a waiting poll may care about.
    changed: tokio::sync::watch::Sender<u64>,
    metrics: Metrics,
    /// Held for a whole publication, so numbers are assigned in order; reuses the contents
    /// and the parse of files unchanged since the last read.
    loader: Mutex<Loader>,
    operator_token: String,
    gateway_token: String,
    pub ca: certs::CaService,
}

impl Control {
    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The publication lock, with the loader it guards.
    fn loader(&self) -> MutexGuard<'_, Loader> {
        self.loader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn source(&self) -> MutexGuard<'_, SourceState> {
        self.source.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting poll to re-decide.
    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Turns fleet events into logs, metrics and history marks.
    fn handle(&self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Committed { generation, group } => {
                    info!(generation, group = %group, "committed: gateways flip now");
                }
                Event::Abandoned { generation, reason } => {
                    warn!(generation, reason = %reason, "commit abandoned; the previous generation stays");
                    self.metrics.abandoned.inc();
                    if let Err(e) = self.store().mark_abandoned(generation) {
                        warn!(error = %e, "cannot mark the generation abandoned");
                    }
                }
                Event::Nack { zone } => self.metrics.nacks.with_label_values(&[&zone]).inc(),
                Event::Propagated { zone, seconds } => self
                    .metrics
                    .propagation
                    .with_label_values(&[&zone])
                    .observe(seconds),
            }
        }
        if let Some(c) = &self.fleet().last_commit {
            self.metrics.flip_skew.set(c.flip_skew_ms / 1000.0);
        }
    }

    /// The `/v1/status` document.
    pub fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let fleet = self.fleet();
        let current = fleet.current().cloned();
        let source = self.source();
        let history: Vec<_> = self
            .store()
            .history()
            .iter()
            .rev()
            .map(|m| {
                json!({
                    "generation": m.generation,
                    "digest": m.digest,
                    "published_at_unix_ms": m.published_at_unix_ms,
                    "changed_files": m.changed_files,
                    "rollback_of": m.rollback_of,
                    "abandoned": m.abandoned,
                })
            })
            .collect();
        json!({
            "generation": current.as_ref().map_or(0, |p| p.number),
            "digest": current.as_ref().map(|p| p.digest.clone()),
            "published_at_unix_ms": current.as_ref().map(|p| unix_ms(p.published_at)),
            "saved_at_unix_ms": current.as_ref().map(|p| unix_ms(p.saved_at)),
            "changed_files": current.as_ref().map(|p| p.changed_files.clone()).unwrap_or_default(),
            "rollback_of": current.as_ref().and_then(|p| p.rollback_of),
            "rollback": source.rollback.as_ref().map(|r| json!({"to": r.to, "at_unix_ms": unix_ms(r.at)})),
            "atomic": fleet.atomic,
            "converged": fleet.converged(now),
            "last_rejection": source.last_rejection.as_ref().map(|r| json!({
                "at_unix_ms": unix_ms(r.at),
                "errors": r.errors,
            })),
            "last_abandoned": fleet.last_abandoned,
            "last_commit": fleet.last_commit,
            "history": history,
            "gateways": fleet.gateway_status(now),
        })
    }
}

/// Runs the control service until SIGINT or SIGTERM.
pub fn run(opts: ControlOptions) -> Result<()> {
    let store = Store::open(&opts.state_dir, opts.history)
        .with_context(|| format!("state dir {}", opts.state_dir.display()))?;
    let ca_dir = opts.state_dir.join("ca");
    let ca = switchyard_gateway::pki::Ca::open_for_control(
        &ca_dir,
        &opts.trust_domain,
        opts.ca_files
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
        certs::CaService::overlap(opts.cert_ttl),
    )
    .with_context(|| format!("mesh CA in {}", ca_dir.display()))?;
    info!(dir = %ca_dir.display(), trust_domain = %opts.trust_domain, bundle_version = ca.version(), "mesh CA ready");
    let (changed, _) = tokio::sync::watch::channel(0u64);
    let ctl = Arc::new(Control {
        config_dir: opts.config_dir.clone(),
        settle: opts.debounce,
        fleet: Mutex::new(Fleet::new(
            opts.atomic,
            opts.stage_timeout,
            opts.stale_after,
        )),
        store: Mutex::new(store),
        source: Mutex::new(SourceState::default()),
        changed,
        metrics: Metrics::new().context("metrics registry")?,
        loader: Mutex::new(Loader::default()),
        operator_token: opts.operator_token.clone(),
        gateway_token: opts.gateway_token.clone(),
        ca: certs::CaService::new(ca, opts.cert_ttl),
    });
    publish::startup(&ctl);
    let on_change = ctl.clone();
    let _watcher = switchyard_gateway::watch::watch_changes(
        opts.config_dir.clone(),
        opts.debounce,
        move || publish::on_change(&on_change),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("bind {}", opts.listen))?;
        info!(addr = %opts.listen, atomic = ?opts.atomic, "control listening on {}", opts.listen);
        tokio::spawn(expire_stages(ctl.clone()));
        tokio::select! {
            r = api::serve(listener, ctl) => r,
            _ = shutdown_signal() => {
                info!("shutting down");
                Ok(())
            }
        }
    })
}

/// Abandons stages whose deadline passed.
async fn expire_stages(ctl: Arc<Control>) {
    loop {
        let next = ctl.fleet().next_deadline();
        let wait = next
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(200))
            .clamp(Duration::from_millis(5), Duration::from_millis(200));
        tokio::time::sleep(wait).await;
        let events = ctl.fleet().expire(Instant::now());
        if !events.is_empty() {
            ctl.handle(events);
            ctl.notify();
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
