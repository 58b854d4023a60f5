//! The explanation of one request as data (JSON for `--json` and the admin API) and as the
//! text `switchyard explain` prints by default.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Everything `explain` found out, in pipeline order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    pub request: RequestSummary,
    pub generation: GenerationSummary,
    pub listener: ListenerCheck,
    /// Absent when the listener refused the request.
    pub host: Option<HostCheck>,
    /// Every candidate rule of the host bucket: the winner first.
    pub rules: Vec<RuleVerdict>,
    /// Filters of the matched rule and chosen backendRef, in order.
    pub filters: Vec<String>,
    pub backend: Option<BackendChoice>,
    pub upstream: Option<Upstream>,
    pub authz: Option<AuthzCheck>,
    /// Admission checks that spend state (rate limit, fault, request permit): described, not run.
    pub admission: Vec<String>,
    pub outcome: OutcomeSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestSummary {
    pub method: String,
    pub host: String,
    pub path: String,
    pub port: u16,
    pub source_principal: Option<String>,
    pub source_zone: Option<String>,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationSummary {
    pub number: u64,
    pub digest: String,
    /// `files` (explain --config-dir or a standalone gateway) or `control`.
    pub source: String,
    pub gateway: String,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerCheck {
    pub protocol: String,
    /// The canonical path matching, authorization and the upstream see.
    pub canonical_path: Option<String>,
    /// Why the listener refused the request (`invalid_path: control byte`...).
    pub refused: Option<String>,
    /// Internal headers removed from the untrusted client's request.
    pub stripped: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostCheck {
    /// The host as matched: lowercase, no port.
    pub host: String,
    /// The bucket that serves it (`shop.test`, `*.example.com`, `*`); `None`: no route.
    pub bucket: Option<String>,
    /// The hostnames of the port's routes (listed when nothing serves the host).
    pub port_hostnames: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleVerdict {
    /// `namespace/name` of the HTTPRoute.
    pub route: String,
    pub rule_index: usize,
    pub rule_name: Option<String>,
    pub match_index: usize,
    pub file: String,
    pub line: usize,
    pub conditions: String,
    /// `matched`, `path`, `method`, `header`, `query` or `precedence`.
    pub verdict: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendChoice {
    /// `namespace/name` of the Backend.
    pub backend: String,
    /// Its index among the rule's backendRefs.
    pub index: usize,
    /// Every backendRef of the rule with its weight.
    pub weights: Vec<(String, u32)>,
    /// `weighted`, `pinned`, `sticky-cookie`, `sticky-hash` or `east-west`.
    pub why: String,
    /// The weighted draw, in `0..sum of weights`.
    pub draw: Option<u32>,
    /// The seed of the draws (`--seed` repeats them).
    pub seed: u64,
    pub detail: String,
    pub set_cookie: Option<String>,
    pub endpoints: Option<EndpointPlan>,
}

/// Where the attempt would go: the local zone or a failover zone, and the endpoints' state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointPlan {
    pub algorithm: String,
    /// `local`, `zone <z>` (through its east-west gateways), `local (panic)` or `none`.
    pub target: String,
    pub detail: String,
    pub local: Vec<EndpointView>,
    /// Failover zones in order: `(zone, available, total)` east-west addresses.
    pub remote: Vec<(String, usize, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub address: String,
    pub zone: Option<String>,
    pub weight: u32,
    pub healthy: bool,
    pub ejected: bool,
    /// In rotation now (healthy and not ejected).
    pub available: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upstream {
    pub path: String,
    pub host: String,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthzCheck {
    pub allowed: bool,
    /// `namespace/name` of the deciding policy; `None` when no policy applies.
    pub policy: Option<String>,
    /// The deciding rule; `None` when the default action decided.
    pub rule: Option<String>,
    /// `allow rule`, `deny rule`, `default allow`, `default deny`, or `no policy`.
    pub reason: String,
    /// What the policies would decide with the dry-run ones enforcing, when there are some.
    pub dry_run: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeSummary {
    /// `proxy`, `redirect` or `reply`.
    pub action: String,
    /// The status of a local reply or redirect (the backend answers a proxied request).
    pub status: Option<u16>,
    /// `x-switchyard-error` of a local reply.
    pub reason: Option<String>,
    pub location: Option<String>,
    /// `namespace/name` of the backend a proxied request goes to.
    pub backend: Option<String>,
}

impl Explanation {
    /// `switchyard explain`'s exit code: 0 proxied, 1 refused, redirected or not found.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.outcome.action != "proxy")
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let r = &self.request;
        let _ = writeln!(
            out,
            "request     {} {}{} (port {})",
            r.method, r.host, r.path, r.port
        );
        if r.source_principal.is_some() || r.source_zone.is_some() || r.client_ip.is_some() {
            let _ = writeln!(
                out,
                "source      principal {}, zone {}, client {}",
                r.source_principal.as_deref().unwrap_or("-"),
                r.source_zone.as_deref().unwrap_or("-"),
                r.client_ip.as_deref().unwrap_or("-")
            );
        }
        let g = &self.generation;
        let _ = writeln!(
            out,
            "generation  {} (digest {}, from {}) gateway {}{}",
            g.number,
            &g.digest[..g.digest.len().min(12)],
            g.source,
            g.gateway,
            g.zone
                .as_deref()
                .map(|z| format!(" zone {z}"))
                .unwrap_or_default()
        );
        let l = &self.listener;
        match (&l.refused, &l.canonical_path) {
            (Some(why), _) => {
                let _ = writeln!(out, "listener    {} refused: {why}", l.protocol);
            }
            (None, Some(p)) => {
                let _ = writeln!(out, "listener    {} ok, canonical path {p}", l.protocol);
            }
            _ => {}
        }
        if !l.stripped.is_empty() {
            let _ = writeln!(
                out,
                "            stripped internal headers: {}",
                l.stripped.join(", ")
            );
        }
        if let Some(h) = &self.host {
            match &h.bucket {
                Some(b) => {
                    let _ = writeln!(out, "host        {} served by hostname {b}", h.host);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "host        {}: no route serves this host; hostnames on this port: {}",
                        h.host,
                        if h.port_hostnames.is_empty() {
                            "(none)".to_string()
                        } else {
                            h.port_hostnames.join(", ")
                        }
                    );
                }
            }
        }
        for (i, v) in self.rules.iter().enumerate() {
            let mark = if v.verdict == "matched" { "+" } else { "-" };
            let name = v
                .rule_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} {mark} {} rule {}{name} match {} at {}:{}: {} -> {}",
                if i == 0 { "rules     " } else { "          " },
                v.route,
                v.rule_index,
                v.match_index,
                v.file,
                v.line,
                v.conditions,
                v.detail
            );
        }
        for f in &self.filters {
            let _ = writeln!(out, "filter      {f}");
        }
        if let Some(b) = &self.backend {
            let _ = writeln!(out, "backend     {}: {}", b.backend, b.detail);
            if let Some(c) = &b.set_cookie {
                let _ = writeln!(out, "            sets cookie {c}");
            }
            if let Some(e) = &b.endpoints {
                let _ = writeln!(
                    out,
                    "endpoints   {} -> {}: {}",
                    e.algorithm, e.target, e.detail
                );
                for ep in &e.local {
                    let state = if ep.available {
                        "in rotation"
                    } else if ep.ejected {
                        "ejected"
                    } else if !ep.healthy {
                        "unhealthy"
                    } else {
                        "out of rotation"
                    };
                    let _ = writeln!(
                        out,
                        "            {} zone {} weight {}: {state}",
                        ep.address,
                        ep.zone.as_deref().unwrap_or("-"),
                        ep.weight
                    );
                }
                for (zone, available, total) in &e.remote {
                    let _ = writeln!(
                        out,
                        "            failover zone {zone}: {available}/{total} east-west gateways in rotation"
                    );
                }
            }
        }
        if let Some(u) = &self.upstream {
            let _ = writeln!(out, "upstream    path {} host {}", u.path, u.host);
            for m in &u.mirrors {
                let _ = writeln!(out, "            mirrored to {m}");
            }
        }
        if let Some(a) = &self.authz {
            let by = match (&a.policy, &a.rule) {
                (Some(p), Some(r)) => format!(" (policy {p}, rule {r})"),
                (Some(p), None) => format!(" (policy {p})"),
                _ => String::new(),
            };
            let verdict = if a.allowed { "allowed" } else { "denied" };
            let _ = writeln!(out, "authz       {verdict}: {}{by}", a.reason);
            if let Some(d) = &a.dry_run {
                let _ = writeln!(out, "            dry run: {d}");
            }
        }
        for a in &self.admission {
            let _ = writeln!(out, "admission   {a}");
        }
        let o = &self.outcome;
        let what = match o.action.as_str() {
            "proxy" => format!("proxy to {}", o.backend.as_deref().unwrap_or("-")),
            "redirect" => format!(
                "redirect {} to {}",
                o.status.unwrap_or(0),
                o.location.as_deref().unwrap_or("-")
            ),
            _ => format!(
                "reply {} (x-switchyard-error: {})",
                o.status.unwrap_or(0),
                o.reason.as_deref().unwrap_or("-")
            ),
        };
        let _ = writeln!(out, "outcome     {what}");
        out
    }
}
