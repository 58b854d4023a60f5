//! The names the mesh CA writes into certificates, and the checks on them: zones and gateway
//! names are DNS labels, the trust domain is a DNS name, and a gateway's identity is the SPIFFE
//! ID `spiffe://TD/zone/Z/gateway/N` plus the DNS name `gateway.Z.TD` shared by its zone.

use super::PkiError;
use crate::identity::PeerIdentity;

/// Checks a DNS label: 1 to 63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn check_label(what: &str, label: &str) -> Result<(), PkiError> {
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::Name(format!(
            "{what} {label:?} is not a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')"
        )))
    }
}

/// Checks a trust domain: dot-separated DNS labels, at most 253 characters.
pub fn check_trust_domain(td: &str) -> Result<(), PkiError> {
    if td.is_empty() || td.len() > 253 {
        return Err(PkiError::Name(format!(
            "trust domain {td:?} must have 1 to 253 characters"
        )));
    }
    for label in td.split('.') {
        check_label("trust domain label", label)
            .map_err(|e| PkiError::Name(format!("trust domain {td:?}: {e}")))?;
    }
    Ok(())
}

/// The SPIFFE ID of gateway `name` in `zone`.
pub fn gateway_spiffe_id(trust_domain: &str, zone: &str, name: &str) -> String {
    PeerIdentity::gateway_id(trust_domain, zone, name)
}

/// The DNS name (SNI) shared by every gateway of `zone`: `gateway.ZONE.TD`.
pub fn gateway_dns_name(trust_domain: &str, zone: &str) -> String {
    format!("gateway.{zone}.{trust_domain}")
}

/// Checks a workload SPIFFE ID: valid, in `trust_domain`, and not of the gateway form (gateway
/// identities are issued only through the gateway path, with their DNS name).
pub fn check_workload_id(trust_domain: &str, id: &str) -> Result<PeerIdentity, PkiError> {
    let parsed = PeerIdentity::parse(id).ok_or_else(|| {
        PkiError::Name(format!(
            "{id:?} is not a SPIFFE ID (spiffe://TRUST_DOMAIN/path, lowercase domain, no empty, '.' or '..' segments)"
        ))
    })?;
    if parsed.trust_domain != trust_domain {
        return Err(PkiError::Name(format!(
            "{id:?} is not in the CA's trust domain {trust_domain:?}"
        )));
    }
    if parsed.is_gateway() {
        return Err(PkiError::Name(format!(
            "{id:?} has the gateway form /zone/Z/gateway/N; issue gateway certificates with a zone and gateway name"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_domains() {
        for ok in ["a", "zone-a", "gw-a1", "z0"] {
            check_label("zone", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "Zone", "a.b", "a_b", &"x".repeat(64)] {
            assert!(check_label("zone", bad).is_err(), "{bad}");
        }
        check_trust_domain("switchyard.local").unwrap();
        assert!(check_trust_domain("switchyard..local").is_err());
        assert!(check_trust_domain("Mesh").is_err());
        assert_eq!(
            gateway_spiffe_id("td", "z", "n"),
            "spiffe://td/zone/z/gateway/n"
        );
        assert_eq!(gateway_dns_name("td.local", "z"), "gateway.z.td.local");
    }

    #[test]
    fn workload_ids() {
        check_workload_id("td", "spiffe://td/ns/shop/sa/cart").unwrap();
        assert!(check_workload_id("td", "spiffe://other/ns/shop").is_err());
        assert!(check_workload_id("td", "spiffe://td/zone/z/gateway/n").is_err());
        assert!(check_workload_id("td", "https://td/x").is_err());
    }
}
