//! Egress: apps reach external hosts through the gateway, and only the hosts and ports an
//! `ExternalService` allows.
//!
//! - [`http`]: the `switchyard.dev/Egress` listener, an HTTP forward proxy (absolute-form or
//!   origin-form with `Host:`), with optional TLS origination towards the external host.
//! - [`connect`]: the `switchyard.dev/EgressConnect` listener, CONNECT tunnels for the app's
//!   own TLS, with the ClientHello's SNI required to equal the CONNECT host. Pingora answers
//!   CONNECT with 405 before any `ProxyHttp` hook runs, so this is a plain pingora
//!   `ServerApp` with its own HTTP/1.1 head parsing.
//! - [`resolve`]: static addresses or DNS (briefly cached).
//! - [`sni`]: reading a ClientHello and extracting its SNI with rustls' `Acceptor`.
//!
//! Both listeners read the live generation per request (per connection for tunnels), so an
//! allowlist change applies to the next request without a restart.

pub mod connect;
pub mod http;
pub mod resolve;
pub mod sni;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::utils::tls::WrappedX509;
use switchyard_config::{Generation, ListenerProtocol, ObjRef};
use thiserror::Error;

use crate::live::LiveConfig;
use crate::tls::{load_ca_bundle, TlsError};

#[derive(Debug, Error)]
#[error("ExternalService {service}: originateTls.caFile {source}")]
pub struct EgressCompileError {
    pub service: ObjRef,
    pub source: TlsError,
}

/// What one generation's egress needs beyond the config: the parsed CA bundles of every
/// `originateTls.caFile`, checked when the generation is compiled (a bad file rejects the
/// generation, like any other certificate file).
#[derive(Debug, Default)]
pub struct EgressRuntime {
    ca: HashMap<PathBuf, Arc<[WrappedX509]>>,
}

impl EgressRuntime {
    pub fn compile(config: &Generation) -> Result<Self, EgressCompileError> {
        let mut ca = HashMap::new();
        for svc in config.egress.services() {
            for port in &svc.ports {
                let Some(path) = port.originate_tls.as_ref().and_then(|t| t.ca_file.as_ref())
                else {
                    continue;
                };
                if ca.contains_key(path) {
                    continue;
                }
                let bundle = load_ca_bundle(path).map_err(|source| EgressCompileError {
                    service: svc.id.clone(),
                    source,
                })?;
                ca.insert(path.clone(), bundle);
            }
        }
        Ok(EgressRuntime { ca })
    }

    /// The parsed bundle of a `caFile` of this generation.
    pub fn ca(&self, path: &Path) -> Option<&Arc<[WrappedX509]>> {
        self.ca.get(path)
    }
}

/// `host[:port]` (or `[v6]:port`) split into a lowercase host without a trailing dot and a
/// port (`default_port` when absent). `None` when it does not parse.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let port_of = |p: Option<&str>| match p {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0),
        None => Some(default_port),
    };
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => port_of(None)?,
            _ => port_of(Some(after.strip_prefix(':')?))?,
        };
        return Some((v6.to_ascii_lowercase(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, port_of(Some(p))?),
        None => (authority, port_of(None)?),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let bad = |b: u8| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if host.is_empty() || host.bytes().any(bad) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// The egress listeners of a gateway, bound as two pingora services beside the ingress proxy.
pub struct EgressListeners {
    http: pingora::services::listening::Service<pingora::proxy::HttpProxy<http::EgressHttp>>,
    connect: Service<connect::ConnectApp>,
    http_ports: usize,
    connect_ports: usize,
}

impl EgressListeners {
    pub fn new(conf: &Arc<ServerConf>, live: Arc<LiveConfig>) -> Self {
        let http =
            pingora::proxy::ProxyServiceBuilder::new(conf, http::EgressHttp::new(live.clone()))
                .name("switchyard-egress")
                .build();
        let mut connect = Service::new(
            "switchyard-egress-connect".to_string(),
            connect::ConnectApp::new(live),
        );
        connect.threads = Some(conf.threads);
        EgressListeners {
            http,
            connect,
            http_ports: 0,
            connect_ports: 0,
        }
    }

    /// Binds `addr` if `protocol` is an egress protocol; false for any other protocol.
    pub fn bind(&mut self, protocol: ListenerProtocol, addr: &str) -> bool {
        match protocol {
            ListenerProtocol::Egress => {
                self.http.add_tcp(addr);
                self.http_ports += 1;
            }
            ListenerProtocol::EgressConnect => {
                self.connect.add_tcp(addr);
                self.connect_ports += 1;
            }
            _ => return false,
        }
        true
    }

    /// Adds the services that got a port to the server.
    pub fn add_to(self, server: &mut Server) {
        if self.http_ports > 0 {
            server.add_service(self.http);
        }
        if self.connect_ports > 0 {
            server.add_service(self.connect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{split_authority, EgressRuntime};

    #[test]
    fn ca_files_are_parsed_when_the_generation_compiles() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = |ca: &str| {
            format!(
                "apiVersion: switchyard.dev/v1alpha1\nkind: ExternalService\nmetadata: {{name: pay}}\nspec:\n  hosts: [api.pay.test]\n  ports: [{{number: 80, protocol: HTTP, originateTls: {{caFile: {ca}}}}}]\n"
            )
        };
        let file = dir.path().join("egress.yaml").display().to_string();
        let build = |ca: &str| {
            switchyard_config::build(&[switchyard_config::SourceFile::new(&file, yaml(ca))])
                .unwrap()
        };
        let missing = EgressRuntime::compile(&build("missing.pem")).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.starts_with("ExternalService default/pay: originateTls.caFile "),
            "{text}"
        );
        assert!(
            text.contains(&dir.path().join("missing.pem").display().to_string()),
            "{text}"
        );
        std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
        let garbage = EgressRuntime::compile(&build("garbage.pem")).unwrap_err();
        assert!(
            garbage.to_string().contains("no CERTIFICATE block"),
            "{garbage}"
        );
    }

    #[test]
    fn authorities() {
        let ok = |a: &str, d: u16| split_authority(a, d);
        assert_eq!(ok("API.Pay.test", 80), Some(("api.pay.test".into(), 80)));
        assert_eq!(
            ok("api.pay.test.:8443", 80),
            Some(("api.pay.test".into(), 8443))
        );
        assert_eq!(ok("[::1]:443", 80), Some(("::1".into(), 443)));
        assert_eq!(ok("[::1]", 80), Some(("::1".into(), 80)));
        assert_eq!(ok("127.0.0.1:9", 80), Some(("127.0.0.1".into(), 9)));
        for bad in [
            "",
            ":80",
            "a.test:0",
            "a.test:x",
            "a.test:99999",
            "u@a.test",
            "[::1",
            "a b",
        ] {
            assert_eq!(ok(bad, 80), None, "{bad}");
        }
    }
}
