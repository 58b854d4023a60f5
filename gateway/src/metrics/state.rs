//! The state series, computed when `/metrics` is scraped from the live generation and the
//! long-lived state it points at: requests in flight per backend (the endpoints' in-flight
//! counters), endpoints by state, outlier ejections, and the generation in force with the
//! time it was swapped in. Nothing here touches the request path.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use super::catalogue::find;
use crate::live::LiveConfig;
use crate::resilience::clock::now_ms;
use crate::runtime::BackendRuntime;

fn gauge_vec(name: &str) -> Option<IntGaugeVec> {
    let d = find(name)?;
    IntGaugeVec::new(Opts::new(d.name, d.help), d.labels).ok()
}

/// Endpoints of a backend's own zone by state: (available, ejected, unhealthy).
pub fn endpoint_states(b: &BackendRuntime, now: u64) -> (i64, i64, i64) {
    let mut counts = (0, 0, 0);
    for e in &b.balancer.endpoints {
        if !e.state.is_healthy() {
            counts.2 += 1;
        } else if !e.state.may_serve(now) {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    counts
}

/// Requests in flight on the backend's endpoints, local and remote zones.
pub fn in_flight(b: &BackendRuntime) -> u64 {
    let local = b.balancer.endpoints.iter();
    let remote = b.remote.iter().flat_map(|z| z.balancer.endpoints.iter());
    local.chain(remote).map(|e| e.state.in_flight()).sum()
}

/// Outlier ejections of the backend's endpoints and of its paths to other zones.
pub fn ejections(b: &BackendRuntime) -> u64 {
    let local = b.balancer.state().outlier.ejections_total();
    let remote: u64 = b
        .remote
        .iter()
        .map(|z| z.balancer.state().outlier.ejections_total())
        .sum();
    local + remote
}

/// The state families, read now.
pub fn families(live: &LiveConfig) -> Vec<MetricFamily> {
    let rt = live.current();
    let gw = rt.gateway();
    let gateway = gw.id.to_string();
    let zone = gw.zone.clone().unwrap_or_default();
    let (Some(flight), Some(endpoints), Some(generation)) = (
        gauge_vec("switchyard_upstream_requests_in_flight"),
        gauge_vec("switchyard_endpoints"),
        gauge_vec("switchyard_generation"),
    ) else {
        return Vec::new();
    };
    let Some(applied) = find("switchyard_generation_applied_timestamp_seconds")
        .and_then(|d| GaugeVec::new(Opts::new(d.name, d.help), d.labels).ok())
    else {
        return Vec::new();
    };
    let Ok(ejected) = super::counter_vec("switchyard_outlier_ejections_total") else {
        return Vec::new();
    };
    let now = now_ms();
    for b in rt.backend_runtimes() {
        let id = b.id.to_string();
        let labels = [gateway.as_str(), &zone, &id];
        flight
            .with_label_values(&labels)
            .set(i64::try_from(in_flight(b)).unwrap_or(i64::MAX));
        ejected.with_label_values(&labels).inc_by(ejections(b));
        let (available, out, unhealthy) = endpoint_states(b, now);
        for (state, n) in [
            ("available", available),
            ("ejected", out),
            ("unhealthy", unhealthy),
        ] {
            endpoints
                .with_label_values(&[gateway.as_str(), &zone, &id, state])
                .set(n);
        }
    }
    let gz = [gateway.as_str(), &zone];
    generation
        .with_label_values(&gz)
        .set(i64::try_from(rt.info.number).unwrap_or(i64::MAX));
    applied
        .with_label_values(&gz)
        .set(live.applied_at_ms() as f64 / 1000.0);
    let mut out = Vec::new();
    out.extend(flight.collect());
    out.extend(ejected.collect());
    out.extend(endpoints.collect());
    out.extend(generation.collect());
    out.extend(applied.collect());
    out.retain(|f| !f.get_metric().is_empty());
    out
}
