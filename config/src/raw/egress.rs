//! Serde mirror of `ExternalService` (switchyard.dev/v1alpha1): the egress allowlist, modelled
//! on Istio's ServiceEntry.

use serde::Deserialize;

/// `ExternalService.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExternalServiceSpec {
    pub hosts: Vec<String>,
    /// Static resolution; when empty, names are resolved through DNS at request time.
    #[serde(default)]
    pub addresses: Vec<String>,
    pub ports: Vec<RawExternalPort>,
}

/// `spec.ports[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawExternalPort {
    pub number: u16,
    /// Kept as text so that an unknown protocol gets a diagnostic listing the supported ones.
    pub protocol: String,
    pub originate_tls: Option<RawOriginateTls>,
}

/// `spec.ports[].originateTls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawOriginateTls {
    pub target_port: Option<u16>,
    pub ca_file: Option<String>,
    pub sni: Option<String>,
}
