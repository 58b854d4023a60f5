//! Long-lived per-backend and per-endpoint state, keyed by stable ids, that survives every
//! generation swap: the compiled runtime holds `Arc`s into this registry, so a reload carries
//! counters over instead of resetting them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_config::ObjRef;

use crate::resilience::breaker::BreakerState;
use crate::resilience::budget::BudgetState;
use crate::resilience::outlier::{BackendOutlier, OutlierState};
use crate::resilience::ratelimit::Limiters;

/// Counters of one endpoint (backend name plus address). Updated with atomics on the hot path.
#[derive(Debug)]
pub struct EndpointState {
    in_flight: AtomicU64,
    requests: AtomicU64,
    /// Passive health.
    pub outlier: OutlierState,
    /// Active health: false once the health check's unhealthy threshold is reached.
    pub healthy: AtomicBool,
}

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            outlier: OutlierState::default(),
            // New endpoints take traffic until a health check says otherwise.
            healthy: AtomicBool::new(true),
        }
    }
}

impl EndpointState {
    /// Whether the active health check passes (or there is none).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the endpoint may take a request now (healthy, not ejected), without claiming
    /// a half-open trial.
    pub fn may_serve(&self, now_ms: u64) -> bool {
        self.is_healthy() && self.outlier.may_serve(now_ms)
    }

    /// Like [`may_serve`](Self::may_serve), but claims the half-open trial of an endpoint whose
    /// ejection has ended: the caller must send the request there.
    pub fn admit(&self, now_ms: u64) -> bool {
        self.is_healthy() && self.outlier.admit(now_ms)
    }

    /// Requests currently sent to this endpoint and not yet finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests ever sent to this endpoint by this process.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Marks one request as in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    pub fn start(state: &Arc<EndpointState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State of one backend: round-robin position, breaker counters, retry budget and the
/// passive-health summary.
#[derive(Debug, Default)]
pub struct BackendState {
    cursor: AtomicUsize,
    pub breaker: BreakerState,
    pub budget: BudgetState,
    pub outlier: BackendOutlier,
}

impl BackendState {
    /// The next round-robin ticket.
    pub fn next(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

type EndpointKey = (ObjRef, SocketAddr);

/// Where compiled generations get their state handles. Locked only while a generation
/// compiles, never per request.
#[derive(Debug, Default)]
pub struct StateRegistry {
    backends: Mutex<HashMap<ObjRef, Arc<BackendState>>>,
    endpoints: Mutex<HashMap<EndpointKey, Arc<EndpointState>>>,
    /// Rate limiters by rule and limit.
    pub limiters: Limiters,
}

impl StateRegistry {
    pub fn backend(&self, id: &ObjRef) -> Arc<BackendState> {
        let mut map = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id.clone()).or_default().clone()
    }

    pub fn endpoint(&self, id: &ObjRef, address: SocketAddr) -> Arc<EndpointState> {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry((id.clone(), address)).or_default().clone()
    }

    /// Forgets state no live generation refers to (only the registry holds it).
    pub fn prune(&self) {
        let mut b = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        b.retain(|_, s| Arc::strong_count(s) > 1);
        drop(b);
        let mut e = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        e.retain(|_, s| Arc::strong_count(s) > 1 || s.in_flight() > 0);
        drop(e);
        self.limiters.housekeeping();
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjRef {
        ObjRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn same_key_same_state_across_lookups() {
        let reg = StateRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = reg.endpoint(&id("x"), addr);
        let _g = InFlight::start(&a);
        let b = reg.endpoint(&id("x"), addr);
        assert_eq!(b.in_flight(), 1);
        assert!(Arc::ptr_eq(&a, &b));
        let other = reg.endpoint(&id("y"), addr);
        assert_eq!(other.in_flight(), 0);
    }

    #[test]
    fn guard_decrements_and_prune_forgets_unused() {
        let reg = StateRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = reg.endpoint(&id("x"), addr);
        {
            let _g = InFlight::start(&a);
            assert_eq!(a.in_flight(), 1);
        }
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.requests(), 1);
        reg.prune();
        assert_eq!(reg.endpoint_count(), 1, "still referenced by `a`");
        drop(a);
        reg.prune();
        assert_eq!(reg.endpoint_count(), 0);
    }
}
