//! Configuration sources: `(path, contents)` pairs, the directory reader that produces them, and their digest.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One configuration file: where it came from and what it holds.
///
/// The loader never opens files itself; the watcher, the control API and the tests all hand it
/// these pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceFile {
    /// The path, used in diagnostics and to resolve relative paths (certificate files).
    pub path: PathBuf,
    /// The YAML text.
    pub contents: String,
}

impl SourceFile {
    /// Makes a source from a path and its contents.
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
        }
    }
}

/// Why [`read_dir`] could not read the configuration directory.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A directory could not be listed.
    #[error("{}: cannot list directory: {source}", path.display())]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("{}: cannot read file: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

impl SourceError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SourceError::ListDir { path, .. }
            | SourceError::ReadFile { path, .. }
            | SourceError::NotUtf8 { path } => path,
        }
    }
}

/// Reads every `*.yaml` / `*.yml` file under `dir`, recursively, sorted by path.
///
/// Each path is `dir.join(relative)`. Hidden files and directories (name starting with `.`) and
/// editor temporaries (names ending in `~`, `.swp` or `.tmp`) are skipped.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, SourceError> {
    let paths = list_dir(dir)?;
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| SourceError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let contents =
            String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8 { path: path.clone() })?;
        files.push(SourceFile { path, contents });
    }
    Ok(files)
}

/// The paths [`read_dir`] would read, sorted, without reading them (for change detection).
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    Ok(paths)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let list_err = |source| SourceError::ListDir {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_skipped(name) {
            continue;
        }
        let path = entry.path();
        // The entry's own type needs no stat; only symlinks (ConfigMap mounts are symlink
        // farms) are resolved with `metadata`.
        let kind = entry.file_type().map_err(list_err)?;
        let (is_dir, is_file) = if kind.is_symlink() {
            let meta = std::fs::metadata(&path).map_err(|source| SourceError::ReadFile {
                path: path.clone(),
                source,
            })?;
            (meta.is_dir(), meta.is_file())
        } else {
            (kind.is_dir(), kind.is_file())
        };
        if is_dir {
            collect(&path, out)?;
        } else if is_file && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_skipped(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp")
}

/// Hex SHA-256 over the `(path, contents)` pairs in the given order (callers sort by path).
///
/// Each pair is framed by lengths so that moving bytes between a path and a body changes the
/// digest.
pub(crate) fn digest(files: &[&SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        let path = file.path.to_string_lossy();
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update((file.contents.len() as u64).to_le_bytes());
        hasher.update(file.contents.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_recursively_sorted_and_skips_hidden_and_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("routes/shop")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for (rel, body) in [
            ("gateway.yaml", "a: 1"),
            ("routes/shop/cart.yml", "b: 2"),
            ("routes/api.yaml", "c: 3"),
            (".hidden.yaml", "x"),
            (".git/config.yaml", "x"),
            ("routes/api.yaml~", "x"),
            ("routes/.api.yaml.swp", "x"),
            ("routes/edit.yaml.tmp", "x"),
            ("README.md", "x"),
        ] {
            std::fs::write(root.join(rel), body).unwrap();
        }
        let files = read_dir(root).unwrap();
        let rel: Vec<_> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            rel,
            ["gateway.yaml", "routes/api.yaml", "routes/shop/cart.yml"]
        );
        assert_eq!(files[0].path, root.join("gateway.yaml"));
        assert_eq!(files[2].contents, "b: 2");
    }

    #[test]
    fn missing_directory_names_the_path() {
        let err = read_dir(Path::new("/nonexistent/switchyard")).unwrap_err();
        assert_eq!(err.path(), Path::new("/nonexistent/switchyard"));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/switchyard: cannot list directory"));
    }

    #[test]
    fn non_utf8_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), [0xff, 0xfe, 0x00]).unwrap();
        let err = read_dir(dir.path()).unwrap_err();
        assert!(matches!(err, SourceError::NotUtf8 { .. }), "{err}");
    }

    #[test]
    fn digest_depends_on_paths_and_contents() {
        let a = SourceFile::new("a.yaml", "x: 1");
        let b = SourceFile::new("b.yaml", "x: 1");
        let a2 = SourceFile::new("a.yaml", "x: 2");
        let d = digest(&[&a]);
        assert_eq!(d.len(), 64);
        assert_eq!(d, digest(&[&a.clone()]));
        assert_ne!(d, digest(&[&b]));
        assert_ne!(d, digest(&[&a2]));
        assert_ne!(digest(&[&a, &b]), digest(&[&b, &a]));
    }
}
