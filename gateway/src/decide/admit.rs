//! Admission of a routed request, in order: the rule's rate limit (429 with `Retry-After`),
//! its fault injection (abort, or a delay the caller waits out) and then the backend's
//! `maxRequests` permit (503 `upstream_overflow`, never queued). Unlike [`route`](super::route)
//! this spends rate-limit tokens and breaker permits, so `explain` only describes it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::HeaderMap;
use switchyard_config::Rule;
use tracing::debug;

use crate::attempt::Attempts;
use crate::respond::Reason;
use crate::runtime::{BackendRuntime, Runtime};

/// Extra header of a local reply (`Retry-After`, `Location`, `x-switchyard-limit`).
pub type ReplyHeader = Option<(&'static str, String)>;

/// A local reply instead of proxying: status, reason, extra header.
pub type Refusal = (u16, Reason, ReplyHeader);

/// The verdict of the rule's checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Proceed, after waiting `delay` (fault injection) if set.
    Admit { delay: Option<Duration> },
    /// Answer locally instead of proxying.
    Refuse(Refusal),
}

/// The rule's rate limit and fault injection (waiting out an injected delay), then the
/// backend's request permit. `Some` is a local reply to send instead of proxying.
pub async fn admit(
    runtime: &Option<Arc<Runtime>>,
    rule: &Option<Arc<Rule>>,
    backend: Option<&Arc<BackendRuntime>>,
    attempts: &mut Attempts,
    client: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<Refusal> {
    if let (Some(runtime), Some(r)) = (runtime, rule) {
        match self::rule(runtime, r, client, headers, &mut fastrand::Rng::new()) {
            Admission::Refuse(refusal) => return Some(refusal),
            Admission::Admit { delay: Some(delay) } => tokio::time::sleep(delay).await,
            Admission::Admit { delay: None } => {}
        }
    }
    self::backend(backend?, attempts)
}

/// The rule's rate limit and fault injection.
pub fn rule(
    runtime: &Runtime,
    rule: &Arc<Rule>,
    client: Option<IpAddr>,
    headers: &HeaderMap,
    rng: &mut fastrand::Rng,
) -> Admission {
    if let Some(limiter) = runtime.limiter(rule) {
        if let Err(wait) = limiter.check(client, headers) {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let retry_after = Some((RETRY_AFTER.as_str(), secs.max(1).to_string()));
            return Admission::Refuse((429, Reason::RateLimited, retry_after));
        }
    }
    let mut delay = None;
    if let Some(fault) = rule.traffic.as_ref().and_then(|t| t.fault.as_ref()) {
        if let Some((status, per_million)) = fault.abort {
            if rng.u32(..1_000_000) < per_million {
                return Admission::Refuse((status, Reason::FaultAbort, None));
            }
        }
        if let Some((d, per_million)) = fault.delay {
            if rng.u32(..1_000_000) < per_million {
                delay = Some(d);
            }
        }
    }
    Admission::Admit { delay }
}

/// Takes the backend's request permit (held in `attempts` until the request ends).
pub fn backend(backend: &BackendRuntime, attempts: &mut Attempts) -> Option<Refusal> {
    if let Err(limit) = attempts.admit(backend) {
        debug!(backend = %backend.id, limit = limit.as_str(), "circuit breaker open");
        return Some((
            503,
            Reason::Overflow,
            Some(("x-switchyard-limit", limit.as_str().into())),
        ));
    }
    None
}
