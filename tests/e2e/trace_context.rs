//! W3C Trace Context end to end: a client's `traceparent` reaches the backend with the same
//! trace id and the gateway's own span as the parent; a request without one (or with an
//! invalid one) gets a fresh valid trace; and with `--otlp-endpoint` the gateway exports the
//! hop's span to an in-test OTLP/HTTP receiver that decodes the protobuf.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use switchyard_testkit::{free_port, get, EchoBackend};
use tokio::net::TcpListener;

use crate::common::{backend_ref, backend_yaml, gateway_yaml, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn files(x: &EchoBackend) -> Vec<(&'static str, String)> {
    vec![
        ("backends.yaml", backend_yaml("x", &[x.addr()])),
        (
            "a.yaml",
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: a}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [a.test]\n  rules:\n    - backendRefs: [{}]\n",
                backend_ref("x", 1)
            ),
        ),
    ]
}

/// The parts of a traceparent: (version, trace id, parent id, flags).
fn split(tp: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp:?}");
    assert_eq!(tp.len(), 55, "traceparent {tp:?}");
    for p in &parts {
        assert!(
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "lowercase hex: {tp:?}"
        );
    }
    (
        parts[0].into(),
        parts[1].into(),
        parts[2].into(),
        parts[3].into(),
    )
}

/// The traceparent and tracestate the backend saw on its `i`th request.
fn upstream_trace(x: &EchoBackend, i: usize) -> (String, Option<String>) {
    let req = &x.requests()[i];
    let header = |name| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    (
        header("traceparent").expect("the backend got a traceparent"),
        header("tracestate"),
    )
}

#[tokio::test]
async fn the_trace_reaches_the_backend_with_a_new_parent_span() {
    let x = EchoBackend::start("x").await;
    let h = Harness::start(&files(&x)).await;
    let client = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let r = get(
        h.http,
        "a.test",
        "/",
        &[
            ("traceparent", &client),
            ("tracestate", "vendor=abc,other=1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let (tp, state) = upstream_trace(&x, 0);
    let (version, trace, parent, flags) = split(&tp);
    assert_eq!(version, "00");
    assert_eq!(trace, TRACE, "same trace id");
    assert_ne!(parent, CLIENT_SPAN, "the gateway's own span is the parent");
    assert_ne!(parent, "0000000000000000");
    assert_eq!(flags, "01", "the client's sampling decision is kept");
    assert_eq!(
        state.as_deref(),
        Some("vendor=abc,other=1"),
        "tracestate passed on"
    );

    // No traceparent: a fresh trace per request.
    get(h.http, "a.test", "/", &[]).await;
    get(h.http, "a.test", "/", &[]).await;
    let (first, _) = upstream_trace(&x, 1);
    let (second, _) = upstream_trace(&x, 2);
    let (_, t1, p1, _) = split(&first);
    let (_, t2, _, _) = split(&second);
    assert_ne!(t1, t2, "each request starts its own trace");
    assert_ne!(t1, "0".repeat(32));
    assert_ne!(p1, "0".repeat(16));

    // An invalid traceparent starts a new trace, and its tracestate is dropped.
    get(
        h.http,
        "a.test",
        "/",
        &[
            ("traceparent", "00-xyz-abc-01"),
            ("tracestate", "vendor=stale"),
        ],
    )
    .await;
    let (tp, state) = upstream_trace(&x, 3);
    let (_, trace, _, _) = split(&tp);
    assert_ne!(trace, TRACE);
    assert_eq!(
        state, None,
        "a tracestate without a valid traceparent is dropped"
    );
}

/// A minimal OTLP/HTTP receiver: decodes every POSTed `ExportTraceServiceRequest`.
async fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<(String, Span)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
    let store = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if let Ok(export) = ExportTraceServiceRequest::decode(body.as_ref()) {
                            let mut s = store.lock().expect("span store");
                            for rs in export.resource_spans {
                                for ss in rs.scope_spans {
                                    for span in ss.spans {
                                        s.push((path.clone(), span));
                                    }
                                }
                            }
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn attr(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.clone())
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue::StringValue(s.to_string()))
}

#[tokio::test]
async fn the_hop_span_is_exported_over_otlp_http() {
    let x = EchoBackend::start("x").await;
    let (collector, spans) = otlp_receiver().await;
    let port = free_port();
    let endpoint = format!("http://{collector}");
    let h = Harness::start_with_args(
        port,
        gateway_yaml(port),
        &files(&x),
        &["--otlp-endpoint", &endpoint],
    )
    .await;
    let client = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let r = get(h.http, "a.test", "/items", &[("traceparent", &client)]).await;
    assert_eq!(r.status, 200);
    let (tp, _) = upstream_trace(&x, 0);
    let (_, _, hop_span, _) = split(&tp);

    let deadline = Instant::now() + Duration::from_secs(10);
    let (path, span) = loop {
        let found = spans
            .lock()
            .expect("span store")
            .iter()
            .find(|(_, s)| hex(&s.trace_id) == TRACE)
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no span exported within 10 s; gateway logs:\n{}",
            h.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(path, "/v1/traces");
    assert_eq!(
        hex(&span.parent_span_id),
        CLIENT_SPAN,
        "parent = the client's span"
    );
    assert_eq!(
        hex(&span.span_id),
        hop_span,
        "the span the backend saw as its parent"
    );
    assert_eq!(span.name, "default/a");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    assert_eq!(attr(&span, "http.request.method"), string("GET"));
    assert_eq!(attr(&span, "url.path"), string("/items"));
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(attr(&span, "switchyard.route"), string("default/a"));
    assert_eq!(attr(&span, "switchyard.backend"), string("default/x"));
    assert_eq!(attr(&span, "switchyard.reason"), string("ok"));
    assert_eq!(attr(&span, "server.address"), string("127.0.0.1"));
    assert_eq!(
        attr(&span, "server.port"),
        Some(AnyValue::IntValue(i64::from(port)))
    );
    assert_eq!(attr(&span, "client.address"), string("127.0.0.1"));
    assert_eq!(
        attr(&span, "network.peer.port"),
        Some(AnyValue::IntValue(i64::from(x.addr().port())))
    );

    // An unrouted request is a span too, named no_route.
    let r = get(h.http, "nowhere.test", "/", &[]).await;
    assert_eq!(r.status, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spans
        .lock()
        .expect("span store")
        .iter()
        .any(|(_, s)| s.name == "no_route")
    {
        assert!(Instant::now() < deadline, "no no_route span exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
