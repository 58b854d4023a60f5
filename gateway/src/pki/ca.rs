//! The mesh CA: an ECDSA P-256 root (generated here, or operator-supplied), signing of gateway
//! and workload certificates, and a trust bundle that keeps a rotated-out root for an overlap
//! period.
//!
//! The CA decides every name in a certificate: a CSR only proves possession of its key (its
//! self-signature is verified); its subject and requested SANs are ignored. Gateways get the URI
//! SAN `spiffe://TD/zone/Z/gateway/N` and the DNS SAN `gateway.Z.TD`; workloads get their
//! URI SAN only. Leaves are valid from a minute ago (clock skew) to now + TTL, never beyond the
//! root's own expiry.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::FromDer;

use super::castate::{
    self, NextRoot, RetiredRoot, State, BUNDLE_PEM, NEXT_CERT, NEXT_KEY, ROOT_CERT, ROOT_KEY,
};
use super::names::{
    check_label, check_trust_domain, check_workload_id, gateway_dns_name, gateway_spiffe_id,
};
use super::{file_error, from_unix_secs, unix_secs, PkiError};

/// How long a root generated here is valid.
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaves are valid from this long before they are issued (clock skew between machines).
const BACKDATE: Duration = Duration::from_secs(60);

/// What a certificate is issued for: a CSR (PEM), or a key pair the caller holds.
pub enum SubjectKey<'a> {
    Csr(&'a str),
    Key(&'a KeyPair),
}

/// An issued leaf certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// Lowercase hex.
    pub serial: String,
    pub not_after: SystemTime,
    pub spiffe_id: String,
}

/// The trust bundle: every root a peer may chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub version: u64,
    pub pem: String,
}

/// The root leaves are signed by.
struct Root {
    pem: String,
    key: KeyPair,
    /// The root as rcgen's issuer (its name, key identifier and key usages).
    issuer: rcgen::Certificate,
    not_after: SystemTime,
}

/// A CA: its dir, trust domain, current root and the retired roots still in the bundle.
pub struct Ca {
    dir: PathBuf,
    root: Root,
    state: State,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("trust_domain", &self.state.trust_domain)
            .field("version", &self.state.version)
            .finish()
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let rng = rustls::crypto::ring::default_provider().secure_random;
    if rng.fill(&mut bytes).is_err() {
        // ring's system RNG does not fail on Linux; the time keeps serials distinct anyway.
        bytes[..8].copy_from_slice(&unix_nanos().to_be_bytes());
    }
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn first_cert_der(pem: &str) -> Option<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()
}

fn asn1_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    from_unix_secs(t.timestamp().max(0) as u64)
}

/// Loads and checks a root: a CA certificate, not expired, with the matching key.
fn load_root(cert_path: &Path, key_path: &Path, now: SystemTime) -> Result<Root, PkiError> {
    let pem = std::fs::read_to_string(cert_path).map_err(|e| file_error(cert_path, e))?;
    let der = first_cert_der(&pem)
        .ok_or_else(|| file_error(cert_path, "no PEM CERTIFICATE block found"))?;
    let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| file_error(cert_path, format!("not a valid X.509 certificate: {e}")))?;
    let is_ca = x509
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    if !is_ca {
        return Err(file_error(
            cert_path,
            "not a CA certificate (no basicConstraints CA:TRUE)",
        ));
    }
    let not_after = asn1_time(x509.validity().not_after);
    if not_after <= now {
        return Err(file_error(
            cert_path,
            format!("the root expired at {}", super::rfc3339(not_after)),
        ));
    }
    let key_pem = std::fs::read_to_string(key_path).map_err(|e| file_error(key_path, e))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| file_error(key_path, format!("not a usable private key: {e}")))?;
    if key.public_key_der() != x509.public_key().raw {
        return Err(file_error(
            key_path,
            format!("the key does not match {}", cert_path.display()),
        ));
    }
    let issuer = CertificateParams::from_ca_cert_der(&der)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| file_error(cert_path, format!("cannot sign with this root: {e}")))?;
    Ok(Root {
        pem: normalize_pem(&der),
        key,
        issuer,
        not_after,
    })
}

fn normalize_pem(der: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Generates a root for `trust_domain` and writes it as `cert` and `key` (0600) into `dir`.
fn generate_root(
    dir: &Path,
    trust_domain: &str,
    now: SystemTime,
    (cert_name, key_name): (&str, &str),
) -> Result<Root, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Sign(format!("generate the root key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "switchyard");
    // A unique name: peers pick a chain's issuer by name first.
    let serial = random_serial();
    let tag = hex::encode(&serial.as_ref()[..6]);
    dn.push(
        DnType::CommonName,
        format!("switchyard root {trust_domain} {tag}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + ROOT_VALIDITY).into();
    params.serial_number = Some(serial);
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Sign(format!("self-sign the root: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    castate::write_atomic(&dir.join(key_name), key.serialize_pem().as_bytes(), 0o600)?;
    castate::write_atomic(&dir.join(cert_name), cert.pem().as_bytes(), 0o644)?;
    // Reload through the same path as any root, so both are checked alike.
    load_root(&dir.join(cert_name), &dir.join(key_name), now)
}

/// The public key a CSR proves possession of; its subject and extensions are ignored.
fn csr_public_key(pem: &str) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let der = loop_csr(pem)?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_slice())
            .map_err(|e| PkiError::Csr(format!("not a PKCS#10 request: {e}")))?;
    req.verify_signature()
        .map_err(|e| PkiError::Csr(format!("self-signature does not verify: {e}")))?;
    rcgen::SubjectPublicKeyInfo::from_der(req.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::Csr(format!("unsupported public key: {e}")))
}

fn loop_csr(pem: &str) -> Result<Vec<u8>, PkiError> {
    let mut rd = pem.as_bytes();
    loop {
        match rustls_pemfile::read_one(&mut rd) {
            Ok(Some(rustls_pemfile::Item::Csr(der))) => return Ok(der.to_vec()),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(PkiError::Csr("no CERTIFICATE REQUEST PEM block".into())),
            Err(e) => return Err(PkiError::Csr(format!("bad PEM: {e}"))),
        }
    }
}

impl Ca {
    /// Creates a new CA dir with a fresh root; refuses a dir that already has one.
    pub fn init(dir: &Path, trust_domain: &str) -> Result<Ca, PkiError> {
        check_trust_domain(trust_domain)?;
        if dir.join(ROOT_CERT).exists() || dir.join(castate::STATE).exists() {
            return Err(file_error(
                dir,
                "already holds a CA (root.pem or bundle.json)",
            ));
        }
        let now = SystemTime::now();
        let root = generate_root(dir, trust_domain, now, (ROOT_CERT, ROOT_KEY))?;
        let state = State {
            trust_domain: trust_domain.to_string(),
            version: 1,
            current: root.pem.clone(),
            retired: Vec::new(),
            operator_root: false,
            next: None,
        };
        let ca = Ca {
            dir: dir.to_path_buf(),
            root,
            state,
        };
        ca.save()?;
        Ok(ca)
    }

    /// Opens an existing CA dir (offline commands, a gateway's `--mesh-ca-dir`). A dir whose
    /// root is operator-supplied can be opened only with those files (see [`Ca::open_for_control`]).
    pub fn open(dir: &Path) -> Result<Ca, PkiError> {
        let state = castate::read_state(dir)?.ok_or_else(|| {
            file_error(
                &dir.join(castate::STATE),
                "missing: not a CA dir (create one with `switchyard cert init-ca`)",
            )
        })?;
        if state.operator_root {
            return Err(file_error(
                dir,
                "the root is operator-supplied and its key is not in the CA dir",
            ));
        }
        let root = load_root(&dir.join(ROOT_CERT), &dir.join(ROOT_KEY), SystemTime::now())?;
        let mut ca = Ca {
            dir: dir.to_path_buf(),
            root,
            state,
        };
        if ca.state.current != ca.root.pem {
            return Err(file_error(
                &dir.join(castate::STATE),
                "does not name root.pem as the current root (edited by hand?)",
            ));
        }
        ca.prune(SystemTime::now())?;
        Ok(ca)
    }

    /// The control service's CA: `dir` (STATE/ca) is created on first start; the root is
    /// the one in `dir`, generated here, or the operator's files. A root that differs from the
    /// recorded one (the operator replaced the files) becomes current, and the recorded one
    /// stays in the bundle for `overlap`.
    pub fn open_for_control(
        dir: &Path,
        trust_domain: &str,
        operator: Option<(&Path, &Path)>,
        overlap: Duration,
    ) -> Result<Ca, PkiError> {
        check_trust_domain(trust_domain)?;
        let now = SystemTime::now();
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let previous = castate::read_state(dir)?;
        let root = match operator {
            Some((cert, key)) => load_root(cert, key, now)?,
            None if dir.join(ROOT_CERT).exists() => {
                load_root(&dir.join(ROOT_CERT), &dir.join(ROOT_KEY), now)?
            }
            None => generate_root(dir, trust_domain, now, (ROOT_CERT, ROOT_KEY))?,
        };
        let state = match previous {
            Some(mut s) => {
                if s.current != root.pem {
                    let old = std::mem::replace(&mut s.current, root.pem.clone());
                    s.retired.push(RetiredRoot {
                        pem: old,
                        drop_at_unix: unix_secs(now + overlap),
                    });
                    s.version += 1;
                }
                s.trust_domain = trust_domain.to_string();
                s.operator_root = operator.is_some();
                if s.operator_root {
                    s.next = None;
                }
                s
            }
            None => State {
                trust_domain: trust_domain.to_string(),
                version: 1,
                current: root.pem.clone(),
                retired: Vec::new(),
                operator_root: operator.is_some(),
                next: None,
            },
        };
        let mut ca = Ca {
            dir: dir.to_path_buf(),
            root,
            state,
        };
        ca.prune(now)?;
        ca.save()?;
        Ok(ca)
    }

    fn save(&self) -> Result<(), PkiError> {
        castate::write_state(&self.dir, &self.state, &self.bundle().pem)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn trust_domain(&self) -> &str {
        &self.state.trust_domain
    }

    /// The current root (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The bundle version recorded in `dir` (to notice another process rotating the CA).
    pub fn version_on_disk(dir: &Path) -> Option<u64> {
        castate::read_state(dir).ok().flatten().map(|s| s.version)
    }

    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// Re-reads the dir when another process (`switchyard cert rotate-ca`) changed it; a no-op
    /// for operator-supplied roots, whose key is not in the dir.
    pub fn reload_if_changed(&mut self) -> Result<bool, PkiError> {
        if self.state.operator_root
            || Self::version_on_disk(&self.dir).is_none_or(|v| v <= self.state.version)
        {
            return Ok(false);
        }
        *self = Ca::open(&self.dir)?;
        Ok(true)
    }

    /// The current root first, then a staged one, then the retired roots still trusted.
    pub fn bundle(&self) -> Bundle {
        let mut pem = self.root.pem.clone();
        if let Some(next) = &self.state.next {
            pem.push_str(&next.pem);
        }
        for r in &self.state.retired {
            pem.push_str(&r.pem);
        }
        Bundle {
            version: self.state.version,
            pem,
        }
    }

    /// When a staged root starts signing, if a rotation is in progress.
    pub fn activates_at(&self) -> Option<SystemTime> {
        self.state
            .next
            .as_ref()
            .map(|n| from_unix_secs(n.activate_at_unix))
    }

    /// Moves time forward: a staged root whose time came starts signing (the current one
    /// retires for the overlap), and retired roots whose overlap ended are dropped. Persists
    /// and bumps the version when anything changed.
    pub fn prune(&mut self, now: SystemTime) -> Result<bool, PkiError> {
        let now_s = unix_secs(now);
        let mut changed = false;
        if let Some(next) = self
            .state
            .next
            .clone()
            .filter(|n| n.activate_at_unix <= now_s)
        {
            let root = load_root(&self.dir.join(NEXT_CERT), &self.dir.join(NEXT_KEY), now)?;
            castate::write_atomic(
                &self.dir.join(ROOT_KEY),
                root.key.serialize_pem().as_bytes(),
                0o600,
            )?;
            castate::write_atomic(&self.dir.join(ROOT_CERT), root.pem.as_bytes(), 0o644)?;
            let old = std::mem::replace(&mut self.root, root);
            self.state.current = self.root.pem.clone();
            self.state.retired.push(RetiredRoot {
                pem: old.pem,
                drop_at_unix: next.activate_at_unix + next.overlap_secs,
            });
            self.state.next = None;
            changed = true;
        }
        let before = self.state.retired.len();
        self.state.retired.retain(|r| r.drop_at_unix > now_s);
        changed |= self.state.retired.len() != before;
        if !changed {
            return Ok(false);
        }
        self.state.version += 1;
        self.save()?;
        Ok(true)
    }

    /// Starts a rotation: a new root joins the bundle now and signs from `now + propagation`
    /// (so every peer trusts it before any leaf of it exists); the previous root then stays in
    /// the bundle for `overlap`. Returns the new bundle version.
    pub fn rotate(&mut self, overlap: Duration, propagation: Duration) -> Result<u64, PkiError> {
        if self.state.operator_root {
            return Err(PkiError::OperatorRoot);
        }
        let now = SystemTime::now();
        if let Some(at) = self.activates_at() {
            return Err(PkiError::Rotating(super::rfc3339(at)));
        }
        let next = generate_root(
            &self.dir,
            &self.state.trust_domain,
            now,
            (NEXT_CERT, NEXT_KEY),
        )?;
        self.state.next = Some(NextRoot {
            pem: next.pem,
            activate_at_unix: unix_secs(now + propagation),
            overlap_secs: overlap.as_secs(),
        });
        self.state.version += 1;
        self.save()?;
        if propagation.is_zero() {
            self.prune(now)?;
        }
        Ok(self.state.version)
    }

    /// Signs a gateway's CSR: SANs `spiffe://TD/zone/Z/gateway/N` and `gateway.Z.TD`.
    pub fn sign(
        &self,
        csr_pem: &str,
        zone: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        self.sign_gateway(SubjectKey::Csr(csr_pem), zone, name, ttl)
    }

    /// Issues a gateway certificate for a CSR or a key pair.
    pub fn sign_gateway(
        &self,
        subject: SubjectKey<'_>,
        zone: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        check_label("zone", zone)?;
        check_label("gateway name", name)?;
        let td = &self.state.trust_domain;
        let id = gateway_spiffe_id(td, zone, name);
        let dns = gateway_dns_name(td, zone);
        self.issue(subject, id, Some(dns), ttl)
    }

    /// Issues a workload certificate (URI SAN only) for a CSR or a key pair.
    pub fn sign_workload(
        &self,
        subject: SubjectKey<'_>,
        spiffe_id: &str,
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        check_workload_id(&self.state.trust_domain, spiffe_id)?;
        self.issue(subject, spiffe_id.to_string(), None, ttl)
    }

    fn issue(
        &self,
        subject: SubjectKey<'_>,
        spiffe_id: String,
        dns: Option<String>,
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        let now = SystemTime::now();
        if self.root.not_after <= now {
            return Err(PkiError::Sign("the root has expired".into()));
        }
        let not_after = (now + ttl).min(self.root.not_after);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "switchyard");
        if let Some(d) = &dns {
            dn.push(DnType::CommonName, d.as_str());
        }
        params.distinguished_name = dn;
        let uri = rcgen::Ia5String::try_from(spiffe_id.as_str())
            .map_err(|e| PkiError::Name(format!("{spiffe_id:?}: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        if let Some(d) = &dns {
            let name = rcgen::Ia5String::try_from(d.as_str())
                .map_err(|e| PkiError::Name(format!("{d:?}: {e}")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let cert = match subject {
            SubjectKey::Csr(pem) => {
                let key = csr_public_key(pem)?;
                self.sign_params(params, &key)?
            }
            SubjectKey::Key(key) => self.sign_params(params, key)?,
        };
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            serial: hex::encode(serial.as_ref()),
            not_after: from_unix_secs(unix_secs(not_after)),
            spiffe_id,
        })
    }

    fn sign_params(
        &self,
        params: CertificateParams,
        key: &impl PublicKeyData,
    ) -> Result<rcgen::Certificate, PkiError> {
        params
            .signed_by(key, &self.root.issuer, &self.root.key)
            .map_err(|e| PkiError::Sign(e.to_string()))
    }
}

/// The bundle file of a CA dir, for tools that only need the roots.
pub fn bundle_path(dir: &Path) -> PathBuf {
    dir.join(BUNDLE_PEM)
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
