//! `switchyard rollout set-weight | promote | abort`: edits the weights of an HTTPRoute rule's
//! backendRefs in the route files themselves (comments, layout and quoting kept), re-validates
//! the whole edited set in memory, and only then replaces the file atomically. A control
//! service or standalone gateway watching the directory picks the change up on its own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use switchyard_config::rollout::{self, RolloutError, RuleSelector, WeightChange};
use switchyard_config::{ObjRef, SourceFile};

#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Give a backendRef PERCENT; the rule's other backendRefs share the rest in proportion to
    /// their current weights.
    SetWeight {
        #[command(flatten)]
        target: Target,
        /// The backend's new weight, 0 to 100.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
        weight: u32,
    },
    /// Give a backendRef 100 and every other backendRef of the rule 0 (also the blue-green switch).
    Promote {
        #[command(flatten)]
        target: Target,
    },
    /// Give a backendRef 0; the rule's other backendRefs share 100.
    Abort {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
struct Target {
    /// Directory of route files (*.yaml, *.yml, recursively).
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR")]
    config_dir: PathBuf,
    /// The HTTPRoute, "namespace/name" or "name" (namespace "default").
    #[arg(long)]
    route: String,
    /// The rule, by name or index; needed only when several rules reference the backend.
    #[arg(long)]
    rule: Option<String>,
    /// The backendRef's name.
    #[arg(long)]
    backend: String,
}

pub fn run(args: RolloutArgs) -> Result<()> {
    let (target, change) = match args.action {
        Action::SetWeight { target, weight } => (target, WeightChange::Set(weight)),
        Action::Promote { target } => (target, WeightChange::Promote),
        Action::Abort { target } => (target, WeightChange::Abort),
    };
    let route = parse_route(&target.route)?;
    let rule = RuleSelector::from_arg(target.rule.as_deref());
    let dir = &target.config_dir;
    let mut files = switchyard_config::read_dir(dir)?;

    // Find the one file that holds the route and edit it in memory.
    let mut found = Vec::new();
    let mut syntax: Option<String> = None;
    for (i, file) in files.iter().enumerate() {
        let shown = relative(dir, &file.path);
        match rollout::set_weights(&file.contents, &route, &rule, &target.backend, change) {
            Ok(edit) => found.push((i, edit)),
            Err(RolloutError::RouteNotFound { .. }) => {}
            // A broken document elsewhere fails validation anyway; report it if nothing is found.
            Err(e @ RolloutError::Syntax { .. }) => {
                syntax.get_or_insert_with(|| located(&shown, &e));
            }
            Err(e @ RolloutError::AmbiguousRule { .. }) => {
                bail!("{} (--rule NAME_OR_INDEX)", located(&shown, &e))
            }
            Err(e) => bail!("{}", located(&shown, &e)),
        }
    }
    let (index, edit) = match found.len() {
        1 => found.remove(0),
        0 => match syntax {
            Some(s) => bail!("HTTPRoute {route} not found in {} (and {s})", dir.display()),
            None => bail!(
                "HTTPRoute {route} not found in {} ({} file(s) searched)",
                dir.display(),
                files.len()
            ),
        },
        _ => {
            let paths: Vec<String> = found
                .iter()
                .map(|(i, _)| relative(dir, &files[*i].path))
                .collect();
            bail!(
                "HTTPRoute {route} is defined in several files: {}",
                paths.join(", ")
            )
        }
    };
    let path = files[index].path.clone();
    let shown = relative(dir, &path);
    if edit.changes.is_empty() {
        println!(
            "{shown}: {}: weights already as requested, nothing to change",
            edit.rule_label()
        );
        return Ok(());
    }

    // Re-validate the whole set as it would be after the write.
    let original = std::mem::replace(&mut files[index], SourceFile::new(&path, edit.text.clone()));
    if let Err(diagnostics) = switchyard_config::build(&files) {
        for d in &diagnostics.0 {
            eprintln!("{d}");
        }
        bail!(
            "not writing {shown}: the edited set would be invalid ({} error(s))",
            diagnostics.0.len()
        );
    }
    write_atomic(&path, &original.contents, &edit.text)?;
    for change in &edit.changes {
        println!("{shown}:{}: {} {change}", change.line, edit.rule_label());
    }
    Ok(())
}

/// `ns/name` or `name` (namespace `default`).
fn parse_route(s: &str) -> Result<ObjRef> {
    let (ns, name) = s.split_once('/').unwrap_or(("default", s));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        bail!("--route {s:?}: expected NAME or NAMESPACE/NAME");
    }
    Ok(ObjRef::new(ns, name))
}

/// The path relative to the config dir, for messages.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// `file:line: message`.
fn located(file: &str, e: &RolloutError) -> String {
    match e.line() {
        Some(line) => format!("{file}:{line}: {e}"),
        None => format!("{file}: {e}"),
    }
}

/// Replaces `path` (through a symlink, if it is one) with `contents` by writing a hidden temp
/// file next to it and renaming it over; the file keeps its permissions. Refuses if the file
/// changed since it was read (`expected`).
fn write_atomic(path: &Path, expected: &str, contents: &str) -> Result<()> {
    let target = fs::canonicalize(path).with_context(|| format!("resolve {}", path.display()))?;
    let now = fs::read(&target).with_context(|| format!("re-read {}", target.display()))?;
    if now != expected.as_bytes() {
        bail!(
            "{} changed while it was being edited; run the command again",
            path.display()
        );
    }
    let perms = fs::metadata(&target)
        .with_context(|| format!("stat {}", target.display()))?
        .permissions();
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    let name = target
        .file_name()
        .with_context(|| format!("{} has no file name", target.display()))?
        .to_string_lossy();
    // A dot file ending in .tmp: the config loaders skip it.
    let tmp = dir.join(format!(".{name}.rollout-{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        f.write_all(contents.as_bytes())
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::set_permissions(&tmp, perms.clone())
            .with_context(|| format!("set permissions on {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("sync {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &target)
            .with_context(|| format!("rename {} to {}", tmp.display(), target.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename durable; not every platform lets a directory be synced.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
