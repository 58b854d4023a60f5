//! The CA endpoints of the control API: `POST /v1/certs` signs a gateway's CSR (the CA sets
//! every name itself), `GET /v1/bundle` returns the trust bundle and its version (both with the
//! gateway token), `POST /v1/ca/rotate` stages a new root (operator token): in the bundle at
//! once, signing after the propagation time, the old root trusted for the overlap after that. Before each, the CA
//! drops roots whose overlap ended and notices an offline `switchyard cert rotate-ca`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use switchyard_gateway::pki::client::{BundleResponse, CertRequest, CertResponse};
use switchyard_gateway::pki::{rfc3339, unix_secs, Ca, PkiError};
use tracing::{info, warn};

/// The control service's CA and the lifetime of what it issues.
pub struct CaService {
    ca: Mutex<Ca>,
    pub ttl: Duration,
}

/// An answer: status and JSON body (or an error text).
pub type Answer = (StatusCode, Result<serde_json::Value, String>);

impl CaService {
    pub fn new(ca: Ca, ttl: Duration) -> CaService {
        CaService {
            ca: Mutex::new(ca),
            ttl,
        }
    }

    /// The rotated-out root stays trusted this long: two leaf lifetimes.
    pub fn overlap(ttl: Duration) -> Duration {
        ttl * 2
    }

    /// A new root is trusted this long before it signs, so that every gateway's bundle has it
    /// before any peer presents a leaf of it: half a leaf lifetime (gateways refresh the bundle
    /// at each renewal, every 2/3 of a lifetime), at most a minute (twice the default bundle
    /// refresh).
    pub fn propagation(ttl: Duration) -> Duration {
        (ttl / 2).min(Duration::from_secs(60))
    }

    /// The CA, refreshed from disk and pruned.
    fn ca(&self) -> MutexGuard<'_, Ca> {
        let mut ca = self.ca.lock().unwrap_or_else(PoisonError::into_inner);
        match ca.reload_if_changed() {
            Ok(true) => info!(version = ca.version(), "CA dir changed on disk; reloaded"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "CA dir changed on disk but cannot be reloaded"),
        }
        if let Err(e) = ca.prune(SystemTime::now()) {
            warn!(error = %e, "cannot persist the pruned trust bundle");
        }
        ca
    }

    pub fn issue(&self, body: &Bytes) -> Answer {
        let req: CertRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Err(format!(
                        "certificate request: {e} (expected {{\"csr\", \"zone\", \"name\"}})"
                    )),
                )
            }
        };
        let ca = self.ca();
        match ca.sign(&req.csr, &req.zone, &req.name, self.ttl) {
            Ok(issued) => {
                info!(zone = %req.zone, name = %req.name, serial = %issued.serial, not_after = %rfc3339(issued.not_after), "certificate issued");
                let bundle = ca.bundle();
                let resp = CertResponse {
                    certificate: issued.cert_pem,
                    bundle: bundle.pem,
                    bundle_version: bundle.version,
                    not_after: rfc3339(issued.not_after),
                    not_after_unix: unix_secs(issued.not_after),
                    serial: issued.serial,
                    spiffe_id: issued.spiffe_id,
                    trust_domain: ca.trust_domain().to_string(),
                };
                (
                    StatusCode::OK,
                    serde_json::to_value(resp).map_err(|e| e.to_string()),
                )
            }
            Err(e @ (PkiError::Name(_) | PkiError::Csr(_))) => {
                warn!(zone = %req.zone, name = %req.name, error = %e, "certificate request refused");
                (StatusCode::BAD_REQUEST, Err(e.to_string()))
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Err(e.to_string())),
        }
    }

    pub fn bundle(&self) -> Answer {
        let ca = self.ca();
        let bundle = ca.bundle();
        let resp = BundleResponse {
            bundle: bundle.pem,
            version: bundle.version,
            trust_domain: ca.trust_domain().to_string(),
        };
        (
            StatusCode::OK,
            serde_json::to_value(resp).map_err(|e| e.to_string()),
        )
    }

    pub fn rotate(&self) -> Answer {
        let mut ca = self.ca();
        match ca.rotate(Self::overlap(self.ttl), Self::propagation(self.ttl)) {
            Ok(version) => {
                let at = ca.activates_at().map(rfc3339);
                info!(version, activates_at = ?at, overlap_s = Self::overlap(self.ttl).as_secs(), "CA rotation started: the new root is in the bundle");
                (
                    StatusCode::OK,
                    Ok(json!({ "bundleVersion": version, "activatesAt": at })),
                )
            }
            Err(e @ (PkiError::OperatorRoot | PkiError::Rotating(_))) => {
                (StatusCode::CONFLICT, Err(e.to_string()))
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Err(e.to_string())),
        }
    }
}
