//! Passive health (outlier detection): each endpoint's recent outcomes decide whether it is
//! ejected from rotation, for how long, and whether a half-open trial readmits it.
//!
//! An endpoint is ejected after `consecutive_5xx` 5xx responses or `consecutive_gateway_errors`
//! gateway errors in a row, or when its success rate over an interval is too low. The n-th
//! ejection lasts `n * base_ejection_time` (capped). When it ends, one trial request at a time
//! may go to the endpoint: a success readmits it, a failure ejects it again for longer. At most
//! `max_ejection_percent` of a backend's endpoints (and always at least one) are out at once.
//! All state is atomics, updated by the requests themselves; there is no background task.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use switchyard_config::{OutlierDetection, SuccessRate};
use tracing::info;

use super::clock::ms;
use crate::balance::EndpointSlot;

/// How long a claimed half-open trial may stay unanswered before another request may try.
const TRIAL_TIMEOUT_MS: u64 = 10_000;

/// What one attempt against an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response from the endpoint.
    ServerError(u16),
    /// Connect failure, reset or timeout.
    GatewayError,
}

impl Outcome {
    fn is_failure(self) -> bool {
        self != Outcome::Success
    }

    fn is_gateway_error(self) -> bool {
        matches!(
            self,
            Outcome::GatewayError | Outcome::ServerError(502..=504)
        )
    }
}

/// Passive-health state of one endpoint.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    /// Process-clock ms when the ejection ends; 0 when the endpoint is in rotation.
    ejected_until: AtomicU64,
    /// Ejections so far; multiplies the ejection time, decays by one per healthy interval.
    ejections: AtomicU32,
    /// Process-clock ms when the current half-open trial was claimed; 0 when none is out.
    trial: AtomicU64,
}

impl OutlierState {
    /// Whether the endpoint is ejected (a half-open endpoint counts as ejected until readmitted).
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Relaxed) != 0
    }

    /// Whether a request may go to this endpoint now, without claiming a trial.
    pub fn may_serve(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until == 0 || (now >= until && self.trial_free(now))
    }

    /// Like [`may_serve`](Self::may_serve), but claims the half-open trial when the ejection
    /// has ended; the caller must then send the request here.
    pub fn admit(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        let claimed = self.trial.load(Relaxed);
        (claimed == 0 || now.saturating_sub(claimed) > TRIAL_TIMEOUT_MS)
            && self
                .trial
                .compare_exchange(claimed, now, Relaxed, Relaxed)
                .is_ok()
    }

    fn trial_free(&self, now: u64) -> bool {
        let claimed = self.trial.load(Relaxed);
        claimed == 0 || now.saturating_sub(claimed) > TRIAL_TIMEOUT_MS
    }

    /// Ejections so far (the multiplier of the next ejection time).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }
}

/// Passive-health state of a backend as a whole.
#[derive(Debug, Default)]
pub struct BackendOutlier {
    /// Endpoints currently ejected or failing active checks; 0 lets picks skip every check.
    degraded: AtomicU32,
    last_sweep: AtomicU64,
    sweeping: AtomicBool,
    /// Ejections of the backend's endpoints since the process started (the metrics' counter).
    ejected_total: AtomicU64,
}

impl BackendOutlier {
    /// Whether any endpoint of the backend is out of rotation (a hint: picks then check each).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Relaxed) > 0
    }

    /// Ejections of the backend's endpoints so far (re-ejections after a failed trial too).
    pub fn ejections_total(&self) -> u64 {
        self.ejected_total.load(Relaxed)
    }

    fn count_ejection(&self) {
        self.ejected_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn mark_degraded(&self) {
        self.degraded.fetch_add(1, Relaxed);
    }

    pub(crate) fn mark_recovered(&self) {
        let _ = self
            .degraded
            .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(1)));
    }
}

/// The endpoints of one backend as outlier detection sees them, in the generation's order.
pub struct Peers<'a> {
    pub backend: &'a BackendOutlier,
    pub endpoints: &'a [EndpointSlot],
}

/// Records one attempt's outcome on endpoint `me` and ejects or readmits it as the policy says.
pub fn record(cfg: &OutlierDetection, peers: &Peers<'_>, me: usize, outcome: Outcome, now: u64) {
    let Some(slot) = peers.endpoints.get(me) else {
        return;
    };
    let (state, address) = (&slot.state.outlier, slot.address);
    let until = state.ejected_until.load(Relaxed);
    if until != 0 {
        if now >= until && state.trial.load(Relaxed) != 0 {
            // The half-open trial's answer.
            if outcome.is_failure() {
                peers.backend.count_ejection();
                eject(cfg, state, address, "failed its half-open trial", now);
            } else {
                readmit(peers.backend, state);
                info!(endpoint = %address, "outlier detection: endpoint readmitted after a successful trial");
            }
        }
        return;
    }
    state.window_requests.fetch_add(1, Relaxed);
    if outcome.is_failure() {
        state.window_failures.fetch_add(1, Relaxed);
        let c5 = state.consecutive_5xx.fetch_add(1, Relaxed) + 1;
        let cg = if outcome.is_gateway_error() {
            state.consecutive_gateway.fetch_add(1, Relaxed) + 1
        } else {
            state.consecutive_gateway.store(0, Relaxed);
            0
        };
        if cfg.consecutive_5xx.is_some_and(|n| c5 >= n) {
            try_eject(cfg, peers, me, "consecutive 5xx", now);
        } else if cfg.consecutive_gateway_errors.is_some_and(|n| cg >= n) {
            try_eject(cfg, peers, me, "consecutive gateway errors", now);
        }
    } else {
        state.consecutive_5xx.store(0, Relaxed);
        state.consecutive_gateway.store(0, Relaxed);
    }
    maybe_sweep(cfg, peers, now);
}

/// Ejects `me` unless the backend is at its max ejection percentage.
fn try_eject(cfg: &OutlierDetection, peers: &Peers<'_>, me: usize, why: &str, now: u64) -> bool {
    let n = peers.endpoints.len();
    let out = peers
        .endpoints
        .iter()
        .filter(|e| e.state.outlier.is_ejected())
        .count();
    let cap = (n * cfg.max_ejection_percent as usize / 100).max(1);
    if out >= cap {
        return false;
    }
    let (state, address) = (
        &peers.endpoints[me].state.outlier,
        peers.endpoints[me].address,
    );
    if state
        .ejected_until
        .compare_exchange(0, u64::MAX, Relaxed, Relaxed)
        .is_err()
    {
        return false; // another request ejected it first
    }
    peers.backend.mark_degraded();
    peers.backend.count_ejection();
    eject(cfg, state, address, why, now);
    true
}

/// Sets the ejection deadline for the next ejection (the endpoint is already counted out).
fn eject(
    cfg: &OutlierDetection,
    state: &OutlierState,
    address: std::net::SocketAddr,
    why: &str,
    now: u64,
) {
    let n = state.ejections.fetch_add(1, Relaxed).saturating_add(1);
    let time = ms(cfg.base_ejection_time)
        .saturating_mul(u64::from(n))
        .min(ms(cfg.max_ejection_time))
        .max(1);
    state.consecutive_5xx.store(0, Relaxed);
    state.consecutive_gateway.store(0, Relaxed);
    state.ejected_until.store(now.saturating_add(time), Relaxed);
    state.trial.store(0, Relaxed);
    info!(endpoint = %address, reason = why, ejection = n, ejected_ms = time, "outlier detection: endpoint ejected");
}

fn readmit(backend: &BackendOutlier, state: &OutlierState) {
    if state.ejected_until.swap(0, Relaxed) != 0 {
        backend.mark_recovered();
    }
    state.trial.store(0, Relaxed);
    state.consecutive_5xx.store(0, Relaxed);
    state.consecutive_gateway.store(0, Relaxed);
    state.window_requests.store(0, Relaxed);
    state.window_failures.store(0, Relaxed);
}

/// Once per interval (by whichever request gets there first): judge success rates, reset the
/// windows, and let the ejection multiplier of endpoints in rotation decay.
fn maybe_sweep(cfg: &OutlierDetection, peers: &Peers<'_>, now: u64) {
    let last = peers.backend.last_sweep.load(Relaxed);
    if last == 0 {
        peers.backend.last_sweep.store(now, Relaxed);
        return;
    }
    if now.saturating_sub(last) < ms(cfg.interval) {
        return;
    }
    if peers
        .backend
        .sweeping
        .compare_exchange(false, true, Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    peers.backend.last_sweep.store(now, Relaxed);
    let rates: Vec<Option<f64>> = peers
        .endpoints
        .iter()
        .map(|e| {
            let s = &e.state.outlier;
            let total = s.window_requests.swap(0, Relaxed);
            let failed = s.window_failures.swap(0, Relaxed);
            if !s.is_ejected() {
                let _ = s
                    .ejections
                    .fetch_update(Relaxed, Relaxed, |e| Some(e.saturating_sub(1)));
            }
            let judged = cfg
                .success_rate
                .as_ref()
                .is_some_and(|sr| total >= sr.request_volume.max(1) && !s.is_ejected());
            judged.then(|| 100.0 * f64::from(total - failed.min(total)) / f64::from(total))
        })
        .collect();
    if let Some(sr) = &cfg.success_rate {
        if let Some(floor) = success_floor(sr, &rates) {
            for (i, rate) in rates.iter().enumerate() {
                if rate.is_some_and(|r| r < floor) {
                    try_eject(cfg, peers, i, "low success rate", now);
                }
            }
        }
    }
    peers.backend.sweeping.store(false, Relaxed);
}

/// The success rate below which judged endpoints are ejected, if any.
fn success_floor(sr: &SuccessRate, rates: &[Option<f64>]) -> Option<f64> {
    let judged: Vec<f64> = rates.iter().flatten().copied().collect();
    let fixed = sr.threshold.map(f64::from);
    let statistical = sr.stdev_factor_milli.and_then(|k| {
        if judged.len() < sr.minimum_hosts.max(1) as usize {
            return None;
        }
        let n = judged.len() as f64;
        let mean = judged.iter().sum::<f64>() / n;
        let var = judged.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        Some(mean - f64::from(k) / 1000.0 * var.sqrt())
    });
    match (fixed, statistical) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::state::EndpointState;

    fn cfg() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(3),
            consecutive_gateway_errors: Some(2),
            success_rate: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_millis(100),
            max_ejection_time: Duration::from_millis(250),
            max_ejection_percent: 50,
        }
    }

    fn slots(n: usize) -> Vec<EndpointSlot> {
        (0..n)
            .map(|i| EndpointSlot {
                address: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                zone: None,
                weight: 1,
                state: Arc::new(EndpointState::default()),
            })
            .collect()
    }

    #[test]
    fn consecutive_failures_eject_then_trial_readmits_and_times_grow() {
        let backend = BackendOutlier::default();
        let eps = slots(4);
        let states: Vec<&OutlierState> = eps.iter().map(|e| &e.state.outlier).collect();
        let peers = Peers {
            backend: &backend,
            endpoints: &eps,
        };
        let c = cfg();
        let t0 = 1000;
        record(&c, &peers, 0, Outcome::ServerError(500), t0);
        record(&c, &peers, 0, Outcome::Success, t0);
        record(&c, &peers, 0, Outcome::ServerError(500), t0);
        record(&c, &peers, 0, Outcome::ServerError(500), t0);
        assert!(!states[0].is_ejected(), "a success resets the streak");
        record(&c, &peers, 0, Outcome::ServerError(500), t0);
        assert!(states[0].is_ejected() && backend.is_degraded());
        assert!(!states[0].admit(t0 + 99), "no traffic while ejected");
        assert!(states[0].admit(t0 + 100), "trial after the ejection time");
        assert!(!states[0].admit(t0 + 101), "one trial at a time");
        record(&c, &peers, 0, Outcome::GatewayError, t0 + 110);
        assert!(!states[0].admit(t0 + 300), "second ejection lasts 200 ms");
        assert!(states[0].admit(t0 + 310));
        record(&c, &peers, 0, Outcome::Success, t0 + 320);
        assert!(!states[0].is_ejected() && !backend.is_degraded());
        // Gateway errors count on their own threshold.
        record(&c, &peers, 1, Outcome::GatewayError, t0);
        record(&c, &peers, 1, Outcome::GatewayError, t0);
        assert!(states[1].is_ejected());
        // 50% of 4: a second endpoint may go, a third may not.
        for i in [2, 3] {
            for _ in 0..3 {
                record(&c, &peers, i, Outcome::ServerError(503), t0);
            }
        }
        let out = states.iter().filter(|s| s.is_ejected()).count();
        assert_eq!(out, 2);
        // Endpoint 0 twice (the failed trial counts), then 1 and 2; 3 was refused.
        assert_eq!(backend.ejections_total(), 4);
    }

    #[test]
    fn success_rate_threshold_ejects_after_an_interval() {
        let backend = BackendOutlier::default();
        let eps = slots(3);
        let states: Vec<&OutlierState> = eps.iter().map(|e| &e.state.outlier).collect();
        let peers = Peers {
            backend: &backend,
            endpoints: &eps,
        };
        let mut c = cfg();
        c.consecutive_5xx = None;
        c.consecutive_gateway_errors = None;
        c.success_rate = Some(SuccessRate {
            threshold: Some(80),
            stdev_factor_milli: None,
            minimum_hosts: 1,
            request_volume: 10,
        });
        record(&c, &peers, 0, Outcome::Success, 1); // starts the interval
        for i in 0..20 {
            let bad = if i % 2 == 0 {
                Outcome::ServerError(500)
            } else {
                Outcome::Success
            };
            record(&c, &peers, 0, bad, 5);
            record(&c, &peers, 1, Outcome::Success, 5);
        }
        assert!(!states[0].is_ejected(), "judged only at the interval's end");
        record(&c, &peers, 2, Outcome::Success, 10_002);
        assert!(states[0].is_ejected(), "50% < 80%");
        assert!(!states[1].is_ejected());
    }
}
