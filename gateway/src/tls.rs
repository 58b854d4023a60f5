//! TLS material: listener certificates selected by SNI (swapped with each generation), and
//! the CA bundles used to verify TLS upstreams. Every file is parsed and checked here, because
//! pingora's own loaders panic on bad input.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::utils::tls::WrappedX509;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_config::CertificateFiles;
use thiserror::Error;

use crate::live::LiveConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file, checking that each parses as X.509.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block found"));
    }
    for (i, c) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| file_error(path, format!("certificate {i} is not valid X.509: {e}")))?;
    }
    Ok(certs)
}

/// Loads a certificate chain and its private key into a signing-ready key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates(cert)?;
    let pem = std::fs::read(key).map_err(|e| file_error(key, e))?;
    let der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_error(key, format!("bad PEM: {e}")))?
        .ok_or_else(|| file_error(key, "no PRIVATE KEY block found"))?;
    let signing = any_supported_type(&der).map_err(|e| file_error(key, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| file_error(key, format!("key does not match {}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

/// A CA bundle in the form pingora's connector takes for per-peer verification.
pub fn load_ca_bundle(path: &Path) -> Result<Arc<[WrappedX509]>, TlsError> {
    let certs = read_certificates(path)?;
    // Each certificate was parsed above, so pingora's (panicking) parser cannot fail here.
    Ok(certs
        .into_iter()
        .map(|c| WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
        .collect::<Vec<_>>()
        .into())
}

/// One listener certificate: its files and the key loaded from them. The key is swapped in
/// place when the files change on disk ([`crate::certwatch`]), so new handshakes get the new
/// certificate without a new generation.
pub struct CertSlot {
    pub files: CertificateFiles,
    key: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSlot")
            .field("id", &self.files.id)
            .finish()
    }
}

impl CertSlot {
    /// Loads the certificate and key of `files`.
    pub fn load(files: &CertificateFiles) -> Result<Arc<CertSlot>, TlsError> {
        let key = load_certified_key(&files.cert_file, &files.key_file)?;
        Ok(Arc::new(CertSlot {
            files: files.clone(),
            key: ArcSwap::new(key),
        }))
    }

    /// The key new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.key.load_full()
    }

    /// Replaces the key for new handshakes.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.key.store(key);
    }
}

/// The certificates of one HTTPS port, chosen by the client's SNI.
#[derive(Default)]
pub struct SniCertificates {
    exact: HashMap<String, Arc<CertSlot>>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: HashMap<String, Arc<CertSlot>>,
    default: Option<Arc<CertSlot>>,
    catch_all_default: bool,
    /// Every slot once, in insertion order.
    slots: Vec<Arc<CertSlot>>,
}

impl fmt::Debug for SniCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniCertificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl SniCertificates {
    /// Registers a certificate for a listener hostname (`None`: the listener takes any name).
    /// The first listener without a hostname supplies the default certificate; failing that,
    /// the first listener does.
    pub fn insert(&mut self, hostname: Option<&str>, key: Arc<CertSlot>) {
        if !self.slots.iter().any(|s| Arc::ptr_eq(s, &key)) {
            self.slots.push(key.clone());
        }
        match hostname {
            Some(h) if h.starts_with("*.") => {
                let suffix = h[1..].to_ascii_lowercase();
                self.wildcard.entry(suffix).or_insert_with(|| key.clone());
            }
            Some(h) => {
                self.exact
                    .entry(h.to_ascii_lowercase())
                    .or_insert_with(|| key.clone());
            }
            None if !self.catch_all_default => {
                self.catch_all_default = true;
                self.default = Some(key.clone());
            }
            None => {}
        }
        self.default.get_or_insert(key);
    }

    /// The most specific certificate for `sni`; the default one when nothing matches.
    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.current());
            }
            let mut rest = name.as_str();
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(k) = self.wildcard.get(suffix) {
                    return Some(k.current());
                }
                rest = &rest[dot + 1..];
            }
        }
        self.default.as_ref().map(|k| k.current())
    }

    /// Every certificate of the port, once each.
    pub fn slots(&self) -> &[Arc<CertSlot>] {
        &self.slots
    }
}

/// Rustls certificate resolver for one listening port. It reads the live generation at each
/// handshake, so certificates change with the generation and never need a new listener.
#[derive(Debug)]
pub struct SniResolver {
    live: Arc<LiveConfig>,
    port: u16,
}

impl SniResolver {
    pub fn new(live: Arc<LiveConfig>, port: u16) -> Self {
        SniResolver { live, port }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let runtime = self.live.current();
        let certs = runtime.port(self.port)?.certificates.as_ref()?;
        certs.select(hello.server_name())
    }
}
