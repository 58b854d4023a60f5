//! Serde mirror of Switchyard's own kinds (switchyard.dev/v1alpha1): Backend, BackendPolicy, TLSCertificate.

use serde::Deserialize;

/// `Backend.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BackendSpec {
    /// May be empty: the gateway then answers 500 for this backend's share.
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

/// `Backend.spec.endpoints[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawEndpoint {
    pub address: String,
    pub zone: Option<String>,
    pub weight: Option<u32>,
}

/// `BackendPolicy.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BackendPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    pub load_balancer: Option<RawLoadBalancer>,
    pub timeouts: Option<RawPolicyTimeouts>,
    pub protocol: Option<RawUpstreamProtocol>,
    pub tls: Option<RawUpstreamTls>,
}

/// `BackendPolicy.spec.targetRefs[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PolicyTargetRef {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

/// `BackendPolicy.spec.loadBalancer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawLoadBalancer {
    #[serde(rename = "type")]
    pub kind: RawLbType,
    pub hash_on: Option<RawHashOn>,
}

/// Load-balancing algorithm names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum RawLbType {
    RoundRobin,
    Random,
    LeastRequest,
    RingHash,
}

/// `loadBalancer.hashOn`: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHashOn {
    pub header: Option<String>,
    pub cookie: Option<String>,
    #[serde(rename = "sourceIP")]
    pub source_ip: Option<bool>,
}

/// `BackendPolicy.spec.timeouts`, each a Gateway API duration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPolicyTimeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    pub write: Option<String>,
    pub idle: Option<String>,
}

/// `BackendPolicy.spec.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum RawUpstreamProtocol {
    #[serde(rename = "HTTP1")]
    Http1,
    #[serde(rename = "H2C")]
    H2c,
    #[serde(rename = "TLS")]
    Tls,
}

/// `BackendPolicy.spec.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawUpstreamTls {
    pub sni: Option<String>,
    pub ca_file: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub alpn: Option<RawAlpn>,
}

/// ALPN offer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawAlpn {
    Http1,
    H2,
    Auto,
}

/// `TLSCertificate.spec`: paths relative to the declaring file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TlsCertificateSpec {
    pub cert_file: String,
    pub key_file: String,
}
