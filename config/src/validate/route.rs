//! Validation of HTTPRoutes: parent refs, hostnames, rules, backends, timeouts and retries.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::backend::MAX_WEIGHT;
use super::filter::{backend_filters, rule_filters};
use super::matches::{compile_match, root_match};
use super::traffic::TrafficPolicies;
use super::{duration, BackendName, Field, Object, Scope, ValidGateway};
use crate::model::{Backend, ObjRef, Retry, Timeouts};
use crate::raw::route::{HttpRouteSpec, RawRule};
use crate::report::{Reporter, Site};
use crate::resilience::TrafficPolicy;
use crate::route::{MatchSpec, Rule, WeightedBackend};

/// A validated HTTPRoute.
#[derive(Debug)]
pub(crate) struct ValidRoute {
    pub id: ObjRef,
    pub site: Site,
    pub parents: Vec<ValidParent>,
    pub hostnames: Vec<String>,
    pub rules: Vec<ValidRule>,
}

/// A resolved `parentRef`.
#[derive(Debug)]
pub(crate) struct ValidParent {
    /// Index in `spec.parentRefs`.
    pub index: usize,
    /// Index in the model's gateways.
    pub gateway: usize,
    pub section_name: Option<String>,
    pub port: Option<u16>,
}

/// A compiled rule and its matches (never empty: no matches means PathPrefix `/`).
#[derive(Debug)]
pub(crate) struct ValidRule {
    pub rule: Arc<Rule>,
    pub matches: Vec<Arc<MatchSpec>>,
}

/// Validates one HTTPRoute against the validated gateways and backends.
pub(crate) fn route(
    obj: &Object<'_, HttpRouteSpec>,
    gateways: &[ValidGateway],
    backends: &BTreeMap<ObjRef, Arc<Backend>>,
    traffic: &TrafficPolicies,
    rep: &mut Reporter<'_>,
) -> ValidRoute {
    let scope = Scope {
        site: &obj.site,
        namespace: &obj.id.namespace,
        backends,
    };
    let spec = obj.spec;
    let parents = parents(obj, gateways, rep);
    let mut hostnames = Vec::with_capacity(spec.hostnames.len());
    for (i, h) in spec.hostnames.iter().enumerate() {
        match crate::hostname::check(h, true) {
            Ok(()) => hostnames.push(h.clone()),
            Err(e) => rep.error(scope.site, format!("spec.hostnames[{i}]"), e),
        }
    }
    let mut rules = Vec::with_capacity(spec.rules.len().max(1));
    if spec.rules.is_empty() {
        // The Gateway API default: one rule matching PathPrefix "/", with no backend (500).
        let line = rep.line(obj.site.at, "spec");
        let rule = Rule {
            route: obj.id.clone(),
            rule_index: 0,
            name: None,
            file: rep.file(obj.site.at).to_string(),
            line,
            filters: Vec::new(),
            backends: Vec::new(),
            total_weight: 0,
            timeouts: Timeouts::default(),
            retry: None,
            traffic: traffic.for_rule(&obj.id, None),
        };
        rules.push(ValidRule {
            rule: Arc::new(rule),
            matches: vec![Arc::new(root_match())],
        });
    } else {
        let lines = rep.rule_lines(obj.site.at, spec.rules.len());
        let mut names = HashSet::new();
        let spec_field = Field::Root("spec");
        let list = spec_field.key("rules");
        for (i, raw) in spec.rules.iter().enumerate() {
            let field = list.at(i);
            if let Some(name) = &raw.name {
                if !names.insert(name) {
                    rep.error(
                        scope.site,
                        field.key("name"),
                        format!("duplicate rule name {name:?}"),
                    );
                }
            }
            let line = lines.get(i).copied().unwrap_or(1);
            let traffic = traffic.for_rule(&obj.id, raw.name.as_deref());
            if let Some(rule) = rule(raw, i, &field, line, &obj.id, traffic, scope, rep) {
                rules.push(rule);
            }
        }
    }
    ValidRoute {
        id: obj.id.clone(),
        site: obj.site.clone(),
        parents,
        hostnames,
        rules,
    }
}

fn parents(
    obj: &Object<'_, HttpRouteSpec>,
    gateways: &[ValidGateway],
    rep: &mut Reporter<'_>,
) -> Vec<ValidParent> {
    let site = &obj.site;
    if obj.spec.parent_refs.is_empty() {
        rep.error(
            site,
            "spec.parentRefs",
            "no parentRefs: the route attaches to no Gateway",
        );
    }
    let mut out = Vec::new();
    for (i, p) in obj.spec.parent_refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let group_ok = p
            .group
            .as_deref()
            .is_none_or(|g| g == "gateway.networking.k8s.io");
        if !group_ok || p.kind.as_deref().is_some_and(|k| k != "Gateway") {
            rep.error(
                site,
                format!("{field}.kind"),
                format!(
                    "unsupported parent kind {:?} (supported: Gateway)",
                    p.kind.as_deref().unwrap_or("Gateway")
                ),
            );
            continue;
        }
        let id = ObjRef::new(p.namespace.as_deref().unwrap_or(&obj.id.namespace), &p.name);
        let Some(g) = gateways.iter().position(|g| g.id == id) else {
            if rep.is_view() {
                // A gateway's view leaves the other Gateways out on purpose.
                continue;
            }
            let known: Vec<String> = gateways.iter().map(|g| g.id.to_string()).collect();
            let known = if known.is_empty() {
                "no Gateway is defined".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            rep.error(
                site,
                format!("{field}.name"),
                format!("unknown Gateway {id} ({known})"),
            );
            continue;
        };
        let declared = &gateways[g].declared;
        let listing = || {
            declared
                .iter()
                .map(|(n, p)| format!("{n} ({p})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(section) = &p.section_name {
            match declared.iter().find(|(n, _)| n == section) {
                None => {
                    rep.error(
                        site,
                        format!("{field}.sectionName"),
                        format!(
                            "Gateway {id} has no listener {section:?} (listeners: {})",
                            listing()
                        ),
                    );
                    continue;
                }
                Some((_, port)) if p.port.is_some_and(|want| want != *port) => {
                    rep.error(
                        site,
                        format!("{field}.port"),
                        format!(
                            "listener {section:?} of Gateway {id} is on port {port}, not {}",
                            p.port.unwrap_or(0)
                        ),
                    );
                    continue;
                }
                Some(_) => {}
            }
        } else if let Some(port) = p.port {
            if !declared.iter().any(|(_, lp)| *lp == port) {
                rep.error(
                    site,
                    format!("{field}.port"),
                    format!(
                        "Gateway {id} has no listener on port {port} (listeners: {})",
                        listing()
                    ),
                );
                continue;
            }
        }
        out.push(ValidParent {
            index: i,
            gateway: g,
            section_name: p.section_name.clone(),
            port: p.port,
        });
    }
    out
}

#[allow(clippy::too_many_arguments)] // All are context for one rule; a struct would only rename them.
fn rule(
    raw: &RawRule,
    i: usize,
    base: &Field<'_>,
    line: usize,
    route: &ObjRef,
    traffic: Option<Arc<TrafficPolicy>>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<ValidRule> {
    let site = scope.site;
    let mut ok = true;
    if raw.session_persistence.is_some() {
        rep.error(
            site,
            base.key("sessionPersistence"),
            "unsupported field sessionPersistence",
        );
        ok = false;
    }
    let mut matches = Vec::with_capacity(raw.matches.len().max(1));
    let mut path_kinds = Vec::with_capacity(raw.matches.len());
    let list = base.key("matches");
    for (j, m) in raw.matches.iter().enumerate() {
        path_kinds.push(m.path.as_ref().map(|p| p.kind).unwrap_or_default());
        match compile_match(m, &list.at(j), scope, rep) {
            Some(spec) => matches.push(Arc::new(spec)),
            None => ok = false,
        }
    }
    if raw.matches.is_empty() {
        matches.push(Arc::new(root_match()));
    }
    let filters = rule_filters(&raw.filters, &base.key("filters"), &path_kinds, scope, rep);
    let mut backends = Vec::with_capacity(raw.backend_refs.len());
    let mut total_weight: u32 = 0;
    let list = base.key("backendRefs");
    for (j, b) in raw.backend_refs.iter().enumerate() {
        let field = list.at(j);
        let weight = b.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            rep.error(
                site,
                field.key("weight"),
                format!("weight {weight} is above the maximum {MAX_WEIGHT}"),
            );
            continue;
        }
        let name = BackendName {
            group: b.group.as_deref(),
            kind: b.kind.as_deref(),
            name: &b.name,
            namespace: b.namespace.as_deref(),
        };
        let filters = backend_filters(&b.filters, &field.key("filters"), scope, rep);
        if let Some(backend) = scope.backend(name, &field, rep) {
            total_weight = total_weight.saturating_add(weight);
            backends.push(WeightedBackend {
                backend,
                weight,
                filters,
            });
        }
    }
    let timeouts = timeouts(raw, base, site, rep);
    let retry = raw.retry.as_ref().map(|r| {
        let retry_field = base.key("retry");
        let codes = retry_field.key("codes");
        for (k, code) in r.codes.iter().enumerate() {
            if !(400..=599).contains(code) {
                rep.error(
                    site,
                    codes.at(k),
                    format!("retry code {code} is not between 400 and 599"),
                );
            }
        }
        Retry {
            codes: r.codes.clone(),
            attempts: r.attempts.unwrap_or(1),
            backoff: duration(r.backoff.as_deref(), site, retry_field.key("backoff"), rep),
        }
    });
    let rule = Rule {
        route: route.clone(),
        rule_index: i,
        name: raw.name.clone(),
        file: rep.file(site.at).to_string(),
        line,
        filters,
        backends,
        total_weight,
        timeouts,
        retry,
        traffic,
    };
    ok.then(|| ValidRule {
        rule: Arc::new(rule),
        matches,
    })
}

fn timeouts(raw: &RawRule, base: &Field<'_>, site: &Site, rep: &mut Reporter<'_>) -> Timeouts {
    let Some(t) = &raw.timeouts else {
        return Timeouts::default();
    };
    let field = base.key("timeouts");
    // "0s" disables a timeout.
    let nonzero = |d: Option<std::time::Duration>| d.filter(|d| !d.is_zero());
    let request = nonzero(duration(
        t.request.as_deref(),
        site,
        field.key("request"),
        rep,
    ));
    let backend_field = field.key("backendRequest");
    let backend_request = nonzero(duration(
        t.backend_request.as_deref(),
        site,
        backend_field,
        rep,
    ));
    if let (Some(req), Some(backend)) = (request, backend_request) {
        if backend > req {
            rep.error(
                site,
                backend_field,
                format!(
                    "backendRequest timeout {:?} is longer than the request timeout {:?}",
                    t.backend_request.as_deref().unwrap_or_default(),
                    t.request.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    Timeouts {
        request,
        backend_request,
    }
}
