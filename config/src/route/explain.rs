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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::{build, Generation, SourceFile};

    const SET: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: [{address: "10.0.0.1:80"}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.test, "*.wild.test"]
  rules:
    - matches: [{path: {type: Exact, value: /exact}}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: PathPrefix, value: /p}, method: POST}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: PathPrefix, value: /p}, headers: [{name: x-env, value: beta}]}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}, queryParams: [{name: v, value: "1"}]}]
      backendRefs: [{name: a}]
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: a}]
"#;

    fn generation() -> Generation {
        build(&[SourceFile::new("r.yaml", SET)]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (rule index, verdict) of every candidate, winner first.
    fn verdicts(
        g: &Generation,
        method: Method,
        host: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> (Option<String>, Vec<(usize, Verdict)>) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let view = RequestView {
            method: &method,
            host,
            path,
            query,
            headers: &h,
        };
        let table = &g.gateways[0].ports[0].routes;
        let ex = table.explain(&view);
        let found = table.find(&view).map(|m| m.rule.rule_index);
        assert_eq!(ex.found.map(|m| m.rule.rule_index), found);
        let matched: Vec<usize> = ex
            .candidates
            .iter()
            .filter(|c| c.verdict == Verdict::Matched)
            .map(|c| c.rule.rule_index)
            .collect();
        assert_eq!(
            matched,
            found.into_iter().collect::<Vec<_>>(),
            "one winner, find's"
        );
        let list = ex
            .candidates
            .iter()
            .map(|c| (c.rule.rule_index, c.verdict.clone()))
            .collect();
        (ex.host_bucket, list)
    }

    #[test]
    fn every_candidate_gets_the_reason_it_lost() {
        let g = generation();
        let (bucket, v) = verdicts(&g, Method::GET, "shop.test", "/p/x", None, &[]);
        assert_eq!(bucket.as_deref(), Some("shop.test"));
        assert_eq!(v[0], (4, Verdict::Matched));
        assert!(v.contains(&(0, Verdict::Mismatch(Mismatch::Path))));
        assert!(v.contains(&(1, Verdict::Mismatch(Mismatch::Method(Method::POST)))));
        let env = http::HeaderName::from_static("x-env");
        assert!(v.contains(&(2, Verdict::Mismatch(Mismatch::Header(env)))));
        assert!(v.contains(&(3, Verdict::Mismatch(Mismatch::Path))));

        let (_, v) = verdicts(
            &g,
            Method::POST,
            "shop.test",
            "/p",
            None,
            &[("x-env", "beta")],
        );
        assert_eq!(v[0], (1, Verdict::Matched), "method beats headers");
        assert!(v.contains(&(2, Verdict::LostPrecedence)));
        assert!(v.contains(&(4, Verdict::LostPrecedence)));

        let (_, v) = verdicts(&g, Method::GET, "shop.test", "/re/12", Some("v=2"), &[]);
        assert_eq!(v[0], (4, Verdict::Matched));
        assert!(v.contains(&(3, Verdict::Mismatch(Mismatch::Query("v".into())))));
        let (_, v) = verdicts(&g, Method::GET, "shop.test", "/re/12", Some("v=1"), &[]);
        assert_eq!(v[0], (3, Verdict::Matched));
    }

    #[test]
    fn prefixes_match_segment_wise_like_find() {
        let g = generation();
        for (path, winner) in [
            ("/p", 2),
            ("/p/", 2),
            ("/p//x", 2),
            ("/px", 4),
            ("/exact", 0),
        ] {
            let (_, v) = verdicts(
                &g,
                Method::GET,
                "a.wild.test",
                path,
                None,
                &[("x-env", "beta")],
            );
            assert_eq!(v[0], (winner, Verdict::Matched), "{path}");
        }
    }

    #[test]
    fn hosts_and_buckets() {
        let g = generation();
        let (bucket, _) = verdicts(&g, Method::GET, "x.y.wild.test", "/", None, &[]);
        assert_eq!(bucket.as_deref(), Some("*.wild.test"));
        let (bucket, v) = verdicts(&g, Method::GET, "other.test", "/", None, &[]);
        assert_eq!((bucket, v.len()), (None, 0));
        let table = &g.gateways[0].ports[0].routes;
        assert_eq!(table.hostnames(), ["*.wild.test", "shop.test"]);
        let candidate = table
            .explain(&RequestView {
                method: &Method::GET,
                host: "shop.test",
                path: "/",
                query: None,
                headers: &HeaderMap::new(),
            })
            .candidates
            .into_iter()
            .find(|c| c.rule.rule_index == 2)
            .unwrap();
        assert_eq!(candidate.conditions, "PathPrefix /p, headers [x-env]");
        assert_eq!(candidate.rule.file, "r.yaml");
    }
}
