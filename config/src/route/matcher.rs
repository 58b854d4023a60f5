//! Compiled request matches (path, method, headers, query) and the per-host path index that ranks them.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use super::RequestView;

/// A compiled path match.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    /// The whole path, byte for byte.
    Exact(String),
    /// Segment-wise prefix, stored without its trailing `/` (`"/"` for the root).
    Prefix(String),
    /// Full match of an anchored regex; `pattern` is the user's text (its length ranks it).
    Regex { regex: Regex, pattern: String },
}

impl PathMatch {
    /// A PathPrefix match; the trailing `/` of the value is ignored.
    pub(crate) fn prefix(value: &str) -> Self {
        PathMatch::Prefix(root_if_empty(trim_trailing_slashes(value)).to_string())
    }
}

/// A compiled header or query-parameter value match.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(want) => want.as_bytes() == value,
            ValueMatch::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// A header condition: names compare case-insensitively (HeaderName is lowercase).
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

impl HeaderMatch {
    /// A header with several values is matched against the values joined with ",".
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        match values.next() {
            None => self.value.matches(first.as_bytes()),
            Some(second) => {
                let mut joined = Vec::with_capacity(first.len() + second.len() + 1);
                joined.extend_from_slice(first.as_bytes());
                for v in std::iter::once(second).chain(values) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                self.value.matches(&joined)
            }
        }
    }
}

/// A query-parameter condition: the name is case-sensitive and compared percent-decoded.
#[derive(Debug, Clone)]
pub(crate) struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

impl QueryMatch {
    /// Only the first occurrence of a repeated parameter counts.
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(name).as_ref() == self.name.as_bytes() {
                return self.value.matches(&percent_decode(value));
            }
        }
        false
    }
}

/// Decodes `%XX` escapes (malformed ones stay literal). Borrows when there is nothing to decode.
fn percent_decode(s: &str) -> std::borrow::Cow<'_, [u8]> {
    percent_encoding::percent_decode_str(s).into()
}

/// One entry of an HTTPRoute rule's `matches`, compiled. All conditions are ANDed.
#[derive(Debug, Clone)]
pub(crate) struct MatchSpec {
    pub path: PathMatch,
    pub method: Option<Method>,
    /// Distinct names only: when a match names a header twice, only the first entry counts.
    pub headers: Vec<HeaderMatch>,
    /// Distinct names only, as for headers.
    pub query: Vec<QueryMatch>,
}

impl MatchSpec {
    /// Method, headers and query; the path is checked by the index.
    fn conditions_match(&self, req: &RequestView<'_>) -> bool {
        if let Some(method) = &self.method {
            if method != req.method {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

/// Where a match was declared: the last tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SourceOrder {
    /// Index of the file in path order.
    pub file: usize,
    /// Index of the YAML document in the file.
    pub document: usize,
    /// Index of the rule in the route.
    pub rule: usize,
    /// Index of the match in the rule.
    pub match_index: usize,
}

/// One (rule, match) pair of a route table; path indexes refer to these by position.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub rule: usize,
    pub match_index: usize,
    pub spec: Arc<MatchSpec>,
    pub order: SourceOrder,
}

impl Candidate {
    /// Gateway API tie-break among equal paths: method, then more headers, then more query
    /// params, then source order.
    fn tie_break(&self) -> (Reverse<bool>, Reverse<usize>, Reverse<usize>, SourceOrder) {
        (
            Reverse(self.spec.method.is_some()),
            Reverse(self.spec.headers.len()),
            Reverse(self.spec.query.len()),
            self.order,
        )
    }
}

/// The path index of one host bucket: exact paths and prefixes hashed, regexes listed.
///
/// Lookup order: exact path, then regexes (longer pattern first), then prefixes probed from
/// the request path's longest segment prefix down to `/`. Each list is sorted by
/// [`Candidate::tie_break`], and the first candidate whose conditions match wins.
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
    regex: Vec<usize>,
}

impl PathIndex {
    pub(crate) fn insert(&mut self, id: usize, candidate: &Candidate) {
        let (map, path) = match &candidate.spec.path {
            PathMatch::Exact(p) => (&mut self.exact, p),
            PathMatch::Prefix(p) => (&mut self.prefix, p),
            PathMatch::Regex { .. } => return self.regex.push(id),
        };
        match map.get_mut(path) {
            Some(ids) => ids.push(id),
            None => {
                map.insert(path.clone(), vec![id]);
            }
        }
    }

    /// Sorts every list into precedence order and drops repeats (a rule reached through two
    /// listeners with the same hostname).
    pub(crate) fn finish(&mut self, candidates: &[Candidate]) {
        let by_tie =
            |a: &usize, b: &usize| candidates[*a].tie_break().cmp(&candidates[*b].tie_break());
        for ids in self.exact.values_mut().chain(self.prefix.values_mut()) {
            ids.sort_by(by_tie);
            ids.dedup();
        }
        let pattern_len = |id: usize| match &candidates[id].spec.path {
            PathMatch::Regex { pattern, .. } => pattern.len(),
            _ => 0,
        };
        self.regex.sort_by(|a, b| {
            pattern_len(*b)
                .cmp(&pattern_len(*a))
                .then_with(|| by_tie(a, b))
        });
        self.regex.dedup();
    }

    /// The winning candidate and, for a prefix match, the matched prefix.
    pub(crate) fn find<'a>(
        &'a self,
        req: &RequestView<'_>,
        candidates: &'a [Candidate],
    ) -> Option<(usize, Option<&'a str>)> {
        let path = req.path;
        if let Some(ids) = self.exact.get(path) {
            if let Some(&id) = ids
                .iter()
                .find(|&&id| candidates[id].spec.conditions_match(req))
            {
                return Some((id, None));
            }
        }
        for &id in &self.regex {
            let spec = &candidates[id].spec;
            if let PathMatch::Regex { regex, .. } = &spec.path {
                if regex.is_match(path) && spec.conditions_match(req) {
                    return Some((id, None));
                }
            }
        }
        if self.prefix.is_empty() {
            return None;
        }
        let mut probe = root_if_empty(trim_trailing_slashes(path));
        loop {
            if let Some(ids) = self.prefix.get(probe) {
                for &id in ids {
                    let spec = &candidates[id].spec;
                    if spec.conditions_match(req) {
                        if let PathMatch::Prefix(prefix) = &spec.path {
                            return Some((id, Some(prefix.as_str())));
                        }
                    }
                }
            }
            if probe == "/" {
                return None;
            }
            probe = match probe.rfind('/') {
                Some(i) if i > 0 => root_if_empty(trim_trailing_slashes(&probe[..i])),
                _ => "/",
            };
        }
    }
}

/// The first condition of a match that a request fails, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The path does not match.
    Path,
    /// The method differs from the one required.
    Method(Method),
    /// The named header is missing or its value does not match.
    Header(HeaderName),
    /// The named query parameter is missing or its value does not match.
    Query(String),
}

impl PathMatch {
    /// Whether `path` matches, by the same rules as [`PathIndex::find`] (a prefix matches
    /// when it is one of the request path's segment prefixes, trailing `/` ignored).
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Regex { regex, .. } => regex.is_match(path),
            PathMatch::Prefix(p) => {
                let mut probe = root_if_empty(trim_trailing_slashes(path));
                loop {
                    if probe == p {
                        return true;
                    }
                    if probe == "/" {
                        return false;
                    }
                    probe = match probe.rfind('/') {
                        Some(i) if i > 0 => root_if_empty(trim_trailing_slashes(&probe[..i])),
                        _ => "/",
                    };
                }
            }
        }
    }

    /// `Exact /a`, `PathPrefix /a`, `RegularExpression /a.*`.
    pub(crate) fn describe(&self) -> String {
        match self {
            PathMatch::Exact(p) => format!("Exact {p}"),
            PathMatch::Prefix(p) => format!("PathPrefix {p}"),
            PathMatch::Regex { pattern, .. } => format!("RegularExpression {pattern}"),
        }
    }
}

impl MatchSpec {
    /// The first condition the request fails, in the order path, method, headers, query;
    /// `None` when the match matches.
    pub(crate) fn mismatch(&self, req: &RequestView<'_>) -> Option<Mismatch> {
        if !self.path.matches(req.path) {
            return Some(Mismatch::Path);
        }
        if let Some(method) = &self.method {
            if method != req.method {
                return Some(Mismatch::Method(method.clone()));
            }
        }
        if let Some(h) = self.headers.iter().find(|h| !h.matches(req.headers)) {
            return Some(Mismatch::Header(h.name.clone()));
        }
        if let Some(q) = self.query.iter().find(|q| !q.matches(req.query)) {
            return Some(Mismatch::Query(q.name.clone()));
        }
        None
    }
}

impl PathIndex {
    /// Every candidate id of this bucket, ascending, once each.
    pub(crate) fn candidate_ids(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .exact
            .values()
            .chain(self.prefix.values())
            .flatten()
            .chain(self.regex.iter())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

fn trim_trailing_slashes(s: &str) -> &str {
    s.trim_end_matches('/')
}

fn root_if_empty(s: &str) -> &str {
    if s.is_empty() {
        "/"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain").as_ref(), b"plain");
        assert_eq!(percent_decode("a%20b").as_ref(), b"a b");
        assert_eq!(percent_decode("%E2%9C%93").as_ref(), "✓".as_bytes());
        assert_eq!(percent_decode("100%").as_ref(), b"100%");
        assert_eq!(percent_decode("%zz%4").as_ref(), b"%zz%4");
        assert_eq!(percent_decode("%41%").as_ref(), b"A%");
    }

    #[test]
    fn query_uses_first_occurrence_and_decodes_names() {
        let q = |name: &str, value: &str| QueryMatch {
            name: name.into(),
            value: ValueMatch::Exact(value.into()),
        };
        assert!(q("v", "1").matches(Some("v=1&v=2")));
        assert!(!q("v", "2").matches(Some("v=1&v=2")));
        assert!(q("a b", "c&d").matches(Some("x&a%20b=c%26d")));
        assert!(q("flag", "").matches(Some("flag")));
        assert!(!q("V", "1").matches(Some("v=1")));
        assert!(!q("v", "1").matches(None));
    }
}
