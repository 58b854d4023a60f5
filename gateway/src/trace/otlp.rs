//! OTLP/HTTP span export: finished request spans go through a bounded queue to a background
//! thread that batches them (up to 512 spans or 1 s) and POSTs each batch as an
//! `ExportTraceServiceRequest` (protobuf) to the collector's `/v1/traces`. A full queue drops
//! spans rather than slowing a request.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use thiserror::Error;
use tracing::{debug, warn};

use super::HopContext;

/// Spans waiting for export; more are dropped.
const QUEUE: usize = 4096;
/// Spans per POST.
const BATCH: usize = 512;
/// How long a partial batch waits for more spans.
const LINGER: Duration = Duration::from_secs(1);
/// Per-POST timeout.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum OtlpError {
    #[error("--otlp-endpoint {0:?}: expected http://HOST:PORT[/PATH] (OTLP/HTTP; https is not supported, export to a local collector)")]
    Endpoint(String),
    #[error("cannot start the OTLP export thread: {0}")]
    Thread(std::io::Error),
}

/// One finished request span, as the proxy knows it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub hop: HopContext,
    pub tracestate: Option<String>,
    /// The route (`ns/name`) or `no_route`.
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub method: String,
    pub path: String,
    /// The status sent (0: none).
    pub status: u16,
    pub route: String,
    pub backend: String,
    pub reason: &'static str,
    pub server: Option<SocketAddr>,
    pub client: Option<IpAddr>,
    pub endpoint: Option<SocketAddr>,
}

/// Hands spans to the export thread.
#[derive(Debug)]
pub struct OtlpExporter {
    tx: SyncSender<SpanRecord>,
    dropped: Arc<AtomicU64>,
}

/// Resource attributes of every exported span.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub gateway: String,
    pub zone: String,
}

impl OtlpExporter {
    /// Validates `endpoint` and starts the export thread.
    pub fn start(endpoint: &str, resource: ResourceInfo) -> Result<OtlpExporter, OtlpError> {
        let url = traces_url(endpoint)?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(url, resource, rx, counter))
            .map_err(OtlpError::Thread)?;
        Ok(OtlpExporter { tx, dropped })
    }

    /// Queues a span; drops it when the queue is full.
    pub fn export(&self, span: SpanRecord) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(span) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The traces URL: `endpoint` as given when it has a path, else `endpoint/v1/traces`.
fn traces_url(endpoint: &str) -> Result<http::Uri, OtlpError> {
    let bad = || OtlpError::Endpoint(endpoint.to_string());
    let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad());
    }
    if matches!(uri.path(), "" | "/") {
        let base = endpoint.trim_end_matches('/');
        return format!("{base}/v1/traces").parse().map_err(|_| bad());
    }
    Ok(uri)
}

fn run(url: http::Uri, resource: ResourceInfo, rx: Receiver<SpanRecord>, dropped: Arc<AtomicU64>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "OTLP export is off: no runtime");
            return;
        }
    };
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resource = resource_of(&resource);
    let mut reported_drops = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + LINGER;
        while batch.len() < BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => batch.push(s),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let body = encode(&resource, &batch);
        let request = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else { continue };
        let sent = rt
            .block_on(async { tokio::time::timeout(POST_TIMEOUT, client.request(request)).await });
        match sent {
            Ok(Ok(resp)) if resp.status().is_success() => {
                debug!(spans = batch.len(), "OTLP batch exported");
            }
            Ok(Ok(resp)) => {
                warn!(status = %resp.status(), spans = batch.len(), "OTLP collector refused a batch")
            }
            Ok(Err(e)) => warn!(error = %e, spans = batch.len(), "OTLP export failed"),
            Err(_) => warn!(spans = batch.len(), "OTLP export timed out"),
        }
        let drops = dropped.load(Ordering::Relaxed);
        if drops > reported_drops {
            warn!(
                dropped = drops - reported_drops,
                "OTLP spans dropped: the export queue was full"
            );
            reported_drops = drops;
        }
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn resource_of(info: &ResourceInfo) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", "switchyard-gateway"),
            string("switchyard.gateway", info.gateway.as_str()),
            string("switchyard.zone", info.zone.as_str()),
        ],
        ..Default::default()
    }
}

/// The protobuf body of one batch.
pub fn encode(resource: &Resource, batch: &[SpanRecord]) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "switchyard".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: batch.iter().map(to_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

fn to_span(r: &SpanRecord) -> Span {
    let mut attributes = vec![
        string("http.request.method", r.method.as_str()),
        string("url.path", r.path.as_str()),
        kv(
            "http.response.status_code",
            any_value::Value::IntValue(i64::from(r.status)),
        ),
        string("switchyard.route", r.route.as_str()),
        string("switchyard.backend", r.backend.as_str()),
        string("switchyard.reason", r.reason),
    ];
    if let Some(server) = r.server {
        attributes.push(string("server.address", server.ip().to_string()));
        attributes.push(kv(
            "server.port",
            any_value::Value::IntValue(i64::from(server.port())),
        ));
    }
    if let Some(client) = r.client {
        attributes.push(string("client.address", client.to_string()));
    }
    if let Some(endpoint) = r.endpoint {
        attributes.push(string("network.peer.address", endpoint.ip().to_string()));
        attributes.push(kv(
            "network.peer.port",
            any_value::Value::IntValue(i64::from(endpoint.port())),
        ));
    }
    let failed = r.status == 0 || r.status >= 500;
    Span {
        trace_id: r.hop.trace_id.to_vec(),
        span_id: r.hop.span_id.to_vec(),
        trace_state: r.tracestate.clone().unwrap_or_default(),
        parent_span_id: r.hop.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(r.hop.sampled),
        name: r.name.clone(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: r.start_unix_nanos,
        end_time_unix_nano: r.end_unix_nanos,
        attributes,
        status: Some(Status {
            message: if failed {
                r.reason.to_string()
            } else {
                String::new()
            },
            code: if failed {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let u = traces_url("http://127.0.0.1:4318").unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:4318/v1/traces");
        let u = traces_url("http://collector:4318/").unwrap();
        assert_eq!(u.to_string(), "http://collector:4318/v1/traces");
        let u = traces_url("http://collector:4318/custom/traces").unwrap();
        assert_eq!(u.path(), "/custom/traces");
        assert!(traces_url("https://collector:4318").is_err());
        assert!(traces_url("collector:4318").is_err());
    }

    #[test]
    fn a_span_round_trips_through_protobuf() {
        let hop = HopContext {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_id: Some([9; 8]),
            sampled: true,
        };
        let record = SpanRecord {
            hop,
            tracestate: Some("k=v".into()),
            name: "default/shop".into(),
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            method: "GET".into(),
            path: "/cart".into(),
            status: 200,
            route: "default/shop".into(),
            backend: "default/cart-v1".into(),
            reason: "ok",
            server: Some("127.0.0.1:8080".parse().unwrap()),
            client: Some("127.0.0.2".parse().unwrap()),
            endpoint: None,
        };
        let info = ResourceInfo {
            gateway: "default/gw".into(),
            zone: String::new(),
        };
        let body = encode(&resource_of(&info), &[record]);
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, vec![7; 16]);
        assert_eq!(span.parent_span_id, vec![9; 8]);
        assert_eq!(span.trace_state, "k=v");
        assert_eq!(span.name, "default/shop");
        let route = span
            .attributes
            .iter()
            .find(|a| a.key == "switchyard.route")
            .and_then(|a| a.value.as_ref()?.value.clone());
        assert_eq!(
            route,
            Some(any_value::Value::StringValue("default/shop".into()))
        );
    }
}
