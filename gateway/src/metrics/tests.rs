//! The registry against the catalogue: what `/metrics` renders for a live generation has
//! exactly the catalogue's names, types and label sets, and a cached series counts like a
//! fresh one.

use std::collections::{BTreeMap, BTreeSet};

use super::catalogue::{MetricKind, GATEWAY_METRICS};
use super::*;
use crate::live::Source;

const YAML: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, labels: {switchyard.dev/zone: zone-a}}
spec:
  gatewayClassName: switchyard
  listeners: [{name: web, port: 18080, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: x}
spec:
  endpoints: [{address: \"127.0.0.1:9\", zone: zone-a}]
";

fn live() -> std::sync::Arc<LiveConfig> {
    let file = switchyard_config::SourceFile::new("gw.yaml", YAML.to_string());
    let generation = switchyard_config::build(&[file]).expect("a valid set");
    LiveConfig::start(generation, None, Source::Files, 3).expect("compiles")
}

fn labels(route: &str, code: &str) -> SeriesLabels {
    SeriesLabels {
        gateway: "default/gw".into(),
        zone: "zone-a".into(),
        listener: "web".into(),
        route: route.into(),
        rule: "0".into(),
        backend: "default/x".into(),
        endpoint_zone: "zone-a".into(),
        code: code.into(),
        reason: "ok",
    }
}

/// Samples of the exposition: (name, label names) -> value.
fn samples(text: &str) -> BTreeMap<(String, BTreeSet<String>, String), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, rest) = head.split_once('{').unwrap_or((head, "}"));
        let body = rest.trim_end_matches('}');
        let names: BTreeSet<String> = body
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap().0.to_string())
            .collect();
        out.insert(
            (name.to_string(), names, body.to_string()),
            value.parse().unwrap(),
        );
    }
    out
}

#[test]
fn the_exposition_matches_the_catalogue() {
    let live = live();
    let m = GatewayMetrics::new().unwrap();
    let key = |code| SeriesKey {
        port: 18080,
        rule: 1,
        backend: 2,
        endpoint: 1,
        code,
        reason: 0,
    };
    let sample = RequestSample {
        seconds: 0.02,
        bytes_in: 5,
        bytes_out: 7,
        retries: 1,
        reused: 1,
        fresh: 1,
    };
    m.record(3, key(200), || labels("default/r", "200"), &sample);
    m.record(3, key(200), || panic!("cached: no labels built"), &sample);
    m.record(3, key(500), || labels("default/r", "500"), &sample);
    assert_eq!(m.cached_series(), 2);
    m.overflow("default/gw", "zone-a", "default/x", "max_requests");
    m.access_log_dropped("default/gw", "zone-a").inc();
    let text = String::from_utf8(m.render(&live)).unwrap();

    // Every TYPE line names a catalogue metric of the right kind, and every catalogue metric
    // is rendered.
    let mut typed = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        let def = catalogue::find(name).unwrap_or_else(|| panic!("{name} not in the catalogue"));
        let want = match def.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert_eq!(kind, want, "{name}");
        typed.insert(name.to_string());
    }
    let all: BTreeSet<String> = GATEWAY_METRICS.iter().map(|d| d.name.to_string()).collect();
    assert_eq!(typed, all, "{text}");

    // Label names are the catalogue's (histograms add `le` to their buckets).
    let s = samples(&text);
    for (name, names, _) in s.keys() {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|b| catalogue::find(b).is_some())
            .unwrap_or(name);
        let def = catalogue::find(base).unwrap();
        let mut want: BTreeSet<String> = def.labels.iter().map(|l| l.to_string()).collect();
        if name.ends_with("_bucket") {
            want.insert("le".into());
        }
        assert_eq!(names, &want, "{name}");
    }
    let value = |name: &str, needle: &str| -> f64 {
        s.iter()
            .filter(|((n, _, body), _)| n == name && body.contains(needle))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(value("switchyard_requests_total", "code=\"200\""), 2.0);
    assert_eq!(value("switchyard_request_duration_seconds_count", ""), 3.0);
    assert_eq!(value("switchyard_request_bytes_total", ""), 15.0);
    assert_eq!(value("switchyard_upstream_retries_total", ""), 3.0);
    assert_eq!(
        value("switchyard_upstream_connections_total", "reused=\"true\""),
        3.0
    );
    assert_eq!(value("switchyard_generation", ""), 3.0);
    assert_eq!(value("switchyard_endpoints", "state=\"available\""), 1.0);
    assert_eq!(value("switchyard_upstream_requests_in_flight", ""), 0.0);
}

#[test]
fn buckets_span_a_millisecond_to_ten_seconds() {
    assert_eq!(DURATION_BUCKETS.first(), Some(&0.001));
    assert_eq!(DURATION_BUCKETS.last(), Some(&10.0));
    assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}
