//! Tests of the CA: names it sets itself, validity, operator roots, rotation with overlap.

use super::*;
use x509_parser::extensions::GeneralName;

fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("uri:{u}"),
            GeneralName::DNSName(d) => format!("dns:{d}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// Checks that `leaf` is signed by the root in `root_pem`.
fn signed_by(leaf: &[u8], root_pem: &str) -> bool {
    let root_der = &pem_certs(root_pem)[0];
    let (_, root) = x509_parser::parse_x509_certificate(root_der).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    cert.issuer() == root.subject() && cert.verify_signature(Some(root.public_key())).is_ok()
}

/// A CSR asking for names the CA must not grant.
fn greedy_csr() -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.subject_alt_names.push(SanType::URI(
        rcgen::Ia5String::try_from("spiffe://t.local/zone/z/gateway/admin").unwrap(),
    ));
    params
        .distinguished_name
        .push(DnType::CommonName, "root-of-everything");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

#[test]
fn the_ca_sets_the_names_and_ignores_the_csrs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), "t.local").unwrap();
    let (key, csr) = greedy_csr();
    let issued = ca
        .sign(&csr, "zone-a", "gw-a1", Duration::from_secs(600))
        .unwrap();
    assert_eq!(
        sans(&issued.cert_der),
        vec![
            "uri:spiffe://t.local/zone/zone-a/gateway/gw-a1",
            "dns:gateway.zone-a.t.local"
        ]
    );
    assert_eq!(
        issued.spiffe_id,
        "spiffe://t.local/zone/zone-a/gateway/gw-a1"
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    assert!(!cert.subject().to_string().contains("root-of-everything"));
    assert!(!cert.is_ca());
    assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
    assert_eq!(hex::encode(cert.raw_serial()), issued.serial);
    assert!(signed_by(&issued.cert_der, ca.root_pem()));

    // Workloads get their URI SAN only; gateway-shaped or foreign IDs are refused.
    let w = ca
        .sign_workload(
            SubjectKey::Key(&key),
            "spiffe://t.local/ns/shop/sa/cart",
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        sans(&w.cert_der),
        vec!["uri:spiffe://t.local/ns/shop/sa/cart"]
    );
    for bad in [
        "spiffe://t.local/zone/z/gateway/n",
        "spiffe://other.local/ns/x",
        "not-a-uri",
    ] {
        assert!(
            ca.sign_workload(SubjectKey::Key(&key), bad, Duration::from_secs(60))
                .is_err(),
            "{bad}"
        );
    }
    // Bad labels, and a CSR whose signature does not verify.
    for (zone, name) in [("Zone", "n"), ("z", "a.b"), ("", "n")] {
        assert!(matches!(
            ca.sign(&csr, zone, name, Duration::from_secs(60)),
            Err(PkiError::Name(_))
        ));
    }
    let mut der = pem::parse(&csr).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let err = ca
        .sign(&tampered, "z", "n", Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, PkiError::Csr(_)), "{err}");
    assert!(ca
        .sign("garbage", "z", "n", Duration::from_secs(60))
        .is_err());
}

#[test]
fn validity_is_backdated_a_minute_and_capped_by_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), "t.local").unwrap();
    let key = KeyPair::generate().unwrap();
    let before = unix_secs(SystemTime::now());
    let issued = ca
        .sign_gateway(SubjectKey::Key(&key), "z", "n", Duration::from_secs(5))
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    let nb = cert.validity().not_before.timestamp() as u64;
    let na = cert.validity().not_after.timestamp() as u64;
    assert!(
        (before - 61..=before - 59).contains(&nb),
        "{nb} vs {before}"
    );
    assert!((before + 4..=before + 6).contains(&na), "{na} vs {before}");
    assert_eq!(unix_secs(issued.not_after), na);

    // An operator root valid for one more hour caps a day-long TTL.
    let op = tempfile::tempdir().unwrap();
    let (cert, key_path) = operator_root(op.path(), true, Duration::from_secs(3600));
    let state = tempfile::tempdir().unwrap();
    let ca = Ca::open_for_control(
        state.path(),
        "t.local",
        Some((&cert, &key_path)),
        Duration::from_secs(60),
    )
    .unwrap();
    let issued = ca
        .sign_gateway(SubjectKey::Key(&key), "z", "n", Duration::from_secs(86_400))
        .unwrap();
    let na = unix_secs(issued.not_after);
    assert!(na <= before + 3601 + 5, "{na}");
    assert!(signed_by(
        &issued.cert_der,
        &std::fs::read_to_string(&cert).unwrap()
    ));
}

/// Writes an operator root (CA or not) valid for `validity` (negative: expired) and its key.
fn operator_root(dir: &Path, is_ca: bool, validity: Duration) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "operator root");
    if is_ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(7200)).into();
    params.not_after = (now + validity).into();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("op.pem"), dir.join("op.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn operator_roots_are_checked_and_errors_name_the_file() {
    let state = tempfile::tempdir().unwrap();
    let open = |c: &Path, k: &Path| {
        Ca::open_for_control(
            state.path(),
            "t.local",
            Some((c, k)),
            Duration::from_secs(60),
        )
    };
    let good = tempfile::tempdir().unwrap();
    let (cert, key) = operator_root(good.path(), true, Duration::from_secs(86_400));
    let ca = open(&cert, &key).unwrap();
    assert_eq!(
        ca.root_pem(),
        normalize_pem(&first_cert_der(&std::fs::read_to_string(&cert).unwrap()).unwrap())
    );
    assert!(matches!(
        Ca::open_for_control(state.path(), "t.local", Some((&cert, &key)), Duration::ZERO)
            .unwrap()
            .rotate(Duration::ZERO, Duration::ZERO),
        Err(PkiError::OperatorRoot)
    ));

    let leaf = tempfile::tempdir().unwrap();
    let (not_ca, not_ca_key) = operator_root(leaf.path(), false, Duration::from_secs(86_400));
    let err = open(&not_ca, &not_ca_key).unwrap_err().to_string();
    assert!(err.contains("op.pem") && err.contains("not a CA"), "{err}");

    let old = tempfile::tempdir().unwrap();
    let (expired, expired_key) = operator_root(old.path(), true, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1100));
    let err = open(&expired, &expired_key).unwrap_err().to_string();
    assert!(err.contains("op.pem") && err.contains("expired"), "{err}");

    // The right cert with another root's key.
    let err = open(&cert, &expired_key).unwrap_err().to_string();
    assert!(
        err.contains(&expired_key.display().to_string()) && err.contains("does not match"),
        "{err}"
    );
    let err = open(&cert, &good.path().join("missing.key"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.key"), "{err}");
}

#[test]
fn rotation_keeps_the_old_root_for_the_overlap_then_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = Ca::open_for_control(dir.path(), "t.local", None, Duration::ZERO).unwrap();
    let first = ca.bundle();
    assert_eq!(pem_certs(&first.pem).len(), 1);
    let old_root = ca.root_pem().to_string();
    let key = KeyPair::generate().unwrap();

    let v = ca
        .rotate(Duration::from_secs(30), Duration::from_secs(5))
        .unwrap();
    assert!(v > first.version);
    assert!(matches!(
        ca.rotate(Duration::from_secs(30), Duration::from_secs(5)),
        Err(PkiError::Rotating(_))
    ));
    // Staged: the new root is trusted at once, but the old one still signs.
    let b = ca.bundle();
    assert_eq!(b.version, v);
    assert_eq!(pem_certs(&b.pem).len(), 2);
    assert!(b.pem.starts_with(&old_root));
    let staged = pem_certs(&b.pem)[1].clone();
    let leaf = ca
        .sign_gateway(SubjectKey::Key(&key), "z", "n", Duration::from_secs(60))
        .unwrap();
    assert!(signed_by(&leaf.cert_der, &old_root));
    let at = ca.activates_at().unwrap();
    assert!(!ca.prune(at - Duration::from_secs(1)).unwrap());
    // At activation the new root signs and the old one is kept for the overlap.
    assert!(ca.prune(at).unwrap());
    let v = ca.version();
    let b = ca.bundle();
    assert_eq!(pem_certs(&b.pem).len(), 2);
    assert_eq!(pem_certs(ca.root_pem())[0], staged);
    assert!(b.pem.starts_with(ca.root_pem()) && b.pem.contains(&old_root));
    let leaf = ca
        .sign_gateway(SubjectKey::Key(&key), "z", "n", Duration::from_secs(60))
        .unwrap();
    assert!(signed_by(&leaf.cert_der, ca.root_pem()));
    assert!(!signed_by(&leaf.cert_der, &old_root));

    // A restart (and an offline open) keeps the bundle and the new root.
    let reopened = Ca::open_for_control(dir.path(), "t.local", None, Duration::ZERO).unwrap();
    assert_eq!(reopened.bundle(), b);
    assert_eq!(Ca::open(dir.path()).unwrap().bundle(), b);
    assert_eq!(Ca::version_on_disk(dir.path()), Some(v));
    assert_eq!(
        std::fs::read_to_string(bundle_path(dir.path())).unwrap(),
        b.pem
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join(ROOT_KEY))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Within the overlap nothing is dropped; after it the old root goes.
    assert!(!ca.prune(at + Duration::from_secs(29)).unwrap());
    assert!(ca.prune(at + Duration::from_secs(30)).unwrap());
    let after = ca.bundle();
    assert_eq!(pem_certs(&after.pem).len(), 1);
    assert!(after.version > v);
    assert!(!after.pem.contains(&old_root));
    assert_eq!(Ca::open(dir.path()).unwrap().bundle(), after);
}

#[test]
fn init_refuses_an_existing_ca_and_open_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Ca::open(dir.path())
        .unwrap_err()
        .to_string()
        .contains("bundle.json"));
    Ca::init(dir.path(), "t.local").unwrap();
    assert!(Ca::init(dir.path(), "t.local").is_err());
    assert!(Ca::init(&dir.path().join("x"), "Bad_Domain").is_err());
    assert_eq!(Ca::open(dir.path()).unwrap().trust_domain(), "t.local");
}
