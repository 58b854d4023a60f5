//! A temporary gateway config directory whose files are replaced atomically (or deliberately not).

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// A config directory removed on drop. Paths given to its methods are relative to it.
pub struct ConfigDir {
    dir: TempDir,
    tmp_seq: AtomicU64,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-config-")
            .tempdir()
            .expect("create a temporary config dir");
        ConfigDir {
            dir,
            tmp_seq: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The absolute path of `rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces `rel` atomically: writes `.{name}.{n}.tmp` (a dot file the loader skips) in
    /// the same directory, syncs it, then renames it over `rel`. Creates parent directories.
    pub fn write(&self, rel: &str, yaml: &str) -> PathBuf {
        let path = self.join(rel);
        let parent = path.parent().expect("config file has a parent dir");
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        let name = path
            .file_name()
            .expect("config file has a name")
            .to_string_lossy();
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{name}.{n}.tmp"));
        let mut f =
            fs::File::create(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
        f.write_all(yaml.as_bytes())
            .and_then(|_| f.sync_all())
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        drop(f);
        fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
        path
    }

    /// Overwrites `rel` in place (truncate, then write): a reader may see it half written.
    pub fn write_in_place(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Deletes `rel` (a file, or a directory with its contents).
    pub fn remove(&self, rel: &str) {
        let path = self.join(rel);
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }

    /// The current contents of `rel`.
    pub fn read(&self, rel: &str) -> String {
        let path = self.join(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConfigDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConfigDir").field(&self.dir.path()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_atomically_and_leaves_no_temp_files() {
        let dir = ConfigDir::new();
        dir.write("gateway.yaml", "a: 1\n");
        dir.write("gateway.yaml", "a: 2\n");
        dir.write("routes/r.yaml", "b: 1\n");
        assert_eq!(dir.read("gateway.yaml"), "a: 2\n");
        assert_eq!(listing(dir.path()), ["gateway.yaml", "routes"]);
        assert_eq!(listing(&dir.join("routes")), ["r.yaml"]);

        dir.write_in_place("gateway.yaml", b"a: ");
        assert_eq!(dir.read("gateway.yaml"), "a: ");
        dir.remove("gateway.yaml");
        dir.remove("routes");
        assert!(listing(dir.path()).is_empty());

        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
