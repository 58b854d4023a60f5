//! The request decision, as plain functions over a [`Runtime`] and the request header (its URI
//! holds the canonical path once the listener checks ran): which rule matches, a redirect or a
//! local reply, the backend (weights, cohort pin or sticky, the draw), the URL rewrite and the
//! mirrors. The proxy calls [`route`] and then [`admit`] from `request_filter`; `switchyard
//! explain` calls the same [`route`] on a request it builds, so what it reports is what the
//! gateway does. Random draws come from the `rng` the caller passes (seeded by `explain`).
//! [`route`] touches no long-lived state (picking a mirror's endpoint is left to the caller);
//! [`admit`] spends rate-limit tokens and breaker permits.

pub mod admit;

use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_LENGTH;
use pingora::http::RequestHeader;
use switchyard_config::{redirect_location, rewrite_path, Filter, RequestView, Rule};

use crate::attempt;
use crate::eastwest;
use crate::request;
use crate::resilience::cohort::{self, Why};
use crate::respond::Reason;
use crate::runtime::{BackendRuntime, PortRuntime, Runtime};

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward it to `Routed::backend`.
    Proxy,
    /// Answer with a redirect (the rule's `RequestRedirect`).
    Redirect { status: u16, location: String },
    /// Answer locally with an error.
    Reply { status: u16, reason: Reason },
}

/// The routing decision for one request.
#[derive(Debug)]
pub struct Routed {
    pub outcome: Outcome,
    /// The matched rule (also for a redirect or a 500 of the rule); `None` on an east-west
    /// listener or without a match.
    pub rule: Option<Arc<Rule>>,
    /// The chosen backend and its index in `rule.backends` (0 on an east-west listener).
    pub backend: Option<(Arc<BackendRuntime>, usize)>,
    /// Why that backendRef was chosen.
    pub why: Option<Why>,
    /// A sticky-cohort cookie to set on the response.
    pub set_cookie: Option<String>,
    /// Path and query for the upstream when a URLRewrite changed the path.
    pub upstream_path: Option<String>,
    /// Host header for the upstream when a URLRewrite sets one.
    pub upstream_host: Option<String>,
    /// Backends that get a copy of the request (their percent draws passed).
    pub mirrors: Vec<Arc<BackendRuntime>>,
    /// The request came in on an east-west listener: local endpoints only.
    pub east_west: bool,
}

impl Routed {
    fn new(outcome: Outcome) -> Self {
        Routed {
            outcome,
            rule: None,
            backend: None,
            why: None,
            set_cookie: None,
            upstream_path: None,
            upstream_host: None,
            mirrors: Vec::new(),
            east_west: false,
        }
    }

    fn reply(reason: Reason) -> Self {
        Self::new(Outcome::Reply {
            status: reason.status(),
            reason,
        })
    }

    fn rule_reply(rule: Arc<Rule>, reason: Reason) -> Self {
        Routed {
            rule: Some(rule),
            ..Self::reply(reason)
        }
    }
}

/// Matches `req` (canonical path) on `port` and decides what to do with it.
pub fn route(
    runtime: &Runtime,
    port: &PortRuntime,
    req: &RequestHeader,
    rng: &mut fastrand::Rng,
) -> Routed {
    if port.east_west {
        return match eastwest::inbound_backend(runtime, req) {
            Ok(backend) => Routed {
                backend: Some((backend, 0)),
                east_west: true,
                ..Routed::new(Outcome::Proxy)
            },
            Err(reason) => Routed::reply(reason),
        };
    }
    let host = request::match_host(request::raw_host(req));
    let path = req.uri.path();
    let query = req.uri.query();
    let view = RequestView {
        method: &req.method,
        host: &host,
        path,
        query,
        headers: &req.headers,
    };
    let table = &runtime.port_config(port).routes;
    let Some(m) = table.find(&view) else {
        return Routed::reply(Reason::NoRoute);
    };
    let rule = m.rule.clone();
    let matched_prefix = m.matched_prefix;

    let redirect = rule.filters.iter().find_map(|f| match f {
        Filter::RequestRedirect(r) => Some(r),
        _ => None,
    });
    if let Some(r) = redirect {
        let scheme = if port.https { "https" } else { "http" };
        let location = redirect_location(r, scheme, &host, port.port, path, query, matched_prefix);
        let outcome = Outcome::Redirect {
            status: r.status_code,
            location,
        };
        return Routed {
            rule: Some(rule),
            ..Routed::new(outcome)
        };
    }

    let cohort_cfg = rule.traffic.as_ref().and_then(|t| t.cohort.as_ref());
    let Some(choice) = cohort::choose(&rule, cohort_cfg, &req.headers, rng) else {
        return Routed::rule_reply(rule, Reason::NoBackend);
    };
    let index = choice.index;
    let chosen = &rule.backends[index];
    let Some(backend) = runtime.backend(&chosen.backend).cloned() else {
        return Routed {
            set_cookie: choice.set_cookie,
            why: Some(choice.why),
            ..Routed::rule_reply(rule, Reason::NoBackend)
        };
    };
    let mut routed = Routed {
        why: Some(choice.why),
        set_cookie: choice.set_cookie,
        ..Routed::new(Outcome::Proxy)
    };
    // No endpoint in this zone is fine while other zones can serve it (locality).
    if backend.balancer.is_empty() && backend.remote.is_empty() {
        routed.outcome = Outcome::Reply {
            status: Reason::NoEndpoints.status(),
            reason: Reason::NoEndpoints,
        };
        routed.backend = Some((backend, index));
        routed.rule = Some(rule);
        return routed;
    }

    for f in rule.filters.iter().chain(chosen.filters.iter()) {
        match f {
            Filter::UrlRewrite(u) => {
                if let Some(pm) = &u.path {
                    let mut p = rewrite_path(path, pm, matched_prefix);
                    if let Some(q) = query {
                        p.push('?');
                        p.push_str(q);
                    }
                    routed.upstream_path = Some(p);
                }
                if let Some(h) = &u.hostname {
                    routed.upstream_host = Some(h.clone());
                }
            }
            Filter::RequestMirror(mirror) if rng.u32(..100) < mirror.percent => {
                if let Some(target) = runtime.backend(&mirror.backend) {
                    routed.mirrors.push(target.clone());
                }
            }
            _ => {}
        }
    }
    routed.backend = Some((backend, index));
    routed.rule = Some(rule);
    routed
}

/// Keep-alive idle time of a client connection when no TrafficPolicy sets one.
pub const DEFAULT_DOWNSTREAM_IDLE: Duration = Duration::from_secs(60);

/// The client connection's keep-alive idle time under the matched rule's TrafficPolicy.
pub fn downstream_idle(rule: Option<&Rule>) -> Duration {
    rule.and_then(|r| r.traffic.as_ref())
        .and_then(|t| t.downstream_idle_timeout)
        .unwrap_or(DEFAULT_DOWNSTREAM_IDLE)
}

/// Whether the request may be sent again for a retry of `rule`: the rule retries, and the
/// method and body fit its retry policy (see [`attempt::replayable`]).
pub fn replayable(rule: &Rule, req: &RequestHeader, body_empty: bool) -> bool {
    let policy = attempt::policy(rule);
    let content_length = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    rule.retry.is_some() && attempt::replayable(&req.method, body_empty, content_length, &policy)
}

#[cfg(test)]
pub(crate) mod tests;
