//! A subscribed gateway's last mesh certificate on disk (`STATE/mesh-identity.json`, mode
//! 0600: key, certificate, bundle), so that a restart while the control service is down
//! still serves its mesh listeners until the certificate expires.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use super::identity::Material;
use super::{castate, from_unix_secs, unix_secs, PkiError};

const FILE: &str = "mesh-identity.json";

#[derive(Serialize, Deserialize)]
struct Saved {
    key_pem: String,
    cert_pem: String,
    serial: String,
    not_after_unix: u64,
    trust_domain: String,
    bundle_version: u64,
    bundle_pem: String,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the material (atomically, 0600).
pub(crate) fn save(dir: &Path, m: &Material) -> Result<(), PkiError> {
    let saved = Saved {
        key_pem: m.key.serialize_pem(),
        cert_pem: pem::encode(&pem::Pem::new("CERTIFICATE", m.cert_der.clone())),
        serial: m.serial.clone(),
        not_after_unix: unix_secs(m.not_after),
        trust_domain: m.trust_domain.clone(),
        bundle_version: m.bundle_version,
        bundle_pem: m.bundle_pem.clone(),
    };
    let json = serde_json::to_vec(&saved).map_err(|e| super::file_error(&path(dir), e))?;
    std::fs::create_dir_all(dir).map_err(|e| super::file_error(dir, e))?;
    castate::write_atomic(&path(dir), &json, 0o600)
}

/// The saved material if there is some and its certificate is still valid.
pub(crate) fn load(dir: &Path) -> Result<Option<Material>, PkiError> {
    let p = path(dir);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(super::file_error(&p, e)),
    };
    let s: Saved = serde_json::from_slice(&text).map_err(|e| super::file_error(&p, e))?;
    if from_unix_secs(s.not_after_unix) <= SystemTime::now() {
        return Ok(None);
    }
    let key = KeyPair::from_pem(&s.key_pem).map_err(|e| super::file_error(&p, e))?;
    let cert_der = pem::parse(&s.cert_pem)
        .map_err(|e| super::file_error(&p, e))?
        .into_contents();
    Ok(Some(Material {
        cert_der,
        key,
        serial: s.serial,
        not_after: from_unix_secs(s.not_after_unix),
        trust_domain: s.trust_domain,
        bundle_version: s.bundle_version,
        bundle_pem: s.bundle_pem,
    }))
}
