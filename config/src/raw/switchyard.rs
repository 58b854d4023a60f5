//! Serde mirror of Switchyard's own kinds (switchyard.dev/v1alpha1): Backend, BackendPolicy,
//! TLSCertificate and TrafficPolicy. The resilience fields are described in `docs/policies.md`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

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
    pub circuit_breaker: Option<RawCircuitBreaker>,
    pub outlier_detection: Option<RawOutlierDetection>,
    pub health_check: Option<RawHealthCheck>,
    pub panic_threshold: Option<u32>,
    pub retry_budget: Option<RawRetryBudget>,
    pub locality: Option<RawLocality>,
}

/// `BackendPolicy.spec.locality`: zone preference and failover order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawLocality {
    pub failover: Option<Vec<String>>,
    pub min_healthy_percent: Option<u32>,
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

/// `BackendPolicy.spec.circuitBreaker`: absent fields are unlimited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCircuitBreaker {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// `BackendPolicy.spec.outlierDetection`: `{}` is the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawOutlierDetection {
    #[serde(rename = "consecutive5xx")]
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub success_rate: Option<RawSuccessRate>,
    pub interval: Option<String>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_time: Option<String>,
    pub max_ejection_percent: Option<u32>,
}

/// `outlierDetection.successRate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSuccessRate {
    pub threshold: Option<u32>,
    pub stdev_factor: Option<f64>,
    pub minimum_hosts: Option<u32>,
    pub request_volume: Option<u32>,
}

/// `BackendPolicy.spec.healthCheck`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHealthCheck {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub http: Option<RawHttpProbe>,
    pub tcp: Option<RawTcpProbe>,
}

/// `healthCheck.http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHttpProbe {
    pub path: Option<String>,
    pub host: Option<String>,
    pub expected_statuses: Option<Vec<RawStatus>>,
}

/// `healthCheck.tcp`: no settings (`tcp: {}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpProbe {}

/// One of `expectedStatuses`: a code (`200`) or a range (`"200-299"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Code(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code or a \"lo-hi\" range")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStatus, E> {
                Ok(RawStatus::Text(v.to_string()))
            }
        }
        d.deserialize_any(StatusVisitor)
    }
}

/// `BackendPolicy.spec.retryBudget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetryBudget {
    pub ratio: Option<u32>,
    pub min_retries_per_second: Option<u32>,
    pub window: Option<String>,
}

/// `TrafficPolicy.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TrafficPolicySpec {
    pub target_refs: Vec<TrafficTargetRef>,
    pub rate_limit: Option<RawRateLimit>,
    pub fault: Option<RawFault>,
    pub retry: Option<RawRetryOn>,
    pub cohort: Option<RawCohort>,
    pub timeouts: Option<RawTrafficTimeouts>,
}

/// `TrafficPolicy.spec.targetRefs[]`: an HTTPRoute, or one of its rules by `sectionName`.
pub(crate) type TrafficTargetRef = SectionTargetRef;

/// A policy's targetRef that may name a section of its target (a rule of an HTTPRoute, a
/// listener of a Gateway) by `sectionName`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SectionTargetRef {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    /// Accepted only when it is the policy's own namespace.
    pub namespace: Option<String>,
    pub section_name: Option<String>,
}

/// `TrafficPolicy.spec.rateLimit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRateLimit {
    pub requests: u32,
    pub per: String,
    pub burst: Option<u32>,
    pub key: RawRateLimitKey,
}

/// `rateLimit.key`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRateLimitKey {
    #[serde(rename = "clientIP")]
    pub client_ip: Option<bool>,
    pub header: Option<String>,
}

/// `TrafficPolicy.spec.fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFault {
    pub delay: Option<RawFaultDelay>,
    pub abort: Option<RawFaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFaultDelay {
    pub fixed_delay: String,
    pub percentage: f64,
}

/// `fault.abort`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFaultAbort {
    pub http_status: u16,
    pub percentage: f64,
}

/// `TrafficPolicy.spec.retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetryOn {
    pub on: Option<Vec<String>>,
    pub per_try_timeout: Option<String>,
    pub max_body_bytes: Option<u32>,
}

/// `TrafficPolicy.spec.cohort`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCohort {
    pub pin: Option<RawCohortPin>,
    pub sticky: Option<RawSticky>,
}

/// `cohort.pin`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCohortPin {
    pub header: Option<String>,
    pub cookie: Option<String>,
}

/// `cohort.sticky`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSticky {
    pub cookie: Option<RawStickyCookie>,
    pub hash_on: Option<RawStickyHash>,
}

/// `sticky.cookie`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawStickyCookie {
    pub name: String,
    pub max_age: Option<String>,
}

/// `sticky.hashOn`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawStickyHash {
    pub header: String,
}

/// `TrafficPolicy.spec.timeouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTrafficTimeouts {
    pub downstream_idle: Option<String>,
}
