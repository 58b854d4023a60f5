//! Request hardening, done once per request before routing: ambiguous framing is refused,
//! header count and size are limited, internal headers from untrusted listeners are
//! stripped, the path is canonicalized (the canonical path replaces the request URI, so
//! matching, authorization and the upstream all see it) and the body deadline is started.
//! Settings come from the port's ClientTrafficPolicy (or its defaults).
//!
//! The header deadline lives in [`deadline`]: pingora has no hook between accepting a
//! connection and reading its request header, so it is enforced by the stream itself.

pub mod deadline;
pub mod framing;
pub mod headers;
pub mod path;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};
use switchyard_config::{ClientPolicy, ClientTimeouts, ListenerProtocol, PortAuthz};
use tracing::debug;

use crate::live::LiveConfig;
use crate::respond::{local_reply, Reason};
use crate::runtime::Runtime;
use crate::source::Source;

/// What the listener checks hand to the rest of the pipeline.
pub struct Admitted {
    /// The generation this request uses from now on.
    pub runtime: Arc<Runtime>,
    pub source: Source,
    /// The AuthorizationPolicies of the request's port.
    pub authz: Option<Arc<PortAuthz>>,
    /// When the body must be complete, for requests with one.
    pub body_deadline: Option<Instant>,
}

/// The listener stage of `request_filter`: stops the header clock, runs [`request`] with
/// the port's ClientTrafficPolicy, starts the body clock and resolves the source. A refused
/// request has been answered (and its connection marked for closing where needed) when this
/// returns `Err(reason)`.
pub async fn admit(session: &mut Session, live: &LiveConfig) -> Result<Admitted, Reason> {
    deadline::header_received(session);
    let runtime = live.current();
    let port = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .and_then(|a| runtime.gateway().port(a.port()));
    // Only an east-west listener is trusted, and only for a peer that proved a gateway
    // identity (its TLS verifier accepts nothing else; this is belt and braces).
    let trusted = port.is_some_and(|p| p.protocol == ListenerProtocol::EastWest)
        && crate::identity::peer_identity(session).is_some_and(|p| p.is_gateway());
    let default = ClientPolicy::default();
    let policy = port.map(|p| &p.client).unwrap_or(&default);
    if let Err(reject) = request(session, policy, trusted) {
        debug!(
            reason = reject.reason.as_str(),
            detail = reject.detail,
            path = %String::from_utf8_lossy(session.req_header().raw_path()),
            "request refused at the listener"
        );
        if reject.close {
            session.set_keepalive(None);
        }
        let status = reject.reason.status();
        if let Err(e) = local_reply(session, status, Some(reject.reason), &[]).await {
            debug!(error = %e, "could not send the refusal");
        }
        return Err(reject.reason);
    }
    let body_deadline = start_body_clock(session, &policy.timeouts);
    let authz = port.and_then(|p| p.authz.clone());
    let source = crate::source::resolve(session, trusted, runtime.gateway().zone.as_deref());
    Ok(Admitted {
        runtime,
        source,
        authz,
        body_deadline,
    })
}

/// A request refused by the listener checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    /// Close the connection after the reply (nothing more can be read safely).
    pub close: bool,
    pub detail: &'static str,
}

impl Rejection {
    fn new(reason: Reason, close: bool, detail: &'static str) -> Self {
        Rejection {
            reason,
            close,
            detail,
        }
    }
}

/// Runs the listener checks on a request; on success the request URI holds the canonical
/// path. `trusted` listeners keep internal headers (today none is trusted).
pub fn request(
    session: &mut Session,
    policy: &ClientPolicy,
    trusted: bool,
) -> Result<(), Rejection> {
    let framing = match session.as_http1() {
        Some(h1) => framing::check(framing::raw_fields(&h1.get_headers_raw_bytes())),
        None => {
            let headers = &session.req_header().headers;
            framing::check(
                headers
                    .iter()
                    .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            )
        }
    };
    if let Err(e) = framing {
        return Err(Rejection::new(Reason::ConflictingFraming, true, e.as_str()));
    }
    if !headers::within_limits(&session.req_header().headers, &policy.headers) {
        return Err(Rejection::new(
            Reason::HeaderLimit,
            true,
            "header count or size",
        ));
    }
    if !trusted {
        let removed = headers::strip_internal(session.req_header_mut());
        if removed > 0 {
            debug!(
                removed,
                "stripped internal headers from an untrusted client"
            );
        }
    }
    canonical_uri(session, policy)
}

/// Replaces the request URI by the canonical path and the original query.
fn canonical_uri(session: &mut Session, policy: &ClientPolicy) -> Result<(), Rejection> {
    canonical_request(session.req_header_mut(), policy)
}

/// Replaces the URI of `req` by the canonical path and the original query (also used by
/// `explain` on the request it builds).
pub fn canonical_request(
    req: &mut pingora::http::RequestHeader,
    policy: &ClientPolicy,
) -> Result<(), Rejection> {
    let invalid = |e: path::PathError| Rejection::new(Reason::InvalidPath, false, e.as_str());
    let raw = req.raw_path();
    let origin_form = raw.first() == Some(&b'/');
    let target = path::target_path(raw, req.uri.path()).map_err(invalid)?;
    let canonical = path::canonicalize(target, &policy.path).map_err(invalid)?;
    if origin_form && matches!(canonical, Cow::Borrowed(_)) {
        return Ok(());
    }
    let mut uri = canonical.into_owned();
    if let Some(q) = req.uri.query() {
        uri.push('?');
        uri.push_str(q);
    }
    let uri = http::Uri::try_from(uri)
        .map_err(|_| Rejection::new(Reason::InvalidPath, false, "unparsable canonical path"))?;
    req.set_uri(uri);
    Ok(())
}

/// Starts the body deadline of a request that has a body: `Some(deadline)`; the per-read
/// timeout of the client connection is bounded by it too.
pub fn start_body_clock(session: &mut Session, timeouts: &ClientTimeouts) -> Option<Instant> {
    if session.is_body_empty() {
        return None;
    }
    session.set_read_timeout(Some(timeouts.request_body));
    Some(Instant::now() + timeouts.request_body)
}

/// Called for every body chunk: fails with a downstream read timeout (408
/// `client_timeout`) once the deadline has passed, and otherwise bounds the next read by the
/// time left.
pub fn body_progress(
    session: &mut Session,
    deadline: Instant,
    end_of_stream: bool,
) -> pingora::Result<()> {
    if end_of_stream {
        return Ok(());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(client_timeout("request body deadline passed"));
    }
    session.set_read_timeout(Some(left.max(Duration::from_millis(1))));
    Ok(())
}

/// A downstream read timeout: `respond::classify` answers it with 408 `client_timeout`.
pub fn client_timeout(context: &'static str) -> Box<Error> {
    Error::create(
        ErrorType::ReadTimedout,
        ErrorSource::Downstream,
        Some(context.into()),
        None,
    )
}
