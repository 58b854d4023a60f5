//! Facts about the downstream request that several phases need: its canonical host, the
//! forwarding headers the upstream gets, a request id, and the balancer's hash key.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{COOKIE, HOST};
use http::HeaderMap;
use pingora::http::RequestHeader;
use switchyard_config::HashKey;

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REQUEST_ID: &str = "x-request-id";

/// The request's host as written by the client (Host header, else the URI authority),
/// port included. Empty when the request names none.
pub fn raw_host(req: &RequestHeader) -> &str {
    req.headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// The host used for matching: lowercase, without port or trailing dot.
pub fn match_host(raw: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A new request id: 128 random bits as 32 hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The value of X-Forwarded-For to send upstream: the client's address appended to any
/// list the client sent.
pub fn forwarded_for(existing: Option<&[u8]>, client: Option<IpAddr>) -> Option<String> {
    let client = client?.to_string();
    match existing.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(prev) if !prev.trim().is_empty() => Some(format!("{}, {client}", prev.trim())),
        _ => Some(client),
    }
}

/// The bytes a consistent-hash balancer keys on, if the request carries them.
pub fn hash_key<'a>(
    key: &HashKey,
    headers: &'a HeaderMap,
    client: Option<IpAddr>,
) -> Option<Cow<'a, [u8]>> {
    match key {
        HashKey::Header(name) => headers.get(name).map(|v| Cow::Borrowed(v.as_bytes())),
        HashKey::Cookie(name) => headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(Cow::Borrowed(v.as_bytes()))
            }),
        HashKey::SourceIp => client.map(|ip| Cow::Owned(ip.to_string().into_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_lowercased_and_port_stripped() {
        assert_eq!(match_host("Example.COM:8080"), "example.com");
        assert_eq!(match_host("example.com."), "example.com");
        assert_eq!(match_host("[::1]:8080"), "::1");
        assert_eq!(match_host("a.test"), "a.test");
        assert!(matches!(match_host("a.test:1"), Cow::Borrowed(_)));
    }

    #[test]
    fn forwarded_for_appends() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(forwarded_for(None, Some(ip)).unwrap(), "10.0.0.9");
        assert_eq!(
            forwarded_for(Some(b"1.2.3.4"), Some(ip)).unwrap(),
            "1.2.3.4, 10.0.0.9"
        );
        assert_eq!(forwarded_for(Some(b"1.2.3.4"), None), None);
    }

    #[test]
    fn cookie_and_header_keys() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; session=abc; b=2".parse().unwrap());
        h.insert("x-user", "u7".parse().unwrap());
        let cookie = HashKey::Cookie("session".into());
        assert_eq!(hash_key(&cookie, &h, None).unwrap().as_ref(), b"abc");
        let header = HashKey::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(hash_key(&header, &h, None).unwrap().as_ref(), b"u7");
        assert!(hash_key(&HashKey::Cookie("none".into()), &h, None).is_none());
        assert_eq!(new_request_id().len(), 32);
    }
}
