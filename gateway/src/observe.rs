//! What the proxy records about each request, in one place: the per-request notes its hooks
//! take ([`RequestObs`]: trace hop, upstream timings, connection reuse) and, when the request
//! ends, the metrics, the access-log line and the exported span ([`finish`]). The process's
//! handles (metric registry, access-log writer, span exporter) are an [`Observability`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use switchyard_config::Rule;
use thiserror::Error;
use time::OffsetDateTime;

use crate::accesslog::{self, AccessLog, AccessLogError, AccessLogTarget, Record};
use crate::attempt::Attempts;
use crate::live::LiveConfig;
use crate::locality::Tier;
use crate::metrics::{GatewayMetrics, RequestSample, SeriesKey, SeriesLabels};
use crate::request::{self, X_REQUEST_ID};
use crate::respond::Reason;
use crate::runtime::{BackendRuntime, Runtime};
use crate::trace::otlp::{OtlpError, ResourceInfo};
use crate::trace::{HopContext, OtlpExporter, SpanRecord, Tracer, TRACESTATE};

/// Observability settings of the gateway process (command-line flags).
#[derive(Debug, Clone)]
pub struct ObserveOptions {
    /// `--metrics`: record request metrics and serve `/metrics` (default on; off is the
    /// baseline for measuring their cost).
    pub metrics: bool,
    /// `--access-log`: off (default), stdout, stderr or a file path.
    pub access_log: AccessLogTarget,
    /// `--access-log-sample`: fraction of non-error requests logged (errors always are).
    pub access_log_sample: f64,
    /// `--otlp-endpoint`: OTLP/HTTP collector base URL; no export without it.
    pub otlp_endpoint: Option<String>,
    /// `--trace-sample`: fraction of the traces this gateway starts that are sampled.
    pub trace_sample: f64,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            metrics: true,
            access_log: AccessLogTarget::Off,
            access_log_sample: 1.0,
            otlp_endpoint: None,
            trace_sample: 1.0,
        }
    }
}

#[derive(Debug, Error)]
pub enum ObserveError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error(transparent)]
    Otlp(#[from] OtlpError),
}

/// The process's metrics, access log and tracer.
#[derive(Debug)]
pub struct Observability {
    /// `None` with `--metrics off`.
    pub metrics: Option<GatewayMetrics>,
    pub access_log: Option<AccessLog>,
    pub tracer: Tracer,
}

impl Observability {
    /// Builds the registry and starts the access-log writer and span exporter as configured.
    pub fn start(opts: &ObserveOptions, runtime: &Runtime) -> Result<Observability, ObserveError> {
        let metrics = opts.metrics.then(GatewayMetrics::new).transpose()?;
        let gw = runtime.gateway();
        let (gateway, zone) = (gw.id.to_string(), gw.zone.clone().unwrap_or_default());
        let dropped = match &metrics {
            Some(m) => m.access_log_dropped(&gateway, &zone),
            None => prometheus::IntCounter::new("switchyard_access_log_dropped_total", "unused")?,
        };
        let access_log = AccessLog::start(&opts.access_log, opts.access_log_sample, dropped)?;
        let exporter = match &opts.otlp_endpoint {
            Some(endpoint) => Some(OtlpExporter::start(
                endpoint,
                ResourceInfo { gateway, zone },
            )?),
            None => None,
        };
        Ok(Observability {
            metrics,
            access_log,
            tracer: Tracer {
                exporter,
                sample: opts.trace_sample,
            },
        })
    }
}

/// Per-request notes, filled by the proxy's hooks.
#[derive(Debug, Default)]
pub struct RequestObs {
    /// This hop's trace context and whether it joined the client's trace.
    hop: Option<(HopContext, bool)>,
    connect: Option<Duration>,
    response: Option<Duration>,
    reused: u32,
    fresh: u32,
}

impl RequestObs {
    /// `connected_to_upstream`: an attempt has its connection.
    pub fn connected(&mut self, reused: bool, attempt_started: Option<Instant>) {
        if reused {
            self.reused += 1;
        } else {
            self.fresh += 1;
        }
        self.connect = attempt_started.map(|t| t.elapsed());
        self.response = None;
    }

    /// `upstream_response_filter`: the attempt's response head arrived.
    pub fn response_head(&mut self, attempt_started: Option<Instant>) {
        self.response = attempt_started.map(|t| t.elapsed());
    }

    /// `upstream_request_filter`: writes this hop's `traceparent` (same trace, our span as
    /// the parent) on the upstream request.
    pub fn upstream_request(
        &mut self,
        live: &LiveConfig,
        downstream: &RequestHeader,
        upstream: &mut RequestHeader,
    ) -> pingora::Result<()> {
        let Some(obs) = live.observability() else {
            return Ok(());
        };
        let (hop, joined) = *self.hop.get_or_insert_with(|| obs.tracer.hop(downstream));
        Tracer::write_upstream(&hop, joined, upstream)
    }
}

/// What the proxy knows about a request when it ends.
pub struct Finished<'a> {
    /// The generation the request used (`None` when refused before it loaded one).
    pub runtime: Option<&'a Arc<Runtime>>,
    pub rule: Option<&'a Arc<Rule>>,
    pub backend: Option<&'a Arc<BackendRuntime>>,
    pub tier: Tier,
    pub endpoint: Option<usize>,
    pub reason: Option<Reason>,
    pub attempts: &'a Attempts,
    /// The request id the gateway generated, if it did.
    pub request_id: Option<&'a str>,
    pub started: Instant,
}

/// The endpoint that answered (address and zone): for an east-west hop, the remote
/// gateway's address and zone.
fn endpoint_of<'a>(f: &Finished<'a>) -> Option<(SocketAddr, Option<&'a str>)> {
    let (b, i) = (f.backend?, f.endpoint?);
    match f.tier {
        Tier::Local => b
            .balancer
            .endpoints
            .get(i)
            .map(|e| (e.address, e.zone.as_deref())),
        Tier::Remote(t) => {
            let zone = b.remote.get(t)?;
            let e = zone.balancer.endpoints.get(i)?;
            Some((e.address, Some(zone.zone.as_str())))
        }
    }
}

fn endpoint_key(f: &Finished<'_>) -> u32 {
    match (f.endpoint, f.tier) {
        (None, _) => 0,
        (Some(i), Tier::Local) => 1 + i as u32,
        (Some(_), Tier::Remote(t)) => u32::MAX - t as u32,
    }
}

fn reason_key(reason: Option<Reason>) -> u8 {
    reason.map_or(0, |r| r as u8 + 1)
}

/// The listener label of a port: its listener's name, or the port number when several
/// listeners share it.
fn listener_label(rt: &Runtime, port: u16) -> String {
    let listeners = rt.gateway().port(port).map(|p| p.listeners.as_slice());
    match listeners {
        Some([only]) => only.name.clone(),
        Some(_) => port.to_string(),
        None => String::new(),
    }
}

fn rule_label(rule: &Rule) -> String {
    rule.name
        .clone()
        .unwrap_or_else(|| rule.rule_index.to_string())
}

/// Records the finished request: metrics always, the access-log line when logged, the span
/// when sampled and exported.
pub fn finish(live: &LiveConfig, session: &Session, f: Finished<'_>, obs: &mut RequestObs) {
    let Some(o) = live.observability() else {
        return;
    };
    let current;
    let rt = match f.runtime {
        Some(rt) => rt,
        None => {
            current = live.current();
            &current
        }
    };
    let elapsed = f.started.elapsed();
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(0);
    let server = session.server_addr().and_then(|a| a.as_inet()).copied();
    let port = server.map_or(0, |a| a.port());
    let endpoint = endpoint_of(&f);
    let sample = RequestSample {
        seconds: elapsed.as_secs_f64(),
        bytes_in: session.as_ref().body_bytes_read() as u64,
        bytes_out: session.as_ref().body_bytes_sent() as u64,
        retries: f.attempts.count.saturating_sub(1),
        reused: obs.reused,
        fresh: obs.fresh,
    };
    let key = SeriesKey {
        port,
        rule: f.rule.map_or(0, |r| Arc::as_ptr(r) as usize),
        backend: f.backend.map_or(0, |b| Arc::as_ptr(b) as usize),
        endpoint: endpoint_key(&f),
        code: status,
        reason: reason_key(f.reason),
    };
    let gw = rt.gateway();
    let labels = || SeriesLabels {
        gateway: gw.id.to_string(),
        zone: gw.zone.clone().unwrap_or_default(),
        listener: listener_label(rt, port),
        route: f.rule.map(|r| r.route.to_string()).unwrap_or_default(),
        rule: f.rule.map(|r| rule_label(r)).unwrap_or_default(),
        backend: f.backend.map(|b| b.id.to_string()).unwrap_or_default(),
        endpoint_zone: endpoint
            .and_then(|(_, z)| z)
            .unwrap_or_default()
            .to_string(),
        code: status.to_string(),
        reason: f.reason.map_or("ok", Reason::as_str),
    };
    if let Some(m) = &o.metrics {
        m.record(rt.info.number, key, labels, &sample);
        if let (Some(Reason::Overflow), Some(b)) = (f.reason, f.backend) {
            let limit = f.attempts.refused.map_or("max_requests", |l| l.as_str());
            let zone = gw.zone.as_deref().unwrap_or_default();
            m.overflow(&gw.id.to_string(), zone, &b.id.to_string(), limit);
        }
    }

    let exported = o.tracer.exporter.as_ref();
    let error = status == 0 || status >= 500 || f.reason.is_some();
    let log = o.access_log.as_ref().filter(|l| l.wants(error));
    if log.is_none() && exported.is_none() {
        return;
    }
    let req = session.req_header();
    let (hop, joined) = *obs.hop.get_or_insert_with(|| o.tracer.hop(req));
    let route = f.rule.map(|r| r.route.to_string());
    let backend = f.backend.map(|b| b.id.to_string());
    let reason = f.reason.map_or("ok", Reason::as_str);
    if let Some(log) = log {
        let wall = OffsetDateTime::now_utc() - elapsed;
        let endpoint_addr = endpoint.map(|(a, _)| a.to_string());
        let rule = f.rule.map(|r| rule_label(r));
        let header_id = req.headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok());
        log.send(&Record {
            time: &accesslog::rfc3339_ms(wall),
            request_id: f.request_id.or(header_id),
            trace_id: &hop.trace_id_hex(),
            method: req.method.as_str(),
            host: request::raw_host(req),
            path: req.uri.path(),
            route: route.as_deref(),
            rule: rule.as_deref(),
            backend: backend.as_deref(),
            endpoint: endpoint_addr.as_deref(),
            zone: gw.zone.as_deref(),
            endpoint_zone: endpoint.and_then(|(_, z)| z),
            status,
            reason,
            bytes_in: sample.bytes_in,
            bytes_out: sample.bytes_out,
            duration_ms: accesslog::ms(elapsed),
            upstream_connect_ms: obs.connect.map(accesslog::ms),
            upstream_response_ms: obs.response.map(accesslog::ms),
            retries: sample.retries,
            generation: rt.info.number,
        });
    }
    if let Some(exporter) = exported.filter(|_| hop.sampled) {
        let end = SystemTime::now();
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        let tracestate = joined
            .then(|| req.headers.get(TRACESTATE))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        exporter.export(SpanRecord {
            hop,
            tracestate,
            name: route.clone().unwrap_or_else(|| "no_route".to_string()),
            start_unix_nanos: nanos(end - elapsed),
            end_unix_nanos: nanos(end),
            method: req.method.as_str().to_string(),
            path: req.uri.path().to_string(),
            status,
            route: route.unwrap_or_default(),
            backend: backend.unwrap_or_default(),
            reason,
            server,
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            endpoint: endpoint.map(|(a, _)| a),
        });
    }
}
