//! The gateway's compiled view of one generation: the chosen Gateway's ports with their route
//! tables and certificates, and a balancer plus prepared peers for every backend. Built once
//! per generation, immutable afterwards, shared by every request through `Arc`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use pingora::upstreams::peer::HttpPeer;
use switchyard_config::{
    Backend, GatewayConfig, Generation, HashKey, LbAlgorithm, ListenerProtocol, ObjRef,
    OutlierDetection, PortConfig, Rule,
};
use thiserror::Error;

use crate::balance::{slots, Balancer};
use crate::locality::{self, EastWestPaths, RemoteZone, Tier};
use crate::resilience::health::Target;
use crate::resilience::ratelimit::Limiter;
use crate::state::StateRegistry;
use crate::tls::{CertSlot, SniCertificates, TlsError};

#[derive(Debug, Error)]
pub enum CompileError {
    #[error("{0}")]
    NoGateway(String),
    #[error("listener certificate {certificate}: {source}")]
    Certificate {
        certificate: ObjRef,
        source: TlsError,
    },
    #[error("Backend {backend}: {source}")]
    UpstreamTls { backend: ObjRef, source: TlsError },
    #[error(transparent)]
    Egress(#[from] crate::egress::EgressCompileError),
}

/// Identity and provenance of a generation, as `/config` reports it.
#[derive(Debug, Clone)]
pub struct GenerationInfo {
    pub number: u64,
    pub digest: String,
    pub loaded_at: SystemTime,
    pub files: Vec<String>,
}

/// One listening port of the gateway.
#[derive(Debug)]
pub struct PortRuntime {
    pub port: u16,
    pub https: bool,
    /// A `switchyard.dev/EastWest` listener: mTLS from other zones' gateways, whose identity
    /// headers are trusted, served from local endpoints only.
    pub east_west: bool,
    /// Index into the Gateway's `ports`.
    index: usize,
    pub certificates: Option<SniCertificates>,
}

/// A backend ready for requests.
#[derive(Debug)]
pub struct BackendRuntime {
    pub id: ObjRef,
    /// The backend as configured (endpoints and policy).
    pub config: Arc<Backend>,
    pub balancer: Balancer,
    /// Prepared peers, aligned with `balancer.endpoints`.
    pub peers: Vec<HttpPeer>,
    pub hash_key: Option<HashKey>,
    /// The zones this backend fails over to, in priority order (empty without zones).
    pub remote: Vec<RemoteZone>,
}

impl BackendRuntime {
    /// The balancer and peer templates of a tier.
    pub fn tier(&self, tier: Tier) -> Option<(&Balancer, &[HttpPeer])> {
        match tier {
            Tier::Local => Some((&self.balancer, &self.peers)),
            Tier::Remote(i) => self
                .remote
                .get(i)
                .map(|z| (&z.balancer, z.peers.as_slice())),
        }
    }

    /// The outlier detection that judges a tier's targets.
    pub fn outlier(&self, tier: Tier) -> Option<&OutlierDetection> {
        match tier {
            Tier::Local => self.config.policy.outlier.as_ref(),
            Tier::Remote(_) => Some(locality::remote_outlier()),
        }
    }
}

/// The compiled generation.
#[derive(Debug)]
pub struct Runtime {
    pub info: GenerationInfo,
    pub config: Arc<Generation>,
    gateway_index: usize,
    ports: Vec<PortRuntime>,
    /// Keyed by the address of the config's `Arc<Backend>`, which lives as long as `config`.
    backends: HashMap<usize, Arc<BackendRuntime>>,
    /// Rate limiters of the rules that have one, keyed by the address of the `Arc<Rule>`.
    limiters: HashMap<usize, Arc<Limiter>>,
    /// The egress listeners' CA bundles.
    pub egress: crate::egress::EgressRuntime,
}

fn backend_key(b: &Arc<Backend>) -> usize {
    Arc::as_ptr(b) as usize
}

impl Runtime {
    /// Compiles `config` for the Gateway named `gateway` (or the only one).
    pub fn compile(
        config: Arc<Generation>,
        gateway: Option<&str>,
        number: u64,
        registry: &StateRegistry,
    ) -> Result<Runtime, CompileError> {
        let gw = config.gateway(gateway).map_err(CompileError::NoGateway)?;
        let gateway_index = config
            .gateways
            .iter()
            .position(|g| g.id == gw.id)
            .unwrap_or_default();
        let mut ports = Vec::with_capacity(gw.ports.len());
        for (index, p) in gw.ports.iter().enumerate() {
            ports.push(PortRuntime {
                port: p.port,
                https: matches!(
                    p.protocol,
                    ListenerProtocol::Https | ListenerProtocol::EastWest
                ),
                east_west: p.protocol == ListenerProtocol::EastWest,
                index,
                certificates: port_certificates(p)?,
            });
        }
        let own_zone = gw.zone.as_deref();
        let paths = locality::east_west_paths(&config, own_zone);
        let mut backends = HashMap::with_capacity(config.backends.len());
        for b in config.backends.values() {
            let rt = compile_backend(b, own_zone, &paths, registry)?;
            backends.insert(backend_key(b), Arc::new(rt));
        }
        let mut limiters = HashMap::new();
        for port in &gw.ports {
            for rule in port.routes.rules() {
                let limit = rule.traffic.as_ref().and_then(|t| t.rate_limit.as_ref());
                if let Some(limit) = limit {
                    let l = registry.limiters.get(&rule.route, rule.rule_index, limit);
                    limiters.insert(Arc::as_ptr(rule) as usize, l);
                }
            }
        }
        let egress = crate::egress::EgressRuntime::compile(&config)?;
        let info = GenerationInfo {
            number,
            digest: config.digest.clone(),
            loaded_at: SystemTime::now(),
            files: config.files.clone(),
        };
        Ok(Runtime {
            info,
            gateway_index,
            ports,
            backends,
            limiters,
            egress,
            config,
        })
    }

    pub fn gateway(&self) -> &GatewayConfig {
        &self.config.gateways[self.gateway_index]
    }

    /// The port runtime for a local port, if this generation listens there.
    pub fn port(&self, port: u16) -> Option<&PortRuntime> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The port's configuration (route table, listeners).
    pub fn port_config(&self, port: &PortRuntime) -> &PortConfig {
        &self.gateway().ports[port.index]
    }

    pub fn ports(&self) -> &[PortRuntime] {
        &self.ports
    }

    /// Whether some backend may fail over to another zone's east-west listener.
    pub fn dials_east_west(&self) -> bool {
        self.backends.values().any(|b| !b.remote.is_empty())
    }

    /// A backend by namespace and name.
    pub fn backend_by_id(&self, id: &ObjRef) -> Option<&Arc<BackendRuntime>> {
        self.config.backends.get(id).and_then(|b| self.backend(b))
    }

    pub fn backend(&self, b: &Arc<Backend>) -> Option<&Arc<BackendRuntime>> {
        self.backends.get(&backend_key(b))
    }

    /// Every backend of the generation, sorted by id.
    pub fn backend_runtimes(&self) -> impl Iterator<Item = &Arc<BackendRuntime>> {
        self.config
            .backends
            .values()
            .filter_map(|b| self.backends.get(&backend_key(b)))
    }

    /// The rate limiter of a rule of this generation, if its TrafficPolicy has one.
    pub fn limiter(&self, rule: &Arc<Rule>) -> Option<&Arc<Limiter>> {
        if self.limiters.is_empty() {
            return None;
        }
        self.limiters.get(&(Arc::as_ptr(rule) as usize))
    }

    /// Every endpoint with an active health check, for the health thread.
    pub fn health_targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for b in self.backends.values() {
            let Some(check) = &b.config.policy.health_check else {
                continue;
            };
            for e in &b.balancer.endpoints {
                out.push(Target {
                    backend: b.id.clone(),
                    address: e.address,
                    check: check.clone(),
                    endpoint: e.state.clone(),
                    backend_state: b.balancer.state().clone(),
                });
            }
        }
        out
    }
}

fn port_certificates(p: &PortConfig) -> Result<Option<SniCertificates>, CompileError> {
    if !matches!(p.protocol, ListenerProtocol::Https) {
        return Ok(None);
    }
    let mut sni = SniCertificates::default();
    for l in &p.listeners {
        let Some(tls) = &l.tls else { continue };
        for c in &tls.certificates {
            let key = CertSlot::load(c).map_err(|source| CompileError::Certificate {
                certificate: c.id.clone(),
                source,
            })?;
            sni.insert(l.hostname.as_deref(), key);
        }
    }
    Ok(Some(sni))
}

fn compile_backend(
    b: &Arc<Backend>,
    own_zone: Option<&str>,
    paths: &EastWestPaths,
    registry: &StateRegistry,
) -> Result<BackendRuntime, CompileError> {
    let (local, zones) = locality::split(b, own_zone);
    let remote = locality::remote_zones(b, &zones, paths, registry, |addr| {
        crate::upstream::east_west_peer(addr, &b.policy)
    });
    let slots = slots(&local, |addr| registry.endpoint(&b.id, addr));
    let peers = local
        .iter()
        .map(|e| crate::upstream::prepare_peer(e.address, &b.policy))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CompileError::UpstreamTls {
            backend: b.id.clone(),
            source,
        })?;
    let hash_key = match &b.policy.lb {
        LbAlgorithm::RingHash { key } => Some(key.clone()),
        _ => None,
    };
    Ok(BackendRuntime {
        id: b.id.clone(),
        config: b.clone(),
        balancer: Balancer::new(
            &b.policy.lb,
            slots,
            registry.backend(&b.id),
            b.policy.panic_threshold,
        ),
        peers,
        hash_key,
        remote,
    })
}
