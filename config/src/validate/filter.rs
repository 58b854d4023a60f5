//! Validation of HTTPRoute filters (header modifiers, redirects, rewrites, mirrors) into compiled [`Filter`]s.

use std::collections::{HashMap, HashSet};

use http::{HeaderName, HeaderValue};

use super::{BackendName, Field, Scope};
use crate::raw::route::{
    FilterType, PathMatchType, PathModifierType, RawFilter, RawHeader, RawHeaderModifier,
    RawMirror, RawPathModifier, RawRedirect,
};
use crate::report::Reporter;
use crate::route::{Filter, HeaderModifier, Mirror, PathModifier, Redirect, UrlRewrite};

const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

/// A rule's filters. `base` is the path of the list (`spec.rules[0].filters`) and
/// `path_kinds` the path match type of each of the rule's matches.
pub(crate) fn rule_filters(
    raw: &[RawFilter],
    base: &Field<'_>,
    path_kinds: &[PathMatchType],
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Vec<Filter> {
    let mut out = Vec::with_capacity(raw.len());
    let mut first_of: HashMap<FilterType, usize> = HashMap::new();
    for (k, f) in raw.iter().enumerate() {
        let field = base.at(k);
        if f.kind != FilterType::RequestMirror {
            if let Some(first) = first_of.get(&f.kind) {
                rep.error(
                    scope.site,
                    field.key("type"),
                    format!(
                        "{} is declared more than once in this rule (first at filters[{first}])",
                        f.kind.name()
                    ),
                );
                continue;
            }
            first_of.insert(f.kind, k);
        }
        let conflicting = match f.kind {
            FilterType::RequestRedirect => first_of.get(&FilterType::UrlRewrite),
            FilterType::UrlRewrite => first_of.get(&FilterType::RequestRedirect),
            _ => None,
        };
        if let Some(other) = conflicting {
            rep.error(
                scope.site,
                field.key("type"),
                format!("RequestRedirect and URLRewrite cannot be used in the same rule (see filters[{other}])"),
            );
            continue;
        }
        let Some(filter) = filter(f, &field, scope, rep) else {
            continue;
        };
        if let Some((sub, PathModifier::ReplacePrefixMatch(_))) = path_modifier_of(&filter) {
            let not_prefix = path_kinds
                .iter()
                .enumerate()
                .find(|(_, k)| **k != PathMatchType::PathPrefix);
            if let Some((j, kind)) = not_prefix {
                let sub = field.key(sub);
                let path = sub.key("path");
                rep.error(
                    scope.site,
                    path.key("type"),
                    format!("ReplacePrefixMatch needs every match of the rule to be a PathPrefix match (matches[{j}] is {kind:?})"),
                );
                continue;
            }
        }
        out.push(filter);
    }
    out
}

/// A backendRef's filters: only header modifiers are supported there.
pub(crate) fn backend_filters(
    raw: &[RawFilter],
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Vec<Filter> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (k, f) in raw.iter().enumerate() {
        let field = base.at(k);
        if !matches!(
            f.kind,
            FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier
        ) {
            rep.error(
                scope.site,
                field.key("type"),
                format!(
                    "{} is not supported on a backendRef (supported: RequestHeaderModifier, ResponseHeaderModifier)",
                    f.kind.name()
                ),
            );
            continue;
        }
        if !seen.insert(f.kind) {
            rep.error(
                scope.site,
                field.key("type"),
                format!(
                    "{} is declared more than once on this backendRef",
                    f.kind.name()
                ),
            );
            continue;
        }
        out.extend(filter(f, &field, scope, rep));
    }
    out
}

fn path_modifier_of(filter: &Filter) -> Option<(&'static str, &PathModifier)> {
    match filter {
        Filter::RequestRedirect(r) => r.path.as_ref().map(|p| ("requestRedirect", p)),
        Filter::UrlRewrite(r) => r.path.as_ref().map(|p| ("urlRewrite", p)),
        _ => None,
    }
}

/// One filter; its `type` must come with the matching section and no other.
fn filter(
    f: &RawFilter,
    field: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<Filter> {
    let sections = [
        (
            "requestHeaderModifier",
            f.request_header_modifier.is_some(),
            FilterType::RequestHeaderModifier,
        ),
        (
            "responseHeaderModifier",
            f.response_header_modifier.is_some(),
            FilterType::ResponseHeaderModifier,
        ),
        (
            "requestRedirect",
            f.request_redirect.is_some(),
            FilterType::RequestRedirect,
        ),
        (
            "urlRewrite",
            f.url_rewrite.is_some(),
            FilterType::UrlRewrite,
        ),
        (
            "requestMirror",
            f.request_mirror.is_some(),
            FilterType::RequestMirror,
        ),
        (
            "extensionRef",
            f.extension_ref.is_some(),
            FilterType::ExtensionRef,
        ),
    ];
    let mut ok = true;
    for (name, present, kind) in sections {
        if present && kind != f.kind {
            rep.error(
                scope.site,
                field.key(name),
                format!("{name} is not allowed with type {}", f.kind.name()),
            );
            ok = false;
        }
        if !present && kind == f.kind && kind != FilterType::ExtensionRef {
            rep.error(
                scope.site,
                field,
                format!("type {} needs a {name} section", f.kind.name()),
            );
            ok = false;
        }
    }
    if f.kind == FilterType::ExtensionRef {
        rep.error(
            scope.site,
            field.key("type"),
            "unsupported filter type ExtensionRef",
        );
        return None;
    }
    if !ok {
        return None;
    }
    match f.kind {
        FilterType::RequestHeaderModifier => {
            let m = f.request_header_modifier.as_ref()?;
            let m = header_modifier(m, &field.key("requestHeaderModifier"), scope, rep);
            Some(Filter::RequestHeaderModifier(m))
        }
        FilterType::ResponseHeaderModifier => {
            let m = f.response_header_modifier.as_ref()?;
            let m = header_modifier(m, &field.key("responseHeaderModifier"), scope, rep);
            Some(Filter::ResponseHeaderModifier(m))
        }
        FilterType::RequestRedirect => {
            let r = f.request_redirect.as_ref()?;
            redirect(r, &field.key("requestRedirect"), scope, rep).map(Filter::RequestRedirect)
        }
        FilterType::UrlRewrite => {
            let r = f.url_rewrite.as_ref()?;
            let base = field.key("urlRewrite");
            let mut ok = true;
            if let Some(h) = &r.hostname {
                if let Err(e) = crate::hostname::check(h, false) {
                    rep.error(scope.site, base.key("hostname"), e);
                    ok = false;
                }
            }
            let path = match &r.path {
                Some(p) => Some(path_modifier(p, &base.key("path"), scope, rep)?),
                None => None,
            };
            ok.then(|| {
                Filter::UrlRewrite(UrlRewrite {
                    hostname: r.hostname.clone(),
                    path,
                })
            })
        }
        FilterType::RequestMirror => {
            let m = f.request_mirror.as_ref()?;
            mirror(m, &field.key("requestMirror"), scope, rep).map(Filter::RequestMirror)
        }
        FilterType::ExtensionRef => None,
    }
}

fn header_modifier(
    m: &RawHeaderModifier,
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> HeaderModifier {
    let pairs = |list: &[RawHeader], which: &'static str, rep: &mut Reporter<'_>| {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        let list_field = base.key(which);
        for (k, h) in list.iter().enumerate() {
            let field = list_field.at(k);
            let name_field = field.key("name");
            let Some(name) = header_name(&h.name, &name_field, scope, rep) else {
                continue;
            };
            if !seen.insert(name.clone()) {
                rep.error(
                    scope.site,
                    name_field,
                    format!("header {:?} appears more than once in {which}", h.name),
                );
                continue;
            }
            match HeaderValue::from_str(&h.value) {
                Ok(value) => out.push((name, value)),
                Err(_) => rep.error(
                    scope.site,
                    field.key("value"),
                    format!("invalid header value {:?}", h.value),
                ),
            }
        }
        out
    };
    let set = pairs(&m.set, "set", rep);
    let add = pairs(&m.add, "add", rep);
    let mut seen = HashSet::new();
    let mut remove = Vec::with_capacity(m.remove.len());
    let list = base.key("remove");
    for (k, name) in m.remove.iter().enumerate() {
        let field = list.at(k);
        if let Some(n) = header_name(name, &field, scope, rep) {
            if seen.insert(n.clone()) {
                remove.push(n);
            } else {
                rep.error(
                    scope.site,
                    field,
                    format!("header {name:?} appears more than once in remove"),
                );
            }
        }
    }
    HeaderModifier { set, add, remove }
}

/// Parses a header name (case-insensitive, stored lowercase), reporting a bad one.
pub(crate) fn header_name(
    name: &str,
    field: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            rep.error(scope.site, field, format!("invalid header name {name:?}"));
            None
        }
    }
}

fn redirect(
    r: &RawRedirect,
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<Redirect> {
    let site = scope.site;
    let mut ok = true;
    if let Some(s) = &r.scheme {
        if s != "http" && s != "https" {
            rep.error(
                site,
                base.key("scheme"),
                format!("unsupported scheme {s:?} (supported: http, https)"),
            );
            ok = false;
        }
    }
    if let Some(h) = &r.hostname {
        if let Err(e) = crate::hostname::check(h, false) {
            rep.error(site, base.key("hostname"), e);
            ok = false;
        }
    }
    if r.port == Some(0) {
        rep.error(site, base.key("port"), "port must be between 1 and 65535");
        ok = false;
    }
    let status_code = r.status_code.unwrap_or(302);
    if !REDIRECT_CODES.contains(&status_code) {
        rep.error(
            site,
            base.key("statusCode"),
            format!(
                "unsupported redirect status {status_code} (supported: 301, 302, 303, 307, 308)"
            ),
        );
        ok = false;
    }
    let path = match &r.path {
        Some(p) => Some(path_modifier(p, &base.key("path"), scope, rep)?),
        None => None,
    };
    ok.then(|| Redirect {
        scheme: r.scheme.clone(),
        hostname: r.hostname.clone(),
        port: r.port,
        path,
        status_code,
    })
}

fn path_modifier(
    p: &RawPathModifier,
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<PathModifier> {
    let (wanted, value, other, other_value) = match p.kind {
        PathModifierType::ReplaceFullPath => (
            "replaceFullPath",
            &p.replace_full_path,
            "replacePrefixMatch",
            &p.replace_prefix_match,
        ),
        PathModifierType::ReplacePrefixMatch => (
            "replacePrefixMatch",
            &p.replace_prefix_match,
            "replaceFullPath",
            &p.replace_full_path,
        ),
    };
    if other_value.is_some() {
        rep.error(
            scope.site,
            base.key(other),
            format!("{other} is not allowed with type {:?}", p.kind),
        );
        return None;
    }
    let Some(value) = value else {
        rep.error(
            scope.site,
            base,
            format!("type {:?} needs {wanted}", p.kind),
        );
        return None;
    };
    let empty_ok = p.kind == PathModifierType::ReplacePrefixMatch && value.is_empty();
    if !empty_ok && !value.starts_with('/') {
        rep.error(
            scope.site,
            base.key(wanted),
            format!("path {value:?} must start with '/'"),
        );
        return None;
    }
    Some(match p.kind {
        PathModifierType::ReplaceFullPath => PathModifier::ReplaceFullPath(value.clone()),
        PathModifierType::ReplacePrefixMatch => PathModifier::ReplacePrefixMatch(value.clone()),
    })
}

fn mirror(
    m: &RawMirror,
    base: &Field<'_>,
    scope: Scope<'_>,
    rep: &mut Reporter<'_>,
) -> Option<Mirror> {
    let r = &m.backend_ref;
    let name = BackendName {
        group: r.group.as_deref(),
        kind: r.kind.as_deref(),
        name: &r.name,
        namespace: r.namespace.as_deref(),
    };
    let backend = scope.backend(name, &base.key("backendRef"), rep);
    let percent = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            rep.error(
                scope.site,
                base.key("fraction"),
                "set percent or fraction, not both",
            );
            return None;
        }
        (Some(p), None) if p > 100 => {
            rep.error(
                scope.site,
                base.key("percent"),
                format!("percent {p} is above 100"),
            );
            return None;
        }
        (Some(p), None) => p,
        (None, Some(f)) => {
            let denominator = f.denominator.unwrap_or(100);
            if denominator == 0 || f.numerator > denominator {
                rep.error(
                    scope.site,
                    base.key("fraction"),
                    format!(
                        "fraction {}/{denominator} must have 0 < denominator and numerator <= denominator",
                        f.numerator
                    ),
                );
                return None;
            }
            // numerator <= denominator, so this is at most 100.
            (u64::from(f.numerator) * 100 / u64::from(denominator)) as u32
        }
        (None, None) => 100,
    };
    Some(Mirror {
        backend: backend?,
        percent,
    })
}
