//! The gateway's Prometheus metric names and label sets: the contract between the metrics
//! registry (which must register exactly these), the Grafana dashboard in `deploy/grafana/`
//! (whose queries may name only these) and the README's metrics reference.
//!
//! Label cardinality is bounded by configuration: routes, rules, backends, zones and listeners
//! come from the route files, `code` is an HTTP status, `reason` one of the fixed reason
//! flags. Raw paths, hosts and client addresses are never labels.

/// One metric: name, type and label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Prometheus metric types used by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Labels of per-request series.
pub const REQUEST_LABELS: &[&str] = &[
    "gateway",
    "zone",
    "listener",
    "route",
    "rule",
    "backend",
    "endpoint_zone",
    "code",
    "reason",
];
/// Labels of the request-duration histogram (no `reason`: it is implied by code and route).
pub const DURATION_LABELS: &[&str] = &[
    "gateway",
    "zone",
    "listener",
    "route",
    "rule",
    "backend",
    "endpoint_zone",
    "code",
];
/// Labels of byte counters.
pub const BYTES_LABELS: &[&str] = &["gateway", "zone", "listener", "route", "backend"];
/// Labels of per-backend state.
pub const BACKEND_LABELS: &[&str] = &["gateway", "zone", "backend"];

/// Every metric the gateway exports on its admin listener at `/metrics`.
pub const GATEWAY_METRICS: &[MetricDef] = &[
    MetricDef {
        name: "switchyard_requests_total",
        kind: MetricKind::Counter,
        labels: REQUEST_LABELS,
        help: "Requests completed, by route, backend, status code and reason flag (ok when none).",
    },
    MetricDef {
        name: "switchyard_request_duration_seconds",
        kind: MetricKind::Histogram,
        labels: DURATION_LABELS,
        help: "Time from the request head to the end of the response.",
    },
    MetricDef {
        name: "switchyard_request_bytes_total",
        kind: MetricKind::Counter,
        labels: BYTES_LABELS,
        help: "Request body bytes received from clients.",
    },
    MetricDef {
        name: "switchyard_response_bytes_total",
        kind: MetricKind::Counter,
        labels: BYTES_LABELS,
        help: "Response body bytes sent to clients.",
    },
    MetricDef {
        name: "switchyard_upstream_retries_total",
        kind: MetricKind::Counter,
        labels: BACKEND_LABELS,
        help: "Retried upstream attempts.",
    },
    MetricDef {
        name: "switchyard_upstream_connections_total",
        kind: MetricKind::Counter,
        labels: &["gateway", "zone", "backend", "reused"],
        help: "Upstream attempts by whether they reused a pooled connection.",
    },
    MetricDef {
        name: "switchyard_upstream_requests_in_flight",
        kind: MetricKind::Gauge,
        labels: BACKEND_LABELS,
        help:
            "Requests in flight to a backend's endpoints (local and other zones), read at scrape.",
    },
    MetricDef {
        name: "switchyard_outlier_ejections_total",
        kind: MetricKind::Counter,
        labels: BACKEND_LABELS,
        help: "Endpoints ejected by outlier detection.",
    },
    MetricDef {
        name: "switchyard_endpoints",
        kind: MetricKind::Gauge,
        labels: &["gateway", "zone", "backend", "state"],
        help: "Endpoints of a backend by state: available, ejected or unhealthy.",
    },
    MetricDef {
        name: "switchyard_circuit_breaker_overflows_total",
        kind: MetricKind::Counter,
        labels: &["gateway", "zone", "backend", "limit"],
        help: "Requests refused because a circuit-breaker limit was full.",
    },
    MetricDef {
        name: "switchyard_generation",
        kind: MetricKind::Gauge,
        labels: &["gateway", "zone"],
        help: "The generation number this gateway applies.",
    },
    MetricDef {
        name: "switchyard_generation_applied_timestamp_seconds",
        kind: MetricKind::Gauge,
        labels: &["gateway", "zone"],
        help: "When the applied generation was swapped in (Unix time).",
    },
    MetricDef {
        name: "switchyard_access_log_dropped_total",
        kind: MetricKind::Counter,
        labels: &["gateway", "zone"],
        help: "Access-log lines dropped because the writer fell behind (the request never waits).",
    },
];

/// Looks a metric up by name.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    GATEWAY_METRICS.iter().find(|m| m.name == name)
}
