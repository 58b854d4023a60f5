//! Circuit-breaker limits of one backend: counters of requests in flight, requests waiting to
//! connect, connections in use and retries in flight, each taken through a guard that gives it
//! back on drop. A full counter refuses at once; nothing ever queues.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use super::BackendState;

/// Which counter a guard holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Pending,
    Connections,
    Retries,
}

impl Limit {
    /// The limit's name in logs and the `x-switchyard-error` detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "max_requests",
            Limit::Pending => "max_pending_requests",
            Limit::Connections => "max_connections",
            Limit::Retries => "max_retries",
        }
    }
}

/// The four counters.
#[derive(Debug, Default)]
pub struct BreakerState {
    requests: AtomicU32,
    pending: AtomicU32,
    connections: AtomicU32,
    retries: AtomicU32,
}

impl BreakerState {
    fn counter(&self, limit: Limit) -> &AtomicU32 {
        match limit {
            Limit::Requests => &self.requests,
            Limit::Pending => &self.pending,
            Limit::Connections => &self.connections,
            Limit::Retries => &self.retries,
        }
    }

    /// The current value of one counter.
    pub fn current(&self, limit: Limit) -> u32 {
        self.counter(limit).load(Relaxed)
    }
}

/// One unit of a counter, given back on drop.
#[derive(Debug)]
pub struct Permit {
    state: Arc<BackendState>,
    limit: Limit,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.state.breaker.counter(self.limit).fetch_sub(1, Relaxed);
    }
}

/// Takes one unit of `limit` if the counter is below `max`; `None` means the breaker is open.
/// Without a `max` nothing is counted and `Ok(None)` is returned.
pub fn acquire(
    state: &Arc<BackendState>,
    limit: Limit,
    max: Option<u32>,
) -> Result<Option<Permit>, Limit> {
    let Some(max) = max else {
        return Ok(None);
    };
    let taken = state
        .breaker
        .counter(limit)
        .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
        .is_ok();
    if taken {
        Ok(Some(Permit {
            state: state.clone(),
            limit,
        }))
    } else {
        Err(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_at_the_limit_and_frees_on_drop() {
        let state = Arc::new(BackendState::default());
        let a = acquire(&state, Limit::Requests, Some(2)).unwrap();
        let b = acquire(&state, Limit::Requests, Some(2)).unwrap();
        assert_eq!(
            acquire(&state, Limit::Requests, Some(2)).unwrap_err(),
            Limit::Requests
        );
        assert_eq!(state.breaker.current(Limit::Requests), 2);
        drop(a);
        assert!(acquire(&state, Limit::Requests, Some(2)).is_ok());
        drop(b);
        assert_eq!(state.breaker.current(Limit::Requests), 0);
        assert!(acquire(&state, Limit::Retries, None).unwrap().is_none());
    }
}
