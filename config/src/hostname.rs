//! Hostname syntax checks and the Gateway API listener ∩ route hostname intersection.

use crate::route::HostPattern;

/// Checks a Gateway API hostname: a lowercase RFC 1123 DNS name, optionally starting with a
/// `*.` wildcard label when `wildcard` is allowed; no IP address, no port, no trailing dot.
pub(crate) fn check(hostname: &str, wildcard: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid hostname {hostname:?}: {why}"));
    let name = match hostname.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return bad("a wildcard is not allowed here"),
        None => hostname,
    };
    if name.is_empty() {
        return bad("empty");
    }
    if hostname.len() > 253 {
        return bad("longer than 253 characters");
    }
    if name.contains('*') {
        return bad("`*` is only allowed as the whole first label (`*.example.com`)");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return bad("IP addresses are not allowed");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("only lowercase letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

/// The effective hostnames of a route on a listener (Gateway API `hostnames` semantics).
///
/// - listener without hostname: the route's hostnames, or any host if it has none;
/// - route without hostnames: the listener's hostname;
/// - both: each route hostname intersected with the listener's, keeping the more specific
///   (listener `*.example.com` + route `foo.example.com` gives `foo.example.com`; listener
///   `foo.example.com` + route `*.example.com` gives `foo.example.com`).
///
/// An empty result means the route does not attach to that listener.
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<HostPattern> {
    let mut out: Vec<HostPattern> = match (listener, route) {
        (None, []) => vec![HostPattern::Any],
        (None, hosts) => hosts.iter().map(|h| HostPattern::parse(Some(h))).collect(),
        (Some(l), []) => vec![HostPattern::parse(Some(l))],
        (Some(l), hosts) => hosts
            .iter()
            .filter_map(|h| intersect_one(l, h))
            .map(|h| HostPattern::parse(Some(h)))
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn intersect_one<'a>(listener: &'a str, route: &'a str) -> Option<&'a str> {
    if listener == route {
        return Some(route);
    }
    match (listener.strip_prefix("*."), route.strip_prefix("*.")) {
        // Both exact and different.
        (None, None) => None,
        // Listener wildcard, route exact or narrower wildcard: the route's.
        (Some(suffix), None) => covers(suffix, route).then_some(route),
        // Route wildcard, listener exact: the listener's.
        (None, Some(suffix)) => covers(suffix, listener).then_some(listener),
        (Some(ls), Some(rs)) => {
            if covers(ls, rs) {
                Some(route)
            } else if covers(rs, ls) {
                Some(listener)
            } else {
                None
            }
        }
    }
}

/// True when `name` has at least one more label in front of `suffix`.
fn covers(suffix: &str, name: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listener: Option<&str>, route: &[&str]) -> Vec<String> {
        let route: Vec<String> = route.iter().map(|s| s.to_string()).collect();
        intersect(listener, &route)
            .into_iter()
            .map(|p| match p {
                HostPattern::Exact(h) => h,
                HostPattern::Wildcard(s) => format!("*.{s}"),
                HostPattern::Any => "(any)".into(),
            })
            .collect()
    }

    #[test]
    fn intersection_follows_the_spec_examples() {
        assert_eq!(
            hosts(Some("*.example.com"), &["foo.example.com"]),
            ["foo.example.com"]
        );
        assert_eq!(
            hosts(Some("foo.example.com"), &["*.example.com"]),
            ["foo.example.com"]
        );
        assert_eq!(hosts(None, &["a.com", "b.com"]), ["a.com", "b.com"]);
        assert_eq!(hosts(None, &[]), ["(any)"]);
        assert_eq!(hosts(Some("*.example.com"), &[]), ["*.example.com"]);
        assert_eq!(
            hosts(
                Some("foo.example.com"),
                &["foo.example.com", "bar.example.com"]
            ),
            ["foo.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["*.foo.example.com"]),
            ["*.foo.example.com"]
        );
        assert_eq!(
            hosts(Some("*.foo.example.com"), &["*.example.com"]),
            ["*.foo.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["a.b.example.com"]),
            ["a.b.example.com"]
        );
        assert!(hosts(Some("*.example.com"), &["example.com"]).is_empty());
        assert!(hosts(Some("example.com"), &["*.example.com"]).is_empty());
        assert!(hosts(Some("foo.example.com"), &["foo.example.org"]).is_empty());
        assert!(hosts(Some("*.example.com"), &["fooexample.com"]).is_empty());
    }

    #[test]
    fn hostname_syntax() {
        for ok in [
            "example.com",
            "a-b.c0.example",
            "*.example.com",
            "localhost",
            "x",
        ] {
            assert_eq!(check(ok, true), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Example.com",
            "*.",
            "*",
            "a.*.com",
            "foo*.com",
            "10.0.0.1",
            "a..b",
            "-a.com",
            "a_b.com",
            "a.com.",
            "h:80",
        ] {
            assert!(check(bad, true).is_err(), "{bad}");
        }
        assert!(check("*.example.com", false)
            .unwrap_err()
            .contains("wildcard"));
    }
}
