//! The retry budget of one backend, as Linkerd defines it: over the last `window`, retries may
//! add `ratio_percent` of the requests, plus `min_per_second` per second regardless of load.
//! Requests and retries are counted in one-second buckets of atomics; a retry that would
//! exceed the budget is not sent, and the failure it would have hidden goes to the client.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use switchyard_config::RetryBudget;

/// Buckets kept: the longest window honoured is this many seconds.
pub const MAX_WINDOW_SECS: u64 = 60;

#[derive(Debug, Default)]
struct Bucket {
    /// The second (process clock) this bucket counts; a stale one is reset before use.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// Counters of one backend.
#[derive(Debug)]
pub struct BudgetState {
    buckets: Vec<Bucket>,
}

impl Default for BudgetState {
    fn default() -> Self {
        Self {
            buckets: (0..MAX_WINDOW_SECS).map(|_| Bucket::default()).collect(),
        }
    }
}

impl BudgetState {
    fn bucket(&self, now_ms: u64) -> &Bucket {
        let second = now_ms / 1000;
        let b = &self.buckets[(second % MAX_WINDOW_SECS) as usize];
        let seen = b.second.load(Relaxed);
        if seen != second
            && b.second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            b.requests.store(0, Relaxed);
            b.retries.store(0, Relaxed);
        }
        b
    }

    /// Counts an original request (not a retry).
    pub fn record_request(&self, now_ms: u64) {
        self.bucket(now_ms).requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget if it allows one now.
    pub fn try_retry(&self, budget: &RetryBudget, now_ms: u64) -> bool {
        let window = budget.window.as_secs().clamp(1, MAX_WINDOW_SECS);
        let now_s = now_ms / 1000;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Relaxed);
            if s <= now_s && now_s - s < window {
                requests += u64::from(b.requests.load(Relaxed));
                retries += u64::from(b.retries.load(Relaxed));
            }
        }
        let allowed = u64::from(budget.min_per_second) * window
            + requests * u64::from(budget.ratio_percent) / 100;
        if retries >= allowed {
            return false;
        }
        self.bucket(now_ms).retries.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_ratio_plus_minimum_over_the_window() {
        let budget = RetryBudget {
            ratio_percent: 20,
            min_per_second: 1,
            window: Duration::from_secs(10),
        };
        let state = BudgetState::default();
        let t = 50_000;
        for _ in 0..100 {
            state.record_request(t);
        }
        // 1/s * 10 s + 20% of 100 = 30 retries.
        let granted = (0..100).filter(|_| state.try_retry(&budget, t)).count();
        assert_eq!(granted, 30);
        // Eleven seconds later the window has moved on: only the minimum is left.
        let later = t + 11_000;
        let granted = (0..100).filter(|_| state.try_retry(&budget, later)).count();
        assert_eq!(granted, 10);
    }
}
