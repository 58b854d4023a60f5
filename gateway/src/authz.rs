//! AuthorizationPolicy evaluation for one request, after the route and backend are chosen.
//!
//! The rules of every policy on the request's port count. Deny wins: a matching Deny rule
//! refuses (403 `authz_denied`); otherwise a matching Allow rule admits; otherwise the
//! request is refused if any enforcing policy on the port has `defaultAction: Deny`, and
//! admitted if not. Dry-run policies never change the outcome: the decision they would
//! have produced (all policies together) is logged instead. Paths are matched against the
//! canonical path. Evaluation borrows everything and allocates nothing.

use http::{HeaderMap, Method};
use switchyard_config::{
    AuthzAction, AuthzPath, AuthzRule, ObjRef, PortAuthz, SourceMatch, TargetMatch,
};
use tracing::info;

use crate::source::Source;

/// What is known about the request when it is authorized.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub route: Option<&'a ObjRef>,
    pub backend: Option<&'a ObjRef>,
    /// The canonical path.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// The outcome of an evaluation and what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub allowed: bool,
    /// The deciding policy (`None`: no policy applies).
    pub policy: Option<&'a ObjRef>,
    /// The deciding rule (`None`: the default action decided).
    pub rule: Option<&'a str>,
}

impl Decision<'_> {
    /// `deny rule`, `allow rule`, `default deny` or `default allow`.
    pub fn reason(&self) -> &'static str {
        match (self.rule.is_some(), self.allowed) {
            (true, false) => "deny rule",
            (true, true) => "allow rule",
            (false, false) => "default deny",
            (false, true) => "default allow",
        }
    }
}

/// Evaluates the enforcing policies (`with_dry_run`: all of them).
pub fn evaluate<'a>(authz: &'a PortAuthz, req: &Request<'_>, with_dry_run: bool) -> Decision<'a> {
    let policies = || {
        authz
            .policies
            .iter()
            .filter(move |p| with_dry_run || !p.dry_run)
    };
    let mut allow = None;
    for p in policies() {
        for rule in &p.rules {
            if !rule_matches(rule, req) {
                continue;
            }
            match rule.action {
                AuthzAction::Deny => {
                    return Decision {
                        allowed: false,
                        policy: Some(&p.id),
                        rule: Some(&rule.name),
                    }
                }
                AuthzAction::Allow => {
                    allow.get_or_insert((&p.id, rule.name.as_str()));
                }
            }
        }
    }
    if let Some((policy, rule)) = allow {
        return Decision {
            allowed: true,
            policy: Some(policy),
            rule: Some(rule),
        };
    }
    match policies().find(|p| p.default_action == AuthzAction::Deny) {
        Some(p) => Decision {
            allowed: false,
            policy: Some(&p.id),
            rule: None,
        },
        None => Decision {
            allowed: true,
            policy: None,
            rule: None,
        },
    }
}

/// Authorizes a request on a port; logs denials and dry-run decisions. `true` = proceed.
pub fn allows(
    authz: Option<&PortAuthz>,
    source: &Source,
    route: Option<&ObjRef>,
    backend: Option<&ObjRef>,
    req: &pingora::http::RequestHeader,
) -> bool {
    let Some(authz) = authz else {
        return true;
    };
    let request = Request {
        principal: source.principal.as_deref(),
        zone: source.zone.as_deref(),
        route,
        backend,
        path: req.uri.path(),
        method: &req.method,
        headers: &req.headers,
    };
    let decision = evaluate(authz, &request, false);
    if !decision.allowed {
        info!(
            method = %req.method,
            path = request.path,
            principal = request.principal.unwrap_or("-"),
            zone = request.zone.unwrap_or("-"),
            policy = %decision.policy.map(ToString::to_string).unwrap_or_default(),
            rule = decision.rule.unwrap_or("-"),
            reason = decision.reason(),
            "authorization denied"
        );
    }
    if authz.policies.iter().any(|p| p.dry_run) {
        let would = evaluate(authz, &request, true);
        info!(
            method = %req.method,
            path = request.path,
            principal = request.principal.unwrap_or("-"),
            zone = request.zone.unwrap_or("-"),
            decision = if would.allowed { "allow" } else { "deny" },
            enforced = if decision.allowed { "allow" } else { "deny" },
            policy = %would.policy.map(ToString::to_string).unwrap_or_default(),
            rule = would.rule.unwrap_or("-"),
            reason = would.reason(),
            "authorization dry-run"
        );
    }
    decision.allowed
}

fn rule_matches(rule: &AuthzRule, req: &Request<'_>) -> bool {
    (rule.from.is_empty() || rule.from.iter().any(|s| source_matches(s, req)))
        && (rule.to.is_empty() || rule.to.iter().any(|t| target_matches(t, req)))
        && rule.headers.iter().all(|h| {
            let mut values = req.headers.get_all(&h.name).iter();
            match &h.value {
                None => values.next().is_some(),
                Some(want) => values.any(|v| v.as_bytes() == want.as_bytes()),
            }
        })
}

fn source_matches(s: &SourceMatch, req: &Request<'_>) -> bool {
    let principal_ok = s.principals.is_empty() && s.principal_prefixes.is_empty()
        || req.principal.is_some_and(|p| {
            s.principals.iter().any(|x| x == p)
                || s.principal_prefixes
                    .iter()
                    .any(|x| p.starts_with(x.as_str()))
        });
    let zone_ok = s.zones.is_empty() || req.zone.is_some_and(|z| s.zones.iter().any(|x| x == z));
    principal_ok && zone_ok
}

fn target_matches(t: &TargetMatch, req: &Request<'_>) -> bool {
    (t.routes.is_empty() || req.route.is_some_and(|r| t.routes.contains(r)))
        && (t.backends.is_empty() || req.backend.is_some_and(|b| t.backends.contains(b)))
        && (t.paths.is_empty() || t.paths.iter().any(|p| path_matches(p, req.path)))
        && (t.methods.is_empty() || t.methods.contains(req.method))
}

/// Exact, or a segment-wise prefix (`/admin` matches `/admin` and `/admin/x`, not `/admins`).
fn path_matches(p: &AuthzPath, path: &str) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        if p.ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let (want, path) = (p.value.as_bytes(), path.as_bytes());
    if p.exact {
        return eq(want, path);
    }
    if want == b"/" {
        return true;
    }
    path.len() >= want.len()
        && eq(&path[..want.len()], want)
        && (path.len() == want.len() || path[want.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{build, SourceFile};

    const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners: [{name: web, port: 8080, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v1}
spec: {endpoints: [{address: "127.0.0.1:9000"}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v2}
spec: {endpoints: [{address: "127.0.0.1:9001"}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: cart-v1}]}]
"#;

    fn port_authz(policies: &str) -> PortAuthz {
        let text = format!("{BASE}---\n{policies}");
        let g = build(&[SourceFile::new("set.yaml", text)]).unwrap_or_else(|e| panic!("{e}"));
        let gw = g.gateway(None).unwrap();
        gw.port(8080).unwrap().authz.as_deref().cloned().unwrap()
    }

    struct Req {
        principal: Option<&'static str>,
        zone: Option<&'static str>,
        route: ObjRef,
        backend: ObjRef,
        path: &'static str,
        method: Method,
        headers: HeaderMap,
    }

    impl Req {
        fn new(path: &'static str) -> Self {
            Req {
                principal: None,
                zone: Some("zone-a"),
                route: ObjRef::new("default", "shop"),
                backend: ObjRef::new("default", "cart-v1"),
                path,
                method: Method::GET,
                headers: HeaderMap::new(),
            }
        }

        fn eval<'a>(&self, authz: &'a PortAuthz, dry: bool) -> Decision<'a> {
            let r = Request {
                principal: self.principal,
                zone: self.zone,
                route: Some(&self.route),
                backend: Some(&self.backend),
                path: self.path,
                method: &self.method,
                headers: &self.headers,
            };
            evaluate(authz, &r, dry)
        }

        fn allowed(&self, authz: &PortAuthz) -> bool {
            self.eval(authz, false).allowed
        }
    }

    const DENY_ADMIN: &str = r#"apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  targetRefs: [{kind: Gateway, name: edge}]
  rules:
    - name: block-admin
      action: Deny
      to: [{paths: [{type: PathPrefix, value: /admin, ignoreCase: true}]}]
"#;

    #[test]
    fn deny_rule_and_default_allow() {
        let a = port_authz(DENY_ADMIN);
        for p in ["/admin", "/admin/", "/admin/users", "/ADMIN", "/Admin/x"] {
            let d = Req::new(p).eval(&a, false);
            assert!(!d.allowed, "{p}");
            assert_eq!(d.rule, Some("block-admin"));
            assert_eq!(d.policy.unwrap().name, "deny-admin");
        }
        for p in ["/", "/admins", "/public/admin", "/adm"] {
            let d = Req::new(p).eval(&a, false);
            assert!(d.allowed, "{p}");
            assert_eq!((d.policy, d.rule), (None, None));
        }
    }

    #[test]
    fn default_deny_with_allow_rules_and_deny_wins() {
        let a = port_authz(
            r#"apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: closed}
spec:
  targetRefs: [{kind: Gateway, name: edge, sectionName: web}]
  defaultAction: Deny
  rules:
    - {name: public, action: Allow, to: [{paths: [{value: /public}]}]}
    - {name: exact, action: Allow, to: [{paths: [{type: Exact, value: /health}]}]}
    - {name: no-secret, action: Deny, to: [{paths: [{value: /public/secret}]}]}
"#,
        );
        assert!(Req::new("/public").allowed(&a));
        assert!(Req::new("/public/x").allowed(&a));
        assert!(Req::new("/health").allowed(&a));
        assert!(!Req::new("/health/x").allowed(&a));
        assert!(!Req::new("/HEALTH").allowed(&a));
        assert!(!Req::new("/publicx").allowed(&a));
        let d = Req::new("/admin").eval(&a, false);
        assert_eq!(
            (d.allowed, d.rule, d.policy.unwrap().name.as_str()),
            (false, None, "closed")
        );
        // Deny wins over the earlier Allow.
        let d = Req::new("/public/secret/x").eval(&a, false);
        assert_eq!((d.allowed, d.rule), (false, Some("no-secret")));
    }

    #[test]
    fn sources_methods_headers_routes_and_backends() {
        let a = port_authz(
            r#"apiVersion: switchyard.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: mixed}
spec:
  targetRefs: [{kind: Gateway, name: edge}]
  defaultAction: Deny
  rules:
    - name: cart-sa
      action: Allow
      from: [{principals: ["spiffe://switchyard.local/ns/shop/sa/cart"]}]
    - name: shop-ns-in-zone-b
      action: Allow
      from: [{principalPrefixes: ["spiffe://switchyard.local/ns/shop/"], zones: [zone-b]}]
    - name: zone-c
      action: Allow
      from: [{zones: [zone-c]}]
    - name: reads
      action: Allow
      to: [{methods: [GET, HEAD], routes: [shop], backends: [default/cart-v2]}]
    - name: prod-header
      action: Allow
      headers: [{name: x-env, value: prod}, {name: x-team, present: true}]
"#,
        );
        let mut r = Req::new("/x");
        assert!(!r.allowed(&a), "zone-a, no principal, cart-v1");
        r.principal = Some("spiffe://switchyard.local/ns/shop/sa/cart");
        assert_eq!(r.eval(&a, false).rule, Some("cart-sa"));
        r.principal = Some("spiffe://switchyard.local/ns/shop/sa/other");
        assert!(!r.allowed(&a), "prefix matches but the zone does not");
        r.zone = Some("zone-b");
        assert_eq!(r.eval(&a, false).rule, Some("shop-ns-in-zone-b"));
        r.principal = None;
        assert!(!r.allowed(&a), "a prefix needs a principal");
        r.zone = Some("zone-c");
        assert_eq!(r.eval(&a, false).rule, Some("zone-c"));
        r.zone = None;
        assert!(!r.allowed(&a));
        r.backend = ObjRef::new("default", "cart-v2");
        assert_eq!(r.eval(&a, false).rule, Some("reads"));
        r.method = Method::POST;
        assert!(!r.allowed(&a));
        r.method = Method::HEAD;
        r.route = ObjRef::new("default", "other");
        assert!(!r.allowed(&a));
        r.headers.insert("x-env", "prod".parse().unwrap());
        assert!(!r.allowed(&a), "both headers are needed");
        r.headers.insert("x-team", "".parse().unwrap());
        assert_eq!(r.eval(&a, false).rule, Some("prod-header"));
        r.headers.insert("x-env", "Prod".parse().unwrap());
        assert!(!r.allowed(&a), "values are exact");
    }

    #[test]
    fn dry_run_policies_never_decide_but_are_evaluated() {
        let dry = DENY_ADMIN
            .replace("name: deny-admin", "name: trial")
            .replace(
                "  rules:",
                "  dryRun: true\n  defaultAction: Deny\n  rules:",
            );
        let a = port_authz(&dry);
        let r = Req::new("/admin");
        assert!(r.allowed(&a));
        let would = r.eval(&a, true);
        assert_eq!((would.allowed, would.rule), (false, Some("block-admin")));
        let would = Req::new("/other").eval(&a, true);
        assert_eq!(
            (would.allowed, would.rule),
            (false, None),
            "dry-run default deny"
        );
        assert!(Req::new("/other").allowed(&a));
    }

    #[test]
    fn prefix_matching_is_segment_wise() {
        let p = |value: &str, ignore_case| AuthzPath {
            exact: false,
            value: value.into(),
            ignore_case,
        };
        assert!(path_matches(&p("/", false), "/anything"));
        assert!(path_matches(&p("/a/b", false), "/a/b/c"));
        assert!(!path_matches(&p("/a/b", false), "/a/bc"));
        assert!(!path_matches(&p("/a/b", false), "/a"));
        assert!(path_matches(&p("/a/B", true), "/A/b/"));
        assert!(!path_matches(&p("/a/B", false), "/a/b"));
    }
}
