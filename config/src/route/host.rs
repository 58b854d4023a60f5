//! The host index of a route table: exact hostnames, wildcard suffixes and a catch-all bucket.
//!
//! Virtual-host semantics, as in nginx `server_name` and Envoy virtual hosts: a request uses the
//! single most specific bucket that exists for its host (exact host, else the longest matching
//! wildcard suffix, else the catch-all) and only that bucket. If the path matches nothing there,
//! the request does not fall back to a less specific bucket: a route for `shop.example.com`
//! therefore fully owns that host, even if a `*.example.com` or hostname-less route would have
//! matched the path.

use std::collections::HashMap;

use super::matcher::PathIndex;

/// An effective hostname of a rule after intersecting listener and route hostnames.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum HostPattern {
    /// `shop.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`; matches one or more labels.
    Wildcard(String),
    /// No hostname: any host.
    Any,
}

impl HostPattern {
    /// Parses an optional hostname (`None` = any host).
    pub(crate) fn parse(hostname: Option<&str>) -> Self {
        match hostname {
            None => HostPattern::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
                None => HostPattern::Exact(h.to_string()),
            },
        }
    }
}

/// Host buckets, each with its own path index.
#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    exact: HashMap<String, PathIndex>,
    wildcard: HashMap<String, PathIndex>,
    any: Option<PathIndex>,
}

impl HostIndex {
    /// The bucket for a pattern, created on first use.
    pub(crate) fn bucket_mut(&mut self, pattern: &HostPattern) -> &mut PathIndex {
        let (map, key) = match pattern {
            HostPattern::Exact(h) => (&mut self.exact, h),
            HostPattern::Wildcard(s) => (&mut self.wildcard, s),
            HostPattern::Any => return self.any.get_or_insert_with(PathIndex::default),
        };
        // Look up before inserting so that an existing bucket costs no key clone.
        if !map.contains_key(key) {
            map.insert(key.clone(), PathIndex::default());
        }
        map.get_mut(key).expect("inserted above")
    }

    /// Every bucket, for finishing.
    pub(crate) fn buckets_mut(&mut self) -> impl Iterator<Item = &mut PathIndex> {
        self.exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(self.any.iter_mut())
    }

    /// The most specific existing bucket for a lowercase, port-less host.
    ///
    /// Wildcard suffixes are probed by stripping labels from the left, so the longest suffix
    /// wins and `*.example.com` never matches `example.com` itself.
    pub(crate) fn lookup(&self, host: &str) -> Option<&PathIndex> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(bucket) = self.exact.get(host) {
            return Some(bucket);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(bucket) = self.wildcard.get(rest) {
                    return Some(bucket);
                }
            }
        }
        self.any.as_ref()
    }

    /// The pattern of a bucket returned by [`lookup`](Self::lookup) (compared by address).
    pub(crate) fn pattern_of(&self, bucket: &PathIndex) -> Option<HostPattern> {
        let same = |b: &PathIndex| std::ptr::eq(b, bucket);
        if let Some((h, _)) = self.exact.iter().find(|(_, b)| same(b)) {
            return Some(HostPattern::Exact(h.clone()));
        }
        if let Some((s, _)) = self.wildcard.iter().find(|(_, b)| same(b)) {
            return Some(HostPattern::Wildcard(s.clone()));
        }
        self.any
            .as_ref()
            .filter(|b| same(b))
            .map(|_| HostPattern::Any)
    }

    /// Every bucket's pattern, sorted.
    pub(crate) fn patterns(&self) -> Vec<HostPattern> {
        let mut out: Vec<HostPattern> = self
            .exact
            .keys()
            .map(|h| HostPattern::Exact(h.clone()))
            .chain(
                self.wildcard
                    .keys()
                    .map(|s| HostPattern::Wildcard(s.clone())),
            )
            .chain(self.any.iter().map(|_| HostPattern::Any))
            .collect();
        out.sort();
        out
    }

    /// Number of buckets (exact, wildcard, catch-all).
    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }
}
