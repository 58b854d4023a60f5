//! Prometheus metrics of the gateway. [`catalogue`] names every series and its labels; this
//! module registers them and records one finished request into its cached series handles
//! ([`labels`]); [`state`] reads the long-lived state (in-flight requests, endpoints by
//! state, ejections, the generation) when `/metrics` is scraped, so none of it costs the
//! request path anything.

pub mod catalogue;
pub mod labels;
pub mod state;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::live::LiveConfig;
use catalogue::MetricDef;
use labels::LabelCache;

/// Request-duration buckets, 1 ms to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What identifies a request's series within one generation: the port, the rule and backend
/// by address (0: none), the endpoint (tier and index), the status and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub port: u16,
    pub rule: usize,
    pub backend: usize,
    /// 0: none; 1 + index: a local endpoint; `u32::MAX - index`: a remote zone.
    pub endpoint: u32,
    pub code: u16,
    /// 0: ok; 1 + the reason's discriminant otherwise.
    pub reason: u8,
}

/// The label values of a request's series, built only on a cache miss.
#[derive(Debug, Clone, Default)]
pub struct SeriesLabels {
    pub gateway: String,
    pub zone: String,
    pub listener: String,
    pub route: String,
    pub rule: String,
    pub backend: String,
    pub endpoint_zone: String,
    pub code: String,
    pub reason: &'static str,
}

/// What one finished request adds to its series.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSample {
    pub seconds: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Upstream attempts beyond the first.
    pub retries: u32,
    /// Attempts on a reused pooled connection, and on a new one.
    pub reused: u32,
    pub fresh: u32,
}

/// Cached handles of one request series (and of its backend's per-request counters).
#[derive(Debug)]
pub struct RequestSeries {
    requests: IntCounter,
    duration: Histogram,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    /// Retries, reused and new connections; `None` without a backend.
    backend: Option<[IntCounter; 3]>,
}

/// The gateway's metric registry.
#[derive(Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    retries: IntCounterVec,
    connections: IntCounterVec,
    overflows: IntCounterVec,
    access_log_dropped: IntCounterVec,
    cache: LabelCache<SeriesKey, RequestSeries>,
}

fn def(name: &str) -> Result<&'static MetricDef, prometheus::Error> {
    catalogue::find(name)
        .ok_or_else(|| prometheus::Error::Msg(format!("{name} is not in the catalogue")))
}

pub(crate) fn counter_vec(name: &str) -> Result<IntCounterVec, prometheus::Error> {
    let d = def(name)?;
    IntCounterVec::new(Opts::new(d.name, d.help), d.labels)
}

impl GatewayMetrics {
    pub fn new() -> Result<GatewayMetrics, prometheus::Error> {
        let registry = Registry::new();
        let d = def("switchyard_request_duration_seconds")?;
        let duration = HistogramVec::new(
            HistogramOpts::new(d.name, d.help).buckets(DURATION_BUCKETS.to_vec()),
            d.labels,
        )?;
        let m = GatewayMetrics {
            requests: counter_vec("switchyard_requests_total")?,
            duration,
            request_bytes: counter_vec("switchyard_request_bytes_total")?,
            response_bytes: counter_vec("switchyard_response_bytes_total")?,
            retries: counter_vec("switchyard_upstream_retries_total")?,
            connections: counter_vec("switchyard_upstream_connections_total")?,
            overflows: counter_vec("switchyard_circuit_breaker_overflows_total")?,
            access_log_dropped: counter_vec("switchyard_access_log_dropped_total")?,
            cache: LabelCache::default(),
            registry,
        };
        let collectors: [Box<dyn Collector>; 8] = [
            Box::new(m.requests.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.request_bytes.clone()),
            Box::new(m.response_bytes.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.overflows.clone()),
            Box::new(m.access_log_dropped.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        Ok(m)
    }

    /// Records one finished request of generation `generation`. `labels` runs only when the
    /// series is not cached yet.
    pub fn record(
        &self,
        generation: u64,
        key: SeriesKey,
        labels: impl FnOnce() -> SeriesLabels,
        sample: &RequestSample,
    ) {
        self.cache.with(
            generation,
            key,
            || self.series(&labels()),
            |s| {
                s.requests.inc();
                s.duration.observe(sample.seconds);
                if sample.bytes_in > 0 {
                    s.request_bytes.inc_by(sample.bytes_in);
                }
                if sample.bytes_out > 0 {
                    s.response_bytes.inc_by(sample.bytes_out);
                }
                if let Some([retries, reused, fresh]) = &s.backend {
                    for (c, n) in [
                        (retries, sample.retries),
                        (reused, sample.reused),
                        (fresh, sample.fresh),
                    ] {
                        if n > 0 {
                            c.inc_by(u64::from(n));
                        }
                    }
                }
            },
        );
    }

    fn series(&self, l: &SeriesLabels) -> RequestSeries {
        let request = [
            l.gateway.as_str(),
            &l.zone,
            &l.listener,
            &l.route,
            &l.rule,
            &l.backend,
            &l.endpoint_zone,
            &l.code,
            l.reason,
        ];
        let bytes = [
            l.gateway.as_str(),
            &l.zone,
            &l.listener,
            &l.route,
            &l.backend,
        ];
        let backend = (!l.backend.is_empty()).then(|| {
            let b = [l.gateway.as_str(), &l.zone, &l.backend];
            [
                self.retries.with_label_values(&b),
                self.connections
                    .with_label_values(&[b[0], b[1], b[2], "true"]),
                self.connections
                    .with_label_values(&[b[0], b[1], b[2], "false"]),
            ]
        });
        RequestSeries {
            requests: self.requests.with_label_values(&request),
            duration: self.duration.with_label_values(&request[..8]),
            request_bytes: self.request_bytes.with_label_values(&bytes),
            response_bytes: self.response_bytes.with_label_values(&bytes),
            backend,
        }
    }

    /// Counts a request refused by a full circuit-breaker limit (a rare path: no cache).
    pub fn overflow(&self, gateway: &str, zone: &str, backend: &str, limit: &str) {
        self.overflows
            .with_label_values(&[gateway, zone, backend, limit])
            .inc();
    }

    /// The access log's drop counter for this gateway.
    pub fn access_log_dropped(&self, gateway: &str, zone: &str) -> IntCounter {
        self.access_log_dropped.with_label_values(&[gateway, zone])
    }

    /// Request series handles cached for the current generation.
    pub fn cached_series(&self) -> usize {
        self.cache.len()
    }

    /// The text exposition of every metric: the registry's plus the state read from `live`.
    pub fn render(&self, live: &LiveConfig) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(state::families(live));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding into a Vec fails only on invalid families, which the catalogue rules out.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
