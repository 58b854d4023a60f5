//! Keeps the shipped examples in `deploy/examples` valid against this crate.

#[test]
fn deploy_examples_build() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let generation = switchyard_config::build_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let gateway = generation.gateway(None).unwrap_or_else(|e| panic!("{e}"));
    assert!(gateway.ports.iter().any(|p| p.routes.rule_count() > 0));
}
