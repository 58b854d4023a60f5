//! `deploy/k8s`: every manifest parses and has the fields of its kind (Deployments' selectors
//! match their pods, Services and budgets select one Deployment and target its named ports,
//! references to ConfigMaps, Secrets, claims, volumes and env variables resolve), the
//! kustomization lists every file, and the helpers `k8s_agree` uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_yaml::Value;

use crate::cli::{self, Args};
use crate::routes::{self, RouteSet};
use crate::yaml::{self, at, labels_at, selects, seq_at, str_at, u64_at, Doc};
use crate::{image, read};

pub const NAMESPACE: &str = "switchyard";
pub const ROUTES_CONFIGMAP: &str = "switchyard-routes";
/// The kinds the manifests use, with their apiVersion.
const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
    ("Secret", "v1"),
    ("ConfigMap", "v1"),
    ("PersistentVolumeClaim", "v1"),
    ("Service", "v1"),
    ("Deployment", "apps/v1"),
    ("PodDisruptionBudget", "policy/v1"),
];

/// The manifest files (kustomization.yaml aside) and their documents.
pub fn manifests() -> (Vec<String>, Vec<Doc>) {
    let dir = crate::deploy_dir().join("k8s");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    let docs = files
        .iter()
        .flat_map(|f| yaml::docs(&format!("k8s/{f}"), &read(&format!("k8s/{f}"))))
        .collect();
    (files, docs)
}

pub fn kind(d: &Doc) -> &str {
    str_at(&d.value, "kind", d)
}

pub fn name(d: &Doc) -> &str {
    str_at(&d.value, "metadata.name", d)
}

pub fn of_kind<'a>(docs: &'a [Doc], k: &str) -> impl Iterator<Item = &'a Doc> + 'a {
    let k = k.to_string();
    docs.iter().filter(move |d| kind(d) == k)
}

pub fn find<'a>(docs: &'a [Doc], k: &str, n: &str, ctx: &dyn std::fmt::Display) -> &'a Doc {
    of_kind(docs, k)
        .find(|d| name(d) == n)
        .unwrap_or_else(|| panic!("{ctx}: refers to {k} {n:?}, which no manifest defines"))
}

pub fn containers(d: &Doc) -> &[Value] {
    seq_at(&d.value, "spec.template.spec.containers")
}

/// A container's named ports.
pub fn ports(c: &Value, ctx: &dyn std::fmt::Display) -> BTreeMap<String, u16> {
    seq_at(c, "ports")
        .iter()
        .map(|p| {
            let port = u64_at(p, "containerPort", ctx);
            (
                str_at(p, "name", ctx).to_string(),
                u16::try_from(port).expect("a port"),
            )
        })
        .collect()
}

/// The Deployment whose pod template `selector` selects; exactly one must.
pub fn selected<'a>(docs: &'a [Doc], selector: &BTreeMap<String, String>, ctx: &Doc) -> &'a Doc {
    let found: Vec<&Doc> = of_kind(docs, "Deployment")
        .filter(|d| {
            selects(
                selector,
                &labels_at(&d.value, "spec.template.metadata.labels", *d),
            )
        })
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "{ctx}: selector {selector:?} must select exactly one Deployment, selects {}",
            found.len()
        ),
    }
}

/// The ConfigMap's route files, built.
pub fn route_set(docs: &[Doc]) -> RouteSet {
    let cm = find(docs, "ConfigMap", ROUTES_CONFIGMAP, &"routes");
    let files: BTreeMap<String, String> = labels_at(&cm.value, "data", cm);
    assert!(!files.is_empty(), "{cm}: no route files in data");
    for f in files.keys() {
        assert!(
            f.ends_with(".yaml"),
            "{cm}: data key {f:?} is not a .yaml file, the loader would skip it"
        );
    }
    routes::build_files(&files, &format!("{cm} data"))
}

/// The switchyard containers: (Deployment, container, checked args).
pub fn switchyard_containers(docs: &[Doc]) -> Vec<(&Doc, &Value, Args)> {
    let mut out = Vec::new();
    for d in of_kind(docs, "Deployment") {
        for c in containers(d) {
            if str_at(c, "image", d) != image() {
                continue;
            }
            assert!(
                at(c, "command").is_none(),
                "{d}: the image's ENTRYPOINT is the binary; use args, not command"
            );
            let argv = yaml::strings(seq_at(c, "args"), d);
            out.push((d, c, cli::check(&argv, &d.to_string())));
        }
    }
    out
}

#[test]
fn every_manifest_parses_and_has_the_fields_of_its_kind() {
    let (_, docs) = manifests();
    let mut seen = BTreeSet::new();
    for d in &docs {
        let k = kind(d);
        let api = str_at(&d.value, "apiVersion", d);
        let want = KINDS
            .iter()
            .find(|(kk, _)| *kk == k)
            .unwrap_or_else(|| panic!("{d}: kind {k} is not one the tests know"));
        assert_eq!(api, want.1, "{d}: apiVersion");
        let n = name(d);
        assert!(
            seen.insert((k.to_string(), n.to_string())),
            "{d}: {k} {n} is defined twice"
        );
        if k == "Namespace" {
            assert_eq!(n, NAMESPACE, "{d}");
        } else {
            assert_eq!(str_at(&d.value, "metadata.namespace", d), NAMESPACE, "{d}");
        }
        match k {
            "Deployment" => deployment_fields(&docs, d),
            "Service" => service_fields(&docs, d),
            "PodDisruptionBudget" => {
                let sel = labels_at(&d.value, "spec.selector.matchLabels", d);
                selected(&docs, &sel, d);
                assert!(
                    at(&d.value, "spec.minAvailable").is_some()
                        || at(&d.value, "spec.maxUnavailable").is_some(),
                    "{d}"
                );
            }
            "PersistentVolumeClaim" => {
                assert!(
                    !seq_at(&d.value, "spec.accessModes").is_empty(),
                    "{d}: spec.accessModes"
                );
                str_at(&d.value, "spec.resources.requests.storage", d);
            }
            "Secret" => {
                let data = labels_at(&d.value, "stringData", d);
                assert!(!data.is_empty(), "{d}: stringData");
            }
            "ConfigMap" => assert!(!labels_at(&d.value, "data", d).is_empty(), "{d}: data"),
            _ => {}
        }
    }
    assert!(
        seen.contains(&("Namespace".into(), NAMESPACE.into())),
        "no Namespace {NAMESPACE}"
    );
}

fn deployment_fields(docs: &[Doc], d: &Doc) {
    let sel = labels_at(&d.value, "spec.selector.matchLabels", d);
    let labels = labels_at(&d.value, "spec.template.metadata.labels", d);
    assert!(
        selects(&sel, &labels),
        "{d}: spec.selector.matchLabels {sel:?} must match the template labels {labels:?}"
    );
    assert!(!containers(d).is_empty(), "{d}: no containers");
    let volumes: BTreeSet<&str> = seq_at(&d.value, "spec.template.spec.volumes")
        .iter()
        .map(|v| str_at(v, "name", d))
        .collect();
    for v in seq_at(&d.value, "spec.template.spec.volumes") {
        if let Some(cm) = at(v, "configMap.name").and_then(Value::as_str) {
            find(docs, "ConfigMap", cm, d);
        }
        if let Some(pvc) = at(v, "persistentVolumeClaim.claimName").and_then(Value::as_str) {
            find(docs, "PersistentVolumeClaim", pvc, d);
        }
    }
    for c in containers(d) {
        let cname = str_at(c, "name", d);
        let ctx = format!("{d} container {cname}");
        let img = str_at(c, "image", &ctx);
        let tag = img.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{ctx}: image {img:?} needs a fixed tag"
        );
        let p = ports(c, &ctx);
        assert!(!p.is_empty(), "{ctx}: no ports");
        assert_eq!(
            p.len(),
            seq_at(c, "ports").len(),
            "{ctx}: port names must be unique"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            if let Some(port) = at(c, &format!("{probe}.httpGet.port")) {
                let port = port
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: {probe} should name its port"));
                assert!(
                    p.contains_key(port),
                    "{ctx}: {probe} port {port:?} is not a container port"
                );
            }
        }
        for m in seq_at(c, "volumeMounts") {
            let v = str_at(m, "name", &ctx);
            assert!(
                volumes.contains(v),
                "{ctx}: volumeMount {v:?} has no volume"
            );
        }
        let mut env = BTreeSet::new();
        for e in seq_at(c, "env") {
            env.insert(str_at(e, "name", &ctx).to_string());
            if let Some(r) = at(e, "valueFrom.secretKeyRef") {
                let secret = find(docs, "Secret", str_at(r, "name", &ctx), &ctx);
                let key = str_at(r, "key", &ctx);
                assert!(
                    labels_at(&secret.value, "stringData", secret).contains_key(key),
                    "{ctx}: Secret has no key {key:?}"
                );
            }
        }
        for a in yaml::strings(seq_at(c, "args"), &ctx) {
            let mut rest = a.as_str();
            while let Some(i) = rest.find("$(") {
                let var = &rest[i + 2..rest[i..].find(')').map(|j| i + j).unwrap_or(rest.len())];
                assert!(
                    env.contains(var),
                    "{ctx}: argument {a:?} uses $({var}), which env does not define"
                );
                rest = &rest[i + 2..];
            }
        }
        str_at(c, "resources.requests.cpu", &ctx);
        str_at(c, "resources.requests.memory", &ctx);
    }
}

fn service_fields(docs: &[Doc], d: &Doc) {
    let sel = labels_at(&d.value, "spec.selector", d);
    let target = selected(docs, &sel, d);
    let mut container_ports = BTreeMap::new();
    for c in containers(target) {
        container_ports.extend(ports(c, target));
    }
    if let Some(ip) = at(&d.value, "spec.clusterIP").and_then(Value::as_str) {
        ip.parse::<IpAddr>()
            .unwrap_or_else(|e| panic!("{d}: clusterIP {ip:?}: {e}"));
    }
    let sp = seq_at(&d.value, "spec.ports");
    assert!(!sp.is_empty(), "{d}: no ports");
    for p in sp {
        str_at(p, "name", d);
        u64_at(p, "port", d);
        match at(p, "targetPort") {
            Some(Value::String(n)) => assert!(
                container_ports.contains_key(n),
                "{d}: targetPort {n:?} is not a port of {target}"
            ),
            Some(Value::Number(n)) => assert!(
                container_ports
                    .values()
                    .any(|&v| Some(v as u64) == n.as_u64()),
                "{d}: targetPort {n} is not a port of {target}"
            ),
            other => panic!("{d}: targetPort {other:?}"),
        }
    }
}

/// A Service's port numbers by target container port name.
pub fn service_targets(svc: &Doc) -> BTreeMap<String, u16> {
    seq_at(&svc.value, "spec.ports")
        .iter()
        .map(|p| {
            (
                str_at(p, "targetPort", svc).to_string(),
                u64_at(p, "port", svc) as u16,
            )
        })
        .collect()
}

pub fn service_for<'a>(docs: &'a [Doc], deployment: &Doc) -> &'a Doc {
    let labels = labels_at(
        &deployment.value,
        "spec.template.metadata.labels",
        deployment,
    );
    let found: Vec<&Doc> = of_kind(docs, "Service")
        .filter(|s| selects(&labels_at(&s.value, "spec.selector", *s), &labels))
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "{deployment}: needs exactly one Service, has {}",
            found.len()
        ),
    }
}

pub fn env_from_secret<'a>(c: &'a Value, var: &str, ctx: &Doc) -> (&'a str, &'a str) {
    let e = seq_at(c, "env")
        .iter()
        .find(|e| at(e, "name").and_then(Value::as_str) == Some(var))
        .unwrap_or_else(|| panic!("{ctx}: env {var} is not set"));
    (
        str_at(e, "valueFrom.secretKeyRef.name", ctx),
        str_at(e, "valueFrom.secretKeyRef.key", ctx),
    )
}

pub fn mount_path_of_volume<'a>(
    d: &'a Doc,
    c: &'a Value,
    pred: impl Fn(&Value) -> bool,
) -> Vec<&'a str> {
    let names: BTreeSet<&str> = seq_at(&d.value, "spec.template.spec.volumes")
        .iter()
        .filter(|v| pred(v))
        .map(|v| str_at(v, "name", d))
        .collect();
    seq_at(c, "volumeMounts")
        .iter()
        .filter(|m| names.contains(str_at(m, "name", d)))
        .map(|m| str_at(m, "mountPath", d))
        .collect()
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let (files, _) = manifests();
    let k = yaml::docs("k8s/kustomization.yaml", &read("k8s/kustomization.yaml"));
    let [k] = k.as_slice() else {
        panic!("kustomization.yaml: one document")
    };
    assert_eq!(str_at(&k.value, "kind", k), "Kustomization");
    let mut listed = yaml::strings(seq_at(&k.value, "resources"), k);
    assert_eq!(
        listed.first().map(String::as_str),
        Some("namespace.yaml"),
        "the namespace first"
    );
    listed.sort();
    assert_eq!(listed, files);
}
