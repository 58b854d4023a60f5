//! `deploy/docker/Dockerfile`: multi-stage (a builder that builds the `switchyard` package and
//! a minimal runtime stage that only copies the binary and runs it as a non-root user), and the
//! image name agrees across the Dockerfile's build command, the Kubernetes manifests and the
//! compose file.

use crate::yaml::{self, at, seq_at, str_at};
use crate::{compose, image, read};

const FILE: &str = "docker/Dockerfile";

/// One instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instr {
    keyword: String,
    args: String,
}

/// Build stages: the FROM line's arguments and the instructions after it.
fn stages() -> Vec<(String, Vec<Instr>)> {
    let text = read(FILE);
    let mut stages: Vec<(String, Vec<Instr>)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + t;
        let (kw, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let kw = kw.to_ascii_uppercase();
        let args = args.trim().to_string();
        if kw == "FROM" {
            stages.push((args, Vec::new()));
        } else {
            let stage = stages
                .last_mut()
                .unwrap_or_else(|| panic!("{FILE}: {kw} before the first FROM"));
            stage.1.push(Instr { keyword: kw, args });
        }
    }
    stages
}

fn stage_name(from: &str) -> Option<&str> {
    let words: Vec<&str> = from.split_whitespace().collect();
    match words.as_slice() {
        [.., as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name),
        _ => None,
    }
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_the_binary_as_non_root_in_another() {
    let stages = stages();
    assert!(
        stages.len() >= 2,
        "{FILE}: multi-stage (two FROMs at least), has {}",
        stages.len()
    );
    let (builder_from, builder) = &stages[0];
    let builder_name = stage_name(builder_from)
        .unwrap_or_else(|| panic!("{FILE}: name the builder stage (FROM image AS builder)"));
    let runs: Vec<&str> = builder
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        runs.iter().any(|r| r.contains("cmake")),
        "{FILE}: the builder installs cmake (pingora builds zlib-ng)"
    );
    assert!(
        runs.iter().any(|r| r.contains("cargo build")
            && r.contains("--release")
            && r.contains("-p switchyard")),
        "{FILE}: the builder runs cargo build --release -p switchyard"
    );

    let (runtime_from, runtime) = stages.last().expect("a runtime stage");
    let base = runtime_from.split_whitespace().next().unwrap_or_default();
    assert!(
        base.contains("distroless") || base.contains("-slim"),
        "{FILE}: a minimal runtime base, not {base}"
    );
    assert!(
        !runtime.iter().any(|i| i.keyword == "RUN"),
        "{FILE}: the runtime stage runs nothing (no shell, no package manager)"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .unwrap_or_else(|| panic!("{FILE}: the runtime stage sets USER"));
    let uid = user.args.split(':').next().unwrap_or_default();
    assert!(
        uid != "root" && uid != "0",
        "{FILE}: USER {} is root",
        user.args
    );
    assert!(
        uid.chars().all(|c| c.is_ascii_digit()),
        "{FILE}: USER numeric, so that runAsNonRoot can verify it"
    );

    let entry = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "ENTRYPOINT")
        .unwrap_or_else(|| panic!("{FILE}: ENTRYPOINT"));
    let entry: Vec<String> = serde_json::from_str(&entry.args)
        .unwrap_or_else(|e| panic!("{FILE}: ENTRYPOINT in exec form (JSON): {e}"));
    let binary = entry.first().expect("ENTRYPOINT names the binary");
    let copies: Vec<&Instr> = runtime.iter().filter(|i| i.keyword == "COPY").collect();
    let from_builder = format!("--from={builder_name}");
    assert!(
        copies.iter().all(|c| c.args.contains(&from_builder)),
        "{FILE}: the runtime stage copies only from {builder_name}"
    );
    let bin_copy = copies
        .iter()
        .find(|c| c.args.split_whitespace().last() == Some(binary))
        .unwrap_or_else(|| panic!("{FILE}: no COPY to {binary}"));
    let src = bin_copy
        .args
        .split_whitespace()
        .rev()
        .nth(1)
        .unwrap_or_default();
    assert!(
        src.ends_with("/switchyard"),
        "{FILE}: {binary} must be the builder's switchyard binary, copies {src}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains(src) || r.contains(src.trim_end_matches("/switchyard"))),
        "{FILE}: the builder puts the binary at {src}"
    );

    let ignore = read("docker/Dockerfile.dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "Dockerfile.dockerignore: keep target/ out of the build context"
    );
}

#[test]
fn the_image_name_agrees_across_dockerfile_k8s_and_compose() {
    let want = image();
    assert!(
        read(FILE).contains(&format!("-t {want} ")),
        "{FILE}: the build command's tag must be {want}"
    );
    let mut seen = 0;
    let dir = crate::deploy_dir().join("k8s");
    for entry in std::fs::read_dir(&dir).expect("list deploy/k8s") {
        let file = entry
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !file.ends_with(".yaml") {
            continue;
        }
        for d in yaml::docs(&file, &read(&format!("k8s/{file}"))) {
            for c in seq_at(&d.value, "spec.template.spec.containers") {
                let img = str_at(c, "image", &d);
                if img.contains("switchyard") {
                    assert_eq!(img, want, "{d}");
                    seen += 1;
                }
            }
        }
    }
    assert!(
        seen >= 3,
        "the control and two gateway Deployments run {want}"
    );
    let doc = compose::compose();
    let mut compose_seen = 0;
    for (name, s) in compose::services(&doc) {
        let img = at(&s, "image")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default();
        if img.contains("switchyard") {
            assert_eq!(img, want, "compose service {name}");
            compose_seen += 1;
        }
    }
    assert!(
        compose_seen >= 3,
        "compose runs {want} for the control service and two gateways"
    );
}
