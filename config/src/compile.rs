//! Stage three: attach validated routes to listeners and build each (gateway, port)'s route table.

use std::collections::BTreeMap;

use crate::model::{GatewayConfig, Generation, ListenerConfig, ListenerProtocol, PortConfig};
use crate::report::Reporter;
use crate::route::{HostPattern, RouteTableBuilder};
use crate::validate::{Model, ValidGateway, ValidListener, ValidRoute};

/// One port of a gateway while routes are being attached.
struct PortBuild {
    protocol: ListenerProtocol,
    listeners: Vec<ListenerConfig>,
    routes: RouteTableBuilder,
    client_certificates: Option<crate::model::ClientCertificates>,
}

/// Builds the [`Generation`], reporting routes that attach to no listener.
pub(crate) fn compile(
    model: Model,
    rep: &mut Reporter<'_>,
    digest: String,
    files: Vec<String>,
) -> Generation {
    let mut ports: Vec<BTreeMap<u16, PortBuild>> = model.gateways.iter().map(ports_of).collect();
    for route in &model.routes {
        attach(route, &model.gateways, &mut ports, rep);
    }
    let mut security = model.security;
    let mut gateways: Vec<GatewayConfig> = model
        .gateways
        .into_iter()
        .zip(ports)
        .map(|(g, ports)| GatewayConfig {
            ports: ports
                .into_iter()
                .map(|(port, p)| {
                    let key = (g.id.clone(), port);
                    PortConfig {
                        port,
                        protocol: p.protocol,
                        listeners: p.listeners,
                        routes: p.routes.build(),
                        client: security.client.remove(&key).unwrap_or_default(),
                        authz: security.authz.remove(&key).map(std::sync::Arc::new),
                        client_certificates: p.client_certificates,
                    }
                })
                .collect(),
            id: g.id,
            zone: g.zone,
            address: g.address,
            hostname: g.hostname,
        })
        .collect();
    gateways.sort_by(|a, b| a.id.cmp(&b.id));
    Generation {
        digest,
        files,
        gateways,
        backends: model.backends,
        egress: crate::egress::EgressTable::new(model.external_services),
    }
}

/// Groups a gateway's listeners by port; a listener whose protocol conflicts with the port's
/// first listener was reported and is left out.
fn ports_of(g: &ValidGateway) -> BTreeMap<u16, PortBuild> {
    let mut ports: BTreeMap<u16, PortBuild> = BTreeMap::new();
    for l in &g.listeners {
        let port = ports.entry(l.port).or_insert_with(|| PortBuild {
            protocol: l.protocol,
            listeners: Vec::new(),
            routes: RouteTableBuilder::default(),
            client_certificates: l.tls.as_ref().and_then(|t| t.client_certificates),
        });
        if port.protocol == l.protocol {
            port.listeners.push(ListenerConfig {
                name: l.name.clone(),
                hostname: l.hostname.clone(),
                tls: l.tls.clone(),
            });
        }
    }
    ports
}

fn attach(
    route: &ValidRoute,
    gateways: &[ValidGateway],
    ports: &mut [BTreeMap<u16, PortBuild>],
    rep: &mut Reporter<'_>,
) {
    let at = route.site.at;
    // Effective hostnames per (gateway, port), merged over parents and listeners, so that each
    // rule enters a port's table once.
    let mut targets: BTreeMap<(usize, u16), Vec<HostPattern>> = BTreeMap::new();
    for parent in &route.parents {
        let gateway = &gateways[parent.gateway];
        let selected: Vec<&ValidListener> = gateway
            .listeners
            .iter()
            .filter(|l| l.protocol.takes_routes())
            .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
            .filter(|l| parent.port.is_none_or(|p| p == l.port))
            .collect();
        let allowed: Vec<&ValidListener> = selected
            .iter()
            .copied()
            .filter(|l| l.from_all_namespaces || gateway.id.namespace == route.id.namespace)
            .collect();
        if !selected.is_empty() && allowed.is_empty() {
            rep.error(
                &route.site,
                format!("spec.parentRefs[{}]", parent.index),
                format!(
                    "Gateway {} only accepts routes from namespace {:?} on {} (allowedRoutes.namespaces.from: Same)",
                    gateway.id,
                    gateway.id.namespace,
                    names(&selected)
                ),
            );
            continue;
        }
        let mut attached = false;
        for listener in allowed.iter() {
            let hosts = crate::hostname::intersect(listener.hostname.as_deref(), &route.hostnames);
            if hosts.is_empty() {
                continue;
            }
            attached = true;
            let port_matches = ports[parent.gateway]
                .get(&listener.port)
                .is_some_and(|p| p.protocol == listener.protocol);
            if port_matches {
                targets
                    .entry((parent.gateway, listener.port))
                    .or_default()
                    .extend(hosts);
            }
        }
        if !allowed.is_empty() && !attached {
            let listeners: Vec<String> = allowed
                .iter()
                .map(|l| {
                    format!(
                        "{} ({})",
                        l.name,
                        l.hostname.as_deref().unwrap_or("any host")
                    )
                })
                .collect();
            rep.error(
                &route.site,
                "spec.hostnames",
                format!(
                    "no hostname of the route ({}) matches a listener hostname of Gateway {} (listeners: {})",
                    route.hostnames.join(", "),
                    gateway.id,
                    listeners.join(", ")
                ),
            );
        }
    }
    for ((gateway, port), mut hosts) in targets {
        hosts.sort();
        hosts.dedup();
        if let Some(port) = ports[gateway].get_mut(&port) {
            for rule in &route.rules {
                port.routes
                    .add(&rule.rule, &rule.matches, &hosts, at.file, at.doc);
            }
        }
    }
}

fn names(listeners: &[&ValidListener]) -> String {
    let names: Vec<String> = listeners.iter().map(|l| format!("{:?}", l.name)).collect();
    format!(
        "listener{} {}",
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}
