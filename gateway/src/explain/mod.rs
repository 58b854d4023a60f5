//! `switchyard explain`: what a gateway would do with one request, and why. It builds the
//! request, runs the listener checks (`sanitize`), the routing decision (`decide::route`, the
//! code the proxy runs, with a seeded draw) and authorization (`authz::evaluate`) against a
//! [`Runtime`], and reports each step with the route table's verdict on every other candidate
//! rule and the chosen backend's endpoint state. Against a live gateway (the admin API's
//! `POST /explain`) that state is live: ejected and unhealthy endpoints show. Nothing here
//! spends state: rate limits, fault injection and breaker permits are described, not run.

mod backend;
mod report;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use pingora::http::RequestHeader;
use serde::{Deserialize, Serialize};
use switchyard_config::{
    Filter, ListenerProtocol, Mismatch, PathModifier, PortConfig, RequestView, Rule, Verdict,
};
use thiserror::Error;

pub use report::*;

use crate::authz;
use crate::decide::{self, Outcome};
use crate::request;
use crate::runtime::{BackendRuntime, PortRuntime, Runtime};
use crate::sanitize::{framing, headers};

/// The request to explain (the admin API's `POST /explain` body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Query {
    pub method: String,
    pub host: String,
    /// The request target as a client would send it: not necessarily canonical.
    pub path: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub client_ip: Option<IpAddr>,
    /// The SPIFFE ID a client certificate would prove.
    #[serde(default)]
    pub source_principal: Option<String>,
    /// The source zone (default: the gateway's own, as for any untrusted client).
    #[serde(default)]
    pub source_zone: Option<String>,
    /// The listener port (default: the gateway's first HTTP or HTTPS port).
    #[serde(default)]
    pub port: Option<u16>,
    /// Seed of the random draws (default: a random one, reported).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A request that cannot be explained.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("no port {port} on Gateway {gateway} (ports: {ports})")]
    UnknownPort {
        port: u16,
        gateway: String,
        ports: String,
    },
    #[error("Gateway {0} has no HTTP or HTTPS listener")]
    NoHttpPort(String),
    #[error("port {port} is a {protocol} listener; explain covers HTTP and HTTPS listeners")]
    NotRouted {
        port: u16,
        protocol: ListenerProtocol,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Explains `q` against `runtime`; `source` is where the generation came from (`files` or
/// `control`).
pub fn explain(runtime: &Runtime, source: &str, q: &Query) -> Result<Explanation, ExplainError> {
    let gw = runtime.gateway();
    let (port, config) = pick_port(runtime, q.port)?;
    let seed = q.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut req = build_request(q)?;
    let request_summary = RequestSummary {
        method: q.method.clone(),
        host: q.host.clone(),
        path: q.path.clone(),
        port: port.port,
        source_principal: q.source_principal.clone(),
        source_zone: q.source_zone.clone(),
        client_ip: q.client_ip.map(|ip| ip.to_string()),
    };
    let generation = GenerationSummary {
        number: runtime.info.number,
        digest: runtime.info.digest.clone(),
        source: source.to_string(),
        gateway: gw.id.to_string(),
        zone: gw.zone.clone(),
    };
    let (listener, refused) = listener_checks(&mut req, config);
    let mut ex = Explanation {
        request: request_summary,
        generation,
        listener,
        host: None,
        rules: Vec::new(),
        filters: Vec::new(),
        backend: None,
        upstream: None,
        authz: None,
        admission: Vec::new(),
        outcome: OutcomeSummary {
            action: "reply".into(),
            status: None,
            reason: None,
            location: None,
            backend: None,
        },
    };
    if let Some(reason) = refused {
        ex.outcome.status = Some(reason.status());
        ex.outcome.reason = Some(reason.as_str().into());
        return Ok(ex);
    }

    let routed = decide::route(runtime, port, &req, &mut fastrand::Rng::with_seed(seed));
    let host = request::match_host(request::raw_host(&req)).into_owned();
    let view = RequestView {
        method: &req.method,
        host: &host,
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
    };
    let table = config.routes.explain(&view);
    ex.host = Some(HostCheck {
        host: host.clone(),
        bucket: table.host_bucket.clone(),
        port_hostnames: if table.host_bucket.is_none() {
            config.routes.hostnames()
        } else {
            Vec::new()
        },
    });
    ex.rules = table.candidates.iter().map(verdict).collect();

    if let Some(rule) = &routed.rule {
        ex.filters = describe_filters(rule, routed.backend.as_ref().map(|(_, i)| *i), &routed);
        ex.admission = describe_admission(rule, routed.backend.as_ref().map(|(b, _)| &**b));
    }
    if let Some((backend, index)) = &routed.backend {
        ex.backend = Some(backend::choice(
            routed.rule.as_deref(),
            backend,
            *index,
            &routed,
            seed,
        ));
    }
    match &routed.outcome {
        Outcome::Proxy => {
            let original = req
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| req.uri.path().to_string());
            ex.upstream = Some(Upstream {
                path: routed.upstream_path.clone().unwrap_or(original),
                host: routed
                    .upstream_host
                    .clone()
                    .unwrap_or_else(|| q.host.clone()),
                mirrors: routed.mirrors.iter().map(|b| b.id.to_string()).collect(),
            });
            let check = authorize(config, q, gw.zone.as_deref(), &routed, &req);
            let allowed = check.allowed;
            ex.authz = Some(check);
            if allowed {
                ex.outcome.action = "proxy".into();
                ex.outcome.backend = routed.backend.as_ref().map(|(b, _)| b.id.to_string());
            } else {
                let reason = crate::respond::Reason::AuthzDenied;
                ex.outcome.status = Some(reason.status());
                ex.outcome.reason = Some(reason.as_str().into());
            }
        }
        Outcome::Redirect { status, location } => {
            ex.outcome.action = "redirect".into();
            ex.outcome.status = Some(*status);
            ex.outcome.location = Some(location.clone());
        }
        Outcome::Reply { status, reason } => {
            ex.outcome.status = Some(*status);
            ex.outcome.reason = Some(reason.as_str().into());
        }
    }
    Ok(ex)
}

/// The port asked for, or the first one that serves routes.
fn pick_port(
    runtime: &Runtime,
    asked: Option<u16>,
) -> Result<(&PortRuntime, &PortConfig), ExplainError> {
    let gw = runtime.gateway();
    let port = match asked {
        Some(p) => runtime.port(p).ok_or_else(|| ExplainError::UnknownPort {
            port: p,
            gateway: gw.id.to_string(),
            ports: gw
                .ports
                .iter()
                .map(|p| format!("{} ({})", p.port, p.protocol))
                .collect::<Vec<_>>()
                .join(", "),
        })?,
        None => runtime
            .ports()
            .iter()
            .find(|p| runtime.port_config(p).protocol.takes_routes())
            .ok_or_else(|| ExplainError::NoHttpPort(gw.id.to_string()))?,
    };
    let config = runtime.port_config(port);
    if !config.protocol.takes_routes() {
        return Err(ExplainError::NotRouted {
            port: port.port,
            protocol: config.protocol,
        });
    }
    Ok((port, config))
}

fn build_request(q: &Query) -> Result<RequestHeader, ExplainError> {
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| ExplainError::Invalid(format!("{what}: {e}"));
    let mut req = RequestHeader::build(q.method.as_str(), q.path.as_bytes(), None)
        .map_err(|e| invalid("method or request target", &e))?;
    req.insert_header(http::header::HOST, q.host.as_str())
        .map_err(|e| invalid("host", &e))?;
    for (k, v) in &q.headers {
        req.append_header(k.to_string(), v.as_str())
            .map_err(|e| invalid(&format!("header {k}"), &e))?;
    }
    Ok(req)
}

/// The listener stage, as `sanitize::request` runs it on an untrusted listener: framing,
/// header limits, internal headers stripped, the canonical path.
fn listener_checks(
    req: &mut RequestHeader,
    config: &PortConfig,
) -> (ListenerCheck, Option<crate::respond::Reason>) {
    let mut check = ListenerCheck {
        protocol: config.protocol.to_string(),
        canonical_path: None,
        refused: None,
        stripped: Vec::new(),
    };
    let fields = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    if let Err(e) = framing::check(fields) {
        let reason = crate::respond::Reason::ConflictingFraming;
        check.refused = Some(format!("{}: {}", reason.as_str(), e.as_str()));
        return (check, Some(reason));
    }
    if !headers::within_limits(&req.headers, &config.client.headers) {
        let reason = crate::respond::Reason::HeaderLimit;
        check.refused = Some(format!("{}: header count or size", reason.as_str()));
        return (check, Some(reason));
    }
    check.stripped = req
        .headers
        .keys()
        .filter(|n| crate::identity::is_internal_header(n.as_str()))
        .map(|n| n.to_string())
        .collect();
    headers::strip_internal(req);
    if let Err(r) = crate::sanitize::canonical_request(req, &config.client) {
        check.refused = Some(format!("{}: {}", r.reason.as_str(), r.detail));
        return (check, Some(r.reason));
    }
    check.canonical_path = Some(req.uri.path().to_string());
    (check, None)
}

fn verdict(c: &switchyard_config::CandidateExplain<'_>) -> RuleVerdict {
    let (kind, detail) = match &c.verdict {
        Verdict::Matched => ("matched", "matched".to_string()),
        Verdict::LostPrecedence => (
            "precedence",
            "also matches, but the matched rule takes precedence".to_string(),
        ),
        Verdict::Mismatch(Mismatch::Path) => ("path", "path does not match".to_string()),
        Verdict::Mismatch(Mismatch::Method(m)) => ("method", format!("method is not {m}")),
        Verdict::Mismatch(Mismatch::Header(h)) => {
            ("header", format!("header {h} missing or different"))
        }
        Verdict::Mismatch(Mismatch::Query(q)) => {
            ("query", format!("query parameter {q} missing or different"))
        }
    };
    RuleVerdict {
        route: c.rule.route.to_string(),
        rule_index: c.rule.rule_index,
        rule_name: c.rule.name.clone(),
        match_index: c.match_index,
        file: c.rule.file.clone(),
        line: c.rule.line,
        conditions: c.conditions.clone(),
        verdict: kind.into(),
        detail,
    }
}

fn describe_filters(rule: &Rule, backend: Option<usize>, routed: &decide::Routed) -> Vec<String> {
    let per_backend = backend
        .and_then(|i| rule.backends.get(i))
        .map(|b| b.filters.as_slice())
        .unwrap_or_default();
    let names = |list: &[(http::HeaderName, http::HeaderValue)]| {
        list.iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let modifier = |kind: &str, m: &switchyard_config::HeaderModifier| {
        let mut parts = Vec::new();
        if !m.set.is_empty() {
            parts.push(format!("set [{}]", names(&m.set)));
        }
        if !m.add.is_empty() {
            parts.push(format!("add [{}]", names(&m.add)));
        }
        if !m.remove.is_empty() {
            let r: Vec<&str> = m.remove.iter().map(|n| n.as_str()).collect();
            parts.push(format!("remove [{}]", r.join(", ")));
        }
        format!("{kind}: {}", parts.join("; "))
    };
    let path_mod = |p: &PathModifier| match p {
        PathModifier::ReplaceFullPath(s) => format!("ReplaceFullPath {s}"),
        PathModifier::ReplacePrefixMatch(s) => format!("ReplacePrefixMatch {s}"),
    };
    rule.filters
        .iter()
        .chain(per_backend)
        .map(|f| match f {
            Filter::RequestHeaderModifier(m) => modifier("RequestHeaderModifier", m),
            Filter::ResponseHeaderModifier(m) => modifier("ResponseHeaderModifier", m),
            Filter::RequestRedirect(r) => match &routed.outcome {
                Outcome::Redirect { status, location } => {
                    format!("RequestRedirect: {status} to {location}")
                }
                _ => format!("RequestRedirect: {}", r.status_code),
            },
            Filter::UrlRewrite(u) => {
                let mut parts = Vec::new();
                if let Some(h) = &u.hostname {
                    parts.push(format!("hostname {h}"));
                }
                if let Some(p) = &u.path {
                    parts.push(format!("path {}", path_mod(p)));
                }
                format!("URLRewrite: {}", parts.join(", "))
            }
            Filter::RequestMirror(m) => {
                let drawn = routed.mirrors.iter().any(|b| b.id == m.backend.id);
                format!(
                    "RequestMirror: {} at {}% ({})",
                    m.backend.id,
                    m.percent,
                    if drawn {
                        "this request is copied"
                    } else {
                        "not copied this time"
                    }
                )
            }
        })
        .collect()
}

fn describe_admission(rule: &Rule, backend: Option<&BackendRuntime>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &rule.traffic {
        if let Some(l) = &t.rate_limit {
            out.push(format!(
                "rate limit {} per {:?} (burst {}) applies; not evaluated (429 when the bucket is empty)",
                l.requests, l.per, l.burst
            ));
        }
        if let Some(f) = &t.fault {
            if let Some((status, per_million)) = f.abort {
                out.push(format!(
                    "fault abort {status} for {}% of requests",
                    f64::from(per_million) / 10_000.0
                ));
            }
            if let Some((d, per_million)) = f.delay {
                out.push(format!(
                    "fault delay {d:?} for {}% of requests",
                    f64::from(per_million) / 10_000.0
                ));
            }
        }
    }
    if let Some(max) = backend.and_then(|b| b.config.policy.circuit_breaker.max_requests) {
        out.push(format!(
            "backend maxRequests {max} (503 upstream_overflow when reached)"
        ));
    }
    out
}

fn authorize(
    config: &PortConfig,
    q: &Query,
    own_zone: Option<&str>,
    routed: &decide::Routed,
    req: &RequestHeader,
) -> AuthzCheck {
    let Some(port_authz) = config.authz.as_deref() else {
        return AuthzCheck {
            allowed: true,
            policy: None,
            rule: None,
            reason: "no policy on this port".into(),
            dry_run: None,
        };
    };
    let zone = q.source_zone.as_deref().or(own_zone);
    let request = authz::Request {
        principal: q.source_principal.as_deref(),
        zone,
        route: routed.rule.as_ref().map(|r| &r.route),
        backend: routed.backend.as_ref().map(|(b, _)| &b.id),
        path: req.uri.path(),
        method: &req.method,
        headers: &req.headers,
    };
    let d = authz::evaluate(port_authz, &request, false);
    let dry_run = port_authz.policies.iter().any(|p| p.dry_run).then(|| {
        let w = authz::evaluate(port_authz, &request, true);
        format!(
            "{} by {}{}",
            if w.allowed {
                "would allow"
            } else {
                "would deny"
            },
            w.policy
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into()),
            w.rule.map(|r| format!(" rule {r}")).unwrap_or_default()
        )
    });
    AuthzCheck {
        allowed: d.allowed,
        policy: d.policy.map(ToString::to_string),
        rule: d.rule.map(str::to_string),
        reason: d.reason().into(),
        dry_run,
    }
}
