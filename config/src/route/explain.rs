//! Why a request matched the rule it did, and why each other rule of its host bucket did not:
//! the route table's own matchers, run one candidate at a time (for `switchyard explain`; the
//! request path uses [`RouteTable::find`] alone).

use std::sync::Arc;

use super::host::HostPattern;
use super::matcher::Mismatch;
use super::{RequestView, RouteMatch, RouteTable, Rule};

/// How one (rule, match) candidate of the host bucket fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This candidate won.
    Matched,
    /// It failed this condition (the first one checked: path, method, headers, query).
    Mismatch(Mismatch),
    /// It matches, but the winner comes first in precedence order.
    LostPrecedence,
}

/// One (rule, match) candidate with its verdict.
#[derive(Debug, Clone)]
pub struct CandidateExplain<'a> {
    pub rule: &'a Arc<Rule>,
    /// Which of the rule's `matches` (0 for a rule without matches).
    pub match_index: usize,
    /// The match's conditions, e.g. `PathPrefix /cart, method POST, headers [x-env]`.
    pub conditions: String,
    pub verdict: Verdict,
}

/// What the table did with a request.
#[derive(Debug, Clone)]
pub struct TableExplain<'a> {
    /// The host bucket the request's host selected (`shop.test`, `*.example.com`, or `*` for
    /// routes without hostnames); `None`: no route serves this host.
    pub host_bucket: Option<String>,
    /// The winner, exactly as [`RouteTable::find`] returns it.
    pub found: Option<RouteMatch<'a>>,
    /// Every candidate of the bucket: the winner first, then the others in source order.
    pub candidates: Vec<CandidateExplain<'a>>,
}

fn pattern_text(p: &HostPattern) -> String {
    match p {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(s) => format!("*.{s}"),
        HostPattern::Any => "*".to_string(),
    }
}

impl RouteTable {
    /// Explains [`find`](Self::find): the winner and a verdict for every candidate of the
    /// request's host bucket.
    pub fn explain<'a>(&'a self, req: &RequestView<'_>) -> TableExplain<'a> {
        let found = self.find(req);
        let Some(bucket) = self.hosts.lookup(req.host) else {
            return TableExplain {
                host_bucket: None,
                found,
                candidates: Vec::new(),
            };
        };
        let host_bucket = self.hosts.pattern_of(bucket).map(|p| pattern_text(&p));
        let winner = found.map(|m| (Arc::as_ptr(m.rule), m.match_index));
        let mut ids = bucket.candidate_ids();
        ids.sort_by_key(|&id| {
            let c = &self.candidates[id];
            let is_winner = winner == Some((Arc::as_ptr(&self.rules[c.rule]), c.match_index));
            (!is_winner, c.order)
        });
        let candidates = ids
            .into_iter()
            .map(|id| {
                let c = &self.candidates[id];
                let rule = &self.rules[c.rule];
                let verdict = if winner == Some((Arc::as_ptr(rule), c.match_index)) {
                    Verdict::Matched
                } else {
                    match c.spec.mismatch(req) {
                        Some(m) => Verdict::Mismatch(m),
                        None => Verdict::LostPrecedence,
                    }
                };
                let mut conditions = c.spec.path.describe();
                if let Some(m) = &c.spec.method {
                    conditions.push_str(&format!(", method {m}"));
                }
                if !c.spec.headers.is_empty() {
                    let names: Vec<&str> = c.spec.headers.iter().map(|h| h.name.as_str()).collect();
                    conditions.push_str(&format!(", headers [{}]", names.join(", ")));
                }
                if !c.spec.query.is_empty() {
                    let names: Vec<&str> = c.spec.query.iter().map(|q| q.name.as_str()).collect();
                    conditions.push_str(&format!(", query [{}]", names.join(", ")));
                }
                CandidateExplain {
                    rule,
                    match_index: c.match_index,
                    conditions,
                    verdict,
                }
            })
            .collect();
        TableExplain {
            host_bucket,
            found,
            candidates,
        }
    }

    /// The hostnames this table serves (`*.suffix` for wildcards, `*` for routes without
    /// hostnames), sorted.
    pub fn hostnames(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hosts.patterns().iter().map(pattern_text).collect();
        names.sort();
        names
    }
}
