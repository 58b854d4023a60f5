//! The mesh PKI: the CA that issues gateway and workload certificates (`ca`, persisted by
//! `castate`), the names it puts in them (`names`), a gateway's own rotating identity
//! (`identity`) and the TLS pieces that serve and verify it (`verify`).
//!
//! The module lives in the gateway crate because a standalone gateway can issue from a local CA
//! dir; the control service uses the same [`ca::Ca`].

pub mod ca;
mod castate;
pub mod client;
pub mod identity;
pub mod names;
mod saved;
pub mod serve;
pub mod verify;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub use ca::{Bundle, Ca, Issued, SubjectKey};
pub use identity::{IdentityOptions, IdentitySource, MeshIdentity, UpstreamCredentials};

/// Default lifetime of an issued certificate.
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(12 * 3600);
/// Default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "switchyard.local";

#[derive(Debug, Error)]
pub enum PkiError {
    /// A file of a CA dir or an operator-supplied root.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// A zone, gateway name, trust domain or SPIFFE ID the CA refuses to put in a certificate.
    #[error("invalid name: {0}")]
    Name(String),
    #[error("certificate signing request: {0}")]
    Csr(String),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error(
        "the root is operator-supplied; rotate it by replacing --ca-cert/--ca-key and restarting"
    )]
    OperatorRoot,
    #[error("a rotation is already in progress (the new root signs from {0})")]
    Rotating(String),
    #[error("control service at {url}: {reason}")]
    Control { url: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

pub(crate) fn file_error(path: &Path, reason: impl std::fmt::Display) -> PkiError {
    PkiError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes a private key (PEM) with mode 0600.
pub fn write_private_key(path: &Path, pem: &str) -> Result<(), PkiError> {
    castate::write_atomic(path, pem.as_bytes(), 0o600)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` after the Unix epoch.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 3339 UTC rendering (`2026-11-21T21:28:40Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}
