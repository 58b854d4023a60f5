//! The compiled route table of one listener port: host-indexed, precedence-ordered HTTPRoute rules.
//!
//! Matching follows the Gateway API: the host picks one bucket (see [`host`]), then within it
//! an Exact path wins over a RegularExpression (longer pattern first), which wins over a
//! PathPrefix (longer prefix first). Ties between equal paths go to the match with a method,
//! then more header matches, then more query matches, then the earliest in source order.

mod explain;
mod host;
mod matcher;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::model::{Backend, ObjRef, Retry, Timeouts};
use crate::resilience::TrafficPolicy;

pub use explain::{CandidateExplain, TableExplain, Verdict};
pub(crate) use host::{HostIndex, HostPattern};
pub use matcher::Mismatch;
pub(crate) use matcher::{
    Candidate, HeaderMatch, MatchSpec, PathMatch, QueryMatch, SourceOrder, ValueMatch,
};

/// The request as the router sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'r> {
    /// The method.
    pub method: &'r http::Method,
    /// The host, lowercase, without port.
    pub host: &'r str,
    /// The path, without the query.
    pub path: &'r str,
    /// The raw query string (after `?`), if any.
    pub query: Option<&'r str>,
    /// The request headers.
    pub headers: &'r http::HeaderMap,
}

/// The rule a request matched, and how.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'a> {
    /// The matched rule.
    pub rule: &'a Arc<Rule>,
    /// For a PathPrefix match, the prefix (trailing `/` trimmed, `"/"` for the root); used by
    /// `ReplacePrefixMatch`.
    pub matched_prefix: Option<&'a str>,
    /// Which of the rule's `matches` matched (0 for a rule without matches).
    pub match_index: usize,
}

/// One HTTPRoute rule, compiled: what to do with a request that matched it.
#[derive(Debug)]
pub struct Rule {
    /// The HTTPRoute it came from.
    pub route: ObjRef,
    /// Its index in `spec.rules`.
    pub rule_index: usize,
    /// The rule's `name`, if set.
    pub name: Option<String>,
    /// The source file.
    pub file: String,
    /// The line of the rule in that file.
    pub line: usize,
    /// Filters, in declaration order.
    pub filters: Vec<Filter>,
    /// Weighted backends; empty when the rule only redirects (or answers 500).
    pub backends: Vec<WeightedBackend>,
    /// Sum of the backend weights; 0 means no backend can be picked (500).
    pub total_weight: u32,
    /// Request and per-attempt timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// The TrafficPolicy that applies (rule-level over route-level), if any.
    pub traffic: Option<Arc<TrafficPolicy>>,
}

/// A backend of a rule with its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// The backend.
    pub backend: Arc<Backend>,
    /// Relative weight (0 = no traffic).
    pub weight: u32,
    /// Filters applied only when this backend is picked.
    pub filters: Vec<Filter>,
}

/// A compiled HTTPRoute filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Edit request headers before forwarding.
    RequestHeaderModifier(HeaderModifier),
    /// Edit response headers before replying.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect instead of forwarding.
    RequestRedirect(Redirect),
    /// Rewrite host and/or path before forwarding.
    UrlRewrite(UrlRewrite),
    /// Send a copy of the request to another backend, ignoring its response.
    RequestMirror(Mirror),
}

/// Header edits: set (replace), add (append), remove, applied in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replace any existing values.
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Append a value.
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Remove all values.
    pub remove: Vec<http::HeaderName>,
}

/// A `RequestRedirect` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; `None` keeps the request's.
    pub scheme: Option<String>,
    /// `None` keeps the request's host.
    pub hostname: Option<String>,
    /// `None` follows the Gateway API port rules (see [`redirect_location`](crate::redirect_location)).
    pub port: Option<u16>,
    /// `None` keeps the request's path.
    pub path: Option<PathModifier>,
    /// 301, 302 (default), 303, 307 or 308.
    pub status_code: u16,
}

/// A `URLRewrite` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRewrite {
    /// Replace the Host header.
    pub hostname: Option<String>,
    /// Rewrite the path.
    pub path: Option<PathModifier>,
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the matched PathPrefix.
    ReplacePrefixMatch(String),
}

/// A `RequestMirror` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Where the copies go.
    pub backend: Arc<Backend>,
    /// Share of requests mirrored, 0..=100 (default 100).
    pub percent: u32,
}

/// The routes of one (gateway, port), indexed by host then path.
#[derive(Debug, Default)]
pub struct RouteTable {
    rules: Vec<Arc<Rule>>,
    candidates: Vec<Candidate>,
    hosts: HostIndex,
}

impl RouteTable {
    /// Finds the rule for a request, or `None` (404).
    pub fn find<'a>(&'a self, req: &RequestView<'_>) -> Option<RouteMatch<'a>> {
        let bucket = self.hosts.lookup(req.host)?;
        let (id, matched_prefix) = bucket.find(req, &self.candidates)?;
        let candidate = &self.candidates[id];
        Some(RouteMatch {
            rule: &self.rules[candidate.rule],
            matched_prefix,
            match_index: candidate.match_index,
        })
    }

    /// Number of distinct rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The distinct rules, in the order they were attached.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.iter()
    }

    /// True when no rule is attached.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of host buckets (exact hosts, wildcard suffixes, catch-all).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

/// Assembles a [`RouteTable`]. Each rule is added once, with all its effective hostnames on
/// this port (the compile stage merges them over listeners and parents).
#[derive(Debug, Default)]
pub(crate) struct RouteTableBuilder {
    table: RouteTable,
}

impl RouteTableBuilder {
    /// Adds a rule under the given effective hostnames. `matches` is never empty (a rule
    /// without matches has the single match PathPrefix `/`).
    pub(crate) fn add(
        &mut self,
        rule: &Arc<Rule>,
        matches: &[Arc<MatchSpec>],
        hosts: &[HostPattern],
        file: usize,
        document: usize,
    ) {
        let table = &mut self.table;
        let rule_id = table.rules.len();
        table.rules.push(Arc::clone(rule));
        for (match_index, spec) in matches.iter().enumerate() {
            let id = table.candidates.len();
            table.candidates.push(Candidate {
                rule: rule_id,
                match_index,
                spec: Arc::clone(spec),
                order: SourceOrder {
                    file,
                    document,
                    rule: rule.rule_index,
                    match_index,
                },
            });
            for host in hosts {
                table
                    .hosts
                    .bucket_mut(host)
                    .insert(id, &table.candidates[id]);
            }
        }
    }

    /// Sorts every bucket into precedence order.
    pub(crate) fn build(mut self) -> RouteTable {
        let candidates = &self.table.candidates;
        for bucket in self.table.hosts.buckets_mut() {
            bucket.finish(candidates);
        }
        self.table
    }
}
