//! The request pipeline as pingora hooks. Each hook is thin and calls the module for its
//! stage: `request_filter` matches the route and decides local replies, redirects, rewrites
//! and the backend; `upstream_peer` picks the endpoint; `upstream_request_filter` writes the
//! forwarding headers and request filters; `response_filter` runs response filters;
//! `fail_to_proxy` writes the error reply; `logging` records the outcome. The request keeps
//! the one generation it loaded first for its whole life, retries included.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HOST, LOCATION};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};
use switchyard_config::{redirect_location, rewrite_path, Filter, RequestView, Rule};
use tracing::{debug, warn};

use crate::live::LiveConfig;
use crate::mirror::{MirrorClient, MirrorJob};
use crate::request::{self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::respond::{self, local_reply, Reason};
use crate::runtime::{BackendRuntime, Runtime};
use crate::state::InFlight;

/// The gateway's `ProxyHttp` implementation. Shared by every request; holds no request state.
pub struct Gateway {
    live: Arc<LiveConfig>,
    mirror: MirrorClient,
}

impl Gateway {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        Gateway {
            live,
            mirror: MirrorClient::default(),
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    runtime: Option<Arc<Runtime>>,
    https: bool,
    rule: Option<Arc<Rule>>,
    /// The chosen backend and its index in `rule.backends`.
    backend: Option<(Arc<BackendRuntime>, usize)>,
    original_host: String,
    /// Path and query for the upstream when a URLRewrite changed the path.
    upstream_path: Option<String>,
    upstream_host: Option<String>,
    request_id: Option<String>,
    endpoint: Option<usize>,
    in_flight: Option<InFlight>,
    connect_failed: bool,
    reason: Option<Reason>,
    mirror: Option<MirrorJob>,
}

/// What `request_filter` decided, computed while the request header is borrowed.
enum Decision {
    Proxy,
    Reply(u16, Option<Reason>, Option<String>),
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl Gateway {
    /// Matches the request and fills `ctx`; returns what to do next.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Decision {
        let runtime = self.live.current();
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let Some(port) = local_port.and_then(|p| runtime.port(p)) else {
            return Decision::Reply(404, Some(Reason::NoRoute), None);
        };
        ctx.https = port.https;
        let req = session.req_header();
        let raw_host = request::raw_host(req);
        ctx.original_host = raw_host.to_string();
        let host = request::match_host(raw_host);
        let path = req.uri.path();
        let query = req.uri.query();
        let view = RequestView {
            method: &req.method,
            host: &host,
            path,
            query,
            headers: &req.headers,
        };
        let table = &runtime.port_config(port).routes;
        let Some(m) = table.find(&view) else {
            return Decision::Reply(404, Some(Reason::NoRoute), None);
        };
        let rule = m.rule.clone();
        let matched_prefix = m.matched_prefix;

        for f in &rule.filters {
            if let Filter::RequestRedirect(r) = f {
                let scheme = if port.https { "https" } else { "http" };
                let location =
                    redirect_location(r, scheme, &host, port.port, path, query, matched_prefix);
                return Decision::Reply(r.status_code, None, Some(location));
            }
        }

        let Some(index) = pick_weighted(&rule) else {
            ctx.rule = Some(rule);
            return Decision::Reply(500, Some(Reason::NoBackend), None);
        };
        let chosen = &rule.backends[index];
        let Some(backend) = runtime.backend(&chosen.backend).cloned() else {
            ctx.rule = Some(rule);
            return Decision::Reply(500, Some(Reason::NoBackend), None);
        };
        if backend.balancer.is_empty() {
            ctx.rule = Some(rule);
            return Decision::Reply(500, Some(Reason::NoEndpoints), None);
        }

        for f in rule.filters.iter().chain(chosen.filters.iter()) {
            match f {
                Filter::UrlRewrite(u) => {
                    if let Some(pm) = &u.path {
                        let mut p = rewrite_path(path, pm, matched_prefix);
                        if let Some(q) = query {
                            p.push('?');
                            p.push_str(q);
                        }
                        ctx.upstream_path = Some(p);
                    }
                    if let Some(h) = &u.hostname {
                        ctx.upstream_host = Some(h.clone());
                    }
                }
                Filter::RequestMirror(mirror) if fastrand::u32(..100) < mirror.percent => {
                    if let Some(target) = runtime.backend(&mirror.backend) {
                        if let Some(i) = target.balancer.pick(None, None) {
                            let addr = target.balancer.endpoints[i].address;
                            match &mut ctx.mirror {
                                Some(job) => job.add_target(addr),
                                None => ctx.mirror = Some(MirrorJob::new(vec![addr], req)),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if req.headers.get(X_REQUEST_ID).is_none() {
            ctx.request_id = Some(request::new_request_id());
        }
        ctx.rule = Some(rule);
        ctx.backend = Some((backend, index));
        ctx.runtime = Some(runtime);
        Decision::Proxy
    }
}

/// A weighted draw among the rule's backendRefs; `None` when no backend takes traffic.
fn pick_weighted(rule: &Rule) -> Option<usize> {
    if rule.total_weight == 0 {
        return None;
    }
    let mut draw = fastrand::u32(..rule.total_weight);
    for (i, b) in rule.backends.iter().enumerate() {
        if draw < b.weight {
            return Some(i);
        }
        draw -= b.weight;
    }
    None
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            runtime: None,
            https: false,
            rule: None,
            backend: None,
            original_host: String::new(),
            upstream_path: None,
            upstream_host: None,
            request_id: None,
            endpoint: None,
            in_flight: None,
            connect_failed: false,
            reason: None,
            mirror: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.route(session, ctx) {
            Decision::Proxy => {
                if ctx.mirror.is_some() && session.is_body_empty() {
                    if let Some(job) = ctx.mirror.take() {
                        self.mirror.send(job);
                    }
                }
                Ok(false)
            }
            Decision::Reply(status, reason, location) => {
                ctx.reason = reason;
                let headers: Vec<(&'static str, &str)> = location
                    .as_deref()
                    .map(|l| (LOCATION.as_str(), l))
                    .into_iter()
                    .collect();
                local_reply(session, status, reason, &headers).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(job) = &mut ctx.mirror {
            if let Some(chunk) = body {
                job.push_body(chunk);
            }
            if end_of_stream {
                if let Some(job) = ctx.mirror.take() {
                    self.mirror.send(job);
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some((backend, _)) = &ctx.backend else {
            return Err(respond::reason_error(Reason::NoBackend));
        };
        let key = backend
            .hash_key
            .as_ref()
            .and_then(|k| request::hash_key(k, &session.req_header().headers, client_ip(session)));
        let Some(i) = backend.balancer.pick(key.as_deref(), ctx.endpoint) else {
            ctx.reason = Some(Reason::NoEndpoints);
            return Err(respond::reason_error(Reason::NoEndpoints));
        };
        ctx.in_flight = Some(InFlight::start(&backend.balancer.endpoints[i].state));
        ctx.endpoint = Some(i);
        ctx.connect_failed = false;
        Ok(Box::new(backend.peers[i].clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(p) = &ctx.upstream_path {
            let uri = p.parse::<http::Uri>().map_err(|e| {
                Error::because(pingora::ErrorType::InternalError, "rewritten path", e)
            })?;
            upstream.set_uri(uri);
        }
        if let Some(h) = &ctx.upstream_host {
            upstream.insert_header(HOST, h.as_str())?;
        }
        let xff = request::forwarded_for(
            upstream.headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes()),
            client_ip(session),
        );
        if let Some(xff) = xff {
            upstream.insert_header(X_FORWARDED_FOR, xff)?;
        }
        upstream.insert_header(X_FORWARDED_PROTO, if ctx.https { "https" } else { "http" })?;
        if !ctx.original_host.is_empty() {
            upstream.insert_header(X_FORWARDED_HOST, ctx.original_host.as_str())?;
        }
        if let Some(id) = &ctx.request_id {
            upstream.insert_header(X_REQUEST_ID, id.as_str())?;
        }
        if let (Some(rule), Some((_, i))) = (&ctx.rule, &ctx.backend) {
            let per_backend = rule.backends[*i].filters.iter();
            crate::filters::request_headers(upstream, rule.filters.iter().chain(per_backend))?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(rule), Some((_, i))) = (&ctx.rule, &ctx.backend) {
            let per_backend = rule.backends[*i].filters.iter();
            crate::filters::response_headers(resp, rule.filters.iter().chain(per_backend))?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failed = true;
        ctx.reason = Some(Reason::UpstreamConnectFailure);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, reason) = respond::classify(e, ctx.connect_failed);
        let reason = ctx.reason.filter(|_| status >= 500).unwrap_or(reason);
        ctx.reason = Some(reason);
        if status > 0 && session.response_written().is_none() {
            if let Err(err) = local_reply(session, status, Some(reason), &[]).await {
                debug!(error = %err, "could not send the error reply");
            }
        }
        FailToProxy {
            error_code: status,
            // A failed upstream exchange may leave the request body half read.
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        if e.is_some() || status >= 500 {
            let route = ctx.rule.as_ref().map(|r| r.route.to_string());
            let backend = ctx.backend.as_ref().map(|(b, _)| b.id.to_string());
            let endpoint = match (&ctx.backend, ctx.endpoint) {
                (Some((b, _)), Some(i)) => Some(b.balancer.endpoints[i].address.to_string()),
                _ => None,
            };
            warn!(
                method = %req.method,
                host = %ctx.original_host,
                path = req.uri.path(),
                status,
                reason = ctx.reason.map(|r| r.as_str()).unwrap_or("-"),
                route = route.as_deref().unwrap_or("-"),
                backend = backend.as_deref().unwrap_or("-"),
                endpoint = endpoint.as_deref().unwrap_or("-"),
                error = e.map(|e| e.to_string()).as_deref().unwrap_or("-"),
                elapsed_ms,
                "request failed"
            );
        } else {
            debug!(method = %req.method, path = req.uri.path(), status, elapsed_ms, "request");
        }
    }
}
