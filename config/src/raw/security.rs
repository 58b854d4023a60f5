//! Serde mirror of the listener-security kinds (switchyard.dev/v1alpha1): ClientTrafficPolicy
//! (request hardening per listener) and AuthorizationPolicy (allow/deny rules per listener).
//! Fields are described in `docs/policies.md`.

use serde::Deserialize;

/// `spec.targetRefs[]` of both kinds: a Gateway, or one of its listeners by `sectionName`
/// (the same shape as a TrafficPolicy's targetRef).
pub(crate) use super::switchyard::SectionTargetRef as GatewayTargetRef;

/// `ClientTrafficPolicy.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ClientTrafficPolicySpec {
    pub target_refs: Vec<GatewayTargetRef>,
    pub path: Option<RawPathPolicy>,
    pub headers: Option<RawHeaderLimits>,
    pub timeouts: Option<RawClientTimeouts>,
}

/// `ClientTrafficPolicy.spec.path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPathPolicy {
    pub escaped_slashes: Option<String>,
    pub backslashes: Option<String>,
    pub path_parameters: Option<String>,
    pub merge_slashes: Option<bool>,
}

/// `ClientTrafficPolicy.spec.headers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawHeaderLimits {
    pub max_count: Option<u32>,
    pub max_bytes: Option<u32>,
}

/// `ClientTrafficPolicy.spec.timeouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawClientTimeouts {
    pub request_header: Option<String>,
    pub request_body: Option<String>,
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AuthorizationPolicySpec {
    pub target_refs: Vec<GatewayTargetRef>,
    pub default_action: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub rules: Vec<RawAuthzRule>,
}

/// `AuthorizationPolicy.spec.rules[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuthzRule {
    pub name: Option<String>,
    pub action: String,
    pub from: Option<Vec<RawAuthzSource>>,
    pub to: Option<Vec<RawAuthzTarget>>,
    #[serde(default)]
    pub headers: Vec<RawAuthzHeader>,
}

/// `rules[].from[]`: fields are ANDed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuthzSource {
    pub principals: Option<Vec<String>>,
    pub principal_prefixes: Option<Vec<String>>,
    pub zones: Option<Vec<String>>,
}

/// `rules[].to[]`: fields are ANDed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuthzTarget {
    pub routes: Option<Vec<String>>,
    pub backends: Option<Vec<String>>,
    pub paths: Option<Vec<RawAuthzPath>>,
    pub methods: Option<Vec<String>>,
}

/// `to[].paths[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuthzPath {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
    #[serde(default)]
    pub ignore_case: bool,
}

/// `rules[].headers[]`: `value` (exact) or `present`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuthzHeader {
    pub name: String,
    pub value: Option<String>,
    pub present: Option<bool>,
}
