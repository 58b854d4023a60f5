//! Pure Gateway API path rewriting and redirect `Location` building, for the gateway's filter stage.

use std::fmt::Write as _;

use crate::route::{PathModifier, Redirect};

/// Applies a path modifier to a request path.
///
/// `ReplaceFullPath` replaces the whole path. `ReplacePrefixMatch` replaces the matched
/// PathPrefix (`matched_prefix`, stored with its trailing `/` trimmed, `"/"` for the root) and
/// keeps the rest, following the HTTPPathModifier table:
///
/// | path       | prefix | replacement | result     |
/// |------------|--------|-------------|------------|
/// | `/foo/bar` | `/foo` | `/xyz`      | `/xyz/bar` |
/// | `/foo/bar` | `/foo` | `/xyz/`     | `/xyz/bar` |
/// | `/foo`     | `/foo` | `/xyz`      | `/xyz`     |
/// | `/foo/`    | `/foo` | `/xyz`      | `/xyz/`    |
/// | `/foo/bar` | `/foo` | `/`         | `/bar`     |
/// | `/foo`     | `/foo` | `/`         | `/`        |
///
/// The junction never produces `//`. Without a matched prefix (not a PathPrefix match, which
/// validation rules out) the root prefix is assumed.
pub fn rewrite_path(path: &str, modifier: &PathModifier, matched_prefix: Option<&str>) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(full) => full.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let prefix = matched_prefix.unwrap_or("/").trim_end_matches('/');
            // The prefix matched segment-wise, so the rest is empty or starts with '/'.
            let rest = path
                .get(prefix.len()..)
                .filter(|_| path.starts_with(prefix))
                .unwrap_or(path);
            let base = replacement.trim_end_matches('/');
            let mut out = String::with_capacity(base.len() + rest.len() + 1);
            if !base.starts_with('/') {
                out.push('/');
            }
            out.push_str(base);
            if out.ends_with('/') {
                out.push_str(rest.trim_start_matches('/'));
            } else {
                out.push_str(rest);
            }
            out
        }
    }
}

/// Builds the absolute `Location` of a `RequestRedirect`.
///
/// Scheme and host default to the request's. Port, per the Gateway API: the filter's port if
/// set; else, if the filter sets a scheme, that scheme's well-known port; else the listener's
/// port. The port is omitted for `http`:80 and `https`:443. The path is rewritten with
/// [`rewrite_path`] when the filter has a path modifier, and the query string is kept.
pub fn redirect_location(
    r: &Redirect,
    req_scheme: &str,
    req_host: &str,
    listener_port: u16,
    path: &str,
    query: Option<&str>,
    matched_prefix: Option<&str>,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req_scheme);
    let host = r.hostname.as_deref().unwrap_or(req_host);
    let port = match (r.port, r.scheme.as_deref()) {
        (Some(port), _) => port,
        (None, Some(s)) => well_known_port(s).unwrap_or(listener_port),
        (None, None) => listener_port,
    };
    let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
    out.push_str(scheme);
    out.push_str("://");
    if host.contains(':') && !host.starts_with('[') {
        // A bare IPv6 literal needs brackets in a URL.
        out.push('[');
        out.push_str(host);
        out.push(']');
    } else {
        out.push_str(host);
    }
    if well_known_port(scheme) != Some(port) {
        let _ = write!(out, ":{port}");
    }
    match &r.path {
        Some(modifier) => out.push_str(&rewrite_path(path, modifier, matched_prefix)),
        None => out.push_str(path),
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(repl: &str) -> PathModifier {
        PathModifier::ReplacePrefixMatch(repl.into())
    }

    #[test]
    fn replace_prefix_match_follows_the_spec_table() {
        // (request path, prefix as written, replacement, expected)
        let table = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/foo/bar/baz", "/foo/bar", "/one", "/one/baz"),
            ("/bar", "/", "/xyz", "/xyz/bar"),
            ("/", "/", "/xyz", "/xyz/"),
        ];
        for (path, written, repl, want) in table {
            let stored = written.trim_end_matches('/');
            let stored = if stored.is_empty() { "/" } else { stored };
            assert_eq!(
                rewrite_path(path, &prefix(repl), Some(stored)),
                want,
                "{path} {written} {repl}"
            );
        }
    }

    #[test]
    fn replace_full_path_ignores_the_prefix() {
        let m = PathModifier::ReplaceFullPath("/new".into());
        assert_eq!(rewrite_path("/old/path", &m, Some("/old")), "/new");
        assert_eq!(rewrite_path("/old/path", &m, None), "/new");
    }

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status_code: 302,
        }
    }

    #[test]
    fn redirect_port_rules() {
        let loc = |r: &Redirect, scheme, port| {
            redirect_location(r, scheme, "example.com", port, "/p", Some("a=1"), None)
        };
        // Nothing set: keep scheme, host and the listener port.
        assert_eq!(
            loc(&redirect(), "http", 8080),
            "http://example.com:8080/p?a=1"
        );
        assert_eq!(loc(&redirect(), "http", 80), "http://example.com/p?a=1");
        // Scheme set, no port: the scheme's well-known port, omitted.
        let https = Redirect {
            scheme: Some("https".into()),
            ..redirect()
        };
        assert_eq!(loc(&https, "http", 8080), "https://example.com/p?a=1");
        // Port set wins.
        let port = Redirect {
            scheme: Some("https".into()),
            port: Some(8443),
            ..redirect()
        };
        assert_eq!(loc(&port, "http", 80), "https://example.com:8443/p?a=1");
        let port443 = Redirect {
            port: Some(443),
            ..redirect()
        };
        assert_eq!(loc(&port443, "https", 8443), "https://example.com/p?a=1");
        assert_eq!(loc(&port443, "http", 80), "http://example.com:443/p?a=1");
        // Hostname set.
        let host = Redirect {
            hostname: Some("www.example.com".into()),
            ..redirect()
        };
        assert_eq!(loc(&host, "https", 443), "https://www.example.com/p?a=1");
    }

    #[test]
    fn redirect_paths_and_queries() {
        let r = Redirect {
            path: Some(prefix("/v2")),
            ..redirect()
        };
        assert_eq!(
            redirect_location(&r, "http", "h", 80, "/v1/items", None, Some("/v1")),
            "http://h/v2/items"
        );
        let r = Redirect {
            path: Some(PathModifier::ReplaceFullPath("/moved".into())),
            ..redirect()
        };
        assert_eq!(
            redirect_location(&r, "http", "h", 80, "/x", Some(""), None),
            "http://h/moved"
        );
        assert_eq!(
            redirect_location(&redirect(), "http", "::1", 8080, "/", None, None),
            "http://[::1]:8080/"
        );
    }
}
