//! The gateway's copy of its last applied generation, so it can start serving without the
//! control service. The file is written atomically (temporary file, fsync, rename, fsync of
//! the directory) and opens with a SHA-256 checksum of the rest; a torn or edited copy is
//! refused rather than served.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::protocol::Payload;

/// The file name inside the gateway's state directory.
pub const FILE_NAME: &str = "last-generation.json";
/// First line of the file: this marker, a space, then the hex checksum of what follows.
const MAGIC: &str = "switchyard-generation-v1";

#[derive(Debug, Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: checksum mismatch (torn or edited copy); ignoring it")]
    Checksum { path: String },
    #[error("{path}: not a saved generation: {reason}")]
    Format { path: String, reason: String },
}

/// The persisted generation in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes `payload` as the last applied generation.
pub fn save(dir: &Path, payload: &Payload) -> Result<(), PersistError> {
    let target = path(dir);
    let io_err = |source| PersistError::Io {
        path: target.display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_err)?;
    let body = serde_json::to_vec(payload).map_err(|e| io_err(io::Error::other(e)))?;
    let checksum = hex::encode(Sha256::digest(&body));
    // Per process: during a graceful upgrade two gateways share the state dir.
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(format!("{MAGIC} {checksum}\n").as_bytes())
            .map_err(io_err)?;
        f.write_all(&body).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, &target).map_err(io_err)?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
    Ok(())
}

/// Reads the last applied generation; `Ok(None)` when there is none.
pub fn load(dir: &Path) -> Result<Option<Payload>, PersistError> {
    let file = path(dir);
    let name = || file.display().to_string();
    let bytes = match fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: name(),
                source,
            })
        }
    };
    let format = |reason: &str| PersistError::Format {
        path: name(),
        reason: reason.to_string(),
    };
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| format("no header line"))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| format("bad header"))?;
    let checksum = header
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format("bad header"))?;
    let body = &bytes[newline + 1..];
    if hex::encode(Sha256::digest(body)) != checksum {
        return Err(PersistError::Checksum { path: name() });
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| format(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WireFile;

    fn payload() -> Payload {
        Payload {
            generation: 42,
            digest: "abc".into(),
            gateway: "default/edge".into(),
            zone: Some("zone-a".into()),
            files: vec![WireFile {
                path: "/etc/switchyard/routes.yaml".into(),
                contents: "kind: Gateway\n".into(),
            }],
        }
    }

    #[test]
    fn round_trips_and_refuses_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &payload()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(payload()));

        let file = path(dir.path());
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        fs::write(&file, &bytes).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, PersistError::Checksum { .. }), "{err}");

        fs::write(&file, b"garbage").unwrap();
        assert!(matches!(
            load(dir.path()).unwrap_err(),
            PersistError::Format { .. }
        ));
    }
}
