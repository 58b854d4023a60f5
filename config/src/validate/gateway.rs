//! Validation of Gateways: listeners, their ports, hostnames, TLS certificates and allowed routes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use super::{known_names, mesh, Object};
use crate::model::{CertificateFiles, ListenerProtocol, ObjRef, TlsConfig};
use crate::raw::gateway::{FromNamespaces, GatewaySpec, Listener, TlsMode};
use crate::report::Reporter;

/// The label that places a Gateway in a zone.
pub(crate) const ZONE_LABEL: &str = "switchyard.dev/zone";
/// The listener protocol of a zone's east-west (mTLS, gateway-to-gateway) listener.
pub(crate) const EAST_WEST_PROTOCOL: &str = "switchyard.dev/EastWest";

/// A validated Gateway.
#[derive(Debug)]
pub(crate) struct ValidGateway {
    pub id: ObjRef,
    pub zone: Option<String>,
    pub address: IpAddr,
    /// `spec.addresses[0]` of type Hostname: the name other zones dial.
    pub hostname: Option<String>,
    pub listeners: Vec<ValidListener>,
    /// Every declared listener's (name, port), valid or not, for resolving parentRefs.
    pub declared: Vec<(String, u16)>,
}

/// A validated listener. Listeners with errors are kept (the build fails anyway) so that routes
/// naming them do not also get "unknown sectionName" errors.
#[derive(Debug)]
pub(crate) struct ValidListener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: u16,
    pub protocol: ListenerProtocol,
    pub tls: Option<TlsConfig>,
    /// Routes from every namespace may attach (`allowedRoutes.namespaces.from: All`).
    pub from_all_namespaces: bool,
}

pub(crate) fn gateways(
    objects: &[Object<'_, GatewaySpec>],
    certificates: &BTreeMap<ObjRef, CertificateFiles>,
    rep: &mut Reporter<'_>,
) -> Vec<ValidGateway> {
    objects
        .iter()
        .map(|obj| gateway(obj, certificates, rep))
        .collect()
}

fn gateway(
    obj: &Object<'_, GatewaySpec>,
    certificates: &BTreeMap<ObjRef, CertificateFiles>,
    rep: &mut Reporter<'_>,
) -> ValidGateway {
    let site = &obj.site;
    let mut address = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut hostname = None;
    for (i, a) in obj.spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        if i > 0 {
            rep.error(site, field, "only one address is supported");
            continue;
        }
        match a.kind.as_deref() {
            None | Some("IPAddress") => match a.value.parse() {
                Ok(ip) => address = ip,
                Err(_) => rep.error(
                    site,
                    format!("{field}.value"),
                    format!("invalid IP address {:?}", a.value),
                ),
            },
            // A name other zones' gateways dial (a Kubernetes Service's DNS name); the
            // gateway itself listens on every interface.
            Some("Hostname") => match crate::hostname::check(&a.value, false) {
                Ok(()) => hostname = Some(a.value.clone()),
                Err(e) => rep.error(site, format!("{field}.value"), e),
            },
            Some(other) => rep.error(
                site,
                format!("{field}.type"),
                format!("unsupported address type {other:?} (supported: IPAddress, Hostname)"),
            ),
        }
    }
    if obj.spec.listeners.is_empty() {
        rep.error(
            site,
            "spec.listeners",
            "a Gateway needs at least one listener",
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    // port -> (protocol, first listener name); (port, hostname) -> listener name.
    let mut ports: HashMap<u16, (ListenerProtocol, &str)> = HashMap::new();
    let mut hosts: HashMap<(u16, Option<&str>), &str> = HashMap::new();
    let mut listeners = Vec::with_capacity(obj.spec.listeners.len());
    let mut mesh_listeners = mesh::MeshListeners::default();
    for (i, raw) in obj.spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        if let Some(first) = names.insert(&raw.name, i) {
            rep.error(
                site,
                format!("{field}.name"),
                format!(
                    "duplicate listener name {:?} (also spec.listeners[{first}])",
                    raw.name
                ),
            );
        }
        let Some(listener) = listener(raw, &field, obj, certificates, rep) else {
            continue;
        };
        if listener.protocol == ListenerProtocol::EastWest {
            mesh::east_west(raw, &field, obj, obj.meta.labels.get(ZONE_LABEL), rep);
        }
        let client_certificates = listener.tls.as_ref().and_then(|t| t.client_certificates);
        mesh_listeners.check(i, raw, client_certificates, obj, rep);
        if let Some((protocol, first)) = ports.get(&raw.port) {
            if *protocol != listener.protocol {
                rep.error(
                    site,
                    format!("{field}.protocol"),
                    format!(
                        "port {} is already {protocol} on listener {first:?}; listeners sharing a port must share a protocol",
                        raw.port
                    ),
                );
                listeners.push(listener);
                continue;
            }
        } else {
            ports.insert(raw.port, (listener.protocol, &raw.name));
        }
        let key = (raw.port, raw.hostname.as_deref());
        if let Some(first) = hosts.get(&key) {
            let what = match &raw.hostname {
                Some(h) => format!("hostname {h:?}"),
                None => "no hostname".to_string(),
            };
            rep.error(
                site,
                if raw.hostname.is_some() {
                    format!("{field}.hostname")
                } else {
                    format!("{field}.port")
                },
                format!(
                    "listener {:?} conflicts with listener {first:?}: same port {} and {what}",
                    raw.name, raw.port
                ),
            );
        } else {
            hosts.insert(key, &raw.name);
        }
        listeners.push(listener);
    }
    ValidGateway {
        id: obj.id.clone(),
        zone: obj.meta.labels.get(ZONE_LABEL).cloned(),
        address,
        hostname,
        listeners,
        declared: obj
            .spec
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.port))
            .collect(),
    }
}

fn listener(
    raw: &Listener,
    field: &str,
    obj: &Object<'_, GatewaySpec>,
    certificates: &BTreeMap<ObjRef, CertificateFiles>,
    rep: &mut Reporter<'_>,
) -> Option<ValidListener> {
    let site = &obj.site;
    let protocol = match raw.protocol.as_str() {
        "HTTP" => ListenerProtocol::Http,
        "HTTPS" => ListenerProtocol::Https,
        "switchyard.dev/Egress" => ListenerProtocol::Egress,
        "switchyard.dev/EgressConnect" => ListenerProtocol::EgressConnect,
        mesh::EAST_WEST => ListenerProtocol::EastWest,
        other => {
            rep.error(
                site,
                format!("{field}.protocol"),
                format!(
                    "unsupported protocol {other:?} (supported: HTTP, HTTPS, {}, switchyard.dev/Egress, switchyard.dev/EgressConnect)",
                    mesh::EAST_WEST
                ),
            );
            return None;
        }
    };
    if matches!(
        protocol,
        ListenerProtocol::Egress | ListenerProtocol::EgressConnect
    ) {
        return super::egress::listener(raw, field, protocol, site, rep);
    }
    if raw.port == 0 {
        rep.error(
            site,
            format!("{field}.port"),
            "port must be between 1 and 65535",
        );
    }
    let mut hostname = raw.hostname.clone();
    if let Some(h) = &raw.hostname {
        if let Err(e) = crate::hostname::check(h, true) {
            rep.error(site, format!("{field}.hostname"), e);
            hostname = None;
        }
    }
    let tls = match (protocol, &raw.tls) {
        // Validated by `egress::listener` above.
        (ListenerProtocol::Egress | ListenerProtocol::EgressConnect, _) => None,
        // Checked by mesh::east_west.
        (ListenerProtocol::EastWest, _) => None,
        (ListenerProtocol::Http, None) => None,
        (ListenerProtocol::Http, Some(_)) => {
            rep.error(
                site,
                format!("{field}.tls"),
                "tls is only allowed on HTTPS listeners",
            );
            None
        }
        (ListenerProtocol::Https, None) => {
            rep.error(site, field, "an HTTPS listener needs tls.certificateRefs");
            None
        }
        (ListenerProtocol::Https, Some(tls)) => {
            if tls.mode == TlsMode::Passthrough {
                rep.error(
                    site,
                    format!("{field}.tls.mode"),
                    "unsupported TLS mode Passthrough (supported: Terminate)",
                );
            }
            if tls.certificate_refs.is_empty() {
                rep.error(
                    site,
                    format!("{field}.tls"),
                    "an HTTPS listener needs tls.certificateRefs",
                );
            }
            let mut certs = Vec::new();
            for (j, r) in tls.certificate_refs.iter().enumerate() {
                let cfield = format!("{field}.tls.certificateRefs[{j}]");
                let group_ok = r.group.as_deref().is_none_or(|g| g == "switchyard.dev");
                let kind_ok = r.kind.as_deref().is_none_or(|k| k == "TLSCertificate");
                if !group_ok || !kind_ok {
                    rep.error(
                        site,
                        format!("{cfield}.kind"),
                        format!(
                            "unsupported certificate reference {}/{} (use group switchyard.dev, kind TLSCertificate)",
                            r.group.as_deref().unwrap_or(""),
                            r.kind.as_deref().unwrap_or("Secret")
                        ),
                    );
                    continue;
                }
                let namespace = r.namespace.as_deref().unwrap_or(&obj.id.namespace);
                let id = ObjRef::new(namespace, &r.name);
                match certificates.get(&id) {
                    Some(files) => certs.push(files.clone()),
                    None => rep.error(
                        site,
                        format!("{cfield}.name"),
                        format!(
                            "unknown TLSCertificate {:?} {}",
                            r.name,
                            known_names(certificates.keys(), namespace)
                        ),
                    ),
                }
            }
            Some(TlsConfig {
                certificates: certs,
                client_certificates: mesh::client_certificates(&tls.options, field, obj, rep),
            })
        }
    };
    let mut from_all_namespaces = false;
    if let Some(allowed) = &raw.allowed_routes {
        if let Some(ns) = &allowed.namespaces {
            match ns.from {
                FromNamespaces::Same => {}
                FromNamespaces::All => from_all_namespaces = true,
                FromNamespaces::Selector => rep.error(
                    site,
                    format!("{field}.allowedRoutes.namespaces.from"),
                    "unsupported namespaces.from Selector (supported: Same, All)",
                ),
            }
        }
        for (j, k) in allowed.kinds.iter().flatten().enumerate() {
            let group_ok = k
                .group
                .as_deref()
                .is_none_or(|g| g == "gateway.networking.k8s.io");
            if k.kind != "HTTPRoute" || !group_ok {
                rep.error(
                    site,
                    format!("{field}.allowedRoutes.kinds[{j}].kind"),
                    format!("unsupported route kind {:?} (supported: HTTPRoute)", k.kind),
                );
            }
        }
    }
    Some(ValidListener {
        name: raw.name.clone(),
        hostname,
        port: raw.port,
        protocol,
        tls,
        from_all_namespaces,
    })
}
