//! `deploy/k8s` against the code: the switchyard containers run flags the binary accepts, and
//! their ports, probes, scrape annotations, tokens, zones, placement and shutdown timing agree
//! with those flags, with each other (gateways to the control Service) and with the Gateways
//! of the routes ConfigMap (built by the validator); the example backends are the route
//! files' endpoints.

use std::collections::BTreeSet;

use serde_yaml::Value;

use crate::k8s::{
    env_from_secret, find, manifests, mount_path_of_volume, name, of_kind, ports, route_set,
    selected, service_for, service_targets, switchyard_containers, NAMESPACE, ROUTES_CONFIGMAP,
};
use crate::routes;
use crate::yaml::{at, labels_at, selects, seq_at, str_at, u64_at};
use crate::RUNTIME_SHUTDOWN_S;
#[test]
fn the_control_deployment_agrees_with_its_flags_the_secret_and_the_configmap() {
    let (_, docs) = manifests();
    let all = switchyard_containers(&docs);
    let controls: Vec<_> = all.iter().filter(|(_, _, a)| a.sub == "control").collect();
    let [(d, c, args)] = controls.as_slice() else {
        panic!("exactly one control container, found {}", controls.len())
    };
    let ctx = d.to_string();
    assert_eq!(
        u64_at(&d.value, "spec.replicas", d),
        1,
        "{d}: the state dir has one writer"
    );
    assert_eq!(
        str_at(&d.value, "spec.strategy.type", d),
        "Recreate",
        "{d}: never two writers of the state dir"
    );
    let routes = mount_path_of_volume(d, c, |v| {
        at(v, "configMap.name").and_then(Value::as_str) == Some(ROUTES_CONFIGMAP)
    });
    assert_eq!(
        routes,
        [args.value("config-dir", &ctx)],
        "{d}: --config-dir must be the routes ConfigMap's mountPath"
    );
    let state = mount_path_of_volume(d, c, |v| at(v, "persistentVolumeClaim").is_some());
    assert_eq!(
        state,
        [args.value("state-dir", &ctx)],
        "{d}: --state-dir must be the PVC's mountPath"
    );
    let listen = args.addr("listen", &ctx);
    assert!(
        listen.ip().is_unspecified(),
        "{d}: --listen {listen} must accept other pods' connections"
    );
    let p = ports(c, d);
    assert_eq!(
        p.get("api"),
        Some(&listen.port()),
        "{d}: container port `api` must be --listen's port"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            str_at(c, &format!("{probe}.httpGet.path"), d),
            "/healthz",
            "{d}: {probe}: the control API's unauthenticated path"
        );
        assert_eq!(str_at(c, &format!("{probe}.httpGet.port"), d), "api", "{d}");
    }
    let op = env_from_secret(c, "SWITCHYARD_TOKEN", d);
    let gw = env_from_secret(c, "SWITCHYARD_GATEWAY_TOKEN", d);
    assert_eq!(op.0, gw.0, "{d}: both tokens come from one Secret");
    assert_ne!(
        op.1, gw.1,
        "{d}: the operator and gateway tokens must differ"
    );
    let secret = labels_at(&find(&docs, "Secret", op.0, d).value, "stringData", d);
    assert_ne!(
        secret[op.1], secret[gw.1],
        "the Secret's two tokens must differ (the control service refuses equal ones)"
    );
    let svc = service_for(&docs, d);
    assert!(
        service_targets(svc).contains_key("api"),
        "{svc}: must target `api`"
    );
}

#[test]
fn gateway_deployments_agree_with_their_flags_the_control_service_and_their_zones_gateway() {
    let (_, docs) = manifests();
    let set = route_set(&docs);
    let all = switchyard_containers(&docs);
    let control = all
        .iter()
        .find(|(_, _, a)| a.sub == "control")
        .expect("a control container");
    let control_svc = service_for(&docs, control.0);
    let control_port = service_targets(control_svc)["api"];
    let gateways: Vec<_> = all.iter().filter(|(_, _, a)| a.sub == "gateway").collect();
    let mut zones = BTreeSet::new();
    for (d, c, args) in gateways {
        let ctx = d.to_string();
        // Subscribed to the control Service, by its cluster DNS name and port.
        let url = args.value("control", &ctx);
        let svc = name(control_svc);
        let allowed: Vec<String> = [
            svc.to_string(),
            format!("{svc}.{NAMESPACE}"),
            format!("{svc}.{NAMESPACE}.svc"),
            format!("{svc}.{NAMESPACE}.svc.cluster.local"),
        ]
        .iter()
        .map(|h| format!("http://{h}:{control_port}"))
        .collect();
        assert!(
            allowed.iter().any(|a| a == url),
            "{d}: --control {url} must be one of {allowed:?}"
        );
        let zone = args.value("zone", &ctx);
        assert!(
            zones.insert(zone.to_string()),
            "{d}: two Deployments for zone {zone}"
        );
        assert_eq!(
            args.value("name", &ctx),
            "$(POD_NAME)",
            "{d}: --name from the pod name"
        );
        let pod_name = seq_at(c, "env")
            .iter()
            .find(|e| at(e, "name").and_then(Value::as_str) == Some("POD_NAME"))
            .expect("POD_NAME");
        assert_eq!(
            str_at(pod_name, "valueFrom.fieldRef.fieldPath", d),
            "metadata.name",
            "{d}: POD_NAME (downward API)"
        );
        let (secret, key) = env_from_secret(c, "SWITCHYARD_GATEWAY_TOKEN", d);
        let (csecret, ckey) = env_from_secret(control.1, "SWITCHYARD_GATEWAY_TOKEN", control.0);
        assert_eq!(
            (secret, key),
            (csecret, ckey),
            "{d}: the gateway token must be the one the control service expects"
        );
        assert!(
            mount_path_of_volume(d, c, |_| true).contains(&args.value("state-dir", &ctx)),
            "{d}: --state-dir must be a mounted volume"
        );

        // Ports: the zone's Gateway listeners by name, plus the admin listener.
        let gw = set.gateway_for_zone(zone, &ctx);
        let mut want = routes::listener_ports(gw);
        let admin = args.addr("admin", &ctx);
        assert!(
            admin.ip().is_unspecified(),
            "{d}: --admin {admin} must accept the kubelet's probes and Prometheus"
        );
        assert!(
            want.insert("admin".into(), admin.port()).is_none(),
            "{d}: a Gateway listener is named admin"
        );
        assert_eq!(
            ports(c, d),
            want,
            "{d}: container ports must be {}'s listeners (by name) plus `admin` (--admin)",
            gw.id
        );
        let svc = service_for(&docs, d);
        let exposed: BTreeSet<String> = service_targets(svc).into_keys().collect();
        let listeners: BTreeSet<String> = routes::listener_ports(gw).into_keys().collect();
        assert_eq!(
            exposed, listeners,
            "{svc}: must expose every listener of {} (ingress and east-west)",
            gw.id
        );

        // Probes and scraping on the admin listener.
        assert_eq!(str_at(c, "readinessProbe.httpGet.path", d), "/ready", "{d}");
        assert_eq!(
            str_at(c, "livenessProbe.httpGet.path", d),
            "/healthz",
            "{d}"
        );
        let ann = labels_at(&d.value, "spec.template.metadata.annotations", d);
        assert_eq!(
            ann.get("prometheus.io/scrape").map(String::as_str),
            Some("true"),
            "{d}"
        );
        assert_eq!(
            ann.get("prometheus.io/port"),
            Some(&admin.port().to_string()),
            "{d}: scrape the admin port"
        );
        assert_eq!(
            ann.get("prometheus.io/path").map(String::as_str),
            Some("/metrics"),
            "{d}"
        );

        // Placement: pinned to the zone's nodes and spread over them.
        let terms = seq_at(&d.value, "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        let pinned = terms
            .iter()
            .flat_map(|t| seq_at(t, "matchExpressions"))
            .any(|e| {
                at(e, "key").and_then(Value::as_str) == Some("topology.kubernetes.io/zone")
                    && at(e, "operator").and_then(Value::as_str) == Some("In")
                    && seq_at(e, "values").iter().any(|v| v.as_str() == Some(zone))
            });
        assert!(
            pinned,
            "{d}: nodeAffinity must require topology.kubernetes.io/zone In [{zone}]"
        );
        let pod_labels = labels_at(&d.value, "spec.template.metadata.labels", d);
        let spread = seq_at(&d.value, "spec.template.spec.topologySpreadConstraints");
        assert!(!spread.is_empty(), "{d}: topologySpreadConstraints");
        for s in spread {
            str_at(s, "topologyKey", d);
            assert!(
                selects(&labels_at(s, "labelSelector.matchLabels", d), &pod_labels),
                "{d}: a spread constraint must select the Deployment's own pods"
            );
        }

        // Shutdown: preStop, then SIGTERM's grace period and the runtimes' shutdown, all
        // within terminationGracePeriodSeconds.
        let grace = args.number("grace-period", &ctx);
        let pre_stop = at(c, "lifecycle.preStop.sleep.seconds")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let termination = u64_at(
            &d.value,
            "spec.template.spec.terminationGracePeriodSeconds",
            d,
        );
        assert!(termination > pre_stop + grace + RUNTIME_SHUTDOWN_S, "{d}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + --grace-period {grace} + {RUNTIME_SHUTDOWN_S}");
        assert!(
            pre_stop > 0,
            "{d}: a preStop delay lets the endpoints controller drop the pod before SIGTERM"
        );
        assert_eq!(
            at(&d.value, "spec.template.spec.securityContext.runAsNonRoot")
                .and_then(Value::as_bool),
            Some(true),
            "{d}"
        );
    }
    let want: BTreeSet<String> = set.zones().into_iter().collect();
    assert_eq!(
        zones, want,
        "one gateway Deployment per zone of the routes ConfigMap"
    );
    assert!(zones.len() >= 2, "two zones at least");
}

#[test]
fn example_backends_are_the_route_files_endpoints() {
    let (_, docs) = manifests();
    let set = route_set(&docs);
    for backend in set.generation.backends.values() {
        for ep in &backend.endpoints {
            let ctx = format!("Backend {} endpoint {}", backend.id, ep.address);
            let svc = of_kind(&docs, "Service")
                .find(|s| {
                    at(&s.value, "spec.clusterIP").and_then(Value::as_str)
                        == Some(&ep.address.ip().to_string())
                })
                .unwrap_or_else(|| panic!("{ctx}: no Service has that clusterIP"));
            assert!(
                seq_at(&svc.value, "spec.ports")
                    .iter()
                    .any(|p| u64_at(p, "port", svc) == u64::from(ep.address.port())),
                "{ctx}: {svc} has no port {}",
                ep.address.port()
            );
            let d = selected(&docs, &labels_at(&svc.value, "spec.selector", svc), svc);
            let zones: Vec<&str> = seq_at(&d.value, "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
                .iter().flat_map(|t| seq_at(t, "matchExpressions")).flat_map(|e| seq_at(e, "values")).filter_map(Value::as_str).collect();
            assert_eq!(
                zones,
                [ep.zone.as_deref().unwrap_or("")],
                "{ctx}: {d} must run in the endpoint's zone"
            );
        }
    }
}
