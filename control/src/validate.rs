//! `switchyard validate DIR`: loads and validates a route-file set offline and prints every
//! error at once, one per line, as file:line:column: object field: message.

use std::path::Path;

/// Returns whether the set is valid.
pub fn run(dir: &Path) -> bool {
    match switchyard_config::build_dir(dir) {
        Ok(generation) => {
            let rules: usize = generation
                .gateways
                .iter()
                .flat_map(|g| g.ports.iter())
                .map(|p| p.routes.rule_count())
                .sum();
            println!(
                "{}: valid ({} files, {} gateways, {} backends, {} rules, digest {})",
                dir.display(),
                generation.files.len(),
                generation.gateways.len(),
                generation.backends.len(),
                rules,
                &generation.digest[..12.min(generation.digest.len())]
            );
            true
        }
        Err(diagnostics) => {
            for d in &diagnostics.0 {
                eprintln!("{d}");
            }
            eprintln!("{} error(s) in {}", diagnostics.0.len(), dir.display());
            false
        }
    }
}
