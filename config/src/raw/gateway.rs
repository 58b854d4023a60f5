//! Serde mirror of the Gateway API `Gateway` spec (gateway.networking.k8s.io/v1).

use serde::de::IgnoredAny;
use serde::Deserialize;

/// `Gateway.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GatewaySpec {
    #[serde(rename = "gatewayClassName")]
    pub _gateway_class_name: String,
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    #[serde(rename = "infrastructure", default)]
    pub _infrastructure: Option<IgnoredAny>,
}

/// `spec.listeners[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Listener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: u16,
    /// Kept as text so that TCP, TLS or UDP get an "unsupported protocol" diagnostic.
    pub protocol: String,
    pub tls: Option<ListenerTls>,
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `spec.listeners[].tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ListenerTls {
    #[serde(default)]
    pub mode: TlsMode,
    #[serde(default)]
    pub certificate_refs: Vec<CertificateRef>,
    /// Implementation-specific options; Switchyard reads the `switchyard.dev/` keys.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// TLS mode; only `Terminate` is supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum TlsMode {
    #[default]
    Terminate,
    Passthrough,
}

/// `tls.certificateRefs[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CertificateRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

/// `spec.listeners[].allowedRoutes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AllowedRoutes {
    pub namespaces: Option<RouteNamespaces>,
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RouteNamespaces {
    #[serde(default)]
    pub from: FromNamespaces,
    #[serde(rename = "selector", default)]
    pub _selector: Option<IgnoredAny>,
}

/// Which namespaces may attach routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum FromNamespaces {
    #[default]
    Same,
    All,
    Selector,
}

/// `allowedRoutes.kinds[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: String,
}

/// `spec.addresses[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GatewayAddress {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
}
