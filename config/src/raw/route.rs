//! Serde mirror of the Gateway API `HTTPRoute` spec (gateway.networking.k8s.io/v1).

use serde::de::IgnoredAny;
use serde::Deserialize;

/// `HTTPRoute.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `spec.parentRefs[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<u16>,
}

/// `spec.rules[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRule {
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<RawMatch>,
    #[serde(default)]
    pub filters: Vec<RawFilter>,
    #[serde(default)]
    pub backend_refs: Vec<RawBackendRef>,
    pub timeouts: Option<RawRouteTimeouts>,
    pub retry: Option<RawRetry>,
    pub session_persistence: Option<IgnoredAny>,
}

/// `rules[].matches[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawMatch {
    pub path: Option<RawPathMatch>,
    #[serde(default)]
    pub headers: Vec<RawValueMatch>,
    #[serde(default)]
    pub query_params: Vec<RawValueMatch>,
    pub method: Option<String>,
}

/// `matches[].path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPathMatch {
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    #[serde(default = "root_path")]
    pub value: String,
}

fn root_path() -> String {
    "/".to_string()
}

/// Path match types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum PathMatchType {
    Exact,
    #[default]
    PathPrefix,
    RegularExpression,
}

/// `matches[].headers[]` and `matches[].queryParams[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawValueMatch {
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    pub name: String,
    pub value: String,
}

/// Header and query match types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum ValueMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// `rules[].filters[]` and `backendRefs[].filters[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFilter {
    #[serde(rename = "type")]
    pub kind: FilterType,
    pub request_header_modifier: Option<RawHeaderModifier>,
    pub response_header_modifier: Option<RawHeaderModifier>,
    pub request_redirect: Option<RawRedirect>,
    pub url_rewrite: Option<RawUrlRewrite>,
    pub request_mirror: Option<RawMirror>,
    pub extension_ref: Option<IgnoredAny>,
}

/// Filter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub(crate) enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
    ExtensionRef,
}

impl FilterType {
    /// The YAML spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FilterType::RequestHeaderModifier => "RequestHeaderModifier",
            FilterType::ResponseHeaderModifier => "ResponseHeaderModifier",
            FilterType::RequestRedirect => "RequestRedirect",
            FilterType::UrlRewrite => "URLRewrite",
            FilterType::RequestMirror => "RequestMirror",
            FilterType::ExtensionRef => "ExtensionRef",
        }
    }
}

/// `requestHeaderModifier` / `responseHeaderModifier`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHeaderModifier {
    #[serde(default)]
    pub set: Vec<RawHeader>,
    #[serde(default)]
    pub add: Vec<RawHeader>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A `{name, value}` header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHeader {
    pub name: String,
    pub value: String,
}

/// `requestRedirect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<RawPathModifier>,
    pub port: Option<u16>,
    pub status_code: Option<u16>,
}

/// `urlRewrite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawUrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<RawPathModifier>,
}

/// `requestRedirect.path` / `urlRewrite.path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPathModifier {
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

/// Path modifier types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

/// `requestMirror`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawMirror {
    pub backend_ref: RawObjectRef,
    pub percent: Option<u32>,
    pub fraction: Option<RawFraction>,
}

/// `requestMirror.fraction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFraction {
    pub numerator: u32,
    pub denominator: Option<u32>,
}

/// A backend reference without weight (mirror targets).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawObjectRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    /// Accepted for Service-style refs and ignored: Backend endpoints carry their ports.
    #[serde(rename = "port", default)]
    pub _port: Option<u16>,
}

/// `rules[].backendRefs[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    /// Accepted for Service-style refs and ignored: Backend endpoints carry their ports.
    #[serde(rename = "port", default)]
    pub _port: Option<u16>,
    pub weight: Option<u32>,
    #[serde(default)]
    pub filters: Vec<RawFilter>,
}

/// `rules[].timeouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRouteTimeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

/// `rules[].retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetry {
    #[serde(default)]
    pub codes: Vec<u16>,
    pub attempts: Option<u32>,
    pub backoff: Option<String>,
}
