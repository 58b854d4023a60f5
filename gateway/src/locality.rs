//! Zone-aware target choice. A gateway in zone Z sends a backend's traffic to the backend's
//! endpoints in Z while enough of them are in rotation (BackendPolicy `locality`), and
//! otherwise to the next zone of the failover order, through that zone's east-west gateways,
//! never to remote endpoints directly. Each remote zone is a path with its own balancer over
//! the zone's east-west addresses; its outlier detection ejects a dead or failing remote
//! gateway (connect failures, resets, timeouts, 502-504, which is what a remote gateway with
//! no healthy endpoint answers), so failover moves on to the next zone. Failback needs no
//! action: the local zone is preferred again as soon as its endpoints are back in rotation.
//!
//! A request that arrives on an east-west listener is served from local endpoints only, so
//! a request crosses at most one zone boundary and cannot loop.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;
use switchyard_config::{
    Backend, Endpoint, Generation, LbAlgorithm, ListenerProtocol, ObjRef, OutlierDetection,
};

use crate::balance::{slots, Balancer, NoPick};
use crate::runtime::BackendRuntime;
use crate::state::StateRegistry;

/// Carries the backend a source gateway chose to the remote zone's east-west gateway.
pub const BACKEND_HEADER: &str = "x-switchyard-backend";

/// How a source gateway judges a path to a remote zone: three gateway errors in a row
/// eject that east-west address for 5 s (doubling per ejection up to 1 min).
pub fn remote_outlier() -> &'static OutlierDetection {
    static REMOTE: std::sync::OnceLock<OutlierDetection> = std::sync::OnceLock::new();
    REMOTE.get_or_init(|| OutlierDetection {
        consecutive_5xx: None,
        consecutive_gateway_errors: Some(3),
        success_rate: None,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(5),
        max_ejection_time: Duration::from_secs(60),
        max_ejection_percent: 100,
    })
}

/// The east-west addresses of every other zone, by zone.
pub type EastWestPaths = BTreeMap<String, Vec<SocketAddr>>;

/// Where the other zones' east-west listeners are: every Gateway of the generation with a
/// zone label other than `own_zone`, an address (an IP, or a Hostname resolved now; a name
/// that does not resolve is skipped with a warning) and a `switchyard.dev/EastWest` listener.
pub fn east_west_paths(config: &Generation, own_zone: Option<&str>) -> EastWestPaths {
    let mut paths = EastWestPaths::new();
    let Some(own) = own_zone else {
        return paths;
    };
    for g in &config.gateways {
        let Some(zone) = g.zone.as_deref().filter(|z| *z != own) else {
            continue;
        };
        for p in &g.ports {
            if p.protocol != ListenerProtocol::EastWest {
                continue;
            }
            let found: Vec<SocketAddr> = match &g.hostname {
                Some(name) => match (name.as_str(), p.port).to_socket_addrs() {
                    Ok(addrs) => addrs.collect(),
                    Err(e) => {
                        tracing::warn!(gateway = %g.id, zone, %name, error = %e, "east-west address does not resolve; the zone is not a failover target");
                        Vec::new()
                    }
                },
                None if g.address.is_unspecified() => Vec::new(),
                None => vec![SocketAddr::new(g.address, p.port)],
            };
            if !found.is_empty() {
                let list = paths.entry(zone.to_string()).or_default();
                list.extend(found);
                list.sort_unstable();
                list.dedup();
            }
        }
    }
    paths
}

/// One remote zone a backend can fail over to.
#[derive(Debug)]
pub struct RemoteZone {
    pub zone: String,
    /// Over the zone's east-west addresses; its state is keyed by `backend@zone`.
    pub balancer: Balancer,
    /// Peer templates aligned with `balancer.endpoints`: TLS, timeouts from the backend's
    /// policy. The mesh credentials and SNI are added per attempt.
    pub peers: Vec<HttpPeer>,
}

/// What failed earlier in this request: remote tiers (bit i: `BackendRuntime::remote[i]`) and
/// the number of failed attempts on local endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failed {
    pub remote: u64,
    pub local: u32,
}

impl Failed {
    /// Records a failed attempt on `tier`.
    pub fn record(&mut self, tier: Tier) {
        match tier {
            Tier::Local => self.local = self.local.saturating_add(1),
            Tier::Remote(i) if i < 64 => self.remote |= 1 << i,
            Tier::Remote(_) => {}
        }
    }
}

/// Which target an attempt went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The backend's endpoints in this gateway's zone.
    Local,
    /// `BackendRuntime::remote[i]`.
    Remote(usize),
}

/// Splits a backend's endpoints into the local ones (this zone, or no zone) and the remote
/// zones it may fail over to, in priority order. A gateway without a zone sees every endpoint
/// as local.
pub fn split<'a>(b: &'a Backend, own_zone: Option<&str>) -> (Vec<Endpoint>, Vec<&'a str>) {
    let Some(own) = own_zone else {
        return (b.endpoints.clone(), Vec::new());
    };
    let is_local = |e: &Endpoint| e.zone.as_deref().is_none_or(|z| z == own);
    let local: Vec<Endpoint> = b
        .endpoints
        .iter()
        .filter(|e| is_local(e))
        .cloned()
        .collect();
    let mut present: Vec<&str> = b
        .endpoints
        .iter()
        .filter(|e| !is_local(e))
        .filter_map(|e| e.zone.as_deref())
        .collect();
    present.sort_unstable();
    present.dedup();
    let order = &b.policy.locality.failover;
    let remote = if order.is_empty() {
        present
    } else {
        order
            .iter()
            .map(String::as_str)
            .filter(|z| *z != own && present.contains(z))
            .collect()
    };
    (local, remote)
}

/// Builds the remote zones of a backend that have east-west addresses.
pub fn remote_zones(
    b: &Backend,
    zones: &[&str],
    paths: &EastWestPaths,
    registry: &StateRegistry,
    template: impl Fn(SocketAddr) -> HttpPeer,
) -> Vec<RemoteZone> {
    let mut out = Vec::new();
    for zone in zones {
        let Some(addresses) = paths.get(*zone).filter(|a| !a.is_empty()) else {
            tracing::debug!(backend = %b.id, zone, "no east-west gateway for this zone; it is not a failover target");
            continue;
        };
        let id = path_id(&b.id, zone);
        let endpoints: Vec<Endpoint> = addresses
            .iter()
            .map(|a| Endpoint {
                address: *a,
                zone: Some((*zone).to_string()),
                weight: 1,
            })
            .collect();
        let slots = slots(&endpoints, |addr| registry.endpoint(&id, addr));
        out.push(RemoteZone {
            zone: (*zone).to_string(),
            balancer: Balancer::new(&LbAlgorithm::RoundRobin, slots, registry.backend(&id), 0),
            peers: addresses.iter().map(|a| template(*a)).collect(),
        });
    }
    out
}

/// The state key of the path from this gateway to `zone` for backend `backend`.
fn path_id(backend: &ObjRef, zone: &str) -> ObjRef {
    // '@' never appears in object names, so this cannot collide with a Backend.
    ObjRef::new(
        backend.namespace.clone(),
        format!("{}@{zone}", backend.name),
    )
}

/// Picks the target of an attempt: the local zone while it has enough endpoints in rotation
/// and this request has not already failed on as many local endpoints as are in rotation
/// (so a retry moves on to another zone once local endpoints that are dead but not yet
/// detected have been tried), else the first remote zone in order whose path is up and did
/// not already fail this request, else the local zone in panic mode (or, for a backend with
/// no local endpoint, the first remote path not yet failed, ejected or not).
/// `previous` is the last attempt's target, avoided when another exists.
pub fn choose(
    backend: &BackendRuntime,
    key: Option<&[u8]>,
    previous: Option<(Tier, usize)>,
    failed: Failed,
) -> Result<(Tier, usize), NoPick> {
    let local = &backend.balancer;
    let avoid_local = match previous {
        Some((Tier::Local, i)) => Some(i),
        _ => None,
    };
    if backend.remote.is_empty() {
        return local
            .pick_available(key, avoid_local)
            .map(|i| (Tier::Local, i));
    }
    let (available, total) = local.availability();
    let min = u64::from(backend.config.policy.locality.min_healthy_percent);
    let untried = available > failed.local as usize;
    if untried && available as u64 * 100 >= min * total as u64 {
        if let Ok(i) = local.pick_in_rotation(key, avoid_local, false) {
            return Ok((Tier::Local, i));
        }
    }
    for (t, zone) in backend.remote.iter().enumerate() {
        if t < 64 && failed.remote & (1 << t) != 0 {
            continue;
        }
        let avoid = match previous {
            Some((Tier::Remote(p), i)) if p == t => Some(i),
            _ => None,
        };
        if let Ok(i) = zone.balancer.pick_in_rotation(None, avoid, false) {
            return Ok((Tier::Remote(t), i));
        }
    }
    if local.is_empty() {
        // Nothing in rotation anywhere and nothing local: like panic mode for endpoints, try
        // the first remote path this request has not seen fail, ejected or not, rather than
        // answering 503 for the whole ejection time.
        for (t, zone) in backend.remote.iter().enumerate() {
            if t < 64 && failed.remote & (1 << t) != 0 {
                continue;
            }
            if let Some(i) = zone.balancer.pick(None, None) {
                return Ok((Tier::Remote(t), i));
            }
        }
        return Err(NoPick::NoneHealthy);
    }
    local
        .pick_available(key, avoid_local)
        .map(|i| (Tier::Local, i))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    use switchyard_config::{BackendPolicy, Locality};

    use super::*;
    use crate::resilience::outlier::{self, Outcome, Peers};

    fn ep(port: u16, zone: Option<&str>) -> Endpoint {
        Endpoint {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            zone: zone.map(str::to_string),
            weight: 1,
        }
    }

    fn backend(locality: Locality) -> Backend {
        Backend {
            id: ObjRef::new("shop", "cart"),
            endpoints: vec![
                ep(9001, Some("zone-a")),
                ep(9002, Some("zone-b")),
                ep(9003, Some("zone-c")),
                ep(9004, None),
                ep(9005, Some("zone-a")),
                ep(9006, Some("zone-b")),
            ],
            policy: BackendPolicy {
                locality,
                ..BackendPolicy::default()
            },
        }
    }

    fn paths() -> EastWestPaths {
        let mut p = EastWestPaths::new();
        p.insert(
            "zone-b".into(),
            vec![SocketAddr::from(([127, 0, 0, 2], 7443))],
        );
        p.insert(
            "zone-c".into(),
            vec![SocketAddr::from(([127, 0, 0, 3], 7443))],
        );
        p
    }

    fn runtime(b: Backend, registry: &StateRegistry) -> BackendRuntime {
        let b = Arc::new(b);
        let (local, zones) = split(&b, Some("zone-a"));
        let remote = remote_zones(&b, &zones, &paths(), registry, |a| {
            crate::upstream::east_west_peer(a, &b.policy)
        });
        let slots = slots(&local, |a| registry.endpoint(&b.id, a));
        BackendRuntime {
            id: b.id.clone(),
            balancer: Balancer::new(&LbAlgorithm::RoundRobin, slots, registry.backend(&b.id), 50),
            peers: Vec::new(),
            hash_key: None,
            remote,
            config: b,
        }
    }

    fn remote(bits: u64) -> Failed {
        Failed {
            remote: bits,
            local: 0,
        }
    }

    fn set_health(b: &BackendRuntime, i: usize, healthy: bool) {
        let e = &b.balancer.endpoints[i];
        if e.state.healthy.swap(healthy, Relaxed) != healthy {
            if healthy {
                b.balancer.state().outlier.mark_recovered();
            } else {
                b.balancer.state().outlier.mark_degraded();
            }
        }
    }

    #[test]
    fn split_keeps_local_and_zoneless_endpoints_and_orders_remote_zones() {
        let b = backend(Locality::default());
        let (local, zones) = split(&b, Some("zone-a"));
        let ports: Vec<u16> = local.iter().map(|e| e.address.port()).collect();
        assert_eq!(ports, [9001, 9004, 9005]);
        assert_eq!(zones, ["zone-b", "zone-c"]);

        let ordered = backend(Locality {
            failover: vec![
                "zone-c".into(),
                "zone-a".into(),
                "zone-x".into(),
                "zone-b".into(),
            ],
            min_healthy_percent: 1,
        });
        assert_eq!(split(&ordered, Some("zone-a")).1, ["zone-c", "zone-b"]);
        let only_c = backend(Locality {
            failover: vec!["zone-c".into()],
            min_healthy_percent: 1,
        });
        assert_eq!(split(&only_c, Some("zone-a")).1, ["zone-c"]);

        let (all, none) = split(&b, None);
        assert_eq!((all.len(), none.len()), (6, 0));
    }

    #[test]
    fn zones_without_east_west_gateways_are_no_failover_target() {
        let registry = StateRegistry::default();
        let b = backend(Locality::default());
        let mut p = paths();
        p.remove("zone-b");
        let zones = remote_zones(&b, &["zone-b", "zone-c"], &p, &registry, |a| {
            crate::upstream::east_west_peer(a, &b.policy)
        });
        assert_eq!(zones.len(), 1);
        assert_eq!(zones[0].zone, "zone-c");
    }

    #[test]
    fn prefers_local_fails_over_in_order_and_fails_back() {
        let registry = StateRegistry::default();
        let b = runtime(backend(Locality::default()), &registry);
        for _ in 0..20 {
            assert_eq!(
                choose(&b, None, None, Failed::default()).unwrap().0,
                Tier::Local
            );
        }
        // One local endpoint left: still local (default minHealthyPercent 1).
        set_health(&b, 0, false);
        set_health(&b, 1, false);
        for _ in 0..20 {
            assert_eq!(
                choose(&b, None, None, Failed::default()).unwrap(),
                (Tier::Local, 2)
            );
        }
        // None left: the first remote zone, then the next when this request saw it fail.
        set_health(&b, 2, false);
        assert_eq!(
            choose(&b, None, None, Failed::default()).unwrap(),
            (Tier::Remote(0), 0)
        );
        assert_eq!(
            choose(&b, None, Some((Tier::Remote(0), 0)), remote(0b1)).unwrap(),
            (Tier::Remote(1), 0)
        );
        // Both remote paths failed this request: the local zone in panic mode.
        assert_eq!(choose(&b, None, None, remote(0b11)).unwrap().0, Tier::Local);
        // Failback as soon as a local endpoint is back.
        set_health(&b, 1, true);
        assert_eq!(
            choose(&b, None, None, Failed::default()).unwrap(),
            (Tier::Local, 1)
        );
    }

    #[test]
    fn an_ejected_remote_gateway_moves_failover_to_the_next_zone() {
        let registry = StateRegistry::default();
        let b = runtime(backend(Locality::default()), &registry);
        for i in 0..3 {
            set_health(&b, i, false);
        }
        let zone_b = &b.remote[0].balancer;
        let peers = Peers {
            backend: &zone_b.state().outlier,
            endpoints: &zone_b.endpoints,
        };
        let now = crate::resilience::clock::now_ms();
        for _ in 0..3 {
            outlier::record(remote_outlier(), &peers, 0, Outcome::GatewayError, now);
        }
        assert!(zone_b.endpoints[0].state.outlier.is_ejected());
        for _ in 0..10 {
            assert_eq!(
                choose(&b, None, None, Failed::default()).unwrap(),
                (Tier::Remote(1), 0)
            );
        }
    }

    #[test]
    fn min_healthy_percent_fails_over_before_the_zone_is_empty() {
        let registry = StateRegistry::default();
        let b = runtime(
            backend(Locality {
                failover: Vec::new(),
                min_healthy_percent: 50,
            }),
            &registry,
        );
        set_health(&b, 0, false);
        // 2 of 3 available (67%): local.
        assert_eq!(
            choose(&b, None, None, Failed::default()).unwrap().0,
            Tier::Local
        );
        set_health(&b, 1, false);
        // 1 of 3 (33%) < 50%: the next zone.
        assert_eq!(
            choose(&b, None, None, Failed::default()).unwrap().0,
            Tier::Remote(0)
        );
    }

    #[test]
    fn without_zones_nothing_changes() {
        let registry = StateRegistry::default();
        let b = Arc::new(backend(Locality::default()));
        let (local, zones) = split(&b, None);
        assert!(remote_zones(&b, &zones, &paths(), &registry, |a| {
            crate::upstream::east_west_peer(a, &b.policy)
        })
        .is_empty());
        assert_eq!(local.len(), b.endpoints.len());
    }

    #[test]
    fn east_west_addresses_come_from_ips_and_hostnames() {
        let gw = |name: &str, zone: &str, address: &str, port: u16| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, labels: {{switchyard.dev/zone: {zone}}}}}\nspec:\n  gatewayClassName: switchyard\n  {address}\n  listeners: [{{name: ew, port: {port}, protocol: switchyard.dev/EastWest}}]\n"
            )
        };
        let yaml = [
            gw("a", "zone-a", "addresses: []", 7440),
            gw(
                "b",
                "zone-b",
                "addresses: [{type: IPAddress, value: 127.0.0.2}]",
                7441,
            ),
            gw(
                "c",
                "zone-c",
                "addresses: [{type: Hostname, value: localhost}]",
                7442,
            ),
            gw("d", "zone-d", "addresses: []", 7443),
        ]
        .concat();
        let g = switchyard_config::build(&[switchyard_config::SourceFile::new("g.yaml", yaml)])
            .unwrap_or_else(|d| panic!("{d}"));
        let p = east_west_paths(&g, Some("zone-a"));
        assert_eq!(p["zone-b"], [SocketAddr::from(([127, 0, 0, 2], 7441))]);
        assert!(!p["zone-c"].is_empty());
        assert!(p["zone-c"]
            .iter()
            .all(|a| a.port() == 7442 && a.ip().is_loopback()));
        // No address to dial (and our own zone) is no path.
        assert!(!p.contains_key("zone-d") && !p.contains_key("zone-a"));
        assert!(east_west_paths(&g, None).is_empty());
    }

    #[test]
    fn a_retry_leaves_the_zone_once_its_endpoints_in_rotation_have_failed() {
        let registry = StateRegistry::default();
        let b = runtime(backend(Locality::default()), &registry);
        // Three local endpoints in rotation (dead, but not detected yet).
        let mut failed = Failed::default();
        for _ in 0..3 {
            assert_eq!(choose(&b, None, None, failed).unwrap().0, Tier::Local);
            failed.record(Tier::Local);
        }
        assert_eq!(choose(&b, None, None, failed).unwrap().0, Tier::Remote(0));
        failed.record(Tier::Remote(0));
        assert_eq!(choose(&b, None, None, failed).unwrap().0, Tier::Remote(1));
    }

    #[test]
    fn without_local_endpoints_an_ejected_remote_path_is_still_tried() {
        let registry = StateRegistry::default();
        let mut b = backend(Locality::default());
        b.endpoints.retain(|e| e.zone.as_deref() == Some("zone-b"));
        let b = runtime(b, &registry);
        assert!(b.balancer.is_empty());
        let zone_b = &b.remote[0].balancer;
        let peers = Peers {
            backend: &zone_b.state().outlier,
            endpoints: &zone_b.endpoints,
        };
        let now = crate::resilience::clock::now_ms();
        for _ in 0..3 {
            outlier::record(remote_outlier(), &peers, 0, Outcome::GatewayError, now);
        }
        assert!(zone_b.endpoints[0].state.outlier.is_ejected());
        // The only path is ejected: it is tried anyway (panic), unless it already failed.
        assert_eq!(
            choose(&b, None, None, Failed::default()).unwrap(),
            (Tier::Remote(0), 0)
        );
        assert_eq!(
            choose(&b, None, None, remote(0b1)),
            Err(NoPick::NoneHealthy)
        );
    }
}
