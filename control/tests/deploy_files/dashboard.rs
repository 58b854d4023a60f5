//! `deploy/grafana/switchyard.json`: valid JSON, a Grafana dashboard (schemaVersion >= 36) with
//! a Prometheus `datasource` variable and gateway/zone/route/backend variables; every query
//! (panel targets and variable queries) names only metrics of the gateway catalogue
//! (`GATEWAY_METRICS`, histograms by their `_bucket`/`_sum`/`_count` series) or of the control
//! service, uses only those metrics' labels in selectors and clauses, and only defined
//! variables; and the panels the issue asks for exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchyard_gateway::metrics::catalogue::{MetricKind, GATEWAY_METRICS};

use crate::control_metrics::CONTROL_METRICS;
use crate::promql::{self, Expr};

const FILE: &str = "grafana/switchyard.json";
const DATASOURCE: &str = "${datasource}";
const VARIABLES: &[&str] = &["gateway", "zone", "route", "backend"];

/// Every series name a query may use, with its labels.
fn series() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut add = |name: &str, histogram: bool, labels: BTreeSet<String>| {
        if histogram {
            let mut bucket = labels.clone();
            bucket.insert("le".to_string());
            out.insert(format!("{name}_bucket"), bucket);
            out.insert(format!("{name}_sum"), labels.clone());
            out.insert(format!("{name}_count"), labels);
        } else {
            out.insert(name.to_string(), labels);
        }
    };
    for m in GATEWAY_METRICS {
        add(
            m.name,
            m.kind == MetricKind::Histogram,
            m.labels.iter().map(|l| l.to_string()).collect(),
        );
    }
    for (name, kind, labels) in CONTROL_METRICS {
        add(
            name,
            *kind == "histogram",
            labels.iter().map(|l| l.to_string()).collect(),
        );
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&crate::read(FILE)).unwrap_or_else(|e| panic!("{FILE}: {e}"))
}

/// Panels, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{FILE}: panels"))
    {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Checks one query's metrics, labels and variables; returns what it uses.
fn check_expr(expr: &str, variables: &BTreeSet<String>, ctx: &str) -> Expr {
    let series = series();
    let e = promql::scan(expr).unwrap_or_else(|err| panic!("{ctx}: {err}: {expr}"));
    assert!(!e.selectors.is_empty(), "{ctx}: names no metric: {expr}");
    let mut common: Option<BTreeSet<String>> = None;
    for sel in &e.selectors {
        let labels = series.get(&sel.metric).unwrap_or_else(|| panic!("{ctx}: {} is not a metric of the gateway catalogue or the control service (histograms: _bucket, _sum, _count): {expr}", sel.metric));
        for (label, _, value) in &sel.matchers {
            assert!(
                labels.contains(label),
                "{ctx}: {} has no label {label} (labels: {labels:?})",
                sel.metric
            );
            for var in value.split('$').skip(1) {
                let name: String = var
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || variables.contains(&name),
                    "{ctx}: ${name} is not a dashboard variable"
                );
            }
        }
        common = Some(match common {
            None => labels.clone(),
            Some(c) => c.intersection(labels).cloned().collect(),
        });
    }
    let common = common.unwrap_or_default();
    for (clause, labels) in &e.groupings {
        for l in labels {
            assert!(common.contains(l), "{ctx}: `{clause} ({l})`: {l} is not a label of every metric in the query ({common:?})");
        }
    }
    e
}

#[test]
fn the_dashboard_queries_name_only_catalogue_metrics_and_their_labels() {
    let d = dashboard();
    let schema = d["schemaVersion"]
        .as_u64()
        .unwrap_or_else(|| panic!("{FILE}: schemaVersion"));
    assert!(schema >= 36, "{FILE}: schemaVersion {schema} < 36");
    assert!(
        d["title"].is_string() && d["uid"].is_string(),
        "{FILE}: title and uid"
    );

    let vars = d["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{FILE}: templating.list"));
    let names: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().expect("a variable name").to_string())
        .collect();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap_or_else(|| panic!("{FILE}: a `datasource` variable"));
    assert_eq!(ds["type"], "datasource", "{FILE}: datasource variable type");
    assert_eq!(
        ds["query"], "prometheus",
        "{FILE}: datasource variable query"
    );
    for name in VARIABLES {
        let v = vars
            .iter()
            .find(|v| v["name"] == *name)
            .unwrap_or_else(|| panic!("{FILE}: variable {name}"));
        let ctx = format!("{FILE} variable {name}");
        assert_eq!(v["type"], "query", "{ctx}");
        assert_eq!(v["datasource"]["uid"], DATASOURCE, "{ctx}");
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("{ctx}: query"));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{ctx}: label_values(selector, label): {q}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("{ctx}: {q}"));
        let e = check_expr(selector, &names, &ctx);
        let (metric, label) = (&e.selectors[0].metric, label.trim());
        assert!(
            series()[metric].contains(label),
            "{ctx}: {metric} has no label {label}"
        );
    }

    let mut ids = BTreeSet::new();
    let mut checked = 0;
    for p in panels(&d) {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{FILE}: a panel without id"));
        assert!(ids.insert(id), "{FILE}: panel id {id} twice");
        let title = p["title"].as_str().unwrap_or_default();
        let ctx = format!("{FILE} panel {id} {title:?}");
        let g = &p["gridPos"];
        let (x, w) = (
            g["x"].as_u64().expect("gridPos.x"),
            g["w"].as_u64().expect("gridPos.w"),
        );
        assert!(
            x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some(),
            "{ctx}: gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], DATASOURCE, "{ctx}: datasource");
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("{ctx}: targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(
                    t["refId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{ctx}: refId"))
                ),
                "{ctx}: refId twice"
            );
            assert_eq!(
                t["datasource"]["uid"], DATASOURCE,
                "{ctx}: target datasource"
            );
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{ctx}: expr"));
            check_expr(expr, &names, &ctx);
            checked += 1;
        }
    }
    assert!(checked >= 10, "{FILE}: only {checked} queries");
}

/// A panel's queries, scanned.
fn queries(p: &Value) -> Vec<(String, Expr)> {
    p["targets"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["expr"].as_str())
                .map(|e| (e.to_string(), promql::scan(e).expect("scanned")))
                .collect()
        })
        .unwrap_or_default()
}

fn uses(e: &Expr, metric: &str) -> bool {
    e.selectors.iter().any(|s| s.metric == metric)
}

fn by(e: &Expr, labels: &[&str]) -> bool {
    e.groupings
        .iter()
        .any(|(c, l)| c == "by" && labels.iter().all(|x| l.iter().any(|y| y == x)))
}

fn matcher(e: &Expr, label: &str) -> Option<String> {
    e.selectors
        .iter()
        .flat_map(|s| &s.matchers)
        .find(|m| m.0 == label)
        .map(|m| format!("{}{}", m.1, m.2))
}

#[test]
fn the_dashboard_has_the_panels_the_issue_asks_for() {
    let d = dashboard();
    let all: Vec<Vec<(String, Expr)>> = panels(&d).into_iter().map(queries).collect();
    let any_query = |f: &dyn Fn(&str, &Expr) -> bool| all.iter().flatten().any(|(s, e)| f(s, e));
    const REQ: &str = "switchyard_requests_total";
    const DUR: &str = "switchyard_request_duration_seconds_bucket";
    let mut missing = Vec::new();
    let mut need = |what: &str, ok: bool| {
        if !ok {
            missing.push(what.to_string());
        }
    };
    need(
        "request rate per route",
        any_query(&|s, e| {
            uses(e, REQ)
                && e.functions.contains(&"rate".into())
                && by(e, &["route"])
                && !s.contains('/')
                && matcher(e, "code").is_none()
        }),
    );
    need(
        "5xx error rate",
        any_query(&|s, e| {
            uses(e, REQ) && matcher(e, "code").as_deref() == Some("=~5..") && s.contains(" / ")
        }),
    );
    need(
        "errors by reason flag",
        any_query(&|_, e| uses(e, REQ) && by(e, &["reason"])),
    );
    for dim in ["route", "backend"] {
        for q in ["0.5", "0.99"] {
            need(
                &format!("p{} per {dim}", &q[2..]),
                any_query(&|s, e| {
                    s.starts_with(&format!("histogram_quantile({q},"))
                        && uses(e, DUR)
                        && by(e, &[dim, "le"])
                }),
            );
        }
    }
    need(
        "canary split (share per backend of a route)",
        any_query(&|s, e| {
            uses(e, REQ)
                && by(e, &["route", "backend"])
                && s.contains(" / ")
                && e.groupings
                    .iter()
                    .any(|(c, l)| c == "on" && l == &["route"])
        }),
    );
    need(
        "outlier ejections",
        any_query(&|_, e| uses(e, "switchyard_outlier_ejections_total") && by(e, &["backend"])),
    );
    need(
        "endpoint states",
        any_query(&|_, e| uses(e, "switchyard_endpoints") && by(e, &["backend", "state"])),
    );
    need(
        "generation per gateway with the control's generation",
        all.iter().any(|p| {
            p.iter()
                .any(|(_, e)| uses(e, "switchyard_generation") && by(e, &["gateway"]))
                && p.iter()
                    .any(|(_, e)| uses(e, "switchyard_control_generation"))
        }),
    );
    assert!(missing.is_empty(), "{FILE} lacks: {missing:?}");
}
