//! The compiled configuration the gateway runs on: a [`Generation`] of gateways, ports, listeners and backends.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::resilience::{CircuitBreaker, HealthCheck, OutlierDetection, RetryBudget};
use crate::route::RouteTable;

/// A namespaced object name, displayed as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjRef {
    /// The namespace ("default" when the YAML leaves it out).
    pub namespace: String,
    /// The object name.
    pub name: String,
}

impl ObjRef {
    /// Makes a reference from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One immutable, fully validated configuration: what the gateway swaps in atomically.
#[derive(Debug)]
pub struct Generation {
    /// Hex SHA-256 over the sorted `(path, contents)` pairs; equal digests mean a no-op reload.
    pub digest: String,
    /// The source paths, sorted.
    pub files: Vec<String>,
    /// The gateways, sorted by id.
    pub gateways: Vec<GatewayConfig>,
    /// Every backend, with its policy applied.
    pub backends: BTreeMap<ObjRef, Arc<Backend>>,
    /// The egress allowlist (every ExternalService; egress is global to the set).
    pub egress: crate::egress::EgressTable,
}

impl Generation {
    /// Finds a gateway by `"namespace/name"` or bare `"name"`; `None` asks for the only one.
    ///
    /// The error text says what exists, for the CLI to print.
    pub fn gateway(&self, name: Option<&str>) -> Result<&GatewayConfig, String> {
        let known = || {
            let ids: Vec<String> = self.gateways.iter().map(|g| g.id.to_string()).collect();
            if ids.is_empty() {
                "no Gateway is defined".to_string()
            } else {
                format!("known: {}", ids.join(", "))
            }
        };
        match name {
            None => match self.gateways.as_slice() {
                [only] => Ok(only),
                [] => Err("no Gateway is defined".to_string()),
                _ => Err(format!(
                    "several Gateways are defined, name one ({})",
                    known()
                )),
            },
            Some(wanted) => {
                let found: Vec<&GatewayConfig> = match wanted.split_once('/') {
                    Some((ns, n)) => self
                        .gateways
                        .iter()
                        .filter(|g| g.id.namespace == ns && g.id.name == n)
                        .collect(),
                    None => self
                        .gateways
                        .iter()
                        .filter(|g| g.id.name == wanted)
                        .collect(),
                };
                match found.as_slice() {
                    [only] => Ok(only),
                    [] => Err(format!("unknown Gateway {wanted:?} ({})", known())),
                    _ => Err(format!(
                        "Gateway name {wanted:?} is ambiguous, use namespace/name ({})",
                        known()
                    )),
                }
            }
        }
    }

    /// Looks a backend up by id.
    pub fn backend(&self, id: &ObjRef) -> Option<&Arc<Backend>> {
        self.backends.get(id)
    }
}

/// One Gateway: where it listens and what it routes.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The Gateway's namespace and name.
    pub id: ObjRef,
    /// The `switchyard.dev/zone` label, used for zone-aware endpoint picking.
    pub zone: Option<String>,
    /// `spec.addresses[0]` (type IPAddress); 0.0.0.0 when absent or a Hostname.
    pub address: IpAddr,
    /// `spec.addresses[0]` of type Hostname: the name other zones' gateways dial for this
    /// Gateway's east-west listener (resolved when a generation is compiled).
    pub hostname: Option<String>,
    /// One entry per listening port, sorted by port.
    pub ports: Vec<PortConfig>,
}

impl GatewayConfig {
    /// The configuration for one port, if the gateway listens on it.
    pub fn port(&self, port: u16) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Everything bound to one port: its listeners (merged) and one route table.
#[derive(Debug)]
pub struct PortConfig {
    /// The TCP port.
    pub port: u16,
    /// HTTP or HTTPS; every listener on a port shares it.
    pub protocol: ListenerProtocol,
    /// The listeners on this port, in declaration order.
    pub listeners: Vec<ListenerConfig>,
    /// The routes attached to any of those listeners, indexed by host.
    pub routes: RouteTable,
    /// Request hardening: the ClientTrafficPolicy targeting the port, or the defaults.
    pub client: crate::security::ClientPolicy,
    /// The AuthorizationPolicies targeting the port; `None` when there are none.
    pub authz: Option<Arc<crate::security::PortAuthz>>,
    /// Client certificates asked for on this HTTPS port (a mesh listener), from its
    /// listeners' `tls.options`; `None` for plain TLS termination.
    pub client_certificates: Option<ClientCertificates>,
}

impl PortConfig {
    /// True when serving this port needs the gateway's mesh identity (east-west, mesh mTLS).
    pub fn needs_mesh_identity(&self) -> bool {
        self.protocol == ListenerProtocol::EastWest || self.client_certificates.is_some()
    }
}

/// `tls.options["switchyard.dev/client-certificate"]` of an HTTPS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientCertificates {
    /// Verified against the mesh trust bundle when presented.
    Optional,
    /// A verified client certificate is required.
    Required,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1 (and h2c prior knowledge, if the server offers it).
    Http,
    /// TLS-terminated HTTP.
    Https,
    /// `switchyard.dev/EastWest`: the zone's mTLS listener for other zones' gateways.
    EastWest,
    /// `switchyard.dev/Egress`: HTTP forward proxy for apps, checked against ExternalServices.
    Egress,
    /// `switchyard.dev/EgressConnect`: CONNECT tunnels, checked against ExternalServices.
    EgressConnect,
}

impl ListenerProtocol {
    /// True for listeners that serve HTTPRoutes (egress listeners take no routes).
    pub fn takes_routes(self) -> bool {
        matches!(self, ListenerProtocol::Http | ListenerProtocol::Https)
    }
}

impl fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerProtocol::Http => "HTTP",
            ListenerProtocol::Https => "HTTPS",
            ListenerProtocol::EastWest => "switchyard.dev/EastWest",
            ListenerProtocol::Egress => "switchyard.dev/Egress",
            ListenerProtocol::EgressConnect => "switchyard.dev/EgressConnect",
        })
    }
}

/// One Gateway listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener name (its `sectionName`).
    pub name: String,
    /// The hostname it accepts (may start with `*.`); `None` accepts any.
    pub hostname: Option<String>,
    /// TLS settings, for HTTPS listeners.
    pub tls: Option<TlsConfig>,
}

/// TLS termination settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificates, in `certificateRefs` order.
    pub certificates: Vec<CertificateFiles>,
    /// `tls.options["switchyard.dev/client-certificate"]`.
    pub client_certificates: Option<ClientCertificates>,
}

/// A TLSCertificate object: a certificate chain and key on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    /// The TLSCertificate's namespace and name.
    pub id: ObjRef,
    /// PEM certificate chain, resolved against the declaring YAML file's directory.
    pub cert_file: PathBuf,
    /// PEM private key, resolved the same way.
    pub key_file: PathBuf,
}

/// A named set of endpoints with the policy that governs connections to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The Backend's namespace and name.
    pub id: ObjRef,
    /// The endpoints; may be empty (requests routed here then get a 500).
    pub endpoints: Vec<Endpoint>,
    /// The applied BackendPolicy, or the defaults.
    pub policy: BackendPolicy,
}

/// One upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// IP and port.
    pub address: SocketAddr,
    /// Zone, for zone-aware picking.
    pub zone: Option<String>,
    /// Relative weight (default 1).
    pub weight: u32,
}

/// How to balance and connect to a backend's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPolicy {
    /// Endpoint selection.
    pub lb: LbAlgorithm,
    /// TCP (and TLS) connect timeout; default 3s.
    pub connect_timeout: Duration,
    /// Timeout between reads from the upstream; default 60s, `None` when set to `0s`.
    pub read_timeout: Option<Duration>,
    /// Timeout between writes to the upstream; default 60s, `None` when set to `0s`.
    pub write_timeout: Option<Duration>,
    /// How long a pooled connection may stay idle; default 4s, below the 5s keep-alive of
    /// common backends (Node.js) so the gateway never reuses a connection the backend is closing.
    pub idle_timeout: Duration,
    /// How to speak to the upstream.
    pub protocol: UpstreamProtocol,
    /// Limits on connections, pending and in-flight requests and retries.
    pub circuit_breaker: CircuitBreaker,
    /// Passive health (`None`: endpoints are never ejected).
    pub outlier: Option<OutlierDetection>,
    /// Active health checks (`None`: endpoints are assumed healthy).
    pub health_check: Option<HealthCheck>,
    /// When fewer than this percentage of endpoints are available (not ejected, not
    /// unhealthy), the gateway ignores health and balances over all of them; 0 never does,
    /// and then a backend with no available endpoint answers 503 at once. Default 50.
    pub panic_threshold: u32,
    /// How many retries the backend accepts; on by default.
    pub retry_budget: RetryBudget,
    /// Zone preference and cross-zone failover.
    pub locality: Locality,
    /// The BackendPolicy that was applied, if any.
    pub source: Option<ObjRef>,
}

impl Default for BackendPolicy {
    fn default() -> Self {
        Self {
            lb: LbAlgorithm::RoundRobin,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Duration::from_secs(4),
            protocol: UpstreamProtocol::Http1,
            circuit_breaker: CircuitBreaker::default(),
            outlier: None,
            health_check: None,
            panic_threshold: 50,
            retry_budget: RetryBudget::default(),
            locality: Locality::default(),
            source: None,
        }
    }
}

/// Zone preference: a gateway sends a backend's traffic to the endpoints of its own zone while
/// enough of them are available, and otherwise to other zones, through their east-west
/// gateways, in priority order. A zone comes back as soon as it is available again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// Zones to fail over to, in priority order; empty means every other zone that has
    /// endpoints of the backend, sorted by name.
    pub failover: Vec<String>,
    /// The local zone keeps the traffic while at least this percentage of its endpoints is
    /// available (and at least one is). Default 1: fail over only when none is left.
    pub min_healthy_percent: u32,
}

impl Default for Locality {
    fn default() -> Self {
        Locality {
            failover: Vec::new(),
            min_healthy_percent: 1,
        }
    }
}

/// Endpoint selection algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LbAlgorithm {
    /// Weighted round robin (the default).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices over in-flight requests.
    LeastRequest,
    /// Consistent hashing on a request key.
    RingHash {
        /// What to hash.
        key: HashKey,
    },
}

/// The request property a ring hash is keyed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    SourceIp,
}

/// The protocol spoken to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// Plain HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 over cleartext, prior knowledge.
    H2c,
    /// TLS, then the protocol ALPN picks.
    Tls(UpstreamTls),
}

/// TLS settings towards an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Server name sent in SNI and verified in the certificate.
    pub sni: String,
    /// CA bundle (PEM), resolved against the policy file's directory; `None` = system roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (tests only).
    pub insecure_skip_verify: bool,
    /// What to offer in ALPN.
    pub alpn: TlsAlpn,
}

/// ALPN offer towards an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsAlpn {
    /// `http/1.1` only (the default).
    #[default]
    Http1,
    /// `h2` only.
    H2,
    /// `h2` and `http/1.1`, the server picks.
    Auto,
}

/// Per-rule timeouts (HTTPRoute `timeouts`); `None` means no timeout (`0s` disables one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// The whole request, from the gateway receiving it to the response being sent, retries included.
    pub request: Option<Duration>,
    /// One attempt against a backend.
    pub backend_request: Option<Duration>,
}

/// Per-rule retry policy (HTTPRoute `retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Response codes that trigger a retry; empty means connection failures only.
    pub codes: Vec<u16>,
    /// Maximum number of retries (default 1).
    pub attempts: u32,
    /// Wait between attempts.
    pub backoff: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_types_are_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Generation>();
        assert::<GatewayConfig>();
        assert::<Backend>();
        assert::<crate::RouteTable>();
        assert::<crate::Rule>();
    }

    #[test]
    fn obj_ref_display_and_default_policy() {
        assert_eq!(ObjRef::new("shop", "cart").to_string(), "shop/cart");
        let p = BackendPolicy::default();
        assert_eq!(p.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            (p.read_timeout, p.write_timeout),
            (Some(Duration::from_secs(60)), Some(Duration::from_secs(60)))
        );
        assert_eq!(p.idle_timeout, Duration::from_secs(4));
        assert_eq!(
            (p.lb, p.protocol, p.source),
            (LbAlgorithm::RoundRobin, UpstreamProtocol::Http1, None)
        );
    }
}
