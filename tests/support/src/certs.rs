//! A throwaway certificate authority (rcgen) that issues server certificates for TLS tests.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A self-signed CA whose certificate tests trust and whose key signs [`TestCert`]s.
pub struct TestCa {
    name: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA with common name `name` and a fresh key.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the test CA key");
        let cert = params.self_signed(&key).expect("self-sign the test CA");
        TestCa {
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// The CA certificate, PEM encoded (what clients put in their trust store).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names`: DNS names, or IP addresses when they parse as one.
    /// The first name is also the subject's common name.
    pub fn issue(&self, names: &[&str]) -> TestCert {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans.clone())
            .unwrap_or_else(|e| panic!("invalid subject alt names {names:?}: {e}"));
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("generate a leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the leaf certificate with the test CA");
        TestCert {
            names: sans,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A leaf certificate and its private key, both PEM encoded.
#[derive(Clone)]
pub struct TestCert {
    /// The names the certificate is valid for.
    pub names: Vec<String>,
    /// The leaf certificate (just the leaf; the CA is [`TestCa::pem`]).
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

impl TestCert {
    /// Writes `{stem}.crt` and `{stem}.key` into `dir` and returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        fs::write(&cert_path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", cert_path.display()));
        fs::write(&key_path, &self.key_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", key_path.display()));
        (cert_path, key_path)
    }
}

impl fmt::Debug for TestCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCert")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_chain_rustls_accepts() {
        let ca = TestCa::new("testkit CA");
        let cert = ca.issue(&["a.test", "127.0.0.1"]);
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        // Both configs parse: the key matches the certificate and the CA is a valid root.
        crate::tls::server_config(&cert.cert_pem, &cert.key_pem, crate::tls::SERVER_ALPN).unwrap();
        crate::tls::client_config(&ca.pem(), &[b"h2"]).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (c, k) = cert.write(dir.path(), "a");
        assert_eq!(fs::read_to_string(c).unwrap(), cert.cert_pem);
        assert_eq!(fs::read_to_string(k).unwrap(), cert.key_pem);
        assert!(format!("{cert:?}").contains("a.test"));
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }
}
