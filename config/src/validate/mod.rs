//! Stage two: raw objects to a validated model, with names resolved, values typed and every problem reported.
//!
//! Each check reports through the [`Reporter`] and carries on: an invalid part is dropped
//! (or replaced by a harmless default) so that later checks still run and one pass reports
//! every error. Names of invalid objects stay registered, so a bad Backend does not also
//! produce "unknown Backend" errors in every route that uses it.

mod backend;
mod egress;
mod filter;
mod gateway;
mod matches;
mod mesh;
mod resilience;
mod route;
mod security;
mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::model::{Backend, ObjRef};
use crate::raw::document::Metadata;
use crate::raw::{DocRef, Kind, RawDoc, SourceText, Spec};
use crate::report::{Reporter, Site};

pub(crate) use gateway::{ValidGateway, ValidListener, EAST_WEST_PROTOCOL, ZONE_LABEL};
pub(crate) use route::ValidRoute;
pub(crate) use security::PortSecurity;

/// Route sets smaller than this are validated on the calling thread.
const PARALLEL_MIN_ROUTES: usize = 1000;

/// The validated model: what compilation turns into a [`Generation`](crate::Generation).
#[derive(Debug)]
pub(crate) struct Model {
    pub backends: BTreeMap<ObjRef, Arc<Backend>>,
    pub gateways: Vec<ValidGateway>,
    pub routes: Vec<ValidRoute>,
    pub external_services: Vec<crate::egress::ExternalService>,
    /// ClientTrafficPolicies and AuthorizationPolicies by (Gateway, port).
    pub security: PortSecurity,
}

/// One object of a known kind, with its typed spec.
#[derive(Debug)]
pub(crate) struct Object<'a, S> {
    pub site: Site,
    pub id: ObjRef,
    pub meta: &'a Metadata,
    pub spec: &'a S,
}

/// The objects of a parse, grouped by kind, duplicates and unsupported kinds removed.
#[derive(Debug, Default)]
struct Objects<'a> {
    gateways: Vec<Object<'a, crate::raw::gateway::GatewaySpec>>,
    routes: Vec<Object<'a, crate::raw::route::HttpRouteSpec>>,
    backends: Vec<Object<'a, crate::raw::switchyard::BackendSpec>>,
    policies: Vec<Object<'a, crate::raw::switchyard::BackendPolicySpec>>,
    certificates: Vec<Object<'a, crate::raw::switchyard::TlsCertificateSpec>>,
    traffic: Vec<Object<'a, crate::raw::switchyard::TrafficPolicySpec>>,
    external: Vec<Object<'a, crate::raw::egress::ExternalServiceSpec>>,
    client_policies: Vec<Object<'a, crate::raw::security::ClientTrafficPolicySpec>>,
    authz: Vec<Object<'a, crate::raw::security::AuthorizationPolicySpec>>,
}

/// Validates every parsed object.
pub(crate) fn validate(
    docs: &[RawDoc],
    sources: &[SourceText<'_>],
    rep: &mut Reporter<'_>,
) -> Model {
    let objects = group(docs, rep);
    let certificates = backend::certificates(&objects.certificates, sources, rep);
    let backends = backend::backends(&objects.backends, &objects.policies, sources, rep);
    let gateways = gateway::gateways(&objects.gateways, &certificates, rep);
    // TrafficPolicies are checked against the routes' raw specs, so that each rule gets its
    // policy when route validation builds it.
    let traffic = traffic::policies(&objects.traffic, &objects.routes, rep);
    let security = security::policies(
        &objects.client_policies,
        &objects.authz,
        &gateways,
        &objects.routes,
        &backends,
        rep,
    );
    // Routes are independent once gateways and backends are known: large sets are validated
    // in parallel, each part reporting into its own collector.
    let scope = rep.scope();
    let parts = crate::par::map_parts(
        &objects.routes,
        |_| 1,
        PARALLEL_MIN_ROUTES,
        |part| {
            let mut part_rep = Reporter::new(sources, Vec::new(), scope);
            let routes: Vec<ValidRoute> = part
                .iter()
                .map(|obj| route::route(obj, &gateways, &backends, &traffic, &mut part_rep))
                .collect();
            (routes, part_rep)
        },
    );
    let mut routes = Vec::with_capacity(objects.routes.len());
    for (part, part_rep) in parts {
        routes.extend(part);
        rep.absorb(part_rep);
    }
    let external_services = egress::external_services(&objects.external, sources, rep);
    Model {
        backends,
        gateways,
        routes,
        external_services,
        security,
    }
}

fn group<'a>(docs: &'a [RawDoc], rep: &mut Reporter<'_>) -> Objects<'a> {
    let mut objects = Objects::default();
    let mut seen: HashMap<(Kind, ObjRef), DocRef> = HashMap::new();
    for doc in docs {
        let raw = &doc.object;
        let id = ObjRef::new(&raw.metadata.namespace, &raw.metadata.name);
        let site = Site {
            at: doc.at,
            label: format!("{} {id}", raw.kind_name),
        };
        let Some(kind) = raw.kind else {
            let known_api = ["gateway.networking.k8s.io/v1", "switchyard.dev/v1alpha1"]
                .contains(&raw.api_version.as_str());
            rep.error(
                &site,
                if known_api { "kind" } else { "apiVersion" },
                format!(
                    "unsupported apiVersion/kind {:?} {:?} (supported: {})",
                    raw.api_version,
                    raw.kind_name,
                    Kind::supported()
                ),
            );
            continue;
        };
        let mut ok = true;
        if let Err(why) = check_name(&raw.metadata.name, 253, true) {
            rep.error(
                &site,
                "metadata.name",
                format!("invalid name {:?}: {why}", raw.metadata.name),
            );
            ok = false;
        }
        if let Err(why) = check_name(&raw.metadata.namespace, 63, false) {
            rep.error(
                &site,
                "metadata.namespace",
                format!("invalid namespace {:?}: {why}", raw.metadata.namespace),
            );
            ok = false;
        }
        if let Some(first) = seen.get(&(kind, id.clone())) {
            let first = rep.describe(*first, "metadata.name");
            rep.error(
                &site,
                "metadata.name",
                format!("duplicate {kind} {id} (first defined at {first})"),
            );
            continue;
        }
        seen.insert((kind, id.clone()), doc.at);
        if !ok {
            continue;
        }
        let meta = &raw.metadata;
        match &raw.spec {
            Spec::Gateway(spec) => objects.gateways.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::HttpRoute(spec) => objects.routes.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::Backend(spec) => objects.backends.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::BackendPolicy(spec) => objects.policies.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::TlsCertificate(spec) => objects.certificates.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::TrafficPolicy(spec) => objects.traffic.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::ExternalService(spec) => objects.external.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::ClientTrafficPolicy(spec) => objects.client_policies.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::AuthorizationPolicy(spec) => objects.authz.push(Object {
                site,
                id,
                meta,
                spec,
            }),
            Spec::Unsupported | Spec::Deferred => {}
        }
    }
    objects
}

/// Kubernetes object names: DNS subdomains (`dots`) or labels, lowercase.
pub(crate) fn check_name(name: &str, max: usize, dots: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > max {
        return Err(format!("longer than {max} characters"));
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.');
    if !name.bytes().all(allowed) {
        return Err(if dots {
            "only lowercase letters, digits, '-' and '.' are allowed".into()
        } else {
            "only lowercase letters, digits and '-' are allowed".into()
        });
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A field path (`spec.rules[1].backendRefs[0]`) built from segments on the stack and only
/// rendered when a diagnostic needs it, so the success path allocates no path strings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Root(&'static str),
    Key(&'a Field<'a>, &'static str),
    Index(&'a Field<'a>, usize),
}

impl<'a> Field<'a> {
    /// `self.key`.
    pub(crate) fn key(&'a self, key: &'static str) -> Field<'a> {
        Field::Key(self, key)
    }

    /// `self[index]`.
    pub(crate) fn at(&'a self, index: usize) -> Field<'a> {
        Field::Index(self, index)
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Root(key) => f.write_str(key),
            Field::Key(parent, key) => write!(f, "{parent}.{key}"),
            Field::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// "(known: a, b)" listing the names of `ids` in `namespace`, for dangling-reference errors.
pub(crate) fn known_names<'a>(ids: impl Iterator<Item = &'a ObjRef>, namespace: &str) -> String {
    let mut names: Vec<&str> = ids
        .filter(|id| id.namespace == namespace)
        .map(|id| id.name.as_str())
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        format!("(none in namespace {namespace:?})")
    } else {
        format!("(known: {})", names.join(", "))
    }
}

/// What a `backendRef` (or a mirror's `backendRef`) names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackendName<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
}

/// The context references in one route resolve in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub site: &'a Site,
    pub namespace: &'a str,
    pub backends: &'a BTreeMap<ObjRef, Arc<Backend>>,
}

impl Scope<'_> {
    /// Resolves a Switchyard Backend, or a Service ref standing for the Backend of the same
    /// name, reporting why it cannot. `field` is the reference's path.
    pub(crate) fn backend(
        &self,
        r: BackendName<'_>,
        field: &Field<'_>,
        rep: &mut Reporter<'_>,
    ) -> Option<Arc<Backend>> {
        let group = r.group.unwrap_or("");
        let kind = r.kind.unwrap_or("Service");
        let kind_ok = match kind {
            "Service" => group.is_empty() || group == "core",
            "Backend" => group.is_empty() || group == "switchyard.dev",
            _ => false,
        };
        if !kind_ok {
            rep.error(
                self.site,
                field.key("kind"),
                format!(
                    "unsupported backend kind {kind:?} in group {group:?} (use kind Backend, group switchyard.dev; a Service ref names the Backend of the same name)"
                ),
            );
            return None;
        }
        let namespace = r.namespace.unwrap_or(self.namespace);
        let id = ObjRef::new(namespace, r.name);
        if let Some(backend) = self.backends.get(&id) {
            return Some(Arc::clone(backend));
        }
        let shown = if namespace == self.namespace {
            r.name.to_string()
        } else {
            id.to_string()
        };
        rep.error(
            self.site,
            field.key("name"),
            format!(
                "unknown Backend {shown:?} {}",
                known_names(self.backends.keys(), namespace)
            ),
        );
        None
    }
}

/// Parses an optional Gateway API duration, reporting a bad one.
pub(crate) fn duration(
    value: Option<&str>,
    site: &Site,
    field: impl fmt::Display,
    rep: &mut Reporter<'_>,
) -> Option<std::time::Duration> {
    let value = value?;
    match crate::duration::parse_duration(value) {
        Ok(d) => Some(d),
        Err(e) => {
            rep.error(site, field, e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests;
