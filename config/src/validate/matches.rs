//! Validation of HTTPRoute `matches` (path, headers, query parameters, method) into compiled [`MatchSpec`]s.

use std::collections::HashSet;

use http::{HeaderValue, Method};
use regex::Regex;

use super::filter::header_name;
use super::{Field, Scope};
use crate::raw::route::{PathMatchType, RawMatch, RawValueMatch, ValueMatchType};
use crate::report::{Reporter, Site};
use crate::route::{HeaderMatch, MatchSpec, PathMatch, QueryMatch, ValueMatch};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The match of a rule without matches: PathPrefix `/`.
pub(crate) fn root_match() -> MatchSpec {
    MatchSpec {
        path: PathMatch::prefix("/"),
        method: None,
        headers: Vec::new(),
        query: Vec::new(),
    }
}

/// Compiles one entry of `matches`; `None` (after reporting) when any part is invalid.
pub(crate) fn compile_match(
    m: &RawMatch,
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<MatchSpec> {
    let site = scope.site;
    let mut ok = true;
    let path = match &m.path {
        None => PathMatch::prefix("/"),
        Some(p) => {
            let path_field = base.key("path");
            let field = path_field.key("value");
            match p.kind {
                PathMatchType::RegularExpression => match full_match_regex(&p.value) {
                    Ok(regex) => PathMatch::Regex {
                        regex,
                        pattern: p.value.clone(),
                    },
                    Err(e) => {
                        rep.error(site, field, e);
                        return None;
                    }
                },
                kind => {
                    if let Err(e) = check_path(&p.value) {
                        rep.error(site, field, e);
                        return None;
                    }
                    if kind == PathMatchType::Exact {
                        PathMatch::Exact(p.value.clone())
                    } else {
                        PathMatch::prefix(&p.value)
                    }
                }
            }
        }
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    let mut seen = HashSet::new();
    let list = base.key("headers");
    for (k, h) in m.headers.iter().enumerate() {
        let field = list.at(k);
        let Some(name) = header_name(&h.name, &field.key("name"), scope, rep) else {
            ok = false;
            continue;
        };
        if h.kind == ValueMatchType::Exact && HeaderValue::from_str(&h.value).is_err() {
            rep.error(
                site,
                field.key("value"),
                format!("invalid header value {:?}", h.value),
            );
            ok = false;
            continue;
        }
        let Some(value) = value_match(h, &field, site, rep) else {
            ok = false;
            continue;
        };
        // Only the first entry for a header name counts.
        if seen.insert(name.clone()) {
            headers.push(HeaderMatch { name, value });
        }
    }
    let mut query = Vec::with_capacity(m.query_params.len());
    let mut seen = HashSet::new();
    let list = base.key("queryParams");
    for (k, q) in m.query_params.iter().enumerate() {
        let field = list.at(k);
        if q.name.is_empty() {
            rep.error(site, field.key("name"), "query parameter name is empty");
            ok = false;
            continue;
        }
        let Some(value) = value_match(q, &field, site, rep) else {
            ok = false;
            continue;
        };
        if seen.insert(q.name.clone()) {
            query.push(QueryMatch {
                name: q.name.clone(),
                value,
            });
        }
    }
    let method = match &m.method {
        None => None,
        Some(name) if METHODS.contains(&name.as_str()) => Method::from_bytes(name.as_bytes()).ok(),
        Some(name) => {
            rep.error(
                site,
                base.key("method"),
                format!(
                    "unsupported method {name:?} (supported: {})",
                    METHODS.join(", ")
                ),
            );
            ok = false;
            None
        }
    };
    ok.then_some(MatchSpec {
        path,
        method,
        headers,
        query,
    })
}

/// A header or query value match; `field` is the entry's path.
fn value_match(
    v: &RawValueMatch,
    field: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<ValueMatch> {
    match v.kind {
        ValueMatchType::Exact => Some(ValueMatch::Exact(v.value.clone())),
        ValueMatchType::RegularExpression => match full_match_regex(&v.value) {
            Ok(re) => Some(ValueMatch::Regex(re)),
            Err(e) => {
                rep.error(site, field.key("value"), e);
                None
            }
        },
    }
}

/// Compiles a regex that must match the whole input.
///
/// The pattern is checked on its own first: wrapped in `^(?:…)$`, an unbalanced pattern such
/// as `a)|(b` would compile with a different meaning, and errors would quote the wrapper.
fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    let describe = |e: regex::Error| {
        let text = e.to_string();
        let why = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text.lines().last().unwrap_or("invalid"))
            .to_string();
        format!("invalid regular expression {pattern:?}: {why}")
    };
    Regex::new(pattern).map_err(describe)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(describe)
}

/// Exact and PathPrefix values: absolute, and free of segments that normalization would change.
fn check_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("path {value:?} must start with '/'"));
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#", "?"] {
        if value.contains(bad) {
            return Err(format!("path {value:?} must not contain {bad:?}"));
        }
    }
    if value.ends_with("/..") || value.ends_with("/.") {
        return Err(format!(
            "path {value:?} must not end with a '.' or '..' segment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_full_matches_and_checked_unwrapped() {
        let re = full_match_regex("/a|/b").unwrap();
        assert!(
            re.is_match("/a") && re.is_match("/b") && !re.is_match("/ab") && !re.is_match("x/a")
        );
        assert_eq!(
            full_match_regex("a)|(b").unwrap_err(),
            "invalid regular expression \"a)|(b\": unopened group"
        );
    }

    #[test]
    fn path_values() {
        assert!(check_path("/").is_ok() && check_path("/api/v1/").is_ok());
        for bad in [
            "api", "", "/a/./b", "/a/../b", "/a%2Fb", "/a#b", "/a?b", "/a/..", "/a/.",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
