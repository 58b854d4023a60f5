//! TEMPORARY stand-in for the mesh PKI (being built on the `pki` branch); replaced at merge.

use std::sync::Arc;

use pingora::utils::tls::{CertKey, WrappedX509};

/// What an east-west peer needs from the gateway's identity.
pub struct UpstreamCredentials {
    pub cert_key: Arc<CertKey>,
    pub ca: Arc<[WrappedX509]>,
    pub version: u64,
}

/// The gateway's mesh identity.
pub struct MeshIdentity {
    trust_domain: String,
    creds: Arc<CertKey>,
    ca: Arc<[WrappedX509]>,
}

impl MeshIdentity {
    pub fn gateway_dns_name(&self, zone: &str) -> String {
        format!("gateway.{zone}.{}", self.trust_domain)
    }

    pub fn upstream_credentials(&self) -> UpstreamCredentials {
        UpstreamCredentials {
            cert_key: self.creds.clone(),
            ca: self.ca.clone(),
            version: 0,
        }
    }
}
