//! Rollout edits: change the weights of one HTTPRoute rule's backendRefs in a route file's text,
//! touching nothing but the weight scalars (comments, blank lines, key order, quoting and line
//! endings stay byte for byte).
//!
//! [`set_weights`] finds the route's document among the file's `---` documents (by kind,
//! `metadata.name` and `metadata.namespace`, which defaults to `default`), picks the rule, works
//! out the new weights ([`WeightChange`]) and splices them in. A backendRef without `weight`
//! (Gateway API default 1) gets one inserted: `, weight: N` after the name in a flow mapping,
//! a `weight: N` line under the `name:` line in a block mapping. The caller validates the
//! edited set and writes it; this module does no I/O.

mod error;
mod tree;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::raw::split::split_documents;
use crate::ObjRef;
pub use error::RolloutError;
use tree::{parse_first, token_range, value_range, Map, MapStyle, Node, Scalar};

/// A backendRef's weight when the YAML leaves it out (Gateway API).
pub const DEFAULT_WEIGHT: u32 = 1;

/// Which rule of the route to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSelector {
    /// The only rule with a backendRef of the given name.
    Auto,
    /// The rule whose `name` is this.
    Name(String),
    /// The rule at this index of `spec.rules`.
    Index(usize),
}

impl RuleSelector {
    /// `None` → [`Auto`](Self::Auto); all digits → [`Index`](Self::Index); else a name.
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => RuleSelector::Auto,
            Some(s) => match s.parse::<usize>() {
                Ok(i) => RuleSelector::Index(i),
                Err(_) => RuleSelector::Name(s.to_string()),
            },
        }
    }
}

/// What happens to the named backendRef; the rule's other backendRefs share what is left of
/// 100 in proportion to their current weights (equally when those are all 0), in whole numbers,
/// the remainder going to the first of them that gets a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightChange {
    /// The backend gets this percentage (0..=100).
    Set(u32),
    /// The backend gets 100, every other backendRef 0.
    Promote,
    /// The backend gets 0.
    Abort,
}

impl WeightChange {
    fn target(self) -> u32 {
        match self {
            WeightChange::Set(p) => p,
            WeightChange::Promote => 100,
            WeightChange::Abort => 0,
        }
    }
}

/// The result of [`set_weights`]: the new text and one entry per weight that changed (none
/// when the weights already were the wanted ones; `text` is then the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub route: ObjRef,
    /// Index of the rule in `spec.rules`.
    pub rule: usize,
    pub rule_name: Option<String>,
    pub changes: Vec<WeightUpdate>,
}

/// One backendRef's weight change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightUpdate {
    /// 1-based line of the weight in the edited text.
    pub line: usize,
    pub backend: String,
    /// The weight before; `None` when the YAML had none (it was [`DEFAULT_WEIGHT`]).
    pub old: Option<u32>,
    pub new: u32,
}

impl fmt::Display for WeightUpdate {
    /// `backendRef cart-v2 weight 10 -> 30`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backendRef {} weight ", self.backend)?;
        match self.old {
            Some(w) => write!(f, "{w}")?,
            None => write!(f, "{DEFAULT_WEIGHT} (unset)")?,
        }
        write!(f, " -> {}", self.new)
    }
}

impl Edit {
    /// `shop/cart rule 0` or `shop/cart rule 1 (canary)`.
    pub fn rule_label(&self) -> String {
        match &self.rule_name {
            Some(name) => format!("{} rule {} ({name})", self.route, self.rule),
            None => format!("{} rule {}", self.route, self.rule),
        }
    }
}

/// Changes the weights of `route`'s rule that references `backend` in the YAML `text` of one
/// file. See the [module docs](self) for what is and is not touched.
pub fn set_weights(
    text: &str,
    route: &ObjRef,
    rule: &RuleSelector,
    backend: &str,
    change: WeightChange,
) -> Result<Edit, RolloutError> {
    if change.target() > 100 {
        return Err(RolloutError::WeightOutOfRange(change.target()));
    }
    let doc = find_route(text, route)?;
    let ctx = Ctx {
        text: doc.text,
        route,
        line_offset: doc.line_offset,
    };
    let (index, rule_map) = ctx.pick_rule(&doc.root, rule, backend)?;
    let refs = ctx.backend_refs(index, rule_map)?;
    let target = match refs.iter().filter(|r| r.name.value == backend).count() {
        0 => {
            return Err(RolloutError::BackendNotInRule {
                route: route.clone(),
                rule: index,
                backend: backend.to_string(),
                line: ctx.line(rule_map.line),
            })
        }
        1 => refs.iter().position(|r| r.name.value == backend),
        _ => {
            return Err(RolloutError::DuplicateBackend {
                route: route.clone(),
                rule: index,
                backend: backend.to_string(),
                line: ctx.line(rule_map.line),
            })
        }
    }
    .unwrap_or(0);
    let current: Vec<u32> = refs
        .iter()
        .map(|r| r.weight.map_or(DEFAULT_WEIGHT, |(w, _)| w))
        .collect();
    let wanted =
        share(&current, target, change.target()).ok_or_else(|| RolloutError::NoOtherBackends {
            route: route.clone(),
            rule: index,
            backend: backend.to_string(),
            rest: 100 - change.target(),
            line: ctx.line(refs[target].line),
        })?;
    let mut splices = Vec::new();
    for (r, &new) in refs.iter().zip(&wanted) {
        let old = r.weight.map(|(w, _)| w);
        if old.unwrap_or(DEFAULT_WEIGHT) == new {
            continue;
        }
        splices.push((ctx.splice_for(r, new)?, r.name.value.clone(), old, new));
    }
    let base = doc.byte_offset;
    let mut out = String::with_capacity(text.len() + 32 * splices.len());
    let mut changes = Vec::new();
    let mut copied = 0;
    splices.sort_by_key(|(s, ..)| s.at);
    for (s, backend, old, new) in splices {
        let at = base + s.at;
        out.push_str(&text[copied..at]);
        let line = 1 + out.matches('\n').count() + usize::from(s.new_line);
        out.push_str(&s.insert);
        copied = at + s.remove;
        changes.push(WeightUpdate {
            line,
            backend,
            old,
            new,
        });
    }
    out.push_str(&text[copied..]);
    Ok(Edit {
        text: out,
        route: route.clone(),
        rule: index,
        rule_name: rule_map.str("name").map(str::to_string),
        changes,
    })
}

/// The new weights: `target` gets `percent`, the others share the rest. `None` when there is
/// a rest and nobody to give it to.
fn share(current: &[u32], target: usize, percent: u32) -> Option<Vec<u32>> {
    let rest = 100 - percent.min(100);
    let others: Vec<usize> = (0..current.len()).filter(|&i| i != target).collect();
    if others.is_empty() && rest > 0 {
        return None;
    }
    let mut wanted = vec![0u32; current.len()];
    if let Some(w) = wanted.get_mut(target) {
        *w = percent;
    }
    if others.is_empty() {
        return Some(wanted);
    }
    let total: u64 = others.iter().map(|&i| u64::from(current[i])).sum();
    let mut given = 0u32;
    for &i in &others {
        // rest ≤ 100 and current[i] ≤ total, so a share fits a u32; all at 0 share equally.
        let part = (u64::from(rest) * u64::from(current[i]))
            .checked_div(total)
            .map_or(rest / others.len() as u32, |p| p as u32);
        wanted[i] = part;
        given += part;
    }
    let first = others
        .iter()
        .copied()
        .find(|&i| total == 0 || current[i] > 0)
        .unwrap_or(others[0]);
    wanted[first] += rest - given;
    Some(wanted)
}

/// The route's document inside the file.
struct RouteDoc<'a> {
    text: &'a str,
    byte_offset: usize,
    line_offset: usize,
    root: Node,
}

fn find_route<'a>(text: &'a str, route: &ObjRef) -> Result<RouteDoc<'a>, RolloutError> {
    let mut found: Option<RouteDoc<'a>> = None;
    for chunk in split_documents(text) {
        // Cheap filter: only documents that could be HTTPRoutes are parsed.
        if chunk.is_blank() || !chunk.text.contains("HTTPRoute") {
            continue;
        }
        let root = parse_first(chunk.text).map_err(|e| RolloutError::Syntax {
            line: e.line + chunk.line_offset,
            message: e.message,
        })?;
        let Some(root) = root else { continue };
        let Some(top) = root.as_map() else { continue };
        let meta = top.get("metadata").and_then(Node::as_map);
        let is_it = top.str("kind") == Some("HTTPRoute")
            && meta.and_then(|m| m.str("name")) == Some(route.name.as_str())
            && meta.and_then(|m| m.str("namespace")).unwrap_or("default") == route.namespace;
        if !is_it {
            continue;
        }
        if let Some(first) = &found {
            return Err(RolloutError::DuplicateRoute {
                route: route.clone(),
                line: root.line() + chunk.line_offset,
                other: first.root.line() + first.line_offset,
            });
        }
        // `chunk.text` is a slice of `text` (after an optional BOM).
        let byte_offset = chunk.text.as_ptr() as usize - text.as_ptr() as usize;
        found = Some(RouteDoc {
            text: chunk.text,
            byte_offset,
            line_offset: chunk.line_offset,
            root,
        });
    }
    found.ok_or_else(|| RolloutError::RouteNotFound {
        route: route.clone(),
    })
}

/// One backendRef of the chosen rule.
struct Ref<'a> {
    map: &'a Map,
    name_key: &'a Scalar,
    name: &'a Scalar,
    /// The current weight and its scalar.
    weight: Option<(u32, &'a Scalar)>,
    line: usize,
}

/// A change to the document's text: at byte `at`, remove `remove` bytes and insert `insert`.
struct Splice {
    at: usize,
    remove: usize,
    insert: String,
    /// The weight lands on a line of its own, after the one `at` is on.
    new_line: bool,
}

struct Ctx<'a> {
    text: &'a str,
    route: &'a ObjRef,
    line_offset: usize,
}

impl<'a> Ctx<'a> {
    fn line(&self, doc_line: usize) -> usize {
        doc_line + self.line_offset
    }

    fn unsupported(&self, what: impl Into<String>, line: usize) -> RolloutError {
        RolloutError::Unsupported {
            route: self.route.clone(),
            what: what.into(),
            line: self.line(line),
        }
    }

    fn pick_rule(
        &self,
        root: &'a Node,
        selector: &RuleSelector,
        backend: &str,
    ) -> Result<(usize, &'a Map), RolloutError> {
        let rules = root
            .as_map()
            .and_then(|m| m.get("spec"))
            .and_then(Node::as_map)
            .and_then(|spec| spec.get("rules"))
            .and_then(Node::as_seq)
            .unwrap_or_default();
        // Index → rule, keeping indexes right even if an item is not a mapping.
        let rules: Vec<(usize, &Map)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_map().map(|m| (i, m)))
            .collect();
        let route_line = self.line(root.line());
        let not_found = |rule: String| RolloutError::RuleNotFound {
            route: self.route.clone(),
            rule,
            line: route_line,
        };
        match selector {
            RuleSelector::Index(i) => rules
                .iter()
                .find(|(j, _)| j == i)
                .copied()
                .ok_or_else(|| not_found(i.to_string())),
            RuleSelector::Name(name) => rules
                .iter()
                .find(|(_, r)| r.str("name") == Some(name.as_str()))
                .copied()
                .ok_or_else(|| not_found(format!("named {name:?}"))),
            RuleSelector::Auto => {
                let with: Vec<(usize, &Map)> = rules
                    .iter()
                    .filter(|(_, r)| references(r, backend))
                    .copied()
                    .collect();
                match with.as_slice() {
                    [one] => Ok(*one),
                    [] => Err(RolloutError::BackendNotFound {
                        route: self.route.clone(),
                        backend: backend.to_string(),
                        line: route_line,
                    }),
                    [first, ..] => Err(RolloutError::AmbiguousRule {
                        route: self.route.clone(),
                        backend: backend.to_string(),
                        line: self.line(first.1.line),
                        rules: with.iter().map(|(i, r)| (*i, self.line(r.line))).collect(),
                    }),
                }
            }
        }
    }

    fn backend_refs(&self, index: usize, rule: &'a Map) -> Result<Vec<Ref<'a>>, RolloutError> {
        let items = rule
            .get("backendRefs")
            .and_then(Node::as_seq)
            .unwrap_or_default();
        let mut refs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let what = || format!("rule {index} backendRefs[{i}]");
            let map = item
                .as_map()
                .ok_or_else(|| self.unsupported(what(), item.line()))?;
            let Some((name_key, name)) = map.entry("name") else {
                return Err(self.unsupported(format!("{} without a name", what()), map.line));
            };
            let name = name
                .as_scalar()
                .ok_or_else(|| self.unsupported(format!("{}.name", what()), name.line()))?;
            let weight = match map.get("weight") {
                None => None,
                Some(Node::Scalar(w)) => match w.value.trim().parse::<u32>() {
                    Ok(v) => Some((v, w)),
                    Err(_) => {
                        return Err(RolloutError::InvalidWeight {
                            route: self.route.clone(),
                            backend: name.value.clone(),
                            value: w.value.clone(),
                            line: self.line(w.line),
                        })
                    }
                },
                Some(other) => {
                    return Err(self.unsupported(format!("{}.weight", what()), other.line()))
                }
            };
            refs.push(Ref {
                map,
                name_key,
                name,
                weight,
                line: name_key.line,
            });
        }
        Ok(refs)
    }

    /// The splice that gives `r` the weight `new`.
    fn splice_for(&self, r: &Ref<'_>, new: u32) -> Result<Splice, RolloutError> {
        let text = self.text;
        if let Some((_, w)) = r.weight {
            let (start, end) = value_range(text, w).ok_or_else(|| {
                self.unsupported(format!("weight of backendRef {:?}", r.name.value), w.line)
            })?;
            return Ok(Splice {
                at: start,
                remove: end - start,
                insert: new.to_string(),
                new_line: false,
            });
        }
        let (_, name_end) = token_range(text, r.name).ok_or_else(|| {
            self.unsupported(format!("name of backendRef {:?}", r.name.value), r.line)
        })?;
        if r.map.style == MapStyle::FlowPair {
            return Err(self.unsupported(
                format!(
                    "backendRef {:?} without braces in a flow sequence",
                    r.name.value
                ),
                r.line,
            ));
        }
        if r.map.style == MapStyle::Flow {
            return Ok(Splice {
                at: name_end,
                remove: 0,
                insert: format!(", weight: {new}"),
                new_line: false,
            });
        }
        // Block mapping: a line of its own after the name's line, at the name's indentation.
        let indent = " ".repeat(r.name_key.col);
        match text[name_end..].find('\n') {
            Some(nl) => {
                let at = name_end + nl + 1;
                let eol = if text[..at].ends_with("\r\n") {
                    "\r\n"
                } else {
                    "\n"
                };
                Ok(Splice {
                    at,
                    remove: 0,
                    insert: format!("{indent}weight: {new}{eol}"),
                    new_line: false,
                })
            }
            None => {
                let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
                Ok(Splice {
                    at: text.len(),
                    remove: 0,
                    insert: format!("{eol}{indent}weight: {new}"),
                    new_line: true,
                })
            }
        }
    }
}

/// Whether a rule has a backendRef named `backend`.
fn references(rule: &Map, backend: &str) -> bool {
    rule.get("backendRefs")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_map)
        .any(|r| r.str("name") == Some(backend))
}
