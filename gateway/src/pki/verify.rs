//! The rustls pieces of mesh TLS, each reading rotating material through an `ArcSwap` at every
//! handshake: the trust bundle ([`Trust`], with its webpki verifier), a client-certificate
//! verifier that adds the SPIFFE policy of the listener ([`MeshClientVerifier`]), the server
//! certificate resolver for the gateway's own certificate ([`CurrentCert`]) and the
//! handshake callback that attaches the verified [`PeerIdentity`] to the connection.

use std::any::Any;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::utils::tls::WrappedX509;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::PkiError;
use crate::identity::PeerIdentity;

/// One version of the trust bundle, ready for both directions.
pub struct Trust {
    pub version: u64,
    pub pem: String,
    /// Verifies client chains against the bundle (the SPIFFE policy is applied on top).
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The roots as pingora takes them for upstream peers (`peer.options.ca`).
    pub anchors: Arc<[WrappedX509]>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("version", &self.version)
            .finish()
    }
}

impl Trust {
    /// Parses a PEM bundle; every certificate must be valid X.509 (pingora's parser panics).
    pub fn from_pem(version: u64, pem: &str) -> Result<Trust, PkiError> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| PkiError::Tls(format!("trust bundle: bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(PkiError::Tls("trust bundle: no certificate".into()));
        }
        let mut roots = RootCertStore::empty();
        for (i, c) in certs.iter().enumerate() {
            x509_parser::parse_x509_certificate(c.as_ref())
                .map_err(|e| PkiError::Tls(format!("trust bundle certificate {i}: {e}")))?;
            roots
                .add(c.clone())
                .map_err(|e| PkiError::Tls(format!("trust bundle certificate {i}: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Tls(format!("trust bundle verifier: {e}")))?;
        let anchors: Arc<[WrappedX509]> = certs
            .iter()
            .map(|c| WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
            .collect::<Vec<_>>()
            .into();
        Ok(Trust {
            version,
            pem: pem.to_string(),
            verifier,
            anchors,
        })
    }
}

/// Which client identities a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPolicy {
    /// East-west: a certificate is required and must name a gateway of the trust domain.
    Gateways,
    /// Mesh listener: a certificate is optional (or required); when presented it must carry a
    /// SPIFFE ID of the trust domain.
    Workloads { required: bool },
}

/// A client-certificate verifier over the rotating bundle, plus the listener's SPIFFE policy.
/// It returns no root hint subjects (it cannot lend a borrow out of the swapped bundle).
#[derive(Debug)]
pub struct MeshClientVerifier {
    pub trust: Arc<ArcSwap<Trust>>,
    pub trust_domain: String,
    pub policy: PeerPolicy,
}

fn refused(reason: String) -> rustls::Error {
    tracing::debug!(%reason, "client certificate refused");
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

impl MeshClientVerifier {
    /// The SPIFFE policy on a chain the bundle already verified.
    pub fn check_identity(&self, leaf: &[u8]) -> Result<PeerIdentity, String> {
        let id = PeerIdentity::from_certificate(leaf)
            .ok_or_else(|| "the client certificate has no SPIFFE URI SAN".to_string())?;
        if id.trust_domain != self.trust_domain {
            return Err(format!(
                "{} is not in trust domain {}",
                id.spiffe_id, self.trust_domain
            ));
        }
        if self.policy == PeerPolicy::Gateways && !id.is_gateway() {
            return Err(format!("{} is not a gateway identity", id.spiffe_id));
        }
        Ok(id)
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        match self.policy {
            PeerPolicy::Gateways => true,
            PeerPolicy::Workloads { required } => required,
        }
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let trust = self.trust.load();
        let verified = trust
            .verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check_identity(end_entity.as_ref()).map_err(refused)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.trust.load().verifier.supported_verify_schemes()
    }
}

/// Serves the gateway's current mesh certificate whatever the SNI.
#[derive(Debug)]
pub struct CurrentCert(pub Arc<ArcSwap<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Attaches the verified client certificate's [`PeerIdentity`] to the connection's
/// `SslDigest` extension (read per request with `identity::peer_identity`).
pub struct AttachPeerIdentity;

#[async_trait]
impl TlsAccept for AttachPeerIdentity {
    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let leaf = ssl.peer_certificate_der()?;
        let id = PeerIdentity::from_certificate(leaf)?;
        Some(Arc::new(id))
    }
}
