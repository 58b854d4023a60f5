//! Per-gateway views of a configuration set: the documents one Gateway needs and nothing else.
//!
//! A view holds the Gateway itself, the HTTPRoutes whose parentRefs name it, the Backends those
//! routes send to (backendRefs and mirrors), the BackendPolicies targeting those Backends, the
//! TrafficPolicies targeting those routes (or their rules), the TLSCertificates its
//! listeners use, and every ExternalService (egress is global). A zoned Gateway also gets the
//! other zones' Gateways that have an east-west listener (its failover targets) and, when it
//! has an east-west listener itself, every Backend with endpoints in its zone (the Backends
//! other zones' gateways may name). Views are cut from the operator's files document by
//! document: every file keeps its path, and every left-out document is replaced by as many
//! empty lines as it had, so a gateway validating its view reports the operator's own file,
//! line and column, and precedence (file path, then order in the file) is unchanged.
//!
//! A view is validated with [`crate::build_view`], which tolerates references to objects
//! left out on purpose (parentRefs to other Gateways, policy targets used elsewhere).

use std::collections::{BTreeSet, HashMap};

use crate::model::ObjRef;
use crate::raw::route::{HttpRouteSpec, RawFilter};
use crate::raw::{DocRef, Kind, RawDoc, SourceText, Spec};
use crate::source::SourceFile;

/// The documents one Gateway needs, as source files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The Gateway the view is for.
    pub gateway: ObjRef,
    /// The Gateway's `switchyard.dev/zone` label.
    pub zone: Option<String>,
    /// The cut files, in path order; files with nothing for this Gateway are left out.
    pub files: Vec<SourceFile>,
}

/// Whether a Gateway document has a `switchyard.dev/EastWest` listener.
fn has_east_west(doc: &RawDoc) -> bool {
    match &doc.object.spec {
        Spec::Gateway(spec) => spec
            .listeners
            .iter()
            .any(|l| l.protocol == crate::validate::EAST_WEST_PROTOCOL),
        _ => false,
    }
}

/// Cuts one view per Gateway of a parsed (and valid) set.
pub(crate) fn views(sources: &[SourceText<'_>], docs: &[RawDoc]) -> Vec<View> {
    let index = Index::new(docs);
    docs.iter()
        .filter(|doc| matches!(doc.object.spec, Spec::Gateway(_)))
        .map(|gateway| {
            let meta = &gateway.object.metadata;
            let id = ObjRef::new(&meta.namespace, &meta.name);
            let selected = index.select(docs, gateway, &id);
            View {
                zone: meta.labels.get(crate::validate::ZONE_LABEL).cloned(),
                gateway: id,
                files: cut(sources, &selected),
            }
        })
        .collect()
}

/// Documents by (kind, id), and routes by the Gateways they name.
struct Index {
    by_id: HashMap<(Kind, ObjRef), usize>,
    /// Policy document indexes by the Backend they target.
    policies: HashMap<ObjRef, Vec<usize>>,
    /// TrafficPolicy document indexes by the HTTPRoute they target.
    traffic: HashMap<ObjRef, Vec<usize>>,
    /// ClientTrafficPolicy and AuthorizationPolicy document indexes by the Gateway they target.
    listener_policies: HashMap<ObjRef, Vec<usize>>,
}

impl Index {
    fn new(docs: &[RawDoc]) -> Self {
        let mut by_id = HashMap::new();
        let mut policies: HashMap<ObjRef, Vec<usize>> = HashMap::new();
        let mut traffic: HashMap<ObjRef, Vec<usize>> = HashMap::new();
        let mut listener_policies: HashMap<ObjRef, Vec<usize>> = HashMap::new();
        for (i, doc) in docs.iter().enumerate() {
            let Some(kind) = doc.object.kind else {
                continue;
            };
            let meta = &doc.object.metadata;
            by_id
                .entry((kind, ObjRef::new(&meta.namespace, &meta.name)))
                .or_insert(i);
            if let Spec::BackendPolicy(p) = &doc.object.spec {
                for t in &p.target_refs {
                    policies
                        .entry(ObjRef::new(&meta.namespace, &t.name))
                        .or_default()
                        .push(i);
                }
            }
            if let Spec::TrafficPolicy(p) = &doc.object.spec {
                for t in &p.target_refs {
                    let ns = t.namespace.as_deref().unwrap_or(&meta.namespace);
                    let list = traffic.entry(ObjRef::new(ns, &t.name)).or_default();
                    // A policy naming a route and one of its rules is taken once.
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            let gateway_targets = match &doc.object.spec {
                Spec::ClientTrafficPolicy(p) => Some(&p.target_refs),
                Spec::AuthorizationPolicy(p) => Some(&p.target_refs),
                _ => None,
            };
            for t in gateway_targets.into_iter().flatten() {
                let ns = t.namespace.as_deref().unwrap_or(&meta.namespace);
                let list = listener_policies
                    .entry(ObjRef::new(ns, &t.name))
                    .or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Index {
            by_id,
            policies,
            traffic,
            listener_policies,
        }
    }

    /// Every document the Gateway at `gateway` needs.
    fn select(&self, docs: &[RawDoc], gateway: &RawDoc, id: &ObjRef) -> BTreeSet<DocRef> {
        let mut out = BTreeSet::new();
        self.add_gateway(docs, gateway, &mut out);
        let mut backends = BTreeSet::new();
        // East-west: the other zones' Gateways with an east-west listener are failover
        // targets; a Gateway with one serves every Backend with endpoints in its zone.
        let zone = gateway
            .object
            .metadata
            .labels
            .get(crate::validate::ZONE_LABEL);
        if zone.is_some() {
            for doc in docs {
                let other_zone = doc.object.metadata.labels.get(crate::validate::ZONE_LABEL);
                if doc.at != gateway.at && other_zone.is_some() && has_east_west(doc) {
                    self.add_gateway(docs, doc, &mut out);
                }
            }
        }
        if let (Some(zone), true) = (zone, has_east_west(gateway)) {
            for doc in docs {
                let Spec::Backend(spec) = &doc.object.spec else {
                    continue;
                };
                if spec.endpoints.iter().any(|e| e.zone.as_ref() == Some(zone)) {
                    let meta = &doc.object.metadata;
                    backends.insert(ObjRef::new(&meta.namespace, &meta.name));
                }
            }
        }
        for &p in self.listener_policies.get(id).into_iter().flatten() {
            out.insert(docs[p].at);
        }
        for doc in docs {
            // Egress is global: every gateway gets every ExternalService.
            if let Spec::ExternalService(_) = &doc.object.spec {
                out.insert(doc.at);
                continue;
            }
            let Spec::HttpRoute(route) = &doc.object.spec else {
                continue;
            };
            let ns = &doc.object.metadata.namespace;
            if !attaches_to(route, ns, id) {
                continue;
            }
            out.insert(doc.at);
            let route_id = ObjRef::new(ns, &doc.object.metadata.name);
            for &p in self.traffic.get(&route_id).into_iter().flatten() {
                out.insert(docs[p].at);
            }
            route_backends(route, ns, &mut backends);
        }
        for backend in &backends {
            self.add(docs, Kind::Backend, backend, &mut out);
            for &p in self.policies.get(backend).into_iter().flatten() {
                out.insert(docs[p].at);
            }
        }
        out
    }

    /// A Gateway document and the TLSCertificates its listeners name.
    fn add_gateway(&self, docs: &[RawDoc], gateway: &RawDoc, out: &mut BTreeSet<DocRef>) {
        out.insert(gateway.at);
        let Spec::Gateway(spec) = &gateway.object.spec else {
            return;
        };
        let namespace = &gateway.object.metadata.namespace;
        for tls in spec.listeners.iter().filter_map(|l| l.tls.as_ref()) {
            for c in &tls.certificate_refs {
                let cert = ObjRef::new(c.namespace.as_deref().unwrap_or(namespace), &c.name);
                self.add(docs, Kind::TlsCertificate, &cert, out);
            }
        }
    }

    fn add(&self, docs: &[RawDoc], kind: Kind, id: &ObjRef, out: &mut BTreeSet<DocRef>) {
        if let Some(&i) = self.by_id.get(&(kind, id.clone())) {
            out.insert(docs[i].at);
        }
    }
}

/// True when one of the route's parentRefs names the Gateway `id`.
fn attaches_to(route: &HttpRouteSpec, ns: &str, id: &ObjRef) -> bool {
    route
        .parent_refs
        .iter()
        .any(|p| p.name == id.name && p.namespace.as_deref().unwrap_or(ns) == id.namespace)
}

/// Every Backend a route sends to: backendRefs and mirrors, at rule and backendRef level.
fn route_backends(route: &HttpRouteSpec, ns: &str, out: &mut BTreeSet<ObjRef>) {
    let mirrors = |filters: &[RawFilter], out: &mut BTreeSet<ObjRef>| {
        for m in filters.iter().filter_map(|f| f.request_mirror.as_ref()) {
            let r = &m.backend_ref;
            out.insert(ObjRef::new(r.namespace.as_deref().unwrap_or(ns), &r.name));
        }
    };
    for rule in &route.rules {
        mirrors(&rule.filters, out);
        for b in &rule.backend_refs {
            out.insert(ObjRef::new(b.namespace.as_deref().unwrap_or(ns), &b.name));
            mirrors(&b.filters, out);
        }
    }
}

/// Rebuilds each file from its selected documents, blanking the others line for line.
fn cut(sources: &[SourceText<'_>], selected: &BTreeSet<DocRef>) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for (f, source) in sources.iter().enumerate() {
        let keep = |d: usize| selected.contains(&DocRef { file: f, doc: d });
        if !(0..source.chunks.len()).any(keep) {
            continue;
        }
        let size = source.chunks.iter().map(|c| c.text.len()).sum();
        let mut text = String::with_capacity(size);
        for (d, chunk) in source.chunks.iter().enumerate() {
            if keep(d) {
                text.push_str(chunk.text);
            } else {
                let lines = chunk.text.matches('\n').count();
                text.extend(std::iter::repeat_n('\n', lines));
            }
        }
        files.push(SourceFile::new(&source.path, text));
    }
    files
}

#[cfg(test)]
mod tests {
    use crate::{build_view, build_with_views, SourceFile};

    const SET: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, labels: {switchyard.dev/zone: zone-a}}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b, labels: {switchyard.dev/zone: zone-b}}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 8081, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: web}
spec:
  endpoints: [{address: "127.0.0.1:9000"}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: only-b}
spec:
  endpoints: [{address: "127.0.0.1:9001"}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: both}
spec:
  targetRefs: [{kind: Backend, name: web}, {kind: Backend, name: only-b}]
  loadBalancer: {type: Random}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shared}
spec:
  parentRefs: [{name: a}, {name: b}]
  rules: [{backendRefs: [{name: web}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-only}
spec:
  parentRefs: [{name: b}]
  rules: [{matches: [{path: {type: PathPrefix, value: /b}}], backendRefs: [{name: only-b}]}]
"#;

    #[test]
    fn a_view_holds_only_what_its_gateway_needs_and_keeps_lines() {
        let files = vec![SourceFile::new("set.yaml", SET)];
        let (generation, views) = build_with_views(&files).unwrap();
        assert_eq!(generation.gateways.len(), 2);
        assert_eq!(views.len(), 2);
        let a = views.iter().find(|v| v.gateway.name == "a").unwrap();
        assert_eq!(a.zone.as_deref(), Some("zone-a"));
        let text = &a.files[0].contents;
        assert!(!text.contains("name: b,"), "{text}");
        assert!(!text.contains("b-only"), "{text}");
        assert!(!text.contains("only-b}\nspec"), "{text}");
        assert!(text.contains("name: shared"));
        assert!(text.contains("kind: BackendPolicy"));
        // Same line count, and kept documents sit on their original lines.
        assert_eq!(text.lines().count(), SET.lines().count());
        let line_of = |s: &str, needle: &str| s.lines().position(|l| l.contains(needle));
        assert_eq!(line_of(text, "name: shared"), line_of(SET, "name: shared"));

        // The view validates on its own although it names Gateway b and Backend only-b.
        let gen_a = build_view(&a.files).unwrap();
        assert_eq!(gen_a.gateways.len(), 1);
        assert_eq!(gen_a.gateways[0].id.name, "a");
        assert_eq!(gen_a.backends.len(), 1);

        let b = views.iter().find(|v| v.gateway.name == "b").unwrap();
        let gen_b = build_view(&b.files).unwrap();
        assert_eq!(gen_b.backends.len(), 2);
        assert_eq!(gen_b.gateways[0].ports[0].routes.rule_count(), 2);
    }

    #[test]
    fn every_view_holds_every_external_service() {
        let set = SET.to_string()
            + r#"---
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {name: payments}
spec:
  hosts: [api.payments.test]
  ports: [{number: 443, protocol: TLS}]
"#;
        let files = vec![SourceFile::new("set.yaml", &set)];
        let (_, views) = build_with_views(&files).unwrap();
        for view in &views {
            let generation = build_view(&view.files).unwrap();
            let names: Vec<&str> = generation
                .egress
                .services()
                .iter()
                .map(|s| s.id.name.as_str())
                .collect();
            assert_eq!(names, ["payments"], "view of {}", view.gateway);
        }
    }

    #[test]
    fn a_view_holds_the_traffic_policies_of_its_routes() {
        let set = SET.replace("rules: [{matches:", "rules: [{name: main, matches:")
            + r#"---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: shaping}
spec:
  targetRefs: [{kind: HTTPRoute, name: shared}, {kind: HTTPRoute, name: b-only}]
  rateLimit: {requests: 10, per: 1s, key: {clientIP: true}}
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: b-faults}
spec:
  targetRefs: [{kind: HTTPRoute, name: b-only, sectionName: main}]
  fault: {abort: {httpStatus: 503, percentage: 1}}
"#;
        let files = vec![SourceFile::new("set.yaml", set.as_str())];
        let (_, views) = build_with_views(&files).unwrap();
        let a = views.iter().find(|v| v.gateway.name == "a").unwrap();
        let text = &a.files[0].contents;
        assert!(text.contains("name: shaping"), "{text}");
        assert!(!text.contains("b-faults"), "{text}");
        assert_eq!(text.lines().count(), set.lines().count());
        // The view builds although `shaping` also names a route outside it.
        let gen_a = build_view(&a.files).unwrap_or_else(|e| panic!("{e}"));
        let rule = gen_a.gateways[0].ports[0].routes.rules().next().unwrap();
        let traffic = rule.traffic.as_ref().unwrap();
        assert_eq!(traffic.source.as_ref().unwrap().name, "shaping");
        assert_eq!(traffic.rate_limit.as_ref().unwrap().requests, 10);

        let b = views.iter().find(|v| v.gateway.name == "b").unwrap();
        let text = &b.files[0].contents;
        assert!(text.contains("name: shaping") && text.contains("name: b-faults"));
        let gen_b = build_view(&b.files).unwrap_or_else(|e| panic!("{e}"));
        let main = gen_b.gateways[0].ports[0]
            .routes
            .rules()
            .find(|r| r.name.as_deref() == Some("main"))
            .unwrap();
        let traffic = main.traffic.as_ref().unwrap();
        assert_eq!(traffic.source.as_ref().unwrap().name, "b-faults");
        assert!(traffic.rate_limit.is_some() && traffic.fault.is_some());
    }

    #[test]
    fn a_view_holds_the_listener_policies_of_its_gateway() {
        let set = SET.to_string()
            + r#"---
apiVersion: switchyard.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: a-hardening}
spec:
  targetRefs: [{kind: Gateway, name: a}]
  headers: {maxCount: 20}
---
apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: b-authz}
spec:
  targetRefs: [{kind: Gateway, name: b, sectionName: http}]
  defaultAction: Deny
  rules: [{action: Allow, to: [{routes: [b-only]}]}]
"#;
        let files = vec![SourceFile::new("set.yaml", set.as_str())];
        let (_, views) = build_with_views(&files).unwrap();
        let a = views.iter().find(|v| v.gateway.name == "a").unwrap();
        let text = &a.files[0].contents;
        assert!(
            text.contains("a-hardening") && !text.contains("b-authz"),
            "{text}"
        );
        let gen_a = build_view(&a.files).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gen_a.gateways[0].ports[0].client.headers.max_count, 20);
        assert!(gen_a.gateways[0].ports[0].authz.is_none());
        let b = views.iter().find(|v| v.gateway.name == "b").unwrap();
        let gen_b = build_view(&b.files).unwrap_or_else(|e| panic!("{e}"));
        let authz = gen_b.gateways[0].ports[0].authz.as_ref().unwrap();
        assert_eq!(authz.policies[0].id.name, "b-authz");
        assert_eq!(gen_b.gateways[0].ports[0].client.headers.max_count, 100);
    }

    #[test]
    fn a_full_build_still_rejects_what_a_view_tolerates() {
        let dangling = SET.replace("parentRefs: [{name: b}]", "parentRefs: [{name: c}]");
        let err = crate::build(&[SourceFile::new("set.yaml", dangling.as_str())]).unwrap_err();
        assert!(
            err.to_string().contains("unknown Gateway default/c"),
            "{err}"
        );
    }

    #[test]
    fn a_view_error_names_the_operators_file_and_line() {
        let files = vec![SourceFile::new("set.yaml", SET)];
        let (_, views) = build_with_views(&files).unwrap();
        let a = views.iter().find(|v| v.gateway.name == "a").unwrap();
        let broken = a.files[0].contents.replace(
            "backendRefs: [{name: web}]",
            "backendRefs: [{name: web, weight: x}]",
        );
        let err = build_view(&[SourceFile::new("set.yaml", broken)]).unwrap_err();
        let line = SET
            .lines()
            .position(|l| l.contains("backendRefs: [{name: web}]"))
            .unwrap()
            + 1;
        assert!(
            err.to_string().contains(&format!("set.yaml:{line}:")),
            "{err}"
        );
    }
}
