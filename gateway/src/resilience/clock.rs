//! One monotonic millisecond clock for resilience state, so ejection deadlines, budget windows
//! and health transitions fit in atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process; never 0 (0 means "unset" in state).
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
