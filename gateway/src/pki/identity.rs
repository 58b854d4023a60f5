//! A gateway's mesh identity: its key and certificate (`spiffe://TD/zone/Z/gateway/N`, DNS
//! `gateway.Z.TD`) and the trust bundle, obtained from the control service (a CSR over the
//! authenticated API) or from a local CA dir, renewed with a new key at 2/3 of the lifetime
//! (retrying with backoff and keeping the old certificate while the control service is down),
//! and the bundle refreshed at every renewal and every `bundle_refresh`. Current material sits in
//! `ArcSwap`s read by the TLS listeners at each handshake and by upstream peers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::utils::tls::{CertKey, WrappedX509};
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::{info, warn};

use super::ca::{Ca, SubjectKey};
use super::client::{CaClient, CertRequest};
use super::names::{check_label, gateway_dns_name, gateway_spiffe_id};
use super::verify::{AttachPeerIdentity, CurrentCert, MeshClientVerifier, PeerPolicy, Trust};
use super::{from_unix_secs, PkiError, DEFAULT_CERT_TTL};
use crate::identity::PeerIdentity;

/// Where certificates come from.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// The control service (base URL, gateway token).
    Control { url: String, token: String },
    /// A CA dir on this machine (standalone gateways), signing with `ttl`.
    LocalCa { dir: PathBuf, ttl: Duration },
}

#[derive(Debug, Clone)]
pub struct IdentityOptions {
    pub zone: String,
    pub name: String,
    pub source: IdentitySource,
    /// How often the trust bundle is re-read between renewals.
    pub bundle_refresh: Duration,
    /// Where the last certificate is kept (a subscribed gateway's state dir), to serve after a
    /// restart while the control service is down.
    pub persist_dir: Option<PathBuf>,
}

impl IdentityOptions {
    pub const DEFAULT_BUNDLE_REFRESH: Duration = Duration::from_secs(30);
    pub const DEFAULT_LOCAL_TTL: Duration = DEFAULT_CERT_TTL;
}

/// For upstream east-west peers: the client certificate, the trust anchors, and a version that
/// changes with either (for the peer's `group_key`).
#[derive(Clone)]
pub struct UpstreamCredentials {
    pub cert_key: Arc<CertKey>,
    pub ca: Arc<[WrappedX509]>,
    pub version: u64,
}

/// The certificate in force.
struct Leaf {
    serial: String,
    not_after: SystemTime,
    issued_at: SystemTime,
    cert_key: Arc<CertKey>,
}

/// What `/identity` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdentityStatus {
    pub spiffe_id: String,
    pub dns_name: String,
    pub serial: String,
    pub not_after: String,
    pub not_after_unix: u64,
    pub bundle_version: u64,
    pub renewals: u64,
    pub last_renewal_error: Option<String>,
}

/// One issuance: the leaf and key plus the bundle it came with.
pub(crate) struct Material {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key: KeyPair,
    pub(crate) serial: String,
    pub(crate) not_after: SystemTime,
    pub(crate) trust_domain: String,
    pub(crate) bundle_version: u64,
    pub(crate) bundle_pem: String,
}

pub struct MeshIdentity {
    opts: IdentityOptions,
    trust_domain: String,
    spiffe_id: String,
    client: Option<CaClient>,
    cert: Arc<ArcSwap<CertifiedKey>>,
    leaf: ArcSwap<Leaf>,
    trust: Arc<ArcSwap<Trust>>,
    creds: ArcSwap<UpstreamCredentials>,
    version: AtomicU64,
    renewals: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// When a certificate issued at `issued_at` and valid until `not_after` is renewed: at 2/3 of
/// the lifetime it has from issuance (the backdated not-before does not count).
pub fn renewal_time(issued_at: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(issued_at).unwrap_or_default();
    issued_at + life * 2 / 3
}

/// Retry delay after the `attempt`th failed renewal: exponential from 200 ms to 5 s with jitter,
/// and never past what is left of the current certificate's life (so the last tries come fast).
pub fn retry_delay(attempt: u32, now: SystemTime, not_after: SystemTime) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(5)).min(5_000);
    let jittered = Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2));
    let left = not_after.duration_since(now).unwrap_or_default();
    jittered.min((left / 4).max(Duration::from_millis(100)))
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Sign(format!("generate a key: {e}")))
}

impl MeshIdentity {
    /// Obtains the first certificate (waiting, with backoff, for the control service) and
    /// starts renewing on a thread of its own.
    pub fn start(opts: IdentityOptions) -> Result<Arc<MeshIdentity>, PkiError> {
        check_label("zone", &opts.zone)?;
        check_label("gateway name", &opts.name)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PkiError::Tls(format!("identity runtime: {e}")))?;
        let client = match &opts.source {
            IdentitySource::Control { url, token } => Some(CaClient::new(url, token)),
            IdentitySource::LocalCa { .. } => None,
        };
        let (first, from_disk) = rt.block_on(async {
            let mut attempt = 0;
            loop {
                match obtain(&opts, client.as_ref()).await {
                    Ok(m) => return Ok((m, false)),
                    Err(e @ PkiError::Control { .. }) => {
                        if attempt == 0 {
                            if let Some(m) = saved_material(&opts) {
                                warn!(error = %e, serial = %m.serial, "control service unreachable; serving the saved mesh certificate while renewing");
                                return Ok((m, true));
                            }
                        }
                        let delay = retry_delay(attempt, SystemTime::now(), SystemTime::now() + Duration::from_secs(3600));
                        attempt += 1;
                        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "no mesh certificate yet");
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        })?;
        if !from_disk {
            save_material(&opts, &first);
        }
        let identity = Arc::new(MeshIdentity::from_material(opts, client, first)?);
        info!(spiffe_id = %identity.spiffe_id, serial = %identity.leaf.load().serial, "mesh identity ready");
        let runner = identity.clone();
        std::thread::Builder::new()
            .name("switchyard-identity".into())
            .spawn(move || rt.block_on(runner.run(from_disk)))
            .map_err(|e| PkiError::Tls(format!("identity thread: {e}")))?;
        Ok(identity)
    }

    fn from_material(
        opts: IdentityOptions,
        client: Option<CaClient>,
        m: Material,
    ) -> Result<MeshIdentity, PkiError> {
        let trust = Trust::from_pem(m.bundle_version, &m.bundle_pem)?;
        let trust_domain = m.trust_domain.clone();
        let spiffe_id = gateway_spiffe_id(&trust_domain, &opts.zone, &opts.name);
        let (certified, leaf) = prepare(&m, &spiffe_id)?;
        let creds = UpstreamCredentials {
            cert_key: leaf.cert_key.clone(),
            ca: trust.anchors.clone(),
            version: 1,
        };
        Ok(MeshIdentity {
            opts,
            trust_domain,
            spiffe_id,
            client,
            cert: Arc::new(ArcSwap::from(certified)),
            leaf: ArcSwap::from_pointee(leaf),
            trust: Arc::new(ArcSwap::from_pointee(trust)),
            creds: ArcSwap::from_pointee(creds),
            version: AtomicU64::new(1),
            renewals: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn spiffe_id(&self) -> String {
        self.spiffe_id.clone()
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn zone(&self) -> &str {
        &self.opts.zone
    }

    /// DNS name (SNI) of zone `zone`'s gateways: `gateway.ZONE.TD`.
    pub fn gateway_dns_name(&self, zone: &str) -> String {
        gateway_dns_name(&self.trust_domain, zone)
    }

    /// Server TLS for a `switchyard.dev/EastWest` listener: our rotating certificate, client
    /// certificates required, verified against the rotating bundle and required to name a
    /// gateway of our trust domain; the peer's identity is attached to the connection.
    pub fn east_west_tls(self: &Arc<Self>) -> Result<TlsSettings, PkiError> {
        self.tls(
            Arc::new(CurrentCert(self.cert.clone())),
            PeerPolicy::Gateways,
        )
    }

    /// Server TLS for a mesh listener: the listener's own certificates from `resolver`, client
    /// certificates optional (or required), verified against the bundle when presented and
    /// required to carry a SPIFFE ID of our trust domain.
    pub fn mesh_listener_tls(
        self: &Arc<Self>,
        resolver: Arc<dyn ResolvesServerCert>,
        required: bool,
    ) -> Result<TlsSettings, PkiError> {
        self.tls(resolver, PeerPolicy::Workloads { required })
    }

    fn tls(
        &self,
        resolver: Arc<dyn ResolvesServerCert>,
        policy: PeerPolicy,
    ) -> Result<TlsSettings, PkiError> {
        let mut tls = TlsSettings::with_callbacks(Box::new(AttachPeerIdentity))
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        tls.set_cert_resolver(resolver);
        tls.set_client_cert_verifier(Arc::new(MeshClientVerifier {
            trust: self.trust.clone(),
            trust_domain: self.trust_domain.clone(),
            policy,
        }));
        tls.enable_h2();
        Ok(tls)
    }

    /// The client certificate and trust anchors for upstream east-west peers.
    pub fn upstream_credentials(&self) -> UpstreamCredentials {
        (**self.creds.load()).clone()
    }

    /// The current bundle (version, PEM).
    pub fn bundle(&self) -> (u64, String) {
        let t = self.trust.load();
        (t.version, t.pem.clone())
    }

    pub fn status(&self) -> IdentityStatus {
        let leaf = self.leaf.load();
        IdentityStatus {
            spiffe_id: self.spiffe_id.clone(),
            dns_name: self.gateway_dns_name(&self.opts.zone),
            serial: leaf.serial.clone(),
            not_after: super::rfc3339(leaf.not_after),
            not_after_unix: super::unix_secs(leaf.not_after),
            bundle_version: self.trust.load().version,
            renewals: self.renewals.load(Ordering::Relaxed),
            last_renewal_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }

    fn publish_creds(&self) {
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        self.creds.store(Arc::new(UpstreamCredentials {
            cert_key: self.leaf.load().cert_key.clone(),
            ca: self.trust.load().anchors.clone(),
            version,
        }));
    }

    /// Swaps in a new bundle if its version differs.
    fn install_bundle(&self, version: u64, pem: &str) -> Result<(), PkiError> {
        if self.trust.load().version == version {
            return Ok(());
        }
        let trust = Trust::from_pem(version, pem)?;
        info!(version, "trust bundle updated");
        self.trust.store(Arc::new(trust));
        self.publish_creds();
        Ok(())
    }

    async fn renew(&self) -> Result<(), PkiError> {
        let m = obtain(&self.opts, self.client.as_ref()).await?;
        if m.trust_domain != self.trust_domain {
            return Err(PkiError::Sign(format!(
                "the CA's trust domain changed from {} to {}; restart the gateway",
                self.trust_domain, m.trust_domain
            )));
        }
        let (certified, leaf) = prepare(&m, &self.spiffe_id)?;
        save_material(&self.opts, &m);
        // The bundle first: a peer may already present a leaf of a new root.
        self.install_bundle(m.bundle_version, &m.bundle_pem)?;
        info!(serial = %leaf.serial, not_after = %super::rfc3339(leaf.not_after), "mesh certificate renewed");
        self.cert.store(certified);
        self.leaf.store(Arc::new(leaf));
        self.publish_creds();
        self.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn refresh_bundle(&self) -> Result<(), PkiError> {
        let (version, pem) = match (&self.opts.source, &self.client) {
            (_, Some(client)) => {
                let b = client.bundle().await?;
                (b.version, b.bundle)
            }
            (IdentitySource::LocalCa { dir, .. }, None) => {
                let b = Ca::open(dir)?.bundle();
                (b.version, b.pem)
            }
            (IdentitySource::Control { .. }, None) => return Ok(()),
        };
        self.install_bundle(version, &pem)
    }

    /// Renews and refreshes for the life of the process; at once when started from a saved
    /// certificate.
    async fn run(self: Arc<Self>, renew_now: bool) {
        let mut attempt = 0u32;
        let mut renew_at = if renew_now {
            SystemTime::now()
        } else {
            let l = self.leaf.load();
            renewal_time(l.issued_at, l.not_after)
        };
        let mut bundle_at = SystemTime::now() + self.opts.bundle_refresh;
        loop {
            let now = SystemTime::now();
            let next = renew_at.min(bundle_at);
            if let Ok(wait) = next.duration_since(now) {
                tokio::time::sleep(wait).await;
                continue;
            }
            if renew_at <= now {
                match self.renew().await {
                    Ok(()) => {
                        attempt = 0;
                        self.set_error(None);
                        let l = self.leaf.load();
                        renew_at = renewal_time(l.issued_at, l.not_after);
                        bundle_at = SystemTime::now() + self.opts.bundle_refresh;
                    }
                    Err(e) => {
                        let not_after = self.leaf.load().not_after;
                        let delay = retry_delay(attempt, SystemTime::now(), not_after);
                        attempt += 1;
                        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "mesh certificate renewal failed; keeping the current one");
                        self.set_error(Some(e.to_string()));
                        renew_at = SystemTime::now() + delay;
                    }
                }
            } else {
                if let Err(e) = self.refresh_bundle().await {
                    warn!(error = %e, "trust bundle refresh failed");
                }
                bundle_at = SystemTime::now() + self.opts.bundle_refresh;
            }
        }
    }
}

/// The saved certificate of a subscribed gateway, if still valid and ours.
fn saved_material(opts: &IdentityOptions) -> Option<Material> {
    let dir = opts.persist_dir.as_ref()?;
    match super::saved::load(dir) {
        Ok(Some(m)) => {
            let id = PeerIdentity::from_certificate(&m.cert_der)?;
            let ours = gateway_spiffe_id(&id.trust_domain, &opts.zone, &opts.name);
            (id.spiffe_id == ours).then_some(m)
        }
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "cannot use the saved mesh certificate");
            None
        }
    }
}

fn save_material(opts: &IdentityOptions, m: &Material) {
    if let Some(dir) = &opts.persist_dir {
        if let Err(e) = super::saved::save(dir, m) {
            warn!(error = %e, "cannot save the mesh certificate");
        }
    }
}

/// Gets a certificate for a fresh key, from the control service or the local CA dir.
async fn obtain(opts: &IdentityOptions, client: Option<&CaClient>) -> Result<Material, PkiError> {
    let key = new_key()?;
    match (&opts.source, client) {
        (_, Some(client)) => {
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, opts.name.as_str());
            let csr = params
                .serialize_request(&key)
                .and_then(|c| c.pem())
                .map_err(|e| PkiError::Csr(e.to_string()))?;
            let r = client
                .issue(&CertRequest {
                    csr,
                    zone: opts.zone.clone(),
                    name: opts.name.clone(),
                })
                .await?;
            let cert_der = rustls_pemfile::certs(&mut r.certificate.as_bytes())
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    PkiError::Tls("the control service's certificate has no PEM block".into())
                })?
                .to_vec();
            Ok(Material {
                cert_der,
                key,
                serial: r.serial,
                not_after: from_unix_secs(r.not_after_unix),
                trust_domain: r.trust_domain,
                bundle_version: r.bundle_version,
                bundle_pem: r.bundle,
            })
        }
        (IdentitySource::LocalCa { dir, ttl }, None) => {
            let ca = Ca::open(dir)?;
            let issued = ca.sign_gateway(SubjectKey::Key(&key), &opts.zone, &opts.name, *ttl)?;
            let bundle = ca.bundle();
            Ok(Material {
                cert_der: issued.cert_der,
                key,
                serial: issued.serial,
                not_after: issued.not_after,
                trust_domain: ca.trust_domain().to_string(),
                bundle_version: bundle.version,
                bundle_pem: bundle.pem,
            })
        }
        (IdentitySource::Control { url, .. }, None) => Err(PkiError::Control {
            url: url.clone(),
            reason: "no client".into(),
        }),
    }
}

/// Checks an issued certificate (parses, carries our key and our SPIFFE ID) and builds the
/// rustls and pingora forms of it.
fn prepare(m: &Material, spiffe_id: &str) -> Result<(Arc<CertifiedKey>, Leaf), PkiError> {
    let (_, x509) = x509_parser::parse_x509_certificate(&m.cert_der)
        .map_err(|e| PkiError::Tls(format!("issued certificate: {e}")))?;
    if x509.public_key().raw != m.key.public_key_der().as_slice() {
        return Err(PkiError::Tls(
            "the issued certificate is not for our key".into(),
        ));
    }
    let id = PeerIdentity::from_certificate(&m.cert_der).map(|p| p.spiffe_id);
    if id.as_deref() != Some(spiffe_id) {
        return Err(PkiError::Tls(format!(
            "the issued certificate names {id:?}, expected {spiffe_id}"
        )));
    }
    let key_der = m.key.serialize_der();
    let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone()));
    let signing = any_supported_type(&pkcs8).map_err(|e| PkiError::Tls(e.to_string()))?;
    let certified = CertifiedKey::new(vec![CertificateDer::from(m.cert_der.clone())], signing);
    // Parsed above, so pingora's panicking parser cannot fail.
    let cert_key = CertKey::new(vec![m.cert_der.clone()], key_der);
    Ok((
        Arc::new(certified),
        Leaf {
            serial: m.serial.clone(),
            not_after: m.not_after,
            issued_at: SystemTime::now(),
            cert_key: Arc::new(cert_key),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_of_the_life_from_issuance() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            renewal_time(t0, t0 + Duration::from_secs(9)),
            t0 + Duration::from_secs(6)
        );
        assert_eq!(
            renewal_time(t0, t0 + Duration::from_secs(12 * 3600)),
            t0 + Duration::from_secs(8 * 3600)
        );
        // Already expired (clock jump): renew now.
        assert_eq!(renewal_time(t0, t0 - Duration::from_secs(5)), t0);
    }

    #[test]
    fn retries_back_off_but_never_sleep_past_the_certificate() {
        let now = SystemTime::now();
        let far = now + Duration::from_secs(3600);
        let first = retry_delay(0, now, far);
        assert!((100..=200).contains(&first.as_millis()), "{first:?}");
        let late = retry_delay(10, now, far);
        assert!((2_500..=5_000).contains(&late.as_millis()), "{late:?}");
        // Two seconds left: at most half a second between tries.
        let close = retry_delay(10, now, now + Duration::from_secs(2));
        assert!(close <= Duration::from_millis(500), "{close:?}");
        // Expired: keep trying every 100 ms.
        assert_eq!(
            retry_delay(10, now, now - Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_local_ca_dir_gives_a_rotating_identity() {
        let dir = tempfile::tempdir().unwrap();
        Ca::init(dir.path(), "t.local").unwrap();
        let opts = IdentityOptions {
            zone: "zone-a".into(),
            name: "gw-1".into(),
            source: IdentitySource::LocalCa {
                dir: dir.path().to_path_buf(),
                ttl: Duration::from_secs(3),
            },
            bundle_refresh: Duration::from_millis(200),
            persist_dir: None,
        };
        let id = MeshIdentity::start(opts).unwrap();
        assert_eq!(id.spiffe_id(), "spiffe://t.local/zone/zone-a/gateway/gw-1");
        assert_eq!(id.gateway_dns_name("zone-b"), "gateway.zone-b.t.local");
        let first = id.status();
        let creds = id.upstream_credentials();
        // Renewal at 2 s of a 3 s life; the bundle refresh sees an offline rotation.
        let v = Ca::open(dir.path())
            .unwrap()
            .rotate(Duration::from_secs(60), Duration::ZERO)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (id.status().serial == first.serial || id.status().bundle_version != v)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let now = id.status();
        assert_ne!(now.serial, first.serial);
        assert_eq!(now.bundle_version, v);
        assert!(now.renewals >= 1);
        assert_eq!(now.last_renewal_error, None);
        assert!(id.upstream_credentials().version > creds.version);
        assert_eq!(id.upstream_credentials().ca.len(), 2);
    }
}
