//! Distributed tracing: every gateway hop is a span of the client's W3C trace (or of a new
//! one). [`context`] parses and writes `traceparent`; [`otlp`] exports finished spans when an
//! OTLP endpoint is configured. Without one, tracing costs the header work only.

pub mod context;
pub mod otlp;

use pingora::http::RequestHeader;

pub use context::{HopContext, TraceParent, TRACEPARENT, TRACESTATE};
pub use otlp::{OtlpExporter, SpanRecord};

/// The process's tracing settings.
#[derive(Debug, Default)]
pub struct Tracer {
    /// Where finished sampled spans go (`None`: nowhere).
    pub exporter: Option<OtlpExporter>,
    /// Probability that a trace this gateway starts is sampled (0 without an exporter).
    pub sample: f64,
}

impl Tracer {
    /// This request's hop: joins the client's trace when its `traceparent` is valid.
    /// Returns the hop and whether the client's `tracestate` may be passed on (only with a
    /// valid `traceparent`).
    pub fn hop(&self, req: &RequestHeader) -> (HopContext, bool) {
        let incoming = req
            .headers
            .get(TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        let sample = if self.exporter.is_some() {
            self.sample
        } else {
            0.0
        };
        (HopContext::new(incoming, sample), incoming.is_some())
    }

    /// Writes this hop's `traceparent` on the upstream request; drops a `tracestate` that came
    /// without a valid `traceparent` (it belongs to no trace we continue).
    pub fn write_upstream(
        hop: &HopContext,
        joined: bool,
        upstream: &mut RequestHeader,
    ) -> pingora::Result<()> {
        upstream.insert_header(TRACEPARENT, hop.traceparent())?;
        if !joined {
            upstream.remove_header(TRACESTATE);
        }
        Ok(())
    }
}
