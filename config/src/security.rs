//! The compiled listener-security model: a port's request-hardening settings
//! ([`ClientPolicy`], from ClientTrafficPolicy) and its authorization rules ([`PortAuthz`],
//! from AuthorizationPolicies). Plain values; the gateway evaluates them (its `sanitize` and
//! `authz` modules). Matchers are prepared here so that evaluation allocates nothing.

use std::time::Duration;

use crate::model::ObjRef;

/// What to do with `%2F`/`%2f`/`%5C`/`%5c` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// 400 `invalid_path` (the default).
    #[default]
    Reject,
    /// Stay encoded (uppercase hex); never a separator.
    Keep,
    /// Become `/` (a `%5C` too), then the path is normalized.
    Decode,
}

/// What to do with a raw `\` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backslashes {
    /// 400 `invalid_path` (the default).
    #[default]
    Reject,
    /// Treated as `/`.
    Slash,
}

/// What to do with path parameters (`;...` in a segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Removed from every segment (the default): `/admin;x=1` is `/admin`.
    #[default]
    Strip,
    /// 400 `invalid_path`.
    Reject,
    /// Left in place, part of the segment.
    Keep,
}

/// Path canonicalization settings (`ClientTrafficPolicy.spec.path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub backslashes: Backslashes,
    pub path_parameters: PathParameters,
    /// Merge runs of `/` into one (default true).
    pub merge_slashes: bool,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            escaped_slashes: EscapedSlashes::Reject,
            backslashes: Backslashes::Reject,
            path_parameters: PathParameters::Strip,
            merge_slashes: true,
        }
    }
}

/// Request header limits (`spec.headers`); over a limit: 431 `header_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Header fields (default 100; pingora itself refuses more than 256).
    pub max_count: u32,
    /// Sum over fields of name + value + 4 (default 32768).
    pub max_bytes: u32,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self {
            max_count: 100,
            max_bytes: 32 * 1024,
        }
    }
}

/// Slow-client deadlines (`spec.timeouts`); past one: 408 `client_timeout` or a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From the first byte of a request header to its end (default 10s).
    pub request_header: Duration,
    /// From the end of the request header to the end of its body (default 30s).
    pub request_body: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            request_header: Duration::from_secs(10),
            request_body: Duration::from_secs(30),
        }
    }
}

/// The effective ClientTrafficPolicy of one port (defaults when none targets it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientPolicy {
    pub path: PathPolicy,
    pub headers: HeaderLimits,
    pub timeouts: ClientTimeouts,
    /// The ClientTrafficPolicy applied, if any.
    pub source: Option<ObjRef>,
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
}

impl AuthzAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "allow",
            AuthzAction::Deny => "deny",
        }
    }
}

/// Every AuthorizationPolicy that targets one port, in (namespace, name) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortAuthz {
    pub policies: Vec<AuthzPolicy>,
}

/// One AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzPolicy {
    pub id: ObjRef,
    /// What a request matching no rule gets.
    pub default_action: AuthzAction,
    /// Evaluate and log, never enforce.
    pub dry_run: bool,
    pub rules: Vec<AuthzRule>,
}

/// One rule: it matches when a `from` entry, a `to` entry and every header condition hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzRule {
    /// The rule's name, or `rules[i]`.
    pub name: String,
    pub action: AuthzAction,
    /// ORed; empty = any source.
    pub from: Vec<SourceMatch>,
    /// ORed; empty = anything.
    pub to: Vec<TargetMatch>,
    /// ANDed.
    pub headers: Vec<HeaderCondition>,
}

/// `from[]`: every non-empty list must match (ANDed); within a list, any entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceMatch {
    pub principals: Vec<String>,
    pub principal_prefixes: Vec<String>,
    pub zones: Vec<String>,
}

/// `to[]`: every non-empty list must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetMatch {
    pub routes: Vec<ObjRef>,
    pub backends: Vec<ObjRef>,
    pub paths: Vec<AuthzPath>,
    pub methods: Vec<http::Method>,
}

/// A path condition against the canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzPath {
    pub exact: bool,
    /// For prefixes: without a trailing `/` (except `/` itself).
    pub value: String,
    pub ignore_case: bool,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    pub name: http::HeaderName,
    /// `Some`: the exact value; `None`: present with any value.
    pub value: Option<String>,
}
