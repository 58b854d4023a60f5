//! The `switchyard.dev/Egress` listener: an HTTP forward proxy for apps.
//!
//! Apps send `GET http://api.payments.test/x` (absolute-form) or an origin-form request with
//! `Host:`. The target `host:port` (port from the URI or `Host`, default 80) must be allowed
//! by an ExternalService port with protocol HTTP, else the reply is 403 `egress_denied` with
//! the reason in the body. Allowed requests are resolved (static addresses or DNS), sent with
//! the URI in origin-form, and, with `originateTls`, over TLS to the target port with the
//! configured SNI (default: the host), verified against the `caFile` or the system roots; a
//! failed handshake or verification is 502 `egress_tls_failed`. Internal `x-switchyard-*`
//! headers and the proxy's own hop headers are stripped.
//!
//! CONNECT on this listener is answered 405 by pingora before any hook runs; tunnels use the
//! `switchyard.dev/EgressConnect` listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::ALPN;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use pingora::{Error, ErrorType, Result};
use switchyard_config::ExternalProtocol;
use tracing::{debug, info, warn};

use super::resolve::Resolver;
use crate::identity::is_internal_header;
use crate::live::LiveConfig;
use crate::respond::{classify, Reason, REASON_HEADER};

/// Upstream connect (TCP, and TLS separately) timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream read and write timeouts.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Pooled upstream connections idle at most this long.
const POOL_IDLE: Duration = Duration::from_secs(4);
/// Request headers meant for this proxy, never forwarded.
const PROXY_HEADERS: [&str; 2] = ["proxy-connection", "proxy-authorization"];

/// The egress HTTP proxy app.
pub struct EgressHttp {
    live: Arc<LiveConfig>,
    resolver: Resolver,
}

impl EgressHttp {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        EgressHttp {
            live,
            resolver: Resolver::default(),
        }
    }
}

/// Where an allowed request goes.
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    /// The `Host` sent upstream.
    authority: String,
    tls: Option<Origination>,
}

/// TLS origination of one request.
#[derive(Debug)]
struct Origination {
    sni: String,
    /// `None`: the system roots.
    ca: Option<Arc<[WrappedX509]>>,
    /// Pool group of the bundle (the pool key ignores `ca`).
    group: u64,
}

/// Per-request state.
#[derive(Debug)]
pub struct EgressCtx {
    started: Instant,
    /// `host:port` as requested, for logs.
    target_name: String,
    target: Option<Target>,
    reason: Option<Reason>,
}

impl EgressHttp {
    /// Decides and resolves the request's target; `Err` is the reply to send instead.
    async fn target(
        &self,
        req: &RequestHeader,
    ) -> std::result::Result<(String, Target), (Reason, String)> {
        let absolute = req.uri.authority().map(|a| a.as_str().to_string());
        if let Some(scheme) = req.uri.scheme_str() {
            if scheme != "http" {
                return Err((
                    Reason::BadRequest,
                    format!("only http:// targets are proxied here, not {scheme}:// (use the EgressConnect listener for TLS)"),
                ));
            }
        }
        let authority = match absolute {
            Some(a) => a,
            None => match req.headers.get(HOST).and_then(|h| h.to_str().ok()) {
                Some(h) => h.to_string(),
                None => {
                    return Err((
                        Reason::BadRequest,
                        "the request names no target (no absolute URI and no Host header)".into(),
                    ))
                }
            },
        };
        let Some((host, port)) = super::split_authority(&authority, 80) else {
            return Err((Reason::BadRequest, format!("invalid target {authority:?}")));
        };
        let name = format!("{host}:{port}");
        let runtime = self.live.current();
        let allowed = runtime
            .config
            .egress
            .allow(&host, port, ExternalProtocol::Http);
        let m = match allowed {
            Ok(m) => m,
            Err(why) => return Err((Reason::EgressDenied, why)),
        };
        let (connect_port, tls) = match &m.port.originate_tls {
            None => (port, None),
            Some(t) => {
                let sni = t.sni.clone().unwrap_or_else(|| host.clone());
                let (ca, group) = match &t.ca_file {
                    Some(path) => match runtime.egress.ca(path) {
                        Some(ca) => (
                            Some(ca.clone()),
                            xxhash_rust::xxh3::xxh3_64(path.as_os_str().as_encoded_bytes()),
                        ),
                        None => {
                            return Err((
                                Reason::Internal,
                                format!("CA bundle {} is not loaded", path.display()),
                            ))
                        }
                    },
                    None => (None, 0),
                };
                (t.target_port, Some(Origination { sni, ca, group }))
            }
        };
        let service = m.service.clone();
        drop(runtime);
        let addr = self
            .resolver
            .resolve(&service, &host, connect_port)
            .await
            .map_err(|why| (Reason::EgressUnresolved, why))?;
        let default_port = if tls.is_some() { 443 } else { 80 };
        let authority = if connect_port == default_port {
            host
        } else {
            format!("{host}:{connect_port}")
        };
        Ok((
            name,
            Target {
                addr,
                authority,
                tls,
            },
        ))
    }
}

/// A local reply whose body says why, closing nothing.
async fn reply(session: &mut Session, reason: Reason, detail: &str) -> Result<()> {
    let body = Bytes::from(format!("{detail}\n"));
    crate::respond::reply_with_body(session, reason.status(), Some(reason), &[], body).await
}

#[async_trait]
impl ProxyHttp for EgressHttp {
    type CTX = EgressCtx;

    fn new_ctx(&self) -> EgressCtx {
        EgressCtx {
            started: Instant::now(),
            target_name: String::new(),
            target: None,
            reason: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut EgressCtx) -> Result<bool> {
        let req = session.req_header_mut();
        let strip: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|n| is_internal_header(n.as_str()) || PROXY_HEADERS.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in strip {
            req.remove_header(&name);
        }
        match self.target(session.req_header()).await {
            Ok((name, target)) => {
                ctx.target_name = name;
                ctx.target = Some(target);
                Ok(false)
            }
            Err((reason, detail)) => {
                ctx.reason = Some(reason);
                info!(
                    method = %session.req_header().method,
                    uri = %session.req_header().uri,
                    status = reason.status(),
                    reason = reason.as_str(),
                    detail = %detail,
                    "egress request refused"
                );
                reply(session, reason, &detail).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut EgressCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = &ctx.target else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "egress request without a target",
            ));
        };
        let (tls, sni) = match &target.tls {
            Some(o) => (true, o.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(target.addr, tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(CONNECT_TIMEOUT);
        o.total_connection_timeout = Some(CONNECT_TIMEOUT * 2);
        o.read_timeout = Some(IO_TIMEOUT);
        o.write_timeout = Some(IO_TIMEOUT);
        o.idle_timeout = Some(POOL_IDLE);
        o.alpn = ALPN::H1;
        if let Some(t) = &target.tls {
            o.verify_cert = true;
            o.verify_hostname = true;
            o.ca = t.ca.clone();
            // The pool key ignores `ca`: keep connections verified under another bundle apart.
            peer.group_key = t.group;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        // Origin-form towards the external host.
        let path = upstream
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string();
        let uri = path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "origin-form URI", e))?;
        upstream.set_uri(uri);
        if let Some(t) = &ctx.target {
            upstream.insert_header(HOST, t.authority.as_str())?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut EgressCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if matches!(
            e.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert
        ) {
            ctx.reason = Some(Reason::EgressTlsFailed);
            warn!(target = %ctx.target_name, %peer, error = %e, "egress TLS origination failed");
        } else {
            ctx.reason = Some(Reason::UpstreamConnectFailure);
        }
        e.set_retry(false);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut EgressCtx,
    ) -> FailToProxy {
        let (status, mut reason) = classify(e, false);
        if let Some(r) = ctx.reason.filter(|r| *r == Reason::EgressTlsFailed) {
            reason = r;
        }
        let status = if reason == Reason::EgressTlsFailed {
            reason.status()
        } else {
            status
        };
        ctx.reason = Some(reason);
        if status > 0 && session.response_written().is_none() {
            let detail = match reason {
                Reason::EgressTlsFailed => {
                    format!("TLS to {} failed (see the gateway log)", ctx.target_name)
                }
                _ => format!("{} failed: {}", ctx.target_name, reason.as_str()),
            };
            let mut h = match ResponseHeader::build(status, Some(4)) {
                Ok(h) => h,
                Err(_) => {
                    return FailToProxy {
                        error_code: status,
                        can_reuse_downstream: false,
                    }
                }
            };
            let body = Bytes::from(format!("{detail}\n"));
            let written = async {
                h.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
                h.insert_header(CONTENT_LENGTH, body.len())?;
                h.insert_header(REASON_HEADER, reason.as_str())?;
                session.write_response_header(Box::new(h), false).await?;
                session.write_response_body(Some(body), true).await
            };
            if let Err(err) = written.await {
                debug!(error = %err, "could not send the egress error reply");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut EgressCtx) {
        if ctx.target.is_none() {
            return; // refused in request_filter, already logged
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        if e.is_some() || status >= 500 {
            warn!(
                target = %ctx.target_name,
                status,
                reason = ctx.reason.map(|r| r.as_str()).unwrap_or("-"),
                error = e.map(|e| e.to_string()).as_deref().unwrap_or("-"),
                elapsed_ms,
                "egress request failed"
            );
        } else {
            debug!(target = %ctx.target_name, status, elapsed_ms, "egress request");
        }
    }
}
