//! The control API over HTTP/1.1 (hyper). Every path but `/healthz` needs a bearer token:
//! gateways use theirs for `/v1/watch`, `/v1/ack`, `/v1/certs` and `/v1/bundle`; operators use
//! theirs for `/v1/status`, `/v1/rollback`, `/v1/ca/rotate` and `/metrics`. A missing or wrong
//! token, or the other role's token, gets the same 401, so it reveals nothing, not even which
//! paths exist.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard_gateway::protocol::{
    Ack, WatchQuery, ACK_PATH, GENERATION_HEADER, UPDATE_HEADER, WATCH_PATH, WATCH_WAIT_SECS,
};
use tracing::{debug, warn};

use super::certs::Answer;
use super::fleet::Reply;
use super::publish::{self, PublishError, RollbackTarget};
use super::Control;
use crate::auth;
use switchyard_gateway::pki::client::{BUNDLE_PATH, CERTS_PATH, ROTATE_PATH};

/// Request bodies (acks, rollback) larger than this are refused.
const BODY_LIMIT: usize = 1024 * 1024;

type Body = Full<Bytes>;

/// Accepts connections until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, ctl: Arc<Control>) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctl = ctl.clone();
                async move { Ok::<_, Infallible>(route(&ctl, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "control API connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    reply(status, "text/plain; charset=utf-8", msg)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn answer((status, body): Answer) -> Response<Body> {
    match body {
        Ok(v) => json(status, &v),
        Err(e) => text(status, e),
    }
}

fn unauthorized() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Who a request's token says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Operator,
    Gateway,
}

fn role(ctl: &Control, req: &Request<Incoming>) -> Option<Role> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    if auth::token_eq(presented, &ctl.operator_token) {
        Some(Role::Operator)
    } else if auth::token_eq(presented, &ctl.gateway_token) {
        Some(Role::Gateway)
    } else {
        None
    }
}

async fn route(ctl: &Arc<Control>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(role) = role(ctl, &req) else {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    let method = req.method().clone();
    match (role, &method, path.as_str()) {
        (Role::Gateway, &Method::GET, WATCH_PATH) => watch(ctl, req.uri().query()).await,
        (Role::Gateway, &Method::POST, ACK_PATH) => ack(ctl, req).await,
        (Role::Gateway, &Method::POST, CERTS_PATH) => match read_body(req).await {
            Ok(body) => answer(ctl.ca.issue(&body)),
            Err(r) => r,
        },
        (Role::Gateway, &Method::GET, BUNDLE_PATH) => answer(ctl.ca.bundle()),
        (Role::Operator, &Method::POST, ROTATE_PATH) => answer(ctl.ca.rotate()),
        (Role::Operator, &Method::GET, "/v1/status") => json(StatusCode::OK, &ctl.status()),
        (Role::Operator, &Method::POST, "/v1/rollback") => rollback(ctl, req).await,
        (Role::Operator, &Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            ctl.metrics.render(),
        ),
        // The other role's token: the same 401, so a caller learns nothing about what its
        // token is good for.
        (
            _,
            _,
            WATCH_PATH | ACK_PATH | CERTS_PATH | BUNDLE_PATH | ROTATE_PATH | "/v1/status"
            | "/v1/rollback" | "/metrics",
        ) => unauthorized(),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        ),
    }
}

/// Ends a long-poll's liveness mark however the poll ends (answer, timeout or disconnect).
struct PollGuard<'a> {
    ctl: &'a Control,
    query: WatchQuery,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.ctl.fleet().polling(&self.query, false, Instant::now());
    }
}

async fn watch(ctl: &Arc<Control>, query: Option<&str>) -> Response<Body> {
    let query = match WatchQuery::from_query(query.unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("watch query: {e}")),
    };
    ctl.fleet().polling(&query, true, Instant::now());
    let _guard = PollGuard {
        ctl,
        query: query.clone(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(WATCH_WAIT_SECS);
    let mut changes = ctl.changed.subscribe();
    loop {
        changes.borrow_and_update();
        let decision = ctl.fleet().decide(&query, Instant::now());
        match decision {
            Reply::Send {
                update,
                generation,
                body,
            } => {
                let mut r = reply(StatusCode::OK, "application/json", body);
                let h = r.headers_mut();
                h.insert(
                    UPDATE_HEADER,
                    http::HeaderValue::from_static(update.as_str()),
                );
                h.insert(GENERATION_HEADER, http::HeaderValue::from(generation));
                return r;
            }
            Reply::Refuse(why) => {
                // Tell the others (a refused stage abandons a commit).
                ctl.notify();
                return text(StatusCode::CONFLICT, why);
            }
            Reply::Wait => {}
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return reply(StatusCode::NO_CONTENT, "text/plain", ""),
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    Limited::new(req.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

async fn ack(ctl: &Arc<Control>, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ack: Ack = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("ack: {e}")),
    };
    let events = ctl.fleet().ack(&ack, Instant::now());
    ctl.handle(events);
    ctl.notify();
    text(StatusCode::OK, "ok")
}

async fn rollback(ctl: &Arc<Control>, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("rollback body: {e}")),
    };
    let target = match (v.get("to").and_then(|t| t.as_u64()), v.get("previous")) {
        (Some(n), None) => RollbackTarget::To(n),
        (None, Some(serde_json::Value::Bool(true))) => RollbackTarget::Previous,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                r#"rollback body: expected {"to": N} or {"previous": true}"#,
            )
        }
    };
    let worker = ctl.clone();
    let done = tokio::task::spawn_blocking(move || publish::rollback(&worker, target)).await;
    match done {
        Ok(Ok((generation, to))) => json(
            StatusCode::OK,
            &serde_json::json!({"generation": generation, "rollback_of": to}),
        ),
        Ok(Err(e @ PublishError::Store(super::store::StoreError::Unknown(_)))) => {
            text(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e @ PublishError::NoPrevious)) => text(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rollback task: {e}"),
        ),
    }
}
