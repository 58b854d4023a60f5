//! Validation of Backends, the BackendPolicies that target them, and TLSCertificates.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{duration, known_names, Object};
use crate::model::{
    Backend, BackendPolicy, CertificateFiles, Endpoint, HashKey, LbAlgorithm, ObjRef, TlsAlpn,
    UpstreamProtocol, UpstreamTls,
};
use crate::raw::switchyard::{
    BackendPolicySpec, BackendSpec, RawAlpn, RawLbType, RawLoadBalancer, RawUpstreamProtocol,
    TlsCertificateSpec,
};
use crate::raw::{DocRef, SourceText};
use crate::report::{Reporter, Site};

/// Largest endpoint or backendRef weight.
pub(crate) const MAX_WEIGHT: u32 = 1_000_000;

/// TLSCertificates by id, with paths resolved against their file's directory.
pub(crate) fn certificates(
    objects: &[Object<'_, TlsCertificateSpec>],
    sources: &[SourceText<'_>],
    rep: &mut Reporter<'_>,
) -> BTreeMap<ObjRef, CertificateFiles> {
    let mut out = BTreeMap::new();
    for obj in objects {
        let dir = &sources[obj.site.at.file].dir;
        for (field, value) in [
            ("spec.certFile", &obj.spec.cert_file),
            ("spec.keyFile", &obj.spec.key_file),
        ] {
            if value.trim().is_empty() {
                rep.error(&obj.site, field, "must name a PEM file");
            }
        }
        // Registered even when invalid, so listeners referring to it are not also reported.
        out.insert(
            obj.id.clone(),
            CertificateFiles {
                id: obj.id.clone(),
                cert_file: dir.join(&obj.spec.cert_file),
                key_file: dir.join(&obj.spec.key_file),
            },
        );
    }
    out
}

/// Backends by id, each with the BackendPolicy that targets it (or the defaults).
pub(crate) fn backends(
    objects: &[Object<'_, BackendSpec>],
    policies: &[Object<'_, BackendPolicySpec>],
    sources: &[SourceText<'_>],
    rep: &mut Reporter<'_>,
) -> BTreeMap<ObjRef, Arc<Backend>> {
    let mut endpoints: BTreeMap<ObjRef, Vec<Endpoint>> = BTreeMap::new();
    for obj in objects {
        endpoints.insert(obj.id.clone(), backend_endpoints(obj, rep));
    }
    let mut applied: HashMap<ObjRef, (BackendPolicy, DocRef, String)> = HashMap::new();
    for obj in policies {
        let policy = policy(obj, &sources[obj.site.at.file].dir, rep);
        for (i, target) in obj.spec.target_refs.iter().enumerate() {
            let field = format!("spec.targetRefs[{i}]");
            let group_ok = target
                .group
                .as_deref()
                .is_none_or(|g| g == "switchyard.dev");
            if target.kind != "Backend" || !group_ok {
                rep.error(
                    &obj.site,
                    format!("{field}.kind"),
                    format!(
                        "a BackendPolicy can only target kind Backend in group switchyard.dev, not {:?}",
                        target.kind
                    ),
                );
                continue;
            }
            let id = ObjRef::new(&obj.id.namespace, &target.name);
            if !endpoints.contains_key(&id) {
                if rep.is_view() {
                    // The Backend is used by routes outside this gateway's view.
                    continue;
                }
                rep.error(
                    &obj.site,
                    format!("{field}.name"),
                    format!(
                        "unknown Backend {:?} {}",
                        target.name,
                        known_names(endpoints.keys(), &obj.id.namespace)
                    ),
                );
                continue;
            }
            if let Some((_, first_at, first_label)) = applied.get(&id) {
                let first = rep.describe(*first_at, "metadata.name");
                rep.error(
                    &obj.site,
                    format!("{field}.name"),
                    format!("Backend {id} is already targeted by {first_label} ({first}); a Backend takes one BackendPolicy"),
                );
                continue;
            }
            applied.insert(id, (policy.clone(), obj.site.at, obj.site.label.clone()));
        }
    }
    endpoints
        .into_iter()
        .map(|(id, endpoints)| {
            let policy = applied.remove(&id).map(|(p, ..)| p).unwrap_or_default();
            (
                id.clone(),
                Arc::new(Backend {
                    id,
                    endpoints,
                    policy,
                }),
            )
        })
        .collect()
}

fn backend_endpoints(obj: &Object<'_, BackendSpec>, rep: &mut Reporter<'_>) -> Vec<Endpoint> {
    let mut out = Vec::with_capacity(obj.spec.endpoints.len());
    for (i, ep) in obj.spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        let address = match ep.address.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => a,
            _ => {
                rep.error(
                    &obj.site,
                    format!("{field}.address"),
                    format!("invalid endpoint address {:?}: expected IP:port (e.g. 10.0.0.7:8080 or [::1]:8080)", ep.address),
                );
                continue;
            }
        };
        let weight = ep.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            rep.error(
                &obj.site,
                format!("{field}.weight"),
                format!("weight {weight} is above the maximum {MAX_WEIGHT}"),
            );
            continue;
        }
        out.push(Endpoint {
            address,
            zone: ep.zone.clone(),
            weight,
        });
    }
    out
}

fn policy(
    obj: &Object<'_, BackendPolicySpec>,
    dir: &Path,
    rep: &mut Reporter<'_>,
) -> BackendPolicy {
    let site = &obj.site;
    let spec = obj.spec;
    let mut policy = BackendPolicy {
        source: Some(obj.id.clone()),
        ..BackendPolicy::default()
    };
    if spec.target_refs.is_empty() {
        rep.error(
            site,
            "spec.targetRefs",
            "a BackendPolicy needs at least one targetRef",
        );
    }
    if let Some(lb) = &spec.load_balancer {
        if let Some(lb) = load_balancer(lb, site, rep) {
            policy.lb = lb;
        }
    }
    if let Some(t) = &spec.timeouts {
        if let Some(d) = duration(t.connect.as_deref(), site, "spec.timeouts.connect", rep) {
            if d.is_zero() {
                rep.error(
                    site,
                    "spec.timeouts.connect",
                    "the connect timeout must be above 0s",
                );
            } else {
                policy.connect_timeout = d;
            }
        }
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        if let Some(d) = duration(t.read.as_deref(), site, "spec.timeouts.read", rep) {
            policy.read_timeout = nonzero(d);
        }
        if let Some(d) = duration(t.write.as_deref(), site, "spec.timeouts.write", rep) {
            policy.write_timeout = nonzero(d);
        }
        if let Some(d) = duration(t.idle.as_deref(), site, "spec.timeouts.idle", rep) {
            policy.idle_timeout = d;
        }
    }
    let protocol = spec.protocol.unwrap_or(RawUpstreamProtocol::Http1);
    policy.protocol = match (protocol, &spec.tls) {
        (RawUpstreamProtocol::Http1, None) => UpstreamProtocol::Http1,
        (RawUpstreamProtocol::H2c, None) => UpstreamProtocol::H2c,
        (RawUpstreamProtocol::Tls, None) => {
            rep.error(
                site,
                "spec.protocol",
                "protocol TLS needs a tls section with sni",
            );
            UpstreamProtocol::Http1
        }
        (RawUpstreamProtocol::Tls, Some(tls)) => {
            let sni = tls.sni.clone().unwrap_or_default();
            if sni.is_empty() {
                rep.error(
                    site,
                    "spec.tls.sni",
                    "protocol TLS needs tls.sni (the upstream's server name)",
                );
            } else if let Err(e) = crate::hostname::check(&sni, false) {
                rep.error(site, "spec.tls.sni", e);
            }
            UpstreamProtocol::Tls(UpstreamTls {
                sni,
                ca_file: tls.ca_file.as_ref().map(|f| dir.join(f)),
                insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
                alpn: match tls.alpn {
                    None | Some(RawAlpn::Http1) => TlsAlpn::Http1,
                    Some(RawAlpn::H2) => TlsAlpn::H2,
                    Some(RawAlpn::Auto) => TlsAlpn::Auto,
                },
            })
        }
        (_, Some(_)) => {
            rep.error(site, "spec.tls", "tls settings need protocol: TLS");
            UpstreamProtocol::Http1
        }
    };
    super::resilience::apply(spec, site, &mut policy, rep);
    policy
}

fn load_balancer(lb: &RawLoadBalancer, site: &Site, rep: &mut Reporter<'_>) -> Option<LbAlgorithm> {
    let simple = match lb.kind {
        RawLbType::RoundRobin => Some(LbAlgorithm::RoundRobin),
        RawLbType::Random => Some(LbAlgorithm::Random),
        RawLbType::LeastRequest => Some(LbAlgorithm::LeastRequest),
        RawLbType::RingHash => None,
    };
    if let Some(simple) = simple {
        if lb.hash_on.is_some() {
            rep.error(
                site,
                "spec.loadBalancer.hashOn",
                "hashOn is only used with type RingHash",
            );
        }
        return Some(simple);
    }
    let Some(hash) = &lb.hash_on else {
        rep.error(
            site,
            "spec.loadBalancer",
            "type RingHash needs hashOn with one of header, cookie or sourceIP",
        );
        return None;
    };
    let chosen = [
        hash.header.is_some(),
        hash.cookie.is_some(),
        hash.source_ip == Some(true),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        rep.error(
            site,
            "spec.loadBalancer.hashOn",
            "set exactly one of header, cookie or sourceIP: true",
        );
        return None;
    }
    let key = if let Some(header) = &hash.header {
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Ok(name) => HashKey::Header(name),
            Err(_) => {
                rep.error(
                    site,
                    "spec.loadBalancer.hashOn.header",
                    format!("invalid header name {header:?}"),
                );
                return None;
            }
        }
    } else if let Some(cookie) = &hash.cookie {
        if !super::resilience::is_cookie_name(cookie) {
            rep.error(
                site,
                "spec.loadBalancer.hashOn.cookie",
                format!("invalid cookie name {cookie:?}"),
            );
            return None;
        }
        HashKey::Cookie(cookie.clone())
    } else {
        HashKey::SourceIp
    };
    Some(LbAlgorithm::RingHash { key })
}
