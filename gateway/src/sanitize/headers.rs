//! Request header limits (431 `header_limit`) and the stripping of internal headers that an
//! untrusted client must never be able to set (`identity::is_internal_header`).

use http::HeaderMap;
use pingora::http::RequestHeader;
use switchyard_config::HeaderLimits;

use crate::identity::is_internal_header;

/// True when the header fields are within the port's count and size limits. The size of a
/// field is its name, its value and 4 bytes (`: ` and CRLF), as on the HTTP/1 wire.
pub fn within_limits(headers: &HeaderMap, limits: &HeaderLimits) -> bool {
    if headers.len() > limits.max_count as usize {
        return false;
    }
    let mut bytes = 0usize;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + 4;
        if bytes > limits.max_bytes as usize {
            return false;
        }
    }
    true
}

/// Removes every internal header (all values of each). Returns how many names were removed.
pub fn strip_internal(req: &mut RequestHeader) -> usize {
    let names: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|name| is_internal_header(name.as_str()))
        .cloned()
        .collect();
    for name in &names {
        req.remove_header(name);
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_fields_and_bytes() {
        let mut h = HeaderMap::new();
        for i in 0..10 {
            h.append("x-a", format!("{i}").parse().unwrap());
        }
        let limits = |max_count, max_bytes| HeaderLimits {
            max_count,
            max_bytes,
        };
        assert!(within_limits(&h, &limits(10, 1000)));
        assert!(!within_limits(&h, &limits(9, 1000)));
        // Each field is 3 + 1 + 4 = 8 bytes.
        assert!(within_limits(&h, &limits(10, 80)));
        assert!(!within_limits(&h, &limits(10, 79)));
        assert!(within_limits(&HeaderMap::new(), &limits(1, 1)));
    }

    #[test]
    fn internal_headers_are_stripped_with_every_value() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Switchyard-Identity", "spiffe://x/y")
            .unwrap();
        req.append_header("x-switchyard-identity", "spiffe://x/z")
            .unwrap();
        req.append_header("X-Switchyard-Source-Zone", "zone-a")
            .unwrap();
        req.append_header("X-Forwarded-Client-Cert", "By=x")
            .unwrap();
        req.append_header("x-request-id", "1").unwrap();
        req.append_header("Host", "a").unwrap();
        assert_eq!(strip_internal(&mut req), 3);
        let mut names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-request-id"]);
        assert_eq!(strip_internal(&mut req), 0);
    }
}
