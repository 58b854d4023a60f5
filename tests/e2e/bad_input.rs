//! Bad route files: each kind of mistake is reported with file:line:column and the field, by
//! `switchyard validate` and by a running gateway, which keeps serving its last good set.

use std::process::Command;

use switchyard_testkit::{get, ConfigDir, EchoBackend};

use crate::common::{backend_yaml, bin, gateway_yaml, Harness};

const GOOD_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: good}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n    - backendRefs: [{group: switchyard.dev, kind: Backend, name: app}]\n";

/// Each case: a file name, its contents, and what the error must say (line prefix and field).
fn cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let route = |name: &str, rule: &str| {
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n{rule}")
    };
    vec![
        ("malformed.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: [oops\n".into(), "malformed.yaml:5:", "line 4 column 9"),
        ("unknown-field.yaml", route("unknown-field", "    - backendRefs: [{group: switchyard.dev, kind: Backend, name: app}]\n      colour: blue\n"), "unknown-field.yaml:8:", "colour"),
        ("dangling.yaml", route("dangling", "    - backendRefs:\n        - {group: switchyard.dev, kind: Backend, name: nope}\n"), "dangling.yaml:8:", "backendRefs[0]"),
        ("regex.yaml", route("regex", "    - matches:\n        - path: {type: RegularExpression, value: \"/a(b\"}\n      backendRefs: [{group: switchyard.dev, kind: Backend, name: app}]\n"), "regex.yaml:8:", "matches[0].path"),
        ("duration.yaml", route("duration", "    - timeouts: {request: 10 seconds}\n      backendRefs: [{group: switchyard.dev, kind: Backend, name: app}]\n"), "duration.yaml:7:", "timeouts.request"),
    ]
}

#[test]
fn validate_reports_every_error_with_position_and_field() {
    let dir = ConfigDir::new();
    dir.write("gateway.yaml", &gateway_yaml(18999));
    dir.write(
        "backends.yaml",
        &backend_yaml("app", &["127.0.0.1:9".parse().unwrap()]),
    );
    let ok = Command::new(bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (name, yaml, _, _) in cases() {
        dir.write(name, &yaml);
    }
    let out = Command::new(bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, _, position, field) in cases() {
        let line = stderr
            .lines()
            .find(|l| l.contains(position))
            .unwrap_or_else(|| panic!("no error at {position} for {name}:\n{stderr}"));
        assert!(
            line.contains(field),
            "{name}: field {field:?} missing in {line:?}"
        );
        // file:line:column: the column is a number too.
        let after = &line[line.find(position).unwrap() + position.len()..];
        assert!(
            after.split(':').next().unwrap().parse::<u32>().is_ok(),
            "no column in {line:?}"
        );
    }
}

#[tokio::test]
async fn gateway_keeps_serving_through_each_bad_edit() {
    let app = EchoBackend::start("app").await;
    let h = Harness::start(&[
        ("backends.yaml", backend_yaml("app", &[app.addr()])),
        ("good.yaml", GOOD_ROUTE.to_string()),
    ])
    .await;
    assert_eq!(get(h.http, "x.test", "/", &[]).await.status, 200);
    for (name, yaml, position, field) in cases() {
        h.dir.write(name, &yaml);
        let config = h.wait_rejection(position).await;
        let error = config["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains(position) && error.contains(field),
            "{name}: {error}"
        );
        assert_eq!(config["generation"], 1, "no bad set was applied");
        assert_eq!(
            get(h.http, "x.test", "/", &[]).await.status,
            200,
            "still serving after {name}"
        );
        h.dir.remove(name);
    }
    assert!(h.gw.logs().contains("keeping the last good generation"));
}
