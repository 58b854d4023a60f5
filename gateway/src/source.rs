//! Who sent a request: its principal (a SPIFFE ID) and its source zone. On untrusted
//! listeners the principal is the identity the client's verified certificate proved (none
//! without one) and the zone is this gateway's own; only trusted listeners (east-west, from
//! another gateway) take both from the internal identity headers. Upstream requests carry
//! the source in those headers when there is a principal, and never otherwise.

use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::identity::{peer_identity, IDENTITY_HEADER, SOURCE_ZONE_HEADER};

/// The source of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub principal: Option<String>,
    pub zone: Option<String>,
}

/// Resolves the source. `own_zone` is this gateway's zone (`GatewayConfig.zone`).
pub fn resolve(session: &Session, trusted: bool, own_zone: Option<&str>) -> Source {
    if trusted {
        let header = |name: &str| {
            session
                .req_header()
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        return Source {
            principal: header(IDENTITY_HEADER),
            zone: header(SOURCE_ZONE_HEADER),
        };
    }
    Source {
        principal: peer_identity(session).map(|p| p.spiffe_id.clone()),
        zone: own_zone.map(str::to_string),
    }
}

/// Writes the source headers of an upstream request: both when there is a principal; on an
/// east-west hop to another zone's gateway the source zone always (it is the identity of a
/// request without a principal); nothing else (whatever the client sent is removed).
pub fn write_upstream(
    upstream: &mut RequestHeader,
    source: &Source,
    east_west_hop: bool,
) -> pingora::Result<()> {
    upstream.remove_header(IDENTITY_HEADER);
    upstream.remove_header(SOURCE_ZONE_HEADER);
    if let Some(principal) = &source.principal {
        upstream.insert_header(IDENTITY_HEADER, principal.as_str())?;
    }
    if source.principal.is_some() || east_west_hop {
        if let Some(zone) = &source.zone {
            upstream.insert_header(SOURCE_ZONE_HEADER, zone.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_headers_only_with_a_principal() {
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        up.insert_header(IDENTITY_HEADER, "spiffe://evil/x")
            .unwrap();
        up.insert_header(SOURCE_ZONE_HEADER, "zone-z").unwrap();
        let anonymous = Source {
            principal: None,
            zone: Some("zone-a".into()),
        };
        write_upstream(&mut up, &anonymous, false).unwrap();
        assert!(up.headers.get(IDENTITY_HEADER).is_none());
        assert!(up.headers.get(SOURCE_ZONE_HEADER).is_none());
        let known = Source {
            principal: Some("spiffe://switchyard.local/ns/shop/sa/cart".into()),
            zone: Some("zone-a".into()),
        };
        write_upstream(&mut up, &known, false).unwrap();
        let mut hop = RequestHeader::build("GET", b"/", None).unwrap();
        write_upstream(&mut hop, &anonymous, true).unwrap();
        assert!(hop.headers.get(IDENTITY_HEADER).is_none());
        assert_eq!(hop.headers.get(SOURCE_ZONE_HEADER).unwrap(), "zone-a");
        assert_eq!(
            up.headers.get(IDENTITY_HEADER).unwrap(),
            "spiffe://switchyard.local/ns/shop/sa/cart"
        );
        assert_eq!(up.headers.get(SOURCE_ZONE_HEADER).unwrap(), "zone-a");
    }
}
