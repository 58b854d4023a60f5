//! Validation of TrafficPolicies and their attachment to HTTPRoutes and rules (see
//! `docs/policies.md`). They are validated before the routes, against the routes' raw specs,
//! so that route validation can give each rule its policy when it builds the rule.

use std::collections::HashMap;
use std::sync::Arc;

use super::resilience::{at_least_one, cookie_name, header_name, millionths, positive_duration};
use super::{known_names, Field, Object};
use crate::model::ObjRef;
use crate::raw::route::HttpRouteSpec;
use crate::raw::switchyard::{
    RawCohort, RawFault, RawRateLimit, RawRetryOn, TrafficPolicySpec, TrafficTargetRef,
};
use crate::raw::DocRef;
use crate::report::{Reporter, Site};
use crate::resilience::{
    Cohort, CohortSource, Fault, RateLimit, RateLimitKey, RetryOn, RetryPolicy, Sticky,
    TrafficPolicy, MAX_RETRY_BODY,
};

const ROUTE_GROUP: &str = "gateway.networking.k8s.io";

/// The retry condition names, in documentation order.
const RETRY_ON: [&str; 6] = [
    "connect-failure",
    "reset",
    "timeout",
    "retriable-status-codes",
    "5xx",
    "gateway-error",
];

/// The TrafficPolicies attached to routes and to named rules.
#[derive(Debug, Default)]
pub(crate) struct TrafficPolicies {
    route_level: HashMap<ObjRef, Arc<TrafficPolicy>>,
    rule_level: HashMap<ObjRef, HashMap<String, Arc<TrafficPolicy>>>,
}

impl TrafficPolicies {
    /// The policy of one rule of `route`: its rule-level policy over the route-level one.
    pub(crate) fn for_rule(
        &self,
        route: &ObjRef,
        rule: Option<&str>,
    ) -> Option<Arc<TrafficPolicy>> {
        if self.route_level.is_empty() && self.rule_level.is_empty() {
            // The common case: no TrafficPolicy at all; skip hashing the route id per rule.
            return None;
        }
        let whole = self.route_level.get(route);
        let own = rule.and_then(|name| self.rule_level.get(route)?.get(name));
        match (own, whole) {
            (None, None) => None,
            (Some(p), None) | (None, Some(p)) => Some(Arc::clone(p)),
            (Some(own), Some(whole)) => Some(Arc::new(own.over(whole))),
        }
    }
}

/// Who took a route or rule first: the policy's document, its targetRef index and label.
struct Taken {
    at: DocRef,
    index: usize,
    label: String,
}

/// Validates every TrafficPolicy and attaches it to its targets.
pub(crate) fn policies(
    objects: &[Object<'_, TrafficPolicySpec>],
    routes: &[Object<'_, HttpRouteSpec>],
    rep: &mut Reporter<'_>,
) -> TrafficPolicies {
    let mut out = TrafficPolicies::default();
    if objects.is_empty() {
        return out;
    }
    let by_id: HashMap<&ObjRef, &HttpRouteSpec> = routes.iter().map(|r| (&r.id, r.spec)).collect();
    let mut taken: HashMap<(ObjRef, Option<String>), Taken> = HashMap::new();
    for obj in objects {
        let policy = Arc::new(policy(obj, rep));
        let root = Field::Root("spec");
        let list = root.key("targetRefs");
        for (i, target) in obj.spec.target_refs.iter().enumerate() {
            let field = list.at(i);
            let Some(id) = target_route(obj, target, &field, &by_id, rep) else {
                continue;
            };
            let key = (id, target.section_name.clone());
            let (id, section) = &key;
            if let Some(first) = taken.get(&key) {
                let at = rep.describe(first.at, &format!("spec.targetRefs[{}]", first.index));
                let (field, message) = match section {
                    None => (
                        field.key("name"),
                        format!(
                            "HTTPRoute {id} is already targeted by {} ({at}); a route takes one route-level TrafficPolicy",
                            first.label
                        ),
                    ),
                    Some(rule) => (
                        field.key("sectionName"),
                        format!(
                            "rule {rule:?} of HTTPRoute {id} is already targeted by {} ({at}); a rule takes one rule-level TrafficPolicy",
                            first.label
                        ),
                    ),
                };
                rep.error(&obj.site, field, message);
                continue;
            }
            match section {
                None => {
                    out.route_level.insert(id.clone(), Arc::clone(&policy));
                }
                Some(rule) => {
                    out.rule_level
                        .entry(id.clone())
                        .or_default()
                        .insert(rule.clone(), Arc::clone(&policy));
                }
            }
            taken.insert(
                key,
                Taken {
                    at: obj.site.at,
                    index: i,
                    label: obj.site.label.clone(),
                },
            );
        }
    }
    out
}

/// Resolves one targetRef to a route id, reporting why it cannot. `None` without an error
/// when the route is outside a gateway's view.
fn target_route(
    obj: &Object<'_, TrafficPolicySpec>,
    target: &TrafficTargetRef,
    field: &Field<'_>,
    by_id: &HashMap<&ObjRef, &HttpRouteSpec>,
    rep: &mut Reporter<'_>,
) -> Option<ObjRef> {
    let site = &obj.site;
    let namespace = &obj.id.namespace;
    if target.kind != "HTTPRoute" {
        rep.error(
            site,
            field.key("kind"),
            format!(
                "a TrafficPolicy can only target kind HTTPRoute in group {ROUTE_GROUP}, not {:?}",
                target.kind
            ),
        );
        return None;
    }
    if let Some(group) = target.group.as_deref().filter(|g| *g != ROUTE_GROUP) {
        rep.error(
            site,
            field.key("group"),
            format!(
                "a TrafficPolicy can only target kind HTTPRoute in group {ROUTE_GROUP}, not group {group:?}"
            ),
        );
        return None;
    }
    if let Some(ns) = target.namespace.as_deref().filter(|ns| ns != namespace) {
        rep.error(
            site,
            field.key("namespace"),
            format!(
                "a TrafficPolicy can only target HTTPRoutes in its own namespace {namespace:?}, not {ns:?}"
            ),
        );
        return None;
    }
    let id = ObjRef::new(namespace, &target.name);
    let Some(route) = by_id.get(&id) else {
        if !rep.is_view() {
            rep.error(
                site,
                field.key("name"),
                format!(
                    "unknown HTTPRoute {:?} {}",
                    target.name,
                    known_names(by_id.keys().copied(), namespace)
                ),
            );
        }
        // In a view the route is attached to other Gateways only.
        return None;
    };
    if let Some(section) = &target.section_name {
        let mut names: Vec<&str> = route
            .rules
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect();
        if !names.contains(&section.as_str()) {
            names.sort_unstable();
            let known = if names.is_empty() {
                "none of its rules has a name".to_string()
            } else {
                format!("rule names: {}", names.join(", "))
            };
            rep.error(
                site,
                field.key("sectionName"),
                format!("HTTPRoute {id} has no rule named {section:?} ({known})"),
            );
            return None;
        }
    }
    Some(id)
}

/// One TrafficPolicy's values; an invalid part is reported and left out.
fn policy(obj: &Object<'_, TrafficPolicySpec>, rep: &mut Reporter<'_>) -> TrafficPolicy {
    let site = &obj.site;
    let spec = obj.spec;
    let root = Field::Root("spec");
    if spec.target_refs.is_empty() {
        rep.error(
            site,
            root.key("targetRefs"),
            "a TrafficPolicy needs at least one targetRef",
        );
    }
    let timeouts = root.key("timeouts");
    TrafficPolicy {
        source: Some(obj.id.clone()),
        rate_limit: spec
            .rate_limit
            .as_ref()
            .and_then(|r| rate_limit(r, &root.key("rateLimit"), site, rep)),
        fault: spec
            .fault
            .as_ref()
            .and_then(|f| fault(f, &root.key("fault"), site, rep)),
        retry: spec
            .retry
            .as_ref()
            .and_then(|r| retry(r, &root.key("retry"), site, rep)),
        cohort: spec
            .cohort
            .as_ref()
            .and_then(|c| cohort(c, &root.key("cohort"), site, rep)),
        downstream_idle_timeout: spec.timeouts.as_ref().and_then(|t| {
            positive_duration(
                t.downstream_idle.as_deref(),
                site,
                timeouts.key("downstreamIdle"),
                rep,
            )
        }),
    }
}

fn rate_limit(
    raw: &RawRateLimit,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<RateLimit> {
    let requests = at_least_one(raw.requests, site, base.key("requests"), rep);
    let per = positive_duration(Some(&raw.per), site, base.key("per"), rep);
    let burst = match raw.burst {
        Some(b) => at_least_one(b, site, base.key("burst"), rep),
        None => requests,
    };
    let key_field = base.key("key");
    let key = match (raw.key.client_ip == Some(true), &raw.key.header) {
        (true, None) => Some(RateLimitKey::ClientIp),
        (false, Some(h)) => {
            header_name(h, site, key_field.key("header"), rep).map(RateLimitKey::Header)
        }
        _ => {
            rep.error(
                site,
                key_field,
                "set exactly one of clientIP: true or header",
            );
            None
        }
    };
    Some(RateLimit {
        requests: requests?,
        per: per?,
        burst: burst?,
        key: key?,
    })
}

fn fault(raw: &RawFault, base: &Field<'_>, site: &Site, rep: &mut Reporter<'_>) -> Option<Fault> {
    if raw.delay.is_none() && raw.abort.is_none() {
        rep.error(site, base, "a fault needs delay or abort (or both)");
        return None;
    }
    let mut ok = true;
    let delay = raw.delay.as_ref().and_then(|d| {
        let field = base.key("delay");
        let delay = positive_duration(Some(&d.fixed_delay), site, field.key("fixedDelay"), rep);
        let share = millionths(d.percentage, site, field.key("percentage"), rep);
        let both = delay.zip(share);
        ok &= both.is_some();
        both
    });
    let abort = raw.abort.as_ref().and_then(|a| {
        let field = base.key("abort");
        let status = if (200..=599).contains(&a.http_status) {
            Some(a.http_status)
        } else {
            rep.error(
                site,
                field.key("httpStatus"),
                format!("httpStatus {} is not between 200 and 599", a.http_status),
            );
            None
        };
        let share = millionths(a.percentage, site, field.key("percentage"), rep);
        let both = status.zip(share);
        ok &= both.is_some();
        both
    });
    ok.then_some(Fault { delay, abort })
}

fn retry(
    raw: &RawRetryOn,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<RetryPolicy> {
    let mut ok = true;
    let on = match &raw.on {
        None => RetryOn::default(),
        Some(names) => {
            let field = base.key("on");
            let mut on = RetryOn {
                connect_failure: false,
                reset: false,
                timeout: false,
                retriable_codes: false,
                any_5xx: false,
                gateway_error: false,
            };
            for (i, name) in names.iter().enumerate() {
                let flag = match name.as_str() {
                    "connect-failure" => &mut on.connect_failure,
                    "reset" => &mut on.reset,
                    "timeout" => &mut on.timeout,
                    "retriable-status-codes" => &mut on.retriable_codes,
                    "5xx" => &mut on.any_5xx,
                    "gateway-error" => &mut on.gateway_error,
                    _ => {
                        rep.error(
                            site,
                            field.at(i),
                            format!(
                                "unknown retry condition {name:?} (known: {})",
                                RETRY_ON.join(", ")
                            ),
                        );
                        ok = false;
                        continue;
                    }
                };
                *flag = true;
            }
            on
        }
    };
    let per_try_timeout = match raw.per_try_timeout.as_deref() {
        None => None,
        Some(t) => {
            let d = positive_duration(Some(t), site, base.key("perTryTimeout"), rep);
            ok &= d.is_some();
            d
        }
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(MAX_RETRY_BODY);
    if max_body_bytes > MAX_RETRY_BODY {
        rep.error(
            site,
            base.key("maxBodyBytes"),
            format!("maxBodyBytes {max_body_bytes} is above the maximum {MAX_RETRY_BODY} (the proxy's replay buffer)"),
        );
        ok = false;
    }
    ok.then_some(RetryPolicy {
        on,
        per_try_timeout,
        max_body_bytes,
    })
}

fn cohort(
    raw: &RawCohort,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<Cohort> {
    if raw.pin.is_none() && raw.sticky.is_none() {
        rep.error(site, base, "a cohort needs pin or sticky (or both)");
        return None;
    }
    let mut ok = true;
    let pin = raw.pin.as_ref().and_then(|p| {
        let field = base.key("pin");
        let source = match (&p.header, &p.cookie) {
            (Some(h), None) => {
                header_name(h, site, field.key("header"), rep).map(CohortSource::Header)
            }
            (None, Some(c)) => {
                cookie_name(c, site, field.key("cookie"), rep).map(CohortSource::Cookie)
            }
            _ => {
                rep.error(site, field, "set exactly one of header or cookie");
                None
            }
        };
        ok &= source.is_some();
        source
    });
    let sticky = raw.sticky.as_ref().and_then(|s| {
        let field = base.key("sticky");
        let sticky = match (&s.cookie, &s.hash_on) {
            (Some(c), None) => {
                let cookie = field.key("cookie");
                let name = cookie_name(&c.name, site, cookie.key("name"), rep);
                let max_age = match c.max_age.as_deref() {
                    None => Some(None),
                    Some(age) => {
                        positive_duration(Some(age), site, cookie.key("maxAge"), rep).map(Some)
                    }
                };
                name.zip(max_age)
                    .map(|(name, max_age)| Sticky::Cookie { name, max_age })
            }
            (None, Some(h)) => {
                let hash = field.key("hashOn");
                header_name(&h.header, site, hash.key("header"), rep).map(Sticky::Hash)
            }
            _ => {
                rep.error(site, field, "set exactly one of cookie or hashOn");
                None
            }
        };
        ok &= sticky.is_some();
        sticky
    });
    ok.then_some(Cohort { pin, sticky })
}
