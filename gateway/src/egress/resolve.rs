//! Where an allowed external host lives: the ExternalService's static addresses, or the host's
//! DNS answer (tokio's `lookup_host`, i.e. the system resolver), cached for a few seconds so a
//! burst of requests costs one lookup.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use switchyard_config::ExternalService;

/// How long a DNS answer is reused.
const DNS_TTL: Duration = Duration::from_secs(5);
/// How long a lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache entries kept at most; the cache is cleared when it would grow past this.
const DNS_CACHE_MAX: usize = 4096;

/// A DNS answer and when it was received.
type Answer = (Instant, Arc<[IpAddr]>);

/// Resolves external hosts; shared by every request of a listener.
#[derive(Debug, Default)]
pub struct Resolver {
    cache: Mutex<HashMap<String, Answer>>,
}

impl Resolver {
    /// One address for `host:port`: a static address of `service` when it has any, else a DNS
    /// answer. The error says why, for the reply body.
    pub async fn resolve(
        &self,
        service: &ExternalService,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, String> {
        let ips: Arc<[IpAddr]> = if !service.addresses.is_empty() {
            service.addresses.clone().into()
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Arc::from([ip])
        } else {
            self.lookup(host, port).await?
        };
        let i = fastrand::usize(..ips.len());
        Ok(SocketAddr::new(ips[i], port))
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Arc<[IpAddr]>, String> {
        if let Some(ips) = self.cached(host) {
            return Ok(ips);
        }
        let answer = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                format!("cannot resolve {host}: DNS lookup timed out after {DNS_TIMEOUT:?}")
            })?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let mut ips: Vec<IpAddr> = answer.map(|a| a.ip()).collect();
        ips.dedup();
        if ips.is_empty() {
            return Err(format!("cannot resolve {host}: no addresses"));
        }
        let ips: Arc<[IpAddr]> = ips.into();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= DNS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(host.to_string(), (Instant::now(), ips.clone()));
        Ok(ips)
    }

    fn cached(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, ips) = cache.get(host)?;
        (at.elapsed() < DNS_TTL).then(|| ips.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::ObjRef;

    fn svc(addresses: &[&str]) -> ExternalService {
        ExternalService {
            id: ObjRef::new("default", "x"),
            hosts: vec!["x.test".into()],
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            ports: Vec::new(),
        }
    }

    #[tokio::test]
    async fn static_addresses_dns_and_failures() {
        let r = Resolver::default();
        let a = r.resolve(&svc(&["127.0.0.9"]), "x.test", 81).await.unwrap();
        assert_eq!(a, "127.0.0.9:81".parse().unwrap());
        let a = r.resolve(&svc(&[]), "localhost", 82).await.unwrap();
        assert!(a.ip().is_loopback(), "{a}");
        assert_eq!(a.port(), 82);
        let e = r.resolve(&svc(&[]), "nope.invalid", 80).await.unwrap_err();
        assert!(e.starts_with("cannot resolve nope.invalid"), "{e}");
    }
}
