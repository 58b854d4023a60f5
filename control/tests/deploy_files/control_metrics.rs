//! The control service's metrics (`control/src/service/metrics.rs`, which is part of the
//! binary and so not importable): names, types and labels, kept in step with that source file
//! by a test that compares every `switchyard_control_*` literal in it with this table.

/// (name, type, labels).
pub const CONTROL_METRICS: &[(&str, &str, &[&str])] = &[
    ("switchyard_control_generation", "gauge", &[]),
    ("switchyard_control_generations_total", "counter", &[]),
    ("switchyard_control_rejections_total", "counter", &[]),
    ("switchyard_control_nacks_total", "counter", &["zone"]),
    ("switchyard_control_commits_abandoned_total", "counter", &[]),
    ("switchyard_control_build_seconds", "histogram", &[]),
    (
        "switchyard_control_propagation_seconds",
        "histogram",
        &["zone"],
    ),
    ("switchyard_control_flip_skew_seconds", "gauge", &[]),
];

#[test]
fn the_table_matches_the_control_services_source() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/service/metrics.rs");
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut in_source: Vec<&str> = src
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("switchyard_control_"))
        .collect();
    in_source.sort();
    let mut table: Vec<&str> = CONTROL_METRICS.iter().map(|m| m.0).collect();
    table.sort();
    assert_eq!(
        in_source, table,
        "{path} and this table name different metrics"
    );
    for (name, _, labels) in CONTROL_METRICS {
        // A labelled metric's constructor is followed by its label list, `&["zone"]`.
        let after = &src[src.find(&format!("\"{name}\"")).expect("found above")..];
        let next_metric = after[1..]
            .find("\"switchyard_control_")
            .map(|i| i + 1)
            .unwrap_or(after.len());
        let has_zone = after[..next_metric].contains("&[\"zone\"]");
        assert_eq!(
            has_zone,
            labels.contains(&"zone"),
            "{name}: label set in {path}"
        );
    }
}
