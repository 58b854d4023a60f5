//! Who is calling: the SPIFFE identity a TLS peer proved with its client certificate, and the
//! internal headers gateways use to carry a caller's identity and zone east-west.
//!
//! The TLS layer (a pingora `TlsAccept::handshake_complete_callback`) parses the verified
//! leaf certificate once per connection with [`PeerIdentity::from_certificate`] and attaches
//! the result to the connection's `SslDigest` extension; [`peer_identity`] reads it back for
//! each request. A SPIFFE ID of the form `spiffe://TRUST_DOMAIN/zone/Z/gateway/NAME` names a
//! gateway; any other `spiffe://` URI names a workload.

use pingora::proxy::Session;

/// Carries the caller's identity (a SPIFFE ID) from one gateway to the next. Trusted only on
/// mTLS east-west connections from a verified gateway; stripped everywhere else.
pub const IDENTITY_HEADER: &str = "x-switchyard-identity";
/// Carries the caller's source zone east-west, under the same trust rule.
pub const SOURCE_ZONE_HEADER: &str = "x-switchyard-source-zone";
/// Every header with this prefix is internal to the mesh and stripped from untrusted sources.
pub const INTERNAL_PREFIX: &str = "x-switchyard-";

/// A SPIFFE identity proved by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The whole URI, `spiffe://trust-domain/path`.
    pub spiffe_id: String,
    /// The trust domain (the URI's authority).
    pub trust_domain: String,
    /// For gateway identities (`/zone/Z/gateway/NAME`): the zone.
    pub zone: Option<String>,
    /// For gateway identities: the gateway instance name.
    pub gateway: Option<String>,
}

impl PeerIdentity {
    /// Parses a SPIFFE ID; `None` unless it is `spiffe://<domain>/<path>` with a non-empty
    /// domain and path, no query, no fragment and no empty, `.` or `..` segments.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/')?;
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !domain_ok || path.is_empty() || path.contains(['?', '#']) {
            return None;
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return None;
        }
        let (zone, gateway) = match segments.as_slice() {
            ["zone", z, "gateway", g] => (Some((*z).to_string()), Some((*g).to_string())),
            _ => (None, None),
        };
        Some(PeerIdentity {
            spiffe_id: uri.to_string(),
            trust_domain: domain.to_string(),
            zone,
            gateway,
        })
    }

    /// The first valid SPIFFE URI SAN of a DER certificate, if any.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Self::parse(uri),
            _ => None,
        })
    }

    /// True for the identity of a gateway (`spiffe://TD/zone/Z/gateway/NAME`).
    pub fn is_gateway(&self) -> bool {
        self.gateway.is_some()
    }

    /// The SPIFFE ID of gateway `name` in `zone`.
    pub fn gateway_id(trust_domain: &str, zone: &str, name: &str) -> String {
        format!("spiffe://{trust_domain}/zone/{zone}/gateway/{name}")
    }
}

/// The identity the TLS handshake of this request's connection proved, if it presented a
/// verified client certificate with a SPIFFE URI SAN.
pub fn peer_identity(session: &Session) -> Option<&PeerIdentity> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<PeerIdentity>()
}

/// True for a header name no untrusted client may send: every `x-switchyard-*` header, and
/// the client-certificate headers other proxies use (`x-forwarded-client-cert` and its kind).
pub fn is_internal_header(name: &str) -> bool {
    const CERT_HEADERS: [&str; 7] = [
        "x-forwarded-client-cert",
        "x-client-cert",
        "x-client-certificate",
        "x-ssl-client-cert",
        "ssl-client-cert",
        "x-client-cert-chain",
        "client-cert",
    ];
    // Called for every header of every request: compare case-insensitively without
    // allocating (names from `http::HeaderName` are already lowercase).
    let has_prefix = |prefix: &str| {
        name.len() >= prefix.len()
            && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    has_prefix(INTERNAL_PREFIX)
        || has_prefix("x-ssl-client-")
        || has_prefix("x-client-verify")
        || CERT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_and_workload_ids() {
        let g = PeerIdentity::parse("spiffe://mesh.local/zone/zone-a/gateway/gw-a1").unwrap();
        assert_eq!(g.trust_domain, "mesh.local");
        assert_eq!(g.zone.as_deref(), Some("zone-a"));
        assert_eq!(g.gateway.as_deref(), Some("gw-a1"));
        assert!(g.is_gateway());
        assert_eq!(
            PeerIdentity::gateway_id("mesh.local", "zone-a", "gw-a1"),
            g.spiffe_id
        );
        let w = PeerIdentity::parse("spiffe://mesh.local/ns/shop/sa/cart").unwrap();
        assert!(!w.is_gateway());
        assert_eq!(w.zone, None);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "https://mesh.local/x",
            "spiffe://",
            "spiffe://mesh.local",
            "spiffe://mesh.local/",
            "spiffe:///x",
            "spiffe://Mesh.Local/x",
            "spiffe://mesh.local/a//b",
            "spiffe://mesh.local/a/../b",
            "spiffe://mesh.local/a?b",
        ] {
            assert_eq!(PeerIdentity::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn internal_headers() {
        for h in [
            "X-Switchyard-Identity",
            "x-switchyard-source-zone",
            "x-switchyard-anything",
            "X-Forwarded-Client-Cert",
            "x-ssl-client-s-dn",
            "ssl-client-cert",
            "x-client-verify",
        ] {
            assert!(is_internal_header(h), "{h}");
        }
        for h in ["x-request-id", "host", "x-forwarded-for", "x-switch"] {
            assert!(!is_internal_header(h), "{h}");
        }
    }
}
