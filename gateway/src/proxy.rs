//! The request pipeline as pingora hooks. Each hook is thin and calls the module for its
//! stage: `request_filter` matches the route, picks the backend (weights and cohorts) and
//! applies the rule's rate limit, fault injection and the backend's request limit;
//! `upstream_peer` starts an attempt (breaker permits, backoff, deadline) and picks an
//! endpoint in rotation; `upstream_request_filter` writes the forwarding headers and request
//! filters; `upstream_response_filter` judges the attempt (outlier detection, retry on
//! status); `fail_to_connect` / `error_while_proxy` decide retries of failed attempts (see
//! `attempt`); `response_filter` runs response filters; `fail_to_proxy` writes the error reply;
//! `logging` records the outcome. The request keeps the one generation it loaded first for its
//! whole life, retries included.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, LOCATION, RETRY_AFTER, SET_COOKIE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};
use switchyard_config::{redirect_location, rewrite_path, Filter, RequestView, Rule};
use tracing::{debug, warn};

use crate::attempt::{self, Attempts, Failure};
use crate::balance::NoPick;
use crate::eastwest;
use crate::live::LiveConfig;
use crate::locality::{self, Tier};
use crate::mirror::{MirrorClient, MirrorJob};
use crate::pki::MeshIdentity;
use crate::request::{self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::resilience::cohort;
use crate::resilience::outlier::Outcome;
use crate::respond::{self, local_reply, Reason};
use crate::runtime::{BackendRuntime, Runtime};
use crate::state::InFlight;

/// The gateway's `ProxyHttp` implementation. Shared by every request; holds no request state.
pub struct Gateway {
    live: Arc<LiveConfig>,
    mirror: MirrorClient,
    /// The gateway's mesh identity, for east-west mTLS (`None` without a zone or a CA).
    mesh: Option<Arc<MeshIdentity>>,
}

impl Gateway {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        Gateway {
            live,
            mirror: MirrorClient::default(),
            mesh: None,
        }
    }

    /// Gives the gateway its mesh identity, for east-west failover.
    pub fn with_mesh(mut self, mesh: Option<Arc<MeshIdentity>>) -> Self {
        self.mesh = mesh;
        self
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
    /// The zone tier of `endpoint`.
    tier: Tier,
    /// Remote tiers that failed during this request (bit i: `backend.remote[i]`).
    failed_tiers: u64,
    /// The request came in on an east-west listener: local endpoints only.
    east_west_in: bool,
    in_flight: Option<InFlight>,
    connect_failed: bool,
    reason: Option<Reason>,
    mirror: Option<MirrorJob>,
    /// A sticky-cohort cookie to set on the response.
    set_cookie: Option<String>,
    attempts: Attempts,
    /// Who sent the request (principal, zone), resolved at the listener.
    source: crate::source::Source,
    /// The AuthorizationPolicies of the request's port.
    authz: Option<Arc<switchyard_config::PortAuthz>>,
    /// When the request body must be complete (ClientTrafficPolicy `requestBody`).
    body_deadline: Option<Instant>,
}

/// Keep-alive idle time of a client connection when no TrafficPolicy sets one.
const DEFAULT_DOWNSTREAM_IDLE: Duration = Duration::from_secs(60);

/// A pingora error type for a response status that is being retried.
const RETRY_STATUS: pingora::ErrorType = pingora::ErrorType::Custom("retriable status");

/// What `request_filter` decided, computed while the request header is borrowed.
enum Decision {
    Proxy,
    Reply(u16, Option<Reason>, Option<String>),
}

/// Extra header of a local reply (`Retry-After`, `Location`).
type ReplyHeader = Option<(&'static str, String)>;

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl Gateway {
    /// Matches the request and fills `ctx`; returns what to do next.
    fn route(&self, session: &Session, body_empty: bool, ctx: &mut RequestCtx) -> Decision {
        let runtime = ctx.runtime.take().unwrap_or_else(|| self.live.current());
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let Some(port) = local_port.and_then(|p| runtime.port(p)) else {
            return Decision::Reply(404, Some(Reason::NoRoute), None);
        };
        ctx.https = port.https;
        let req = session.req_header();
        if port.east_west {
            return match eastwest::inbound_backend(&runtime, req) {
                Ok(backend) => {
                    ctx.east_west_in = true;
                    ctx.backend = Some((backend, 0));
                    ctx.runtime = Some(runtime);
                    Decision::Proxy
                }
                Err(reason) => Decision::Reply(reason.status(), Some(reason), None),
            };
        }
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

        let cohort_cfg = rule.traffic.as_ref().and_then(|t| t.cohort.as_ref());
        let Some(choice) = cohort::choose(&rule, cohort_cfg, &req.headers) else {
            ctx.rule = Some(rule);
            return Decision::Reply(500, Some(Reason::NoBackend), None);
        };
        let index = choice.index;
        ctx.set_cookie = choice.set_cookie;
        let chosen = &rule.backends[index];
        let Some(backend) = runtime.backend(&chosen.backend).cloned() else {
            ctx.rule = Some(rule);
            return Decision::Reply(500, Some(Reason::NoBackend), None);
        };
        // No endpoint in this zone is fine while other zones can serve it (locality).
        if backend.balancer.is_empty() && backend.remote.is_empty() {
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
        let policy = attempt::policy(&rule);
        let content_length = req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        ctx.attempts.replayable = rule.retry.is_some()
            && attempt::replayable(&req.method, body_empty, content_length, &policy);
        ctx.attempts.deadline = rule.timeouts.request.map(|t| ctx.started + t);
        ctx.rule = Some(rule);
        ctx.backend = Some((backend, index));
        ctx.runtime = Some(runtime);
        Decision::Proxy
    }

    /// The rule's rate limit, fault injection and the backend's request limit, in that order.
    /// `Some` is a local reply to send instead of proxying.
    async fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> Option<(u16, Reason, ReplyHeader)> {
        if let (Some(runtime), Some(rule)) = (&ctx.runtime, &ctx.rule) {
            if let Some(reply) = Self::admit_rule(session, runtime, rule).await {
                return Some(reply);
            }
        }
        let (backend, _) = ctx.backend.as_ref()?;
        if let Err(limit) = ctx.attempts.admit(backend) {
            debug!(backend = %backend.id, limit = limit.as_str(), "circuit breaker open");
            return Some((
                503,
                Reason::Overflow,
                Some(("x-switchyard-limit", limit.as_str().into())),
            ));
        }
        None
    }

    /// The rule's rate limit and fault injection.
    async fn admit_rule(
        session: &Session,
        runtime: &Runtime,
        rule: &Arc<Rule>,
    ) -> Option<(u16, Reason, ReplyHeader)> {
        if let Some(limiter) = runtime.limiter(rule) {
            if let Err(wait) = limiter.check(client_ip(session), &session.req_header().headers) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let retry_after = Some((RETRY_AFTER.as_str(), secs.max(1).to_string()));
                return Some((429, Reason::RateLimited, retry_after));
            }
        }
        if let Some(fault) = rule.traffic.as_ref().and_then(|t| t.fault.as_ref()) {
            if let Some((status, per_million)) = fault.abort {
                if fastrand::u32(..1_000_000) < per_million {
                    return Some((status, Reason::FaultAbort, None));
                }
            }
            if let Some((delay, per_million)) = fault.delay {
                if fastrand::u32(..1_000_000) < per_million {
                    tokio::time::sleep(delay).await;
                }
            }
        }
        None
    }
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
            tier: Tier::Local,
            failed_tiers: 0,
            east_west_in: false,
            in_flight: None,
            connect_failed: false,
            reason: None,
            mirror: None,
            set_cookie: None,
            attempts: Attempts::default(),
            source: Default::default(),
            authz: None,
            body_deadline: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Listener hardening first: framing, header limits and stripping (except the identity
        // headers on east-west listeners), canonical path.
        match crate::sanitize::admit(session, &self.live).await {
            Ok(admitted) => {
                ctx.source = admitted.source;
                ctx.authz = admitted.authz;
                ctx.body_deadline = admitted.body_deadline;
                ctx.runtime = Some(admitted.runtime);
            }
            Err(reason) => {
                ctx.reason = Some(reason);
                return Ok(true);
            }
        }
        let body_empty = session.is_body_empty();
        let (status, reason, header) = match self.route(session, body_empty, ctx) {
            Decision::Reply(status, reason, location) => {
                (status, reason, location.map(|l| (LOCATION.as_str(), l)))
            }
            Decision::Proxy
                if !crate::authz::allows(
                    ctx.authz.as_deref(),
                    &ctx.source,
                    ctx.rule.as_ref().map(|r| &r.route),
                    ctx.backend.as_ref().map(|(b, _)| &b.id),
                    session.req_header(),
                ) =>
            {
                (403, Some(Reason::AuthzDenied), None)
            }
            Decision::Proxy => {
                let idle = ctx
                    .rule
                    .as_ref()
                    .and_then(|r| r.traffic.as_ref())
                    .and_then(|t| t.downstream_idle_timeout)
                    .unwrap_or(DEFAULT_DOWNSTREAM_IDLE);
                session.set_keepalive(Some(idle.as_secs().max(1)));
                match self.admit(session, ctx).await {
                    Some((status, reason, header)) => (status, Some(reason), header),
                    None => {
                        if ctx.attempts.replayable && !body_empty {
                            session.as_mut().enable_retry_buffering();
                        }
                        if ctx.mirror.is_some() && body_empty {
                            if let Some(job) = ctx.mirror.take() {
                                self.mirror.send(job);
                            }
                        }
                        return Ok(false);
                    }
                }
            }
        };
        ctx.reason = reason;
        let headers: Vec<(&'static str, &str)> =
            header.iter().map(|(k, v)| (*k, v.as_str())).collect();
        local_reply(session, status, reason, &headers).await?;
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(deadline) = ctx.body_deadline {
            crate::sanitize::body_progress(session, deadline, end_of_stream)?;
        }
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
        let rule = ctx.rule.as_ref();
        ctx.in_flight = None;
        if let Some(wait) = ctx.attempts.backoff(rule.and_then(|r| r.retry.as_ref())) {
            tokio::time::sleep(wait).await;
        }
        if ctx.attempts.remaining().is_some_and(|r| r.is_zero()) {
            ctx.reason = Some(Reason::RequestTimeout);
            return Err(respond::reason_error(Reason::RequestTimeout));
        }
        if let Err(limit) = ctx.attempts.start(backend) {
            debug!(backend = %backend.id, limit = limit.as_str(), "circuit breaker open");
            ctx.reason = Some(Reason::Overflow);
            return Err(respond::reason_error(Reason::Overflow));
        }
        let key = backend
            .hash_key
            .as_ref()
            .and_then(|k| request::hash_key(k, &session.req_header().headers, client_ip(session)));
        let previous = ctx.endpoint.map(|i| (ctx.tier, i));
        let picked = if ctx.east_west_in {
            // Served from this zone's endpoints in rotation only (no panic mode: the source
            // gateway has other zones to try): a request crosses at most one zone boundary.
            backend
                .balancer
                .pick_in_rotation(key.as_deref(), ctx.endpoint, false)
                .map(|i| (Tier::Local, i))
        } else {
            locality::choose(backend, key.as_deref(), previous, ctx.failed_tiers)
        };
        let (tier, i) = match picked {
            Ok(p) => p,
            Err(NoPick::Empty) => {
                ctx.reason = Some(Reason::NoEndpoints);
                return Err(respond::reason_error(Reason::NoEndpoints));
            }
            Err(NoPick::NoneHealthy) => {
                ctx.reason = Some(Reason::NoHealthyEndpoints);
                return Err(respond::reason_error(Reason::NoHealthyEndpoints));
            }
        };
        let Some((balancer, peers)) = backend.tier(tier) else {
            return Err(respond::reason_error(Reason::NoEndpoints));
        };
        ctx.in_flight = Some(InFlight::start(&balancer.endpoints[i].state));
        ctx.tier = tier;
        ctx.endpoint = Some(i);
        ctx.connect_failed = false;
        ctx.reason = None;
        let mut peer = peers[i].clone();
        if let Tier::Remote(t) = tier {
            eastwest::outbound_peer(&mut peer, &backend.remote[t].zone, self.mesh.as_deref())?;
        }
        if let Some(rule) = rule {
            ctx.attempts
                .limit_peer(&mut peer, rule, &attempt::policy(rule));
        }
        Ok(Box::new(peer))
    }

    #[cfg(unix)]
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.attempts.connected();
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some((backend, _)) = &ctx.backend else {
            return Ok(());
        };
        let status = resp.status.as_u16();
        let outcome = attempt::status_outcome(status);
        ctx.attempts
            .record(backend, ctx.tier, ctx.endpoint, outcome);
        if (502..=504).contains(&status) {
            ctx.failed_tiers |= eastwest::tier_bit(ctx.tier);
        }
        let Some(rule) = &ctx.rule else {
            return Ok(());
        };
        if status >= 500
            && ctx
                .attempts
                .should_retry(rule, backend, Failure::Status(status), true)
        {
            ctx.attempts.retry_status = true;
            let mut e = Error::explain(RETRY_STATUS, format!("upstream answered {status}"));
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.attempts.retry_status {
            // `upstream_response_filter` already granted this retry.
            e.set_retry(true);
            return e;
        }
        if e.esource() == &pingora::ErrorSource::Downstream {
            // The client failed (slow body, disconnect): not the backend's fault, no retry.
            e.set_retry(false);
            return e;
        }
        let failure = match e.etype() {
            pingora::ErrorType::ReadTimedout | pingora::ErrorType::WriteTimedout => {
                Failure::Timeout
            }
            _ => Failure::Reset,
        };
        let retry = match (&ctx.backend, &ctx.rule) {
            (Some((backend, _)), rule) => {
                ctx.attempts
                    .record(backend, ctx.tier, ctx.endpoint, Outcome::GatewayError);
                ctx.failed_tiers |= eastwest::tier_bit(ctx.tier);
                let Some(rule) = rule else {
                    e.set_retry(false);
                    return e;
                };
                let intact = !session.as_ref().retry_buffer_truncated()
                    && session.response_written().is_none();
                ctx.attempts.should_retry(rule, backend, failure, intact)
            }
            _ => false,
        };
        e.set_retry(retry);
        e
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
        if let Some((backend, _)) = &ctx.backend {
            eastwest::upstream_headers(upstream, backend, ctx.tier, ctx.east_west_in)?;
        }
        let east_west_hop = matches!(ctx.tier, Tier::Remote(_));
        crate::source::write_upstream(upstream, &ctx.source, east_west_hop)?;
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
        if let Some(cookie) = ctx.set_cookie.take() {
            resp.append_header(SET_COOKIE, cookie)?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failed = true;
        ctx.reason = Some(Reason::UpstreamConnectFailure);
        let retry = match (&ctx.backend, &ctx.rule) {
            (Some((backend, _)), rule) => {
                ctx.attempts
                    .record(backend, ctx.tier, ctx.endpoint, Outcome::GatewayError);
                ctx.failed_tiers |= eastwest::tier_bit(ctx.tier);
                rule.as_ref().is_some_and(|rule| {
                    ctx.attempts
                        .should_retry(rule, backend, Failure::ConnectFailure, true)
                })
            }
            _ => false,
        };
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, reason) = respond::classify(e, ctx.connect_failed);
        let mut reason = ctx.reason.filter(|_| status >= 500).unwrap_or(reason);
        if reason == Reason::UpstreamTimeout && ctx.attempts.deadline_reached() {
            // The attempt's timeout was the rule's request deadline, not a per-try timeout.
            reason = Reason::RequestTimeout;
        }
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
        crate::sanitize::deadline::request_finished(session);
        ctx.in_flight = None;
        ctx.attempts.release();
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
                (Some((b, _)), Some(i)) => b
                    .tier(ctx.tier)
                    .and_then(|(balancer, _)| balancer.endpoints.get(i))
                    .map(|e| e.address.to_string()),
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
                attempts = ctx.attempts.count,
                retry_denied = ctx.attempts.denied.unwrap_or("-"),
                elapsed_ms,
                "request failed"
            );
        } else {
            debug!(method = %req.method, path = req.uri.path(), status, elapsed_ms, "request");
        }
    }
}
