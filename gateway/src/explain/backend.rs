//! The backend part of an explanation: the backendRef chosen and why (weights, the draw and
//! its seed, a cohort pin or sticky decision), and where its first attempt would go (local
//! zone or a failover zone) with every endpoint's live state.

use switchyard_config::Rule;

use super::{BackendChoice, EndpointPlan, EndpointView};
use crate::decide;
use crate::resilience::clock::now_ms;
use crate::resilience::cohort::Why;
use crate::runtime::BackendRuntime;

pub(super) fn choice(
    rule: Option<&Rule>,
    backend: &BackendRuntime,
    index: usize,
    routed: &decide::Routed,
    seed: u64,
) -> BackendChoice {
    let weights: Vec<(String, u32)> = rule
        .map(|r| {
            r.backends
                .iter()
                .map(|b| (b.backend.id.to_string(), b.weight))
                .collect()
        })
        .unwrap_or_default();
    let listed = weights
        .iter()
        .map(|(n, w)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let (why, draw, detail) = match routed.why {
        Some(Why::Weighted { draw }) => (
            "weighted",
            Some(draw),
            format!("weighted draw {draw} of 0..{total} over [{listed}] (seed {seed})"),
        ),
        Some(Why::Pinned) => (
            "pinned",
            None,
            format!("pinned by the cohort header or cookie, whatever the weights [{listed}]"),
        ),
        Some(Why::StickyCookie) => (
            "sticky-cookie",
            None,
            format!("kept by the sticky cohort cookie (weights [{listed}])"),
        ),
        Some(Why::StickyHash) => (
            "sticky-hash",
            None,
            format!("rendezvous hash of the sticky cohort header over [{listed}]"),
        ),
        None => (
            "east-west",
            None,
            "named by the source gateway (east-west)".to_string(),
        ),
    };
    BackendChoice {
        backend: backend.id.to_string(),
        index,
        weights,
        why: why.into(),
        draw,
        seed,
        detail,
        set_cookie: routed.set_cookie.clone(),
        endpoints: Some(endpoint_plan(backend)),
    }
}

/// Where `locality::choose` would send the first attempt, read without picking (which would
/// move round-robin cursors and claim half-open trials).
fn endpoint_plan(backend: &BackendRuntime) -> EndpointPlan {
    let now = now_ms();
    let local: Vec<EndpointView> = backend
        .balancer
        .endpoints
        .iter()
        .map(|e| EndpointView {
            address: e.address.to_string(),
            zone: e.zone.clone(),
            weight: e.weight,
            healthy: e.state.is_healthy(),
            ejected: e.state.outlier.is_ejected(),
            available: e.state.may_serve(now),
        })
        .collect();
    let remote: Vec<(String, usize, usize)> = backend
        .remote
        .iter()
        .map(|z| {
            let (a, t) = z.balancer.availability();
            (z.zone.clone(), a, t)
        })
        .collect();
    let (available, total) = backend.balancer.availability();
    let min = backend.config.policy.locality.min_healthy_percent;
    let panic = backend.config.policy.panic_threshold;
    let local_ok = available > 0 && available as u64 * 100 >= u64::from(min) * total as u64;
    let (target, detail) = if total == 0 && remote.is_empty() {
        (
            "none".to_string(),
            "no endpoint with weight (500 no_endpoints)".to_string(),
        )
    } else if backend.remote.is_empty() {
        if available > 0 {
            (
                "local".to_string(),
                format!("{available}/{total} endpoints in rotation"),
            )
        } else if panic > 0 {
            ("local (panic)".to_string(), format!("0/{total} in rotation, below the panic threshold {panic}%: every endpoint takes traffic"))
        } else {
            (
                "none".to_string(),
                format!("0/{total} in rotation and panic threshold 0 (503 no_healthy_endpoints)"),
            )
        }
    } else if local_ok {
        (
            "local".to_string(),
            format!("{available}/{total} local endpoints in rotation (locality needs {min}%)"),
        )
    } else if let Some((zone, _, _)) = remote.iter().find(|(_, a, _)| *a > 0) {
        (format!("zone {zone}"), format!("{available}/{total} local endpoints in rotation, below the {min}% locality minimum: failover through {zone}'s east-west gateways"))
    } else {
        (
            "local (panic)".to_string(),
            format!("{available}/{total} local endpoints in rotation and no failover zone is up"),
        )
    };
    EndpointPlan {
        algorithm: format!("{:?}", backend.config.policy.lb),
        target,
        detail,
        local,
        remote,
    }
}
