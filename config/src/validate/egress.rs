//! Validation of ExternalServices (the egress allowlist): host patterns, static addresses,
//! ports and TLS origination, and hosts allowed twice across objects.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Object;
use crate::egress::{ExternalPort, ExternalProtocol, ExternalService, OriginateTls};
use crate::raw::egress::{ExternalServiceSpec, RawExternalPort};
use crate::raw::{DocRef, SourceText};
use crate::report::{Reporter, Site};

/// Default `originateTls.targetPort`.
const DEFAULT_TLS_PORT: u16 = 443;

/// Every valid ExternalService, in id order. An object with errors is left out (the build
/// fails anyway).
pub(crate) fn external_services(
    objects: &[Object<'_, ExternalServiceSpec>],
    sources: &[SourceText<'_>],
    rep: &mut Reporter<'_>,
) -> Vec<ExternalService> {
    // (pattern, port) -> where it was first allowed.
    let mut claimed: HashMap<(String, u16), (DocRef, String)> = HashMap::new();
    let mut out = Vec::with_capacity(objects.len());
    for obj in objects {
        let dir = &sources[obj.site.at.file].dir;
        let mut ok = true;
        let site = &obj.site;
        let spec = obj.spec;
        if spec.hosts.is_empty() {
            rep.error(
                site,
                "spec.hosts",
                "an ExternalService needs at least one host",
            );
            ok = false;
        }
        // The valid, distinct hosts with their index in `spec.hosts`.
        let mut hosts: Vec<(usize, &String)> = Vec::with_capacity(spec.hosts.len());
        for (i, h) in spec.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            if let Err(e) = crate::hostname::check(h, true) {
                rep.error(site, field, e);
                ok = false;
            } else if hosts.iter().any(|(_, seen)| *seen == h) {
                rep.error(site, field, format!("host {h:?} is listed twice"));
                ok = false;
            } else {
                hosts.push((i, h));
            }
        }
        let mut addresses = Vec::with_capacity(spec.addresses.len());
        for (i, a) in spec.addresses.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => {
                    rep.error(
                        site,
                        format!("spec.addresses[{i}]"),
                        format!("invalid IP address {a:?} (addresses are IPs; leave them out to resolve the host through DNS)"),
                    );
                    ok = false;
                }
            }
        }
        if spec.ports.is_empty() {
            rep.error(
                site,
                "spec.ports",
                "an ExternalService needs at least one port",
            );
            ok = false;
        }
        let mut ports: Vec<ExternalPort> = Vec::with_capacity(spec.ports.len());
        for (j, raw) in spec.ports.iter().enumerate() {
            let Some(port) = port(raw, j, site, dir, rep) else {
                ok = false;
                continue;
            };
            if let Some(first) = ports.iter().position(|p| p.number == port.number) {
                rep.error(
                    site,
                    format!("spec.ports[{j}].number"),
                    format!(
                        "port {} is listed twice (also spec.ports[{first}])",
                        port.number
                    ),
                );
                ok = false;
                continue;
            }
            ports.push(port);
        }
        for &(i, h) in &hosts {
            for p in &ports {
                let key = (h.clone(), p.number);
                if let Some((at, label)) = claimed.get(&key) {
                    let first = rep.describe(*at, "metadata.name");
                    rep.error(
                        site,
                        format!("spec.hosts[{i}]"),
                        format!(
                            "{h}:{} is already allowed by {label} ({first}); a host and port belong to one ExternalService",
                            p.number
                        ),
                    );
                    ok = false;
                } else {
                    claimed.insert(key, (site.at, site.label.clone()));
                }
            }
        }
        if ok {
            out.push(ExternalService {
                id: obj.id.clone(),
                hosts: hosts.into_iter().map(|(_, h)| h.clone()).collect(),
                addresses,
                ports,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn port(
    raw: &RawExternalPort,
    j: usize,
    site: &Site,
    dir: &std::path::Path,
    rep: &mut Reporter<'_>,
) -> Option<ExternalPort> {
    let field = format!("spec.ports[{j}]");
    let mut ok = true;
    if raw.number == 0 {
        rep.error(
            site,
            format!("{field}.number"),
            "port must be between 1 and 65535",
        );
        ok = false;
    }
    let protocol = match raw.protocol.as_str() {
        "HTTP" => ExternalProtocol::Http,
        "TLS" => ExternalProtocol::Tls,
        other => {
            rep.error(
                site,
                format!("{field}.protocol"),
                format!("unsupported protocol {other:?} (supported: HTTP, TLS)"),
            );
            return None;
        }
    };
    let originate_tls = match (&raw.originate_tls, protocol) {
        (None, _) => None,
        (Some(_), ExternalProtocol::Tls) => {
            rep.error(
                site,
                format!("{field}.originateTls"),
                "originateTls is only allowed on HTTP ports (a TLS port carries the app's own TLS through a CONNECT tunnel)",
            );
            return None;
        }
        (Some(t), ExternalProtocol::Http) => {
            let target_port = t.target_port.unwrap_or(DEFAULT_TLS_PORT);
            if target_port == 0 {
                rep.error(
                    site,
                    format!("{field}.originateTls.targetPort"),
                    "port must be between 1 and 65535",
                );
                ok = false;
            }
            if let Some(sni) = &t.sni {
                if let Err(e) = crate::hostname::check(sni, false) {
                    rep.error(site, format!("{field}.originateTls.sni"), e);
                    ok = false;
                }
            }
            let ca_file = match t.ca_file.as_deref() {
                Some(f) if f.trim().is_empty() => {
                    rep.error(
                        site,
                        format!("{field}.originateTls.caFile"),
                        "must name a PEM file (leave it out to verify against the system roots)",
                    );
                    ok = false;
                    None
                }
                Some(f) => Some(dir.join(f)),
                None => None,
            };
            Some(OriginateTls {
                target_port,
                ca_file,
                sni: t.sni.clone(),
            })
        }
    };
    ok.then_some(ExternalPort {
        number: raw.number,
        protocol,
        originate_tls,
    })
}

/// A `switchyard.dev/Egress` or `switchyard.dev/EgressConnect` listener: a port and nothing
/// else (no hostname, no TLS, no routes).
pub(crate) fn listener(
    raw: &crate::raw::gateway::Listener,
    field: &str,
    protocol: crate::model::ListenerProtocol,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<super::ValidListener> {
    if raw.port == 0 {
        rep.error(
            site,
            format!("{field}.port"),
            "port must be between 1 and 65535",
        );
    }
    for (key, present) in [
        ("hostname", raw.hostname.is_some()),
        ("tls", raw.tls.is_some()),
        ("allowedRoutes", raw.allowed_routes.is_some()),
    ] {
        if present {
            rep.error(
                site,
                format!("{field}.{key}"),
                format!("{protocol} listeners take no {key} (the ExternalServices decide what is reachable)"),
            );
        }
    }
    Some(super::ValidListener {
        name: raw.name.clone(),
        hostname: None,
        port: raw.port,
        protocol,
        tls: None,
        from_all_namespaces: false,
    })
}
