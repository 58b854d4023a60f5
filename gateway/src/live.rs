//! The live configuration of a gateway process: one `ArcSwap<Runtime>` that requests load once,
//! the state registry generations draw from, and the record of the last reload attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use switchyard_config::Generation;
use tracing::{info, warn};

use crate::runtime::{CompileError, Runtime};
use crate::state::StateRegistry;

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
    /// Ports the process listens on; fixed at start because listeners cannot be added later.
    bound_ports: Vec<u16>,
    last_number: AtomicU64,
    status: Mutex<ReloadStatus>,
}

impl LiveConfig {
    /// Compiles the first generation. Its ports become the process's listeners.
    pub fn start(config: Generation, gateway: Option<String>) -> Result<Arc<Self>, CompileError> {
        let registry = StateRegistry::default();
        let runtime = Runtime::compile(Arc::new(config), gateway.as_deref(), 1, &registry)?;
        let bound_ports = runtime.ports().iter().map(|p| p.port).collect();
        Ok(Arc::new(LiveConfig {
            current: ArcSwap::from_pointee(runtime),
            registry,
            gateway,
            bound_ports,
            last_number: AtomicU64::new(1),
            status: Mutex::new(ReloadStatus::default()),
        }))
    }

    /// The generation in force. Load once per request and keep the `Arc` for its whole life.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    pub fn bound_ports(&self) -> &[u16] {
        &self.bound_ports
    }

    /// Compiles and swaps in a new generation. A failure leaves the current one in force.
    /// Returns the new generation number, or `None` when the sources did not change.
    pub fn apply(&self, config: Generation) -> Result<Option<u64>, CompileError> {
        if config.digest == self.current.load().info.digest {
            self.clear_error();
            return Ok(None);
        }
        let number = self.last_number.load(Ordering::Relaxed) + 1;
        let runtime = Runtime::compile(
            Arc::new(config),
            self.gateway.as_deref(),
            number,
            &self.registry,
        )
        .inspect_err(|e| self.reject(e.to_string()))?;
        for p in runtime.ports() {
            if !self.bound_ports.contains(&p.port) {
                warn!(
                    port = p.port,
                    "generation {number} adds a listener on port {}; it takes effect on restart or upgrade",
                    p.port
                );
            }
        }
        self.current.store(Arc::new(runtime));
        self.last_number.store(number, Ordering::Relaxed);
        self.registry.prune();
        self.clear_error();
        info!(generation = number, "configuration applied");
        Ok(Some(number))
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
