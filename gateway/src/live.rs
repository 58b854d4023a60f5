//! The live configuration of a gateway process: one `ArcSwap<Runtime>` that requests load once,
//! the state registry generations draw from, the generation staged for a fleet-atomic commit,
//! and the record of the last reload attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use switchyard_config::Generation;
use thiserror::Error;
use tracing::{info, warn};

use crate::resilience::health::HealthChecks;
use crate::runtime::{CompileError, Runtime};
use crate::state::StateRegistry;

/// Where generations come from, which decides their numbering and how strict a swap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Standalone: the gateway watches route files and numbers generations itself. A new
    /// listener port is logged and waits for a restart.
    Files,
    /// Subscribed: the control service numbers generations. A generation whose listener ports
    /// differ from the bound ones is refused, so the control service sees a NACK rather than
    /// an ack for routes this process cannot serve.
    Control,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Files => "files",
            Source::Control => "control",
        }
    }
}

/// Why a generation could not be swapped in.
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("listener ports changed (bound: {bound:?}, generation wants: {wanted:?}); restart or upgrade the gateway to apply it")]
    Ports { bound: Vec<u16>, wanted: Vec<u16> },
    #[error("generation {wanted} is not staged (staged: {staged:?})")]
    NotStaged { wanted: u64, staged: Option<u64> },
}

/// A completed swap: when it happened and the generation it replaced.
#[derive(Debug)]
#[must_use = "pass it to LiveConfig::retire"]
pub struct Swapped {
    pub at: SystemTime,
    old: Arc<Runtime>,
}

/// What happened to the most recent candidate configuration.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// The error of the last rejected candidate, cleared by the next accepted one.
    pub last_error: Option<String>,
    pub rejected: u64,
}

#[derive(Debug)]
pub struct LiveConfig {
    current: ArcSwap<Runtime>,
    registry: StateRegistry,
    gateway: Option<String>,
    source: Source,
    /// Ports the process listens on; fixed at start because listeners cannot be added later.
    bound_ports: Vec<u16>,
    last_number: AtomicU64,
    /// A compiled generation waiting for the control service's commit.
    staged: Mutex<Option<Arc<Runtime>>>,
    status: Mutex<ReloadStatus>,
    /// Active health checks of the generation in force (`None` if the thread failed to start).
    health: Option<HealthChecks>,
    /// When the generation in force was swapped in (Unix ms), for the metrics.
    applied_at_ms: AtomicU64,
    /// Metrics, access log and tracing, set once when the process starts serving.
    observability: OnceLock<Arc<crate::observe::Observability>>,
}

impl LiveConfig {
    /// Compiles the first generation (numbered `number`). Its ports become the listeners.
    pub fn start(
        config: Generation,
        gateway: Option<String>,
        source: Source,
        number: u64,
    ) -> Result<Arc<Self>, CompileError> {
        let registry = StateRegistry::default();
        let runtime = Runtime::compile(Arc::new(config), gateway.as_deref(), number, &registry)?;
        let bound_ports = runtime.ports().iter().map(|p| p.port).collect();
        let health = match HealthChecks::start() {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, "could not start the health-check thread; active health checks are off");
                None
            }
        };
        if let Some(h) = &health {
            h.reconcile(runtime.health_targets());
        }
        let live = Arc::new(LiveConfig {
            current: ArcSwap::from_pointee(runtime),
            registry,
            gateway,
            source,
            bound_ports,
            last_number: AtomicU64::new(number),
            applied_at_ms: AtomicU64::new(unix_ms(SystemTime::now())),
            observability: OnceLock::new(),
            staged: Mutex::new(None),
            status: Mutex::new(ReloadStatus::default()),
            health,
        });
        if let Some(h) = &live.health {
            let weak = Arc::downgrade(&live);
            h.housekeeping(move || {
                if let Some(live) = weak.upgrade() {
                    live.registry.limiters.housekeeping();
                }
            });
        }
        Ok(live)
    }

    /// The generation in force. Load once per request and keep the `Arc` for its whole life.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// When the generation in force was swapped in (Unix ms).
    pub fn applied_at_ms(&self) -> u64 {
        self.applied_at_ms.load(Ordering::Relaxed)
    }

    /// Installs the process's metrics, access log and tracing (once; later calls are ignored).
    pub fn observe_with(&self, observability: Arc<crate::observe::Observability>) {
        let _ = self.observability.set(observability);
    }

    /// The process's metrics, access log and tracing, once installed.
    pub fn observability(&self) -> Option<&Arc<crate::observe::Observability>> {
        self.observability.get()
    }

    pub fn bound_ports(&self) -> &[u16] {
        &self.bound_ports
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// Standalone reload: compiles and swaps in a new generation, numbered one past the last.
    /// A failure leaves the current one in force. Returns the new generation number, or `None`
    /// when the sources did not change.
    pub fn apply(&self, config: Generation) -> Result<Option<u64>, ApplyError> {
        if config.digest == self.current.load().info.digest {
            self.clear_error();
            return Ok(None);
        }
        let number = self.last_number.load(Ordering::Relaxed) + 1;
        let swapped = self.apply_numbered(config, number)?;
        self.retire(swapped);
        Ok(Some(number))
    }

    /// Compiles `config` as generation `number` and swaps it in at once. Pass the result to
    /// [`LiveConfig::retire`] once the swap has been reported.
    pub fn apply_numbered(&self, config: Generation, number: u64) -> Result<Swapped, ApplyError> {
        let runtime = self
            .prepare(config, number)
            .inspect_err(|e| self.reject(e.to_string()))?;
        Ok(self.swap(Arc::new(runtime)))
    }

    /// Compiles `config` as generation `number` and holds it for [`LiveConfig::commit`].
    /// A later stage replaces an earlier one.
    pub fn stage(&self, config: Generation, number: u64) -> Result<(), ApplyError> {
        let runtime = self
            .prepare(config, number)
            .inspect_err(|e| self.reject(e.to_string()))?;
        *self.staged.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(runtime));
        Ok(())
    }

    /// Swaps in the staged generation `number`. Pass the result to [`LiveConfig::retire`] once
    /// the swap has been reported.
    pub fn commit(&self, number: u64) -> Result<Swapped, ApplyError> {
        let staged = {
            let mut slot = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.take() {
                Some(rt) if rt.info.number == number => rt,
                other => {
                    let staged = other.as_ref().map(|rt| rt.info.number);
                    *slot = other;
                    return Err(ApplyError::NotStaged {
                        wanted: number,
                        staged,
                    });
                }
            }
        };
        Ok(self.swap(staged))
    }

    /// The number of the staged generation, if any.
    pub fn staged(&self) -> Option<u64> {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|rt| rt.info.number)
    }

    fn prepare(&self, config: Generation, number: u64) -> Result<Runtime, ApplyError> {
        let runtime = Runtime::compile(
            Arc::new(config),
            self.gateway.as_deref(),
            number,
            &self.registry,
        )?;
        let wanted: Vec<u16> = runtime.ports().iter().map(|p| p.port).collect();
        let added: Vec<u16> = wanted
            .iter()
            .copied()
            .filter(|p| !self.bound_ports.contains(p))
            .collect();
        match self.source {
            Source::Control if wanted != self.bound_ports => {
                return Err(ApplyError::Ports {
                    bound: self.bound_ports.clone(),
                    wanted,
                });
            }
            Source::Files => {
                for port in added {
                    warn!(
                        port,
                        "generation {number} adds a listener on port {port}; it takes effect on restart or upgrade"
                    );
                }
            }
            Source::Control => {}
        }
        Ok(runtime)
    }

    /// The atomic store. Freeing the old generation (10,000 routes take tens of ms) and
    /// pruning state are left to [`LiveConfig::retire`], off the flip.
    fn swap(&self, runtime: Arc<Runtime>) -> Swapped {
        let number = runtime.info.number;
        if let Some(h) = &self.health {
            h.reconcile(runtime.health_targets());
        }
        let old = self.current.swap(runtime);
        let at = SystemTime::now();
        self.applied_at_ms.store(unix_ms(at), Ordering::Relaxed);
        {
            // A staged generation older than the one in force can never be committed.
            let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
            if staged.as_ref().is_some_and(|s| s.info.number <= number) {
                *staged = None;
            }
        }
        self.last_number.store(number, Ordering::Relaxed);
        self.clear_error();
        info!(generation = number, "configuration applied");
        Swapped { at, old }
    }

    /// Drops the replaced generation (unless requests still hold it) and prunes per-endpoint
    /// state nothing refers to any more.
    pub fn retire(&self, swapped: Swapped) {
        drop(swapped.old);
        self.registry.prune();
    }

    /// Records a candidate rejected before compilation (e.g. a validation error).
    pub fn reject(&self, error: String) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.rejected += 1;
        s.last_error = Some(error);
    }

    fn clear_error(&self) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.last_error = None;
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
