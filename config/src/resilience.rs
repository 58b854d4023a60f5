//! The compiled resilience and traffic-shaping model: what a BackendPolicy says about limits,
//! outlier detection, health checks and retry budgets, and what a TrafficPolicy says about
//! rate limits, fault injection, retry conditions, cohorts and client timeouts.
//!
//! These are plain values. The gateway keeps the matching *state* (counters, ejections,
//! buckets) outside the generation, keyed by backend and endpoint, so a reload never resets it.

use std::time::Duration;

/// Circuit-breaker limits of one backend (`BackendPolicy.spec.circuitBreaker`). `None` is
/// unlimited. Requests over a limit get 503 at once; nothing queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitBreaker {
    /// Upstream connections in use at once (HTTP/1.1: requests past their connect).
    pub max_connections: Option<u32>,
    /// Requests waiting for an upstream connection (picked, not yet connected).
    pub max_pending_requests: Option<u32>,
    /// Requests in flight to the backend at once.
    pub max_requests: Option<u32>,
    /// Retries in flight to the backend at once.
    pub max_retries: Option<u32>,
}

/// Passive health: when an endpoint is taken out of rotation (`spec.outlierDetection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Eject after this many 5xx responses in a row (`None` disables).
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many gateway errors in a row: connect failure, reset, timeout, 502-504.
    pub consecutive_gateway_errors: Option<u32>,
    /// Eject on a low success rate over each interval.
    pub success_rate: Option<SuccessRate>,
    /// How often success rates are evaluated.
    pub interval: Duration,
    /// The first ejection lasts this long; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// Upper bound on one ejection.
    pub max_ejection_time: Duration,
    /// At most this percentage of a backend's endpoints are ejected at once (at least one).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: Some(5),
            success_rate: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Success-rate ejection. An endpoint needs `request_volume` requests in the interval to be
/// judged. With `threshold`, it is ejected below that percentage; with `stdev_factor`, below
/// `mean - factor * stdev` of the backend's endpoints (needs `minimum_hosts` judged endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessRate {
    /// Fixed floor, in percent.
    pub threshold: Option<u32>,
    /// Statistical floor (Envoy's method) in thousandths: 1900 is a factor of 1.9.
    pub stdev_factor_milli: Option<u32>,
    /// Judged endpoints needed for the statistical floor.
    pub minimum_hosts: u32,
    /// Requests an endpoint needs in the interval to be judged.
    pub request_volume: u32,
}

/// Active health checks (`spec.healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// One check's deadline.
    pub timeout: Duration,
    /// Consecutive passes that mark an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that mark a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// What a check does.
    pub probe: HealthProbe,
}

/// The kind of health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 GET.
    Http {
        /// Request path (with query), e.g. `/healthz`.
        path: String,
        /// Host header; the endpoint address when `None`.
        host: Option<String>,
        /// Statuses that pass, as inclusive ranges (default 200-299).
        expected: Vec<(u16, u16)>,
    },
}

/// How many retries a backend accepts (`spec.retryBudget`), Linkerd style: retries may add
/// `ratio_percent` of the recent requests, plus `min_per_second` regardless of load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Extra load retries may add, in percent of requests over `window`.
    pub ratio_percent: u32,
    /// Retries per second always allowed.
    pub min_per_second: u32,
    /// How far back requests and retries are counted.
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio_percent: 20,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// What a TrafficPolicy adds to a route or one of its rules. Every part is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficPolicy {
    /// The TrafficPolicy's `namespace/name`, for logs and explain.
    pub source: Option<crate::ObjRef>,
    /// Local rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// When to retry (the rule's `retry` says how often).
    pub retry: Option<RetryPolicy>,
    /// Canary cohorts: pinned and sticky.
    pub cohort: Option<Cohort>,
    /// Idle time allowed on a client connection between requests.
    pub downstream_idle_timeout: Option<Duration>,
}

impl TrafficPolicy {
    /// This policy over `base`, field by field: each of `rate_limit`, `fault`, `retry`,
    /// `cohort` and `downstream_idle_timeout` is this policy's when it sets it, else `base`'s.
    /// The source is this policy's. A rule's policy is its rule-level TrafficPolicy over its
    /// route-level one.
    pub fn over(&self, base: &TrafficPolicy) -> TrafficPolicy {
        TrafficPolicy {
            source: self.source.clone().or_else(|| base.source.clone()),
            rate_limit: self.rate_limit.clone().or_else(|| base.rate_limit.clone()),
            fault: self.fault.clone().or_else(|| base.fault.clone()),
            retry: self.retry.or(base.retry),
            cohort: self.cohort.clone().or_else(|| base.cohort.clone()),
            downstream_idle_timeout: self
                .downstream_idle_timeout
                .or(base.downstream_idle_timeout),
        }
    }
}

/// A token bucket: `requests` per `per`, bursting to `burst`, one bucket per key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Tokens added per `per`.
    pub requests: u32,
    /// The refill period.
    pub per: Duration,
    /// Bucket size (default `requests`).
    pub burst: u32,
    /// What a bucket is keyed on.
    pub key: RateLimitKey,
}

/// The key of a rate-limit bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// The client's IP address.
    ClientIp,
    /// A request header's value (requests without it share one bucket).
    Header(http::HeaderName),
}

/// Fault injection. Percentages are stored in millionths (`1_000_000` is always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Delay some requests before forwarding.
    pub delay: Option<(Duration, u32)>,
    /// Answer some requests with a status instead of forwarding.
    pub abort: Option<(u16, u32)>,
}

/// Retry conditions and the per-attempt rules (`TrafficPolicy.spec.retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Which failures are retried.
    pub on: RetryOn,
    /// Deadline of one attempt (overrides the rule's `timeouts.backendRequest`).
    pub per_try_timeout: Option<Duration>,
    /// Request bodies up to this size are buffered so they can be replayed (at most 64 KiB,
    /// the proxy's replay buffer). Larger bodies are never retried.
    pub max_body_bytes: u32,
}

/// Largest replayable request body.
pub const MAX_RETRY_BODY: u32 = 64 * 1024;

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            on: RetryOn::default(),
            per_try_timeout: None,
            max_body_bytes: MAX_RETRY_BODY,
        }
    }
}

/// Retry conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection could not be made.
    pub connect_failure: bool,
    /// The connection was reset or closed before a response.
    pub reset: bool,
    /// An attempt hit its per-try timeout.
    pub timeout: bool,
    /// The response status is one of the rule's `retry.codes`.
    pub retriable_codes: bool,
    /// Any 5xx response.
    pub any_5xx: bool,
    /// 502, 503 or 504.
    pub gateway_error: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        Self {
            connect_failure: true,
            reset: true,
            timeout: false,
            retriable_codes: true,
            any_5xx: false,
            gateway_error: false,
        }
    }
}

/// Canary cohorts for a rule's weighted backendRefs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cohort {
    /// A request whose header or cookie names one of the rule's backends goes there, whatever
    /// the weights (testers pinned to the canary).
    pub pin: Option<CohortSource>,
    /// How a client keeps its backend as weights change.
    pub sticky: Option<Sticky>,
}

/// Where a cohort value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CohortSource {
    /// A request header.
    Header(http::HeaderName),
    /// A cookie.
    Cookie(String),
}

/// Stickiness across weight changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The gateway sets a cookie naming the backend it drew; later requests keep it while that
    /// backend still has weight. Only clients without the cookie are drawn again.
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie lifetime (`None`: a session cookie).
        max_age: Option<Duration>,
    },
    /// Weighted rendezvous hashing on a header, keyed by backend name: when a backend's weight
    /// grows, clients only move to it; when it shrinks, only its clients move away.
    Hash(http::HeaderName),
}
