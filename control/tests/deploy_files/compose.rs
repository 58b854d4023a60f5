//! `deploy/docker/compose.yaml`: it parses; the switchyard services run flags the binary
//! accepts; the gateways reach the control service by its service name and port, serve one zone
//! each, bind their Gateway's address (their fixed IP on the network) and publish only its
//! listener ports and the admin port; the route files it mounts validate, and every Backend
//! endpoint is an echo container's address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde_yaml::Value;

use crate::cli::{self, Args};
use crate::routes::{self, RouteSet};
use crate::yaml::{self, at, seq_at, str_at, Doc};
use crate::{image, read, RUNTIME_SHUTDOWN_S};

const FILE: &str = "docker/compose.yaml";
const NETWORK: &str = "mesh";

pub fn compose() -> Doc {
    let docs = yaml::docs(FILE, &read(FILE));
    let [doc] = docs.as_slice() else {
        panic!("{FILE}: one document")
    };
    doc.clone()
}

pub fn services(doc: &Doc) -> BTreeMap<String, Value> {
    at(&doc.value, "services")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{FILE}: services"))
        .iter()
        .map(|(k, v)| (k.as_str().expect("a service name").to_string(), v.clone()))
        .collect()
}

/// The switchyard services and their checked command lines.
fn switchyard(services: &BTreeMap<String, Value>) -> Vec<(String, Args)> {
    services
        .iter()
        .filter(|(_, s)| at(s, "image").and_then(Value::as_str) == Some(&image()))
        .map(|(name, s)| {
            let ctx = format!("{FILE} service {name}");
            let argv = yaml::strings(seq_at(s, "command"), &ctx);
            (name.clone(), cli::check(&argv, &ctx))
        })
        .collect()
}

fn ipv4(s: &Value, ctx: &str) -> Ipv4Addr {
    let ip = str_at(s, &format!("networks.{NETWORK}.ipv4_address"), &ctx);
    ip.parse()
        .unwrap_or_else(|e| panic!("{ctx}: ipv4_address {ip:?}: {e}"))
}

/// `HOST_IP:HOST_PORT:CONTAINER_PORT` mappings: the container ports.
fn published(s: &Value, ctx: &str) -> BTreeSet<u16> {
    yaml::strings(seq_at(s, "ports"), &ctx)
        .iter()
        .map(|p| {
            let container = p.rsplit(':').next().unwrap_or_default();
            container
                .parse()
                .unwrap_or_else(|e| panic!("{ctx}: port mapping {p:?}: {e}"))
        })
        .collect()
}

/// `stop_grace_period` in seconds (`20s`, `1m`).
fn stop_grace(s: &Value, ctx: &str) -> u64 {
    let v = str_at(s, "stop_grace_period", &ctx);
    let d = switchyard_config::parse_duration(v)
        .unwrap_or_else(|e| panic!("{ctx}: stop_grace_period {v:?}: {e}"));
    d.as_secs()
}

/// The host directory mounted at `target` (a bind mount `./dir:target[:ro]`).
fn bind_source(s: &Value, target: &str, ctx: &str) -> PathBuf {
    for v in yaml::strings(seq_at(s, "volumes"), &ctx) {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.get(1) == Some(&target) {
            assert!(
                parts[0].starts_with("./") || parts[0].starts_with("../"),
                "{ctx}: {v}: a bind mount relative to the compose file"
            );
            return crate::deploy_dir().join("docker").join(parts[0]);
        }
    }
    panic!("{ctx}: nothing is mounted at {target}");
}

fn named_volume_at(s: &Value, target: &str, doc: &Doc, ctx: &str) {
    let declared: BTreeSet<String> = at(&doc.value, "volumes")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let found = yaml::strings(seq_at(s, "volumes"), &ctx)
        .into_iter()
        .any(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            parts.get(1) == Some(&target) && declared.contains(parts[0])
        });
    assert!(found, "{ctx}: {target} must be a declared named volume");
}

#[test]
fn compose_runs_a_control_service_and_one_gateway_per_zone_that_agree_with_the_code() {
    let doc = compose();
    let services = services(&doc);
    let sy = switchyard(&services);
    let controls: Vec<&(String, Args)> = sy.iter().filter(|(_, a)| a.sub == "control").collect();
    let [(control_name, control)] = controls.as_slice() else {
        panic!("{FILE}: one control service")
    };
    let cctx = format!("{FILE} service {control_name}");
    let cs = &services[control_name];
    let build_file = str_at(cs, "build.dockerfile", &cctx);
    let context = crate::deploy_dir()
        .join("docker")
        .join(str_at(cs, "build.context", &cctx));
    assert!(
        context.join(build_file).is_file(),
        "{cctx}: build.dockerfile {build_file} not found in the build context"
    );
    assert_eq!(build_file, "deploy/docker/Dockerfile");
    let routes_dir = bind_source(cs, control.value("config-dir", &cctx), &cctx);
    let set: RouteSet = routes::build_dir(&routes_dir, &format!("{cctx} --config-dir"));
    named_volume_at(cs, control.value("state-dir", &cctx), &doc, &cctx);
    let listen = control.addr("listen", &cctx);
    assert!(
        listen.ip().is_unspecified(),
        "{cctx}: --listen must accept the gateways' connections"
    );
    for var in ["SWITCHYARD_TOKEN", "SWITCHYARD_GATEWAY_TOKEN"] {
        str_at(cs, &format!("environment.{var}"), &cctx);
    }

    let subnet = str_at(
        &doc.value,
        &format!("networks.{NETWORK}.ipam.config.0.subnet"),
        &FILE,
    );
    let (net, bits) = subnet.split_once('/').expect("a CIDR subnet");
    let net: Ipv4Addr = net.parse().expect("a subnet address");
    let mask = u32::MAX << (32 - bits.parse::<u32>().expect("a prefix length"));
    let in_subnet = |ip: Ipv4Addr| u32::from(ip) & mask == u32::from(net);

    let mut zones = BTreeSet::new();
    for (name, args) in sy.iter().filter(|(_, a)| a.sub == "gateway") {
        let ctx = format!("{FILE} service {name}");
        let s = &services[name];
        assert_eq!(
            args.value("control", &ctx),
            format!("http://{control_name}:{}", listen.port()),
            "{ctx}: --control"
        );
        let zone = args.value("zone", &ctx);
        assert!(
            zones.insert(zone.to_string()),
            "{ctx}: a second gateway for {zone}"
        );
        str_at(s, "environment.SWITCHYARD_GATEWAY_TOKEN", &ctx);
        named_volume_at(s, args.value("state-dir", &ctx), &doc, &ctx);
        assert!(
            seq_at(s, "depends_on")
                .iter()
                .any(|d| d.as_str() == Some(control_name.as_str())),
            "{ctx}: depends_on {control_name}"
        );
        let gw = set.gateway_for_zone(zone, &ctx);
        let ip = ipv4(s, &ctx);
        assert!(in_subnet(ip), "{ctx}: {ip} is outside {subnet}");
        assert_eq!(
            gw.address,
            IpAddr::V4(ip),
            "{ctx}: {} binds its spec.addresses value, so it must be this container's address",
            gw.id
        );
        let admin = args.addr("admin", &ctx);
        assert!(
            admin.ip().is_unspecified(),
            "{ctx}: --admin must accept published connections"
        );
        let mut allowed: BTreeSet<u16> = routes::listener_ports(gw).into_values().collect();
        allowed.insert(admin.port());
        let p = published(s, &ctx);
        assert!(
            !p.is_empty() && p.is_subset(&allowed),
            "{ctx}: publishes {p:?}; must be {}'s listener ports or the admin port {allowed:?}",
            gw.id
        );
        let grace = args.number("grace-period", &ctx);
        assert!(
            stop_grace(s, &ctx) > grace + RUNTIME_SHUTDOWN_S,
            "{ctx}: stop_grace_period must exceed --grace-period {grace} + {RUNTIME_SHUTDOWN_S}"
        );
    }
    let want: BTreeSet<String> = set.zones().into_iter().collect();
    assert_eq!(
        zones,
        want,
        "{FILE}: one gateway per zone of {}",
        routes_dir.display()
    );
    assert_eq!(zones.len(), 2, "{FILE}: two zones");

    // Every Backend endpoint is an echo container on the network, in the endpoint's zone.
    for backend in set.generation.backends.values() {
        for ep in &backend.endpoints {
            let ctx = format!("Backend {} endpoint {}", backend.id, ep.address);
            let (name, s) = services
                .iter()
                .find(|(n, s)| {
                    at(s, &format!("networks.{NETWORK}.ipv4_address")).is_some()
                        && IpAddr::V4(ipv4(s, n)) == ep.address.ip()
                })
                .unwrap_or_else(|| panic!("{ctx}: no compose service has that address"));
            assert!(in_subnet(ipv4(s, name)), "{ctx}");
            assert_eq!(ep.address.port(), 80, "{ctx}: the echo image listens on 80");
            let img = str_at(s, "image", &ctx);
            assert!(
                img.starts_with("traefik/whoami:"),
                "{ctx}: {name} runs {img}"
            );
            let zone = ep.zone.as_deref().unwrap_or_default();
            assert!(
                name.ends_with(zone),
                "{ctx}: {name} should be named for zone {zone}"
            );
        }
    }
}
