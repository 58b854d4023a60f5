//! The egress allowlist: compiled `ExternalService` objects and the lookup that decides whether
//! an app may reach `host:port`, and how (plain HTTP, HTTP with TLS origination, or a CONNECT
//! tunnel).
//!
//! A host pattern is an exact name (`api.payments.test`) or a name with one leading wildcard
//! label (`*.cdn.test`, which matches any name ending in `.cdn.test`, at any depth). When
//! several patterns match, the most specific wins: the exact name, else the longest wildcard
//! suffix. The same pattern and port in two ExternalServices is a validation error, so the
//! winner is always unique.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::model::ObjRef;

/// One ExternalService: hosts an app may reach through the egress listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalService {
    /// The ExternalService's namespace and name.
    pub id: ObjRef,
    /// Host patterns, lowercase: exact names or `*.suffix`.
    pub hosts: Vec<String>,
    /// Static addresses; empty means DNS resolution of the requested host.
    pub addresses: Vec<IpAddr>,
    /// The allowed ports.
    pub ports: Vec<ExternalPort>,
}

/// One allowed port of an ExternalService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPort {
    /// The port the app asks for.
    pub number: u16,
    /// How the app reaches it.
    pub protocol: ExternalProtocol,
    /// TLS origination (HTTP ports only): the gateway speaks HTTPS to the host.
    pub originate_tls: Option<OriginateTls>,
}

/// How an app reaches an external port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalProtocol {
    /// Plain HTTP requests through the `switchyard.dev/Egress` listener.
    Http,
    /// TLS inside a CONNECT tunnel through the `switchyard.dev/EgressConnect` listener.
    Tls,
}

impl fmt::Display for ExternalProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExternalProtocol::Http => "HTTP",
            ExternalProtocol::Tls => "TLS",
        })
    }
}

/// TLS origination towards an external host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginateTls {
    /// The port the gateway connects to (default 443).
    pub target_port: u16,
    /// CA bundle (PEM) resolved against the declaring file's directory; `None` = system roots.
    pub ca_file: Option<PathBuf>,
    /// SNI and verified name; `None` = the request's host.
    pub sni: Option<String>,
}

/// What a lookup found: the service, the port entry and the pattern that matched.
#[derive(Debug, Clone, Copy)]
pub struct EgressMatch<'a> {
    pub service: &'a ExternalService,
    pub port: &'a ExternalPort,
    pub pattern: &'a str,
}

/// Where a pattern and port lead: (service index, port index, host index).
type Slot = (usize, usize, usize);

/// Host-indexed lookup over every ExternalService of a generation.
#[derive(Debug, Default)]
pub struct EgressTable {
    services: Vec<ExternalService>,
    /// host -> port -> slot.
    exact: HashMap<String, HashMap<u16, Slot>>,
    /// suffix with its leading dot (`.cdn.test`) -> port -> slot.
    wildcard: HashMap<String, HashMap<u16, Slot>>,
}

impl EgressTable {
    /// Indexes `services`; on a duplicate (pattern, port) the first one is kept (validation
    /// reports duplicates, so a built generation has none).
    pub fn new(services: Vec<ExternalService>) -> Self {
        let mut exact: HashMap<String, HashMap<u16, Slot>> = HashMap::new();
        let mut wildcard: HashMap<String, HashMap<u16, Slot>> = HashMap::new();
        for (s, svc) in services.iter().enumerate() {
            for (h, host) in svc.hosts.iter().enumerate() {
                let entry = match host.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_default(),
                    None => exact.entry(host.clone()).or_default(),
                };
                for (p, port) in svc.ports.iter().enumerate() {
                    entry.entry(port.number).or_insert((s, p, h));
                }
            }
        }
        EgressTable {
            services,
            exact,
            wildcard,
        }
    }

    /// Every ExternalService, in id order.
    pub fn services(&self) -> &[ExternalService] {
        &self.services
    }

    /// The most specific entry allowing `host:port` (any protocol). `host` must be lowercase
    /// and without a trailing dot. Allocates nothing.
    pub fn find(&self, host: &str, port: u16) -> Option<EgressMatch<'_>> {
        let hit = |(s, p, h): Slot| {
            let service = &self.services[s];
            EgressMatch {
                service,
                port: &service.ports[p],
                pattern: &service.hosts[h],
            }
        };
        if let Some(&at) = self.exact.get(host).and_then(|ports| ports.get(&port)) {
            return Some(hit(at));
        }
        // Longest suffix first: walk the labels from the left.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            let suffix = &rest[dot..];
            if let Some(&at) = self.wildcard.get(suffix).and_then(|ports| ports.get(&port)) {
                return Some(hit(at));
            }
            rest = &rest[dot + 1..];
        }
        None
    }

    /// Decides whether `host:port` may be reached with `protocol`; the error says why not, in
    /// words fit for the reply body.
    pub fn allow(
        &self,
        host: &str,
        port: u16,
        protocol: ExternalProtocol,
    ) -> Result<EgressMatch<'_>, String> {
        match self.find(host, port) {
            None => Err(format!("no ExternalService allows {host}:{port}")),
            Some(m) if m.port.protocol != protocol => Err(format!(
                "ExternalService {} allows {host}:{port} for {} only, not {}",
                m.service.id,
                match m.port.protocol {
                    ExternalProtocol::Http => "plain HTTP (the Egress listener)",
                    ExternalProtocol::Tls => "TLS tunnels (the EgressConnect listener)",
                },
                match protocol {
                    ExternalProtocol::Http => "plain HTTP",
                    ExternalProtocol::Tls => "a CONNECT tunnel",
                }
            )),
            Some(m) => Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, hosts: &[&str], ports: &[(u16, ExternalProtocol)]) -> ExternalService {
        ExternalService {
            id: ObjRef::new("default", name),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            addresses: Vec::new(),
            ports: ports
                .iter()
                .map(|&(number, protocol)| ExternalPort {
                    number,
                    protocol,
                    originate_tls: None,
                })
                .collect(),
        }
    }

    #[test]
    fn exact_and_wildcard_hosts_most_specific_wins() {
        use ExternalProtocol::*;
        let table = EgressTable::new(vec![
            svc("cdn", &["*.cdn.test"], &[(80, Http)]),
            svc("eu-cdn", &["*.eu.cdn.test"], &[(80, Http)]),
            svc("pinned", &["img.eu.cdn.test"], &[(80, Http), (443, Tls)]),
        ]);
        let who = |h: &str, p: u16| {
            table
                .find(h, p)
                .map(|m| (m.service.id.name.clone(), m.pattern.to_string()))
        };
        assert_eq!(
            who("a.cdn.test", 80),
            Some(("cdn".into(), "*.cdn.test".into()))
        );
        assert_eq!(
            who("x.y.cdn.test", 80),
            Some(("cdn".into(), "*.cdn.test".into()))
        );
        assert_eq!(
            who("a.eu.cdn.test", 80),
            Some(("eu-cdn".into(), "*.eu.cdn.test".into()))
        );
        assert_eq!(
            who("img.eu.cdn.test", 80),
            Some(("pinned".into(), "img.eu.cdn.test".into()))
        );
        // The wildcard needs at least one label before the suffix.
        assert_eq!(who("cdn.test", 80), None);
        assert_eq!(who("evilcdn.test", 80), None);
        // Ports are part of the key: 443 on a.eu.cdn.test is not allowed by anyone.
        assert_eq!(who("a.eu.cdn.test", 443), None);
        assert_eq!(
            who("img.eu.cdn.test", 443),
            Some(("pinned".into(), "img.eu.cdn.test".into()))
        );
    }

    #[test]
    fn allow_explains_refusals() {
        use ExternalProtocol::*;
        let table = EgressTable::new(vec![svc(
            "pay",
            &["api.pay.test"],
            &[(80, Http), (8443, Tls)],
        )]);
        assert!(table.allow("api.pay.test", 80, Http).is_ok());
        assert!(table.allow("api.pay.test", 8443, Tls).is_ok());
        assert_eq!(
            table.allow("api.evil.test", 80, Http).unwrap_err(),
            "no ExternalService allows api.evil.test:80"
        );
        assert_eq!(
            table.allow("api.pay.test", 8443, Http).unwrap_err(),
            "ExternalService default/pay allows api.pay.test:8443 for TLS tunnels (the EgressConnect listener) only, not plain HTTP"
        );
        assert_eq!(
            table.allow("api.pay.test", 80, Tls).unwrap_err(),
            "ExternalService default/pay allows api.pay.test:80 for plain HTTP (the Egress listener) only, not a CONNECT tunnel"
        );
    }
}
