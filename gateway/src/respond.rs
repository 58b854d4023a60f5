//! The one place that turns a request's fate into a response: reason flags, status codes for
//! proxy errors, and local replies written with keep-alive intact.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// Response header carrying the reason a request failed, for operators and clients.
pub const REASON_HEADER: &str = "x-switchyard-error";

/// Why a request did not get an upstream response. Stable strings: they appear in logs,
/// the reason header and (later) metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoRoute,
    NoBackend,
    NoEndpoints,
    UpstreamConnectFailure,
    UpstreamReset,
    UpstreamTimeout,
    /// The rule's request timeout passed before a response.
    RequestTimeout,
    /// A circuit-breaker limit of the backend is full.
    Overflow,
    /// Every endpoint is ejected or unhealthy (and the panic threshold is 0).
    NoHealthyEndpoints,
    /// The rule's rate limit refused the request.
    RateLimited,
    /// Fault injection answered instead of the backend.
    FaultAbort,
    BadRequest,
    Internal,
    /// No ExternalService allows the egress target (or not for this listener's protocol).
    EgressDenied,
    /// TLS origination to an external host failed (handshake or verification).
    EgressTlsFailed,
    /// The external host's name did not resolve.
    EgressUnresolved,
    /// The path cannot be canonicalized, or the policy refuses it.
    InvalidPath,
    /// Ambiguous request framing (Content-Length with Transfer-Encoding, ...).
    ConflictingFraming,
    /// Too many request header fields, or too large.
    HeaderLimit,
    /// The client was too slow sending its request header or body.
    ClientTimeout,
    /// An AuthorizationPolicy refused the request.
    AuthzDenied,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::NoBackend => "no_backend",
            Reason::NoEndpoints => "no_endpoints",
            Reason::UpstreamConnectFailure => "upstream_connect_failure",
            Reason::UpstreamReset => "upstream_reset",
            Reason::UpstreamTimeout => "timeout",
            Reason::RequestTimeout => "request_timeout",
            Reason::Overflow => "upstream_overflow",
            Reason::NoHealthyEndpoints => "no_healthy_endpoints",
            Reason::RateLimited => "rate_limited",
            Reason::FaultAbort => "fault_abort",
            Reason::BadRequest => "bad_request",
            Reason::Internal => "internal",
            Reason::EgressDenied => "egress_denied",
            Reason::EgressTlsFailed => "egress_tls_failed",
            Reason::EgressUnresolved => "egress_unresolved",
            Reason::InvalidPath => "invalid_path",
            Reason::ConflictingFraming => "conflicting_framing",
            Reason::HeaderLimit => "header_limit",
            Reason::ClientTimeout => "client_timeout",
            Reason::AuthzDenied => "authz_denied",
        }
    }

    /// The status a local reply for this reason carries.
    pub fn status(self) -> u16 {
        match self {
            Reason::NoRoute => 404,
            // Gateway API: an unresolvable backend, or one without endpoints, is a 500.
            Reason::NoBackend | Reason::NoEndpoints | Reason::Internal => 500,
            Reason::UpstreamConnectFailure => 503,
            Reason::UpstreamReset => 502,
            Reason::UpstreamTimeout | Reason::RequestTimeout => 504,
            Reason::Overflow | Reason::NoHealthyEndpoints | Reason::FaultAbort => 503,
            Reason::RateLimited => 429,
            Reason::EgressDenied => 403,
            Reason::EgressTlsFailed | Reason::EgressUnresolved => 502,
            Reason::BadRequest | Reason::InvalidPath | Reason::ConflictingFraming => 400,
            Reason::HeaderLimit => 431,
            Reason::ClientTimeout => 408,
            Reason::AuthzDenied => 403,
        }
    }
}

/// Classifies a proxy error. `connect_failed` is set when the failure happened while
/// connecting (pingora reports it through `fail_to_connect`).
pub fn classify(e: &Error, connect_failed: bool) -> (u16, Reason) {
    if let ErrorType::HTTPStatus(code) = e.etype() {
        let reason = if *code >= 500 {
            Reason::Internal
        } else {
            Reason::BadRequest
        };
        return (*code, reason);
    }
    if connect_failed {
        return (503, Reason::UpstreamConnectFailure);
    }
    match e.esource() {
        ErrorSource::Upstream => match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => (504, Reason::UpstreamTimeout),
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout => (503, Reason::UpstreamConnectFailure),
            _ => (502, Reason::UpstreamReset),
        },
        ErrorSource::Downstream => match e.etype() {
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                (0, Reason::BadRequest)
            }
            ErrorType::ReadTimedout => (408, Reason::ClientTimeout),
            _ => (400, Reason::BadRequest),
        },
        ErrorSource::Internal | ErrorSource::Unset => (500, Reason::Internal),
    }
}

/// Writes a small local reply. The downstream connection stays open for the next request.
pub async fn local_reply(
    session: &mut Session,
    status: u16,
    reason: Option<Reason>,
    headers: &[(&'static str, &str)],
) -> Result<()> {
    let body = match reason {
        Some(r) => Bytes::from(format!("{status} {}\n", r.as_str())),
        None => Bytes::new(),
    };
    reply_with_body(session, status, reason, headers, body).await
}

/// [`local_reply`] with a body of the caller's (a sentence saying why).
pub async fn reply_with_body(
    session: &mut Session,
    status: u16,
    reason: Option<Reason>,
    headers: &[(&'static str, &str)],
    body: Bytes,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(4))?;
    h.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    h.insert_header(CONTENT_LENGTH, body.len())?;
    if let Some(r) = reason {
        h.insert_header(REASON_HEADER, r.as_str())?;
    }
    for (k, v) in headers {
        h.insert_header(*k, *v)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// An internal error with a reason attached, for `upstream_peer` failures.
pub fn reason_error(reason: Reason) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(reason.status()), reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_maps_to_a_status() {
        let up = |t| Error::new_up(t);
        assert_eq!(classify(&up(ErrorType::ConnectRefused), false).0, 503);
        assert_eq!(
            classify(&up(ErrorType::ConnectRefused), false).1,
            Reason::UpstreamConnectFailure
        );
        assert_eq!(classify(&up(ErrorType::ReadTimedout), false).0, 504);
        assert_eq!(classify(&up(ErrorType::ConnectionClosed), false).0, 502);
        assert_eq!(classify(&up(ErrorType::ReadError), true).0, 503);
        assert_eq!(classify(&Error::new_down(ErrorType::ReadError), false).0, 0);
        assert_eq!(
            classify(&Error::new_down(ErrorType::InvalidHTTPHeader), false).0,
            400
        );
        assert_eq!(classify(&reason_error(Reason::NoEndpoints), false).0, 500);
        assert_eq!(
            classify(&Error::new_down(ErrorType::ReadTimedout), false),
            (408, Reason::ClientTimeout)
        );
        assert_eq!(
            classify(&Error::new_in(ErrorType::InternalError), false).0,
            500
        );
    }
}
