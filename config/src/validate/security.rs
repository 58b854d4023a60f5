//! Validation of the listener-security kinds, ClientTrafficPolicy and AuthorizationPolicy
//! (see `docs/policies.md`), and their attachment to Gateway ports. Both target a Gateway or
//! one listener (`sectionName`); the effective settings are per port, so a `sectionName` may
//! only name a listener that has its port to itself.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::resilience::{header_name, positive_duration};
use super::{known_names, Field, Object, ValidGateway};
use crate::model::{Backend, ObjRef};
use crate::raw::route::HttpRouteSpec;
use crate::raw::security::{
    AuthorizationPolicySpec, ClientTrafficPolicySpec, GatewayTargetRef, RawAuthzRule,
    RawAuthzSource, RawAuthzTarget, RawPathPolicy,
};
use crate::raw::DocRef;
use crate::report::{Reporter, Site};
use crate::security::{
    AuthzAction, AuthzPath, AuthzPolicy, AuthzRule, Backslashes, ClientPolicy, EscapedSlashes,
    HeaderCondition, PathParameters, PortAuthz, SourceMatch, TargetMatch,
};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Pingora refuses requests with more header fields than this before any hook runs.
const MAX_HEADER_COUNT: u32 = 256;
/// Pingora refuses request headers larger than this (1 MiB - 1).
const MAX_HEADER_BYTES: u32 = 1_048_575;

/// The security settings of every (Gateway, port) that a policy targets.
#[derive(Debug, Default)]
pub(crate) struct PortSecurity {
    pub client: HashMap<(ObjRef, u16), ClientPolicy>,
    pub authz: HashMap<(ObjRef, u16), PortAuthz>,
}

/// Validates both kinds and attaches them to ports.
pub(crate) fn policies(
    clients: &[Object<'_, ClientTrafficPolicySpec>],
    authz: &[Object<'_, AuthorizationPolicySpec>],
    gateways: &[ValidGateway],
    routes: &[Object<'_, HttpRouteSpec>],
    backends: &BTreeMap<ObjRef, std::sync::Arc<Backend>>,
    rep: &mut Reporter<'_>,
) -> PortSecurity {
    let mut out = PortSecurity::default();
    let mut taken: HashMap<(ObjRef, u16), (DocRef, usize, String)> = HashMap::new();
    for obj in clients {
        let policy = client_policy(obj, rep);
        for (port, index) in ports(&obj.site, &obj.id, &obj.spec.target_refs, gateways, rep) {
            if let Some((at, first_index, label)) = taken.get(&port) {
                if *label == obj.site.label {
                    continue; // the same policy reaching the port twice
                }
                let at = rep.describe(*at, &format!("spec.targetRefs[{first_index}]"));
                rep.error(
                    &obj.site,
                    format!("spec.targetRefs[{index}]"),
                    format!(
                        "port {} of Gateway {} is already targeted by {label} ({at}); a listener takes one ClientTrafficPolicy",
                        port.1, port.0
                    ),
                );
                continue;
            }
            taken.insert(port.clone(), (obj.site.at, index, obj.site.label.clone()));
            out.client.insert(port, policy.clone());
        }
    }
    let route_ids: HashSet<&ObjRef> = routes.iter().map(|r| &r.id).collect();
    let mut sorted: Vec<&Object<'_, AuthorizationPolicySpec>> = authz.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for obj in sorted {
        let policy = authz_policy(obj, &route_ids, backends, rep);
        let mut seen = HashSet::new();
        for (port, _) in ports(&obj.site, &obj.id, &obj.spec.target_refs, gateways, rep) {
            if seen.insert(port.clone()) {
                out.authz
                    .entry(port)
                    .or_default()
                    .policies
                    .push(policy.clone());
            }
        }
    }
    out
}

/// The (Gateway, port) pairs a policy's targetRefs reach, with the targetRef index.
fn ports(
    site: &Site,
    namespace_of: &ObjRef,
    targets: &[GatewayTargetRef],
    gateways: &[ValidGateway],
    rep: &mut Reporter<'_>,
) -> Vec<((ObjRef, u16), usize)> {
    let kind = site.label.split(' ').next().unwrap_or("policy");
    let root = Field::Root("spec");
    let list = root.key("targetRefs");
    if targets.is_empty() {
        rep.error(site, list, format!("a {kind} needs at least one targetRef"));
    }
    let namespace = &namespace_of.namespace;
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let field = list.at(i);
        if t.kind != "Gateway" || t.group.as_deref().is_some_and(|g| g != GATEWAY_GROUP) {
            rep.error(
                site,
                field.key("kind"),
                format!(
                    "a {kind} can only target kind Gateway in group {GATEWAY_GROUP}, not {:?} in group {:?}",
                    t.kind,
                    t.group.as_deref().unwrap_or(GATEWAY_GROUP)
                ),
            );
            continue;
        }
        if let Some(ns) = t.namespace.as_deref().filter(|ns| ns != namespace) {
            rep.error(
                site,
                field.key("namespace"),
                format!("a {kind} can only target Gateways in its own namespace {namespace:?}, not {ns:?}"),
            );
            continue;
        }
        let id = ObjRef::new(namespace, &t.name);
        let Some(gateway) = gateways.iter().find(|g| g.id == id) else {
            if !rep.is_view() {
                rep.error(
                    site,
                    field.key("name"),
                    format!(
                        "unknown Gateway {:?} {}",
                        t.name,
                        known_names(gateways.iter().map(|g| &g.id), namespace)
                    ),
                );
            }
            continue;
        };
        match &t.section_name {
            None => {
                let mut ports: Vec<u16> = gateway.declared.iter().map(|(_, p)| *p).collect();
                ports.sort_unstable();
                ports.dedup();
                out.extend(ports.into_iter().map(|p| ((id.clone(), p), i)));
            }
            Some(section) => {
                let Some((_, port)) = gateway.declared.iter().find(|(n, _)| n == section) else {
                    let names: Vec<&str> =
                        gateway.declared.iter().map(|(n, _)| n.as_str()).collect();
                    rep.error(
                        site,
                        field.key("sectionName"),
                        format!(
                            "Gateway {id} has no listener named {section:?} (listeners: {})",
                            names.join(", ")
                        ),
                    );
                    continue;
                };
                let others: Vec<&str> = gateway
                    .declared
                    .iter()
                    .filter(|(n, p)| p == port && n != section)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !others.is_empty() {
                    rep.error(
                        site,
                        field.key("sectionName"),
                        format!(
                            "listener {section:?} shares port {port} with {}; settings apply per port, so target the Gateway or give the listener its own port",
                            others.join(", ")
                        ),
                    );
                    continue;
                }
                out.push(((id.clone(), *port), i));
            }
        }
    }
    out
}

fn choice<T: Copy>(
    value: Option<&str>,
    options: &[(&str, T)],
    default: T,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> T {
    let Some(value) = value else { return default };
    match options.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            rep.error(
                site,
                field,
                format!(
                    "unknown value {value:?} (expected one of: {})",
                    names.join(", ")
                ),
            );
            default
        }
    }
}

fn client_policy(
    obj: &Object<'_, ClientTrafficPolicySpec>,
    rep: &mut Reporter<'_>,
) -> ClientPolicy {
    let site = &obj.site;
    let root = Field::Root("spec");
    let mut p = ClientPolicy {
        source: Some(obj.id.clone()),
        ..ClientPolicy::default()
    };
    if let Some(path) = &obj.spec.path {
        path_policy(path, &mut p, site, root.key("path"), rep);
    }
    if let Some(h) = &obj.spec.headers {
        let headers = root.key("headers");
        if let Some(n) = h.max_count {
            if (1..=MAX_HEADER_COUNT).contains(&n) {
                p.headers.max_count = n;
            } else {
                rep.error(
                    site,
                    headers.key("maxCount"),
                    format!("maxCount {n} is not between 1 and {MAX_HEADER_COUNT} (pingora refuses more fields itself)"),
                );
            }
        }
        if let Some(n) = h.max_bytes {
            if (1024..=MAX_HEADER_BYTES).contains(&n) {
                p.headers.max_bytes = n;
            } else {
                rep.error(
                    site,
                    headers.key("maxBytes"),
                    format!("maxBytes {n} is not between 1024 and {MAX_HEADER_BYTES}"),
                );
            }
        }
    }
    if let Some(t) = &obj.spec.timeouts {
        let timeouts = root.key("timeouts");
        if let Some(d) = positive_duration(
            t.request_header.as_deref(),
            site,
            timeouts.key("requestHeader"),
            rep,
        ) {
            p.timeouts.request_header = d;
        }
        if let Some(d) = positive_duration(
            t.request_body.as_deref(),
            site,
            timeouts.key("requestBody"),
            rep,
        ) {
            p.timeouts.request_body = d;
        }
    }
    p
}

fn path_policy(
    raw: &RawPathPolicy,
    p: &mut ClientPolicy,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) {
    p.path.escaped_slashes = choice(
        raw.escaped_slashes.as_deref(),
        &[
            ("Reject", EscapedSlashes::Reject),
            ("Keep", EscapedSlashes::Keep),
            ("Decode", EscapedSlashes::Decode),
        ],
        EscapedSlashes::Reject,
        site,
        field.key("escapedSlashes"),
        rep,
    );
    p.path.backslashes = choice(
        raw.backslashes.as_deref(),
        &[
            ("Reject", Backslashes::Reject),
            ("Slash", Backslashes::Slash),
        ],
        Backslashes::Reject,
        site,
        field.key("backslashes"),
        rep,
    );
    p.path.path_parameters = choice(
        raw.path_parameters.as_deref(),
        &[
            ("Strip", PathParameters::Strip),
            ("Reject", PathParameters::Reject),
            ("Keep", PathParameters::Keep),
        ],
        PathParameters::Strip,
        site,
        field.key("pathParameters"),
        rep,
    );
    p.path.merge_slashes = raw.merge_slashes.unwrap_or(true);
}

const ACTIONS: [(&str, AuthzAction); 2] =
    [("Allow", AuthzAction::Allow), ("Deny", AuthzAction::Deny)];

fn authz_policy(
    obj: &Object<'_, AuthorizationPolicySpec>,
    routes: &HashSet<&ObjRef>,
    backends: &BTreeMap<ObjRef, std::sync::Arc<Backend>>,
    rep: &mut Reporter<'_>,
) -> AuthzPolicy {
    let site = &obj.site;
    let root = Field::Root("spec");
    let default_action = choice(
        obj.spec.default_action.as_deref(),
        &ACTIONS,
        AuthzAction::Allow,
        site,
        root.key("defaultAction"),
        rep,
    );
    let list = root.key("rules");
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(obj.spec.rules.len());
    for (i, raw) in obj.spec.rules.iter().enumerate() {
        let field = list.at(i);
        if let Some(name) = raw.name.as_deref() {
            if let Some(first) = names.insert(name, i) {
                rep.error(
                    site,
                    field.key("name"),
                    format!("duplicate rule name {name:?} (also spec.rules[{first}])"),
                );
            }
        }
        rules.push(rule(obj, raw, i, field, routes, backends, rep));
    }
    AuthzPolicy {
        id: obj.id.clone(),
        default_action,
        dry_run: obj.spec.dry_run,
        rules,
    }
}

fn rule(
    obj: &Object<'_, AuthorizationPolicySpec>,
    raw: &RawAuthzRule,
    index: usize,
    field: Field<'_>,
    routes: &HashSet<&ObjRef>,
    backends: &BTreeMap<ObjRef, std::sync::Arc<Backend>>,
    rep: &mut Reporter<'_>,
) -> AuthzRule {
    let site = &obj.site;
    let action = match ACTIONS.iter().find(|(n, _)| *n == raw.action) {
        Some((_, a)) => *a,
        None => {
            rep.error(
                site,
                field.key("action"),
                format!("unknown action {:?} (expected Allow or Deny)", raw.action),
            );
            // A broken rule must not widen access while the set is rejected anyway.
            AuthzAction::Deny
        }
    };
    let from_list = field.key("from");
    let from = match &raw.from {
        None => Vec::new(),
        Some(list) => {
            if list.is_empty() {
                rep.error(
                    site,
                    from_list,
                    "an empty from list matches nothing; omit from to match any source",
                );
            }
            list.iter()
                .enumerate()
                .map(|(j, s)| source(s, site, from_list.at(j), rep))
                .collect()
        }
    };
    let to_list = field.key("to");
    let to = match &raw.to {
        None => Vec::new(),
        Some(list) => {
            if list.is_empty() {
                rep.error(
                    site,
                    to_list,
                    "an empty to list matches nothing; omit to to match anything",
                );
            }
            list.iter()
                .enumerate()
                .map(|(j, t)| target(obj, t, to_list.at(j), routes, backends, rep))
                .collect()
        }
    };
    let header_list = field.key("headers");
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (j, h) in raw.headers.iter().enumerate() {
        let hf = header_list.at(j);
        let name = header_name(&h.name, site, hf.key("name"), rep);
        let value = match (&h.value, h.present) {
            (Some(v), None) => Some(Some(v.clone())),
            (None, Some(true)) => Some(None),
            _ => {
                rep.error(site, hf, "set exactly one of value or present: true");
                None
            }
        };
        if let (Some(name), Some(value)) = (name, value) {
            headers.push(HeaderCondition { name, value });
        }
    }
    AuthzRule {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| format!("rules[{index}]")),
        action,
        from,
        to,
        headers,
    }
}

fn source(
    raw: &RawAuthzSource,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> SourceMatch {
    let spiffe = |list: &Option<Vec<String>>, key: &'static str, rep: &mut Reporter<'_>| {
        let list = list.clone().unwrap_or_default();
        let lf = field.key(key);
        for (k, p) in list.iter().enumerate() {
            if !p.starts_with("spiffe://") || p.len() <= "spiffe://".len() {
                rep.error(
                    site,
                    lf.at(k),
                    format!("{p:?} is not a SPIFFE ID (spiffe://trust-domain/path)"),
                );
            }
        }
        list
    };
    let m = SourceMatch {
        principals: spiffe(&raw.principals, "principals", rep),
        principal_prefixes: spiffe(&raw.principal_prefixes, "principalPrefixes", rep),
        zones: raw.zones.clone().unwrap_or_default(),
    };
    let zf = field.key("zones");
    for (k, z) in m.zones.iter().enumerate() {
        if z.is_empty() {
            rep.error(site, zf.at(k), "a zone name cannot be empty");
        }
    }
    if m.principals.is_empty() && m.principal_prefixes.is_empty() && m.zones.is_empty() {
        rep.error(
            site,
            field,
            "set at least one non-empty list of principals, principalPrefixes or zones",
        );
    }
    m
}

fn target(
    obj: &Object<'_, AuthorizationPolicySpec>,
    raw: &RawAuthzTarget,
    field: Field<'_>,
    routes: &HashSet<&ObjRef>,
    backends: &BTreeMap<ObjRef, std::sync::Arc<Backend>>,
    rep: &mut Reporter<'_>,
) -> TargetMatch {
    let site = &obj.site;
    let ns = &obj.id.namespace;
    let resolve = |name: &str| match name.split_once('/') {
        Some((n, rest)) => ObjRef::new(n, rest),
        None => ObjRef::new(ns, name),
    };
    let mut m = TargetMatch::default();
    let rf = field.key("routes");
    for (k, r) in raw.routes.iter().flatten().enumerate() {
        let id = resolve(r);
        if !rep.is_view() && !routes.contains(&id) {
            rep.error(
                site,
                rf.at(k),
                format!(
                    "unknown HTTPRoute {r:?} {}",
                    known_names(routes.iter().copied(), &id.namespace)
                ),
            );
        }
        m.routes.push(id);
    }
    let bf = field.key("backends");
    for (k, b) in raw.backends.iter().flatten().enumerate() {
        let id = resolve(b);
        if !rep.is_view() && !backends.contains_key(&id) {
            rep.error(
                site,
                bf.at(k),
                format!(
                    "unknown Backend {b:?} {}",
                    known_names(backends.keys(), &id.namespace)
                ),
            );
        }
        m.backends.push(id);
    }
    let pf = field.key("paths");
    for (k, p) in raw.paths.iter().flatten().enumerate() {
        let f = pf.at(k);
        let exact = match p.kind.as_deref() {
            None | Some("PathPrefix") => false,
            Some("Exact") => true,
            Some(other) => {
                rep.error(
                    site,
                    f.key("type"),
                    format!("unknown path type {other:?} (expected Exact or PathPrefix)"),
                );
                continue;
            }
        };
        if let Err(why) = canonical(&p.value) {
            rep.error(
                site,
                f.key("value"),
                format!(
                    "path {:?} {why}; conditions match the canonical path",
                    p.value
                ),
            );
            continue;
        }
        let mut value = p.value.clone();
        if !exact && value.len() > 1 && value.ends_with('/') {
            value.pop();
        }
        m.paths.push(AuthzPath {
            exact,
            value,
            ignore_case: p.ignore_case,
        });
    }
    let mf = field.key("methods");
    for (k, name) in raw.methods.iter().flatten().enumerate() {
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase());
        match http::Method::from_bytes(name.as_bytes()) {
            Ok(method) if valid => m.methods.push(method),
            _ => rep.error(
                site,
                mf.at(k),
                format!("invalid method {name:?} (methods are case-sensitive uppercase tokens, e.g. GET)"),
            ),
        }
    }
    let empty = |l: &Option<Vec<_>>| l.as_ref().is_none_or(Vec::is_empty);
    if empty(&raw.routes)
        && empty(&raw.backends)
        && raw.paths.as_ref().is_none_or(Vec::is_empty)
        && empty(&raw.methods)
    {
        rep.error(
            site,
            field,
            "set at least one non-empty list of routes, backends, paths or methods",
        );
    }
    m
}

/// Why a path condition could never match a canonical path, if it could not.
fn canonical(value: &str) -> Result<(), &'static str> {
    if !value.starts_with('/') {
        return Err("must start with /");
    }
    if value.contains(['%', '\\', ';', '?', '#']) || value.bytes().any(|b| b.is_ascii_control()) {
        return Err("must not contain %, \\, ;, ?, # or control characters");
    }
    let inner = value.strip_suffix('/').unwrap_or(value);
    if inner.len() > 1
        && inner[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("must not contain empty, . or .. segments");
    }
    Ok(())
}
