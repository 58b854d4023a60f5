//! The mesh listeners: `switchyard.dev/EastWest` and the HTTPS `switchyard.dev/client-certificate`
//! TLS option, what they compile to and every diagnostic with its position.

use super::{errors, ok, pos};
use crate::model::{ClientCertificates, ListenerProtocol};
use crate::ObjRef;

const MESH: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: mesh
  namespace: infra
  labels: {switchyard.dev/zone: zone-a}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: east-west, port: 15443, protocol: switchyard.dev/EastWest}
    - name: apps
      port: 8443
      protocol: HTTPS
      tls:
        certificateRefs: [{name: wildcard}]
        options: {switchyard.dev/client-certificate: Optional, example.com/other: anything}
    - name: strict
      port: 9443
      protocol: HTTPS
      tls:
        certificateRefs: [{name: wildcard}]
        options: {switchyard.dev/client-certificate: Required}
";

#[test]
fn east_west_and_mesh_listeners_compile() {
    let g = ok(&[("mesh.yaml", MESH)]);
    let gw = g
        .gateways
        .iter()
        .find(|g| g.id == ObjRef::new("infra", "mesh"))
        .unwrap();
    let ew = gw.port(15443).unwrap();
    assert_eq!(ew.protocol, ListenerProtocol::EastWest);
    assert_eq!(ew.client_certificates, None);
    assert!(ew.needs_mesh_identity());
    assert_eq!(ew.listeners[0].tls, None);
    let apps = gw.port(8443).unwrap();
    assert_eq!(apps.client_certificates, Some(ClientCertificates::Optional));
    assert!(apps.needs_mesh_identity());
    assert_eq!(
        gw.port(9443).unwrap().client_certificates,
        Some(ClientCertificates::Required)
    );
    // The shared Gateway's plain HTTPS listener is no mesh listener.
    let edge = g
        .gateways
        .iter()
        .find(|g| g.id == ObjRef::new("infra", "edge"))
        .unwrap();
    assert!(!edge.port(8443).unwrap().needs_mesh_identity());
    assert_eq!(
        ListenerProtocol::EastWest.to_string(),
        "switchyard.dev/EastWest"
    );
}

#[test]
fn mesh_listener_mistakes_are_reported_where_they_are() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bad, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: a, port: 15443, protocol: switchyard.dev/EastWest, hostname: x.example.com, tls: {certificateRefs: [{name: wildcard}]}}
    - {name: b, port: 15444, protocol: switchyard.dev/EastWest}
    - {name: c, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: wildcard}], options: {switchyard.dev/client-certificate: Sometimes}}}
    - {name: d, port: 8444, protocol: HTTPS, tls: {certificateRefs: [{name: wildcard}], options: {switchyard.dev/verify-depth: \"3\"}}}
    - {name: e, port: 8445, protocol: HTTPS, hostname: a.example.com, tls: {certificateRefs: [{name: wildcard}], options: {switchyard.dev/client-certificate: Required}}}
    - {name: f, port: 8445, protocol: HTTPS, hostname: b.example.com, tls: {certificateRefs: [{name: wildcard}]}}
";
    let e = |needle: &str, nth, field: &str, msg: &str| {
        format!(
            "gw.yaml:{}: Gateway infra/bad spec.listeners[{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("gw.yaml", yaml)]),
        [
            e("switchyard.dev/EastWest", 0, "0].protocol", "an EastWest listener needs the Gateway's switchyard.dev/zone label"),
            e("x.example.com", 0, "0].hostname", "an EastWest listener takes no hostname (peers dial gateway.ZONE.TRUST_DOMAIN)"),
            e("certificateRefs", 0, "0].tls", "an EastWest listener takes no tls: it serves the gateway's mesh certificate and requires gateway client certificates"),
            e("switchyard.dev/EastWest", 1, "1].protocol", "an EastWest listener needs the Gateway's switchyard.dev/zone label"),
            e("switchyard.dev/EastWest", 1, "1].protocol", "at most one switchyard.dev/EastWest listener per Gateway (also spec.listeners[0])"),
            e("Sometimes", 0, "2].tls.options.switchyard.dev/client-certificate", "invalid switchyard.dev/client-certificate \"Sometimes\" (supported: Optional, Required)"),
            e("\"3\"", 0, "3].tls.options.switchyard.dev/verify-depth", "unknown TLS option \"switchyard.dev/verify-depth\" (supported: switchyard.dev/client-certificate)"),
            e("certificateRefs", 4, "5].tls.options", "listeners on port 8445 must agree on switchyard.dev/client-certificate (listener \"e\" has Required, this one none)"),
        ]
    );
}

#[test]
fn a_hostname_address_is_what_other_zones_dial() {
    let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ew, labels: {switchyard.dev/zone: zone-b}}
spec:
  gatewayClassName: switchyard
  addresses: [{type: Hostname, value: gw-b.zone-b.svc.cluster.local}]
  listeners: [{name: ew, port: 15443, protocol: switchyard.dev/EastWest}]
";
    let g = crate::build(&[crate::SourceFile::new("g.yaml", yaml)]).unwrap();
    let gw = g.gateway(Some("ew")).unwrap();
    assert_eq!(
        gw.hostname.as_deref(),
        Some("gw-b.zone-b.svc.cluster.local")
    );
    assert!(gw.address.is_unspecified());
    let bad = yaml.replace("gw-b.zone-b.svc.cluster.local", "\"bad name\"");
    let err = crate::build(&[crate::SourceFile::new("g.yaml", bad.as_str())])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("g.yaml:6:") && err.contains("spec.addresses[0].value"),
        "{err}"
    );
}
