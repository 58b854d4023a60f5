//! The upstream attempts of one request: circuit-breaker permits, the request deadline and
//! per-try timeouts, which failures are retried (conditions, replayability, attempts left,
//! the backend's retry budget and retry limit), and the outcome of each attempt as outlier
//! detection sees it. `proxy` calls in here from its pingora hooks.

use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;
use switchyard_config::{Retry, RetryOn, RetryPolicy, Rule, MAX_RETRY_BODY};
use tracing::debug;

use crate::locality::Tier;
use crate::resilience::breaker::{self, Limit, Permit};
use crate::resilience::clock::now_ms;
use crate::resilience::outlier::{self, Outcome, Peers};
use crate::runtime::BackendRuntime;

/// A failure that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectFailure,
    Reset,
    Timeout,
    Status(u16),
}

/// Per-request attempt state, kept in the request context.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Upstream attempts started so far.
    pub count: u32,
    /// When the rule's request timeout runs out.
    pub deadline: Option<Instant>,
    /// Whether the request can be sent again (method, body size).
    pub replayable: bool,
    /// The last attempt's response status asked for a retry that was granted.
    pub retry_status: bool,
    /// The current attempt's outcome has been recorded for outlier detection.
    pub recorded: bool,
    /// Why the last wanted retry was not sent, for the log.
    pub denied: Option<&'static str>,
    /// When the current attempt started (its endpoint was picked), for the access log's
    /// upstream timings.
    pub started_at: Option<Instant>,
    /// The circuit-breaker limit that refused the request, if one did (for the metrics).
    pub refused: Option<Limit>,
    request: Option<Permit>,
    pending: Option<Permit>,
    connection: Option<Permit>,
    retry: Option<Permit>,
}

/// The retry conditions and per-try settings of a rule (defaults without a TrafficPolicy).
pub fn policy(rule: &Rule) -> RetryPolicy {
    rule.traffic
        .as_ref()
        .and_then(|t| t.retry)
        .unwrap_or_default()
}

/// Whether a request with this method and body can be replayed under `policy`: idempotent
/// methods without a body, or any body the proxy can buffer within the configured limit.
pub fn replayable(
    method: &http::Method,
    body_empty: bool,
    content_length: Option<u64>,
    policy: &RetryPolicy,
) -> bool {
    let limit = u64::from(policy.max_body_bytes.min(MAX_RETRY_BODY));
    if body_empty {
        return method.is_idempotent() || limit > 0;
    }
    // Chunked bodies of unknown size are buffered; the proxy marks them truncated past 64 KiB.
    limit > 0 && content_length.is_none_or(|n| n <= limit)
}

impl Attempts {
    /// Takes the backend's `maxRequests` permit for the whole request.
    pub fn admit(&mut self, backend: &BackendRuntime) -> Result<(), Limit> {
        let cb = &backend.config.policy.circuit_breaker;
        self.request = breaker::acquire(backend.balancer.state(), Limit::Requests, cb.max_requests)
            .inspect_err(|l| self.refused = Some(*l))?;
        backend.balancer.state().budget.record_request(now_ms());
        Ok(())
    }

    /// Starts an attempt: takes the pending and connection permits.
    pub fn start(&mut self, backend: &BackendRuntime) -> Result<(), Limit> {
        self.count += 1;
        self.recorded = false;
        self.retry_status = false;
        self.started_at = Some(Instant::now());
        let cb = &backend.config.policy.circuit_breaker;
        let state = backend.balancer.state();
        self.connection = None;
        self.pending = breaker::acquire(state, Limit::Pending, cb.max_pending_requests)
            .inspect_err(|l| self.refused = Some(*l))?;
        self.connection = breaker::acquire(state, Limit::Connections, cb.max_connections)
            .inspect_err(|l| self.refused = Some(*l))?;
        Ok(())
    }

    /// The attempt is connected: it no longer counts as pending.
    pub fn connected(&mut self) {
        self.pending = None;
    }

    /// Time left before the request deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the request deadline has (all but) passed: within 5 ms, as a timer cut to the
    /// deadline fires a hair early.
    pub fn deadline_reached(&self) -> bool {
        self.remaining()
            .is_some_and(|r| r <= Duration::from_millis(5))
    }

    /// The wait before this attempt when it is a retry: the rule's backoff, doubled per retry,
    /// with jitter, never past the deadline.
    pub fn backoff(&self, retry: Option<&Retry>) -> Option<Duration> {
        let base = retry?.backoff?;
        if self.count < 2 {
            return None;
        }
        let doubling = 1u32 << (self.count - 2).min(6);
        let wait = base.saturating_mul(doubling).min(base.saturating_mul(10));
        let jittered = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
        Some(self.remaining().map_or(jittered, |r| jittered.min(r)))
    }

    /// Applies the deadline and the per-try timeout to this attempt's peer.
    pub fn limit_peer(&self, peer: &mut HttpPeer, rule: &Rule, policy: &RetryPolicy) {
        let per_try = policy.per_try_timeout.or(rule.timeouts.backend_request);
        let cap = match (per_try, self.remaining()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(cap) = cap {
            let cap = cap.max(Duration::from_millis(1));
            let o = &mut peer.options;
            o.read_timeout = Some(o.read_timeout.map_or(cap, |t| t.min(cap)));
            o.write_timeout = Some(o.write_timeout.map_or(cap, |t| t.min(cap)));
            o.connection_timeout = Some(o.connection_timeout.map_or(cap, |t| t.min(cap)));
            o.total_connection_timeout = Some(cap);
        }
    }

    /// Decides whether `failure` is retried, taking a unit of the retry budget and a retry
    /// permit when it is.
    pub fn should_retry(
        &mut self,
        rule: &Rule,
        backend: &BackendRuntime,
        failure: Failure,
        body_intact: bool,
    ) -> bool {
        self.denied = None;
        let Some(retry) = &rule.retry else {
            return false;
        };
        let policy = policy(rule);
        if !matches_condition(&policy.on, retry, failure) {
            return false;
        }
        let deny = |this: &mut Self, why| {
            this.denied = Some(why);
            debug!(route = %rule.route, reason = why, ?failure, "retry not sent");
            false
        };
        if self.count > retry.attempts {
            return deny(self, "attempts_exhausted");
        }
        // A refused connection never reached the backend; anything else replays the request.
        if failure != Failure::ConnectFailure && !(self.replayable && body_intact) {
            return deny(self, "not_replayable");
        }
        if self.remaining().is_some_and(|r| r.is_zero()) {
            return deny(self, "deadline");
        }
        let state = backend.balancer.state();
        let cb = &backend.config.policy.circuit_breaker;
        let permit = match breaker::acquire(state, Limit::Retries, cb.max_retries) {
            Ok(p) => p,
            Err(_) => return deny(self, "max_retries"),
        };
        if !state
            .budget
            .try_retry(&backend.config.policy.retry_budget, now_ms())
        {
            return deny(self, "retry_budget");
        }
        self.retry = permit;
        true
    }

    /// Records the current attempt's outcome on target `endpoint` of `tier` (once per attempt).
    pub fn record(
        &mut self,
        backend: &BackendRuntime,
        tier: Tier,
        endpoint: Option<usize>,
        outcome: Outcome,
    ) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let (Some(cfg), Some(i), Some((balancer, _))) =
            (backend.outlier(tier), endpoint, backend.tier(tier))
        else {
            return;
        };
        let peers = Peers {
            backend: &balancer.state().outlier,
            endpoints: &balancer.endpoints,
        };
        outlier::record(cfg, &peers, i, outcome, now_ms());
    }

    /// Gives back every permit (the request is over).
    pub fn release(&mut self) {
        self.request = None;
        self.pending = None;
        self.connection = None;
        self.retry = None;
    }
}

fn matches_condition(on: &RetryOn, retry: &Retry, failure: Failure) -> bool {
    match failure {
        Failure::ConnectFailure => on.connect_failure,
        Failure::Reset => on.reset,
        Failure::Timeout => on.timeout,
        Failure::Status(code) => {
            (on.retriable_codes && retry.codes.contains(&code))
                || (on.any_5xx && code >= 500)
                || (on.gateway_error && (502..=504).contains(&code))
        }
    }
}

/// How outlier detection counts a response status.
pub fn status_outcome(status: u16) -> Outcome {
    if status >= 500 {
        Outcome::ServerError(status)
    } else {
        Outcome::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayability_follows_method_and_body() {
        let p = RetryPolicy::default();
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert!(replayable(&get, true, None, &p));
        assert!(replayable(&post, false, Some(1000), &p));
        assert!(!replayable(&post, false, Some(100_000), &p));
        let strict = RetryPolicy {
            max_body_bytes: 0,
            ..p
        };
        assert!(replayable(&get, true, None, &strict));
        assert!(!replayable(&post, true, None, &strict));
        assert!(!replayable(&post, false, Some(10), &strict));
    }

    #[test]
    fn conditions() {
        let retry = Retry {
            codes: vec![503],
            attempts: 2,
            backoff: None,
        };
        let on = RetryOn::default();
        assert!(matches_condition(&on, &retry, Failure::Status(503)));
        assert!(!matches_condition(&on, &retry, Failure::Status(500)));
        assert!(matches_condition(&on, &retry, Failure::ConnectFailure));
        assert!(!matches_condition(&on, &retry, Failure::Timeout));
        let all = RetryOn {
            timeout: true,
            any_5xx: true,
            ..on
        };
        assert!(matches_condition(&all, &retry, Failure::Status(500)));
        assert!(matches_condition(&all, &retry, Failure::Timeout));
    }
}
