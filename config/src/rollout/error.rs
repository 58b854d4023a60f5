//! The rollout editor's errors: each names the route and, where it can, the file line.

use crate::ObjRef;

/// Why a rollout edit cannot be made. Lines are 1-based lines of the file ([`line`](Self::line)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("weight {0} is out of range (0..=100)")]
    WeightOutOfRange(u32),
    #[error("HTTPRoute {route} not found")]
    RouteNotFound { route: ObjRef },
    #[error("HTTPRoute {route} is defined twice in this file (also at line {other})")]
    DuplicateRoute {
        route: ObjRef,
        line: usize,
        other: usize,
    },
    #[error("YAML syntax error: {message}")]
    Syntax { line: usize, message: String },
    #[error("HTTPRoute {route}: no rule has a backendRef named {backend:?}")]
    BackendNotFound {
        route: ObjRef,
        backend: String,
        line: usize,
    },
    #[error(
        "HTTPRoute {route}: backendRef {backend:?} is in several rules ({}); choose one by name or index",
        list_rules(rules)
    )]
    AmbiguousRule {
        route: ObjRef,
        backend: String,
        line: usize,
        /// (index, line) of each rule.
        rules: Vec<(usize, usize)>,
    },
    #[error("HTTPRoute {route}: no rule {rule}")]
    RuleNotFound {
        route: ObjRef,
        rule: String,
        line: usize,
    },
    #[error("HTTPRoute {route} rule {rule}: no backendRef named {backend:?}")]
    BackendNotInRule {
        route: ObjRef,
        rule: usize,
        backend: String,
        line: usize,
    },
    #[error("HTTPRoute {route} rule {rule}: backendRef {backend:?} appears more than once")]
    DuplicateBackend {
        route: ObjRef,
        rule: usize,
        backend: String,
        line: usize,
    },
    #[error(
        "HTTPRoute {route} rule {rule}: {backend:?} is the rule's only backendRef; no other backend could take the remaining {rest}%"
    )]
    NoOtherBackends {
        route: ObjRef,
        rule: usize,
        backend: String,
        rest: u32,
        line: usize,
    },
    #[error("HTTPRoute {route}: backendRef {backend:?} has weight {value:?}, not a whole number")]
    InvalidWeight {
        route: ObjRef,
        backend: String,
        value: String,
        line: usize,
    },
    #[error("HTTPRoute {route}: {what} cannot be edited in place")]
    Unsupported {
        route: ObjRef,
        what: String,
        line: usize,
    },
}

fn list_rules(rules: &[(usize, usize)]) -> String {
    let items: Vec<String> = rules
        .iter()
        .map(|(i, line)| format!("rule {i} at line {line}"))
        .collect();
    items.join(", ")
}

impl RolloutError {
    /// The file line the error is about, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            RolloutError::WeightOutOfRange(_) | RolloutError::RouteNotFound { .. } => None,
            RolloutError::DuplicateRoute { line, .. }
            | RolloutError::Syntax { line, .. }
            | RolloutError::BackendNotFound { line, .. }
            | RolloutError::AmbiguousRule { line, .. }
            | RolloutError::RuleNotFound { line, .. }
            | RolloutError::BackendNotInRule { line, .. }
            | RolloutError::DuplicateBackend { line, .. }
            | RolloutError::NoOtherBackends { line, .. }
            | RolloutError::InvalidWeight { line, .. }
            | RolloutError::Unsupported { line, .. } => Some(*line),
        }
    }
}
