//! ExternalService and egress listener diagnostics, and what a valid allowlist compiles to.

use super::{errors, ok, pos};
use crate::{ExternalProtocol, ListenerProtocol};

const PAYMENTS: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {name: payments, namespace: default}
spec:
  hosts: [api.payments.test, \"*.cdn.test\"]
  addresses: [127.0.0.1]
  ports:
  - number: 80
    protocol: HTTP
    originateTls:
      caFile: certs/payments-ca.pem
      sni: api.payments.test
  - number: 8443
    protocol: TLS
";

#[test]
fn valid_external_service_compiles_into_the_egress_table() {
    let g = ok(&[("conf/egress/payments.yaml", PAYMENTS)]);
    let svc = &g.egress.services()[0];
    assert_eq!(svc.id.to_string(), "default/payments");
    assert_eq!(
        svc.addresses,
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let tls = svc.ports[0].originate_tls.as_ref().unwrap();
    assert_eq!(tls.target_port, 443);
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(std::path::Path::new("conf/egress/certs/payments-ca.pem"))
    );
    assert_eq!(tls.sni.as_deref(), Some("api.payments.test"));
    let m = g.egress.find("img.cdn.test", 8443).unwrap();
    assert_eq!(
        (m.pattern, m.port.protocol),
        ("*.cdn.test", ExternalProtocol::Tls)
    );
    assert!(g.egress.find("api.evil.test", 80).is_none());
}

#[test]
fn bad_hosts_addresses_ports_and_origination() {
    let bad = "\
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {name: bad}
spec:
  hosts: [\"api.*.test\", Upper.test, ok.test, ok.test]
  addresses: [not-an-ip]
  ports:
  - {number: 80, protocol: HTTP}
  - {number: 80, protocol: HTTP}
  - {number: 443, protocol: TLS, originateTls: {}}
  - {number: 25, protocol: SMTP}
  - {number: 81, protocol: HTTP, originateTls: {targetPort: 0, caFile: \"\", sni: \"*.x.test\"}}
";
    assert_eq!(
        errors(&[("e.yaml", bad)]),
        [
            format!("e.yaml:{}: ExternalService default/bad spec.hosts[0]: invalid hostname \"api.*.test\": `*` is only allowed as the whole first label (`*.example.com`)", pos(bad, "\"api", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.hosts[1]: invalid hostname \"Upper.test\": only lowercase letters, digits, '-' and '.' are allowed", pos(bad, "Upper", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.hosts[3]: host \"ok.test\" is listed twice", pos(bad, "ok.test", 1)),
            format!("e.yaml:{}: ExternalService default/bad spec.addresses[0]: invalid IP address \"not-an-ip\" (addresses are IPs; leave them out to resolve the host through DNS)", pos(bad, "not-an-ip", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[1].number: port 80 is listed twice (also spec.ports[0])", pos(bad, "80", 1)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[2].originateTls: originateTls is only allowed on HTTP ports (a TLS port carries the app's own TLS through a CONNECT tunnel)", pos(bad, "{}", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[3].protocol: unsupported protocol \"SMTP\" (supported: HTTP, TLS)", pos(bad, "SMTP", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[4].originateTls.targetPort: port must be between 1 and 65535", pos(bad, "0, caFile", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[4].originateTls.caFile: must name a PEM file (leave it out to verify against the system roots)", pos(bad, "\"\"", 0)),
            format!("e.yaml:{}: ExternalService default/bad spec.ports[4].originateTls.sni: invalid hostname \"*.x.test\": a wildcard is not allowed here", pos(bad, "\"*.x.test", 0)),
        ]
    );
}

#[test]
fn the_same_host_and_port_in_two_services_is_an_error() {
    let other = "\
apiVersion: switchyard.dev/v1alpha1
kind: ExternalService
metadata: {name: other}
spec:
  hosts: [api.other.test, api.payments.test]
  ports: [{number: 8443, protocol: TLS}, {number: 9000, protocol: TLS}]
";
    assert_eq!(
        errors(&[("a/payments.yaml", PAYMENTS), ("b/other.yaml", other)]),
        [format!(
            "b/other.yaml:{}: ExternalService default/other spec.hosts[1]: api.payments.test:8443 is already allowed by ExternalService default/payments (a/payments.yaml:3); a host and port belong to one ExternalService",
            pos(other, "api.payments.test", 0)
        )]
    );
}

#[test]
fn egress_listeners_take_no_hostname_tls_or_routes() {
    let gw = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: egress, namespace: infra}
spec:
  gatewayClassName: switchyard
  listeners:
    - {name: out, port: 15001, protocol: switchyard.dev/Egress}
    - {name: tunnel, port: 15002, protocol: switchyard.dev/EgressConnect, hostname: a.test}
    - {name: bad, port: 15003, protocol: switchyard.dev/Egress, tls: {certificateRefs: [{name: wildcard}]}}
";
    assert_eq!(
        errors(&[("gw.yaml", gw)]),
        [
            format!("gw.yaml:{}: Gateway infra/egress spec.listeners[1].hostname: switchyard.dev/EgressConnect listeners take no hostname (the ExternalServices decide what is reachable)", pos(gw, "a.test", 0)),
            format!("gw.yaml:{}: Gateway infra/egress spec.listeners[2].tls: switchyard.dev/Egress listeners take no tls (the ExternalServices decide what is reachable)", pos(gw, "certificateRefs: [{name: wildcard}]}}", 0)),
        ]
    );
    let good = gw.split("    - {name: tunnel").next().unwrap().to_string()
        + "    - {name: tunnel, port: 15002, protocol: switchyard.dev/EgressConnect}\n";
    let g = ok(&[("gw.yaml", &good)]);
    let egress = g.gateway(Some("infra/egress")).unwrap();
    let protocols: Vec<_> = egress.ports.iter().map(|p| (p.port, p.protocol)).collect();
    assert_eq!(
        protocols,
        [
            (15001, ListenerProtocol::Egress),
            (15002, ListenerProtocol::EgressConnect)
        ]
    );
}
