//! The admin listener: liveness (`/healthz`), readiness (`/ready`, once a generation is
//! loaded), the generation in force (`/config`) and the resilience state of every backend and
//! endpoint (`/backends`: breaker counters, health, ejections, in-flight requests), the mesh
//! identity (`/identity`: SPIFFE ID, certificate serial and expiry, bundle version, last
//! renewal error), the Prometheus metrics (`/metrics`) and `POST /explain` (a JSON
//! [`crate::explain::Query`]): what the live generation would do with a request, and why.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::live::LiveConfig;
use crate::pki::MeshIdentity;
use crate::resilience::breaker::Limit;
use crate::resilience::clock::now_ms;

pub struct AdminApp {
    live: Arc<LiveConfig>,
    identity: Option<Arc<MeshIdentity>>,
}

impl AdminApp {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        AdminApp {
            live,
            identity: None,
        }
    }

    /// Serves `/identity` for this mesh identity.
    pub fn with_identity(mut self, identity: Option<Arc<MeshIdentity>>) -> Self {
        self.identity = identity;
        self
    }

    fn config_json(&self) -> serde_json::Value {
        let rt = self.live.current();
        let loaded_at_ms = rt
            .info
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let status = self.live.status();
        let gw = rt.gateway();
        json!({
            "generation": rt.info.number,
            "source": self.live.source().as_str(),
            "staged": self.live.staged(),
            "digest": rt.info.digest,
            "loaded_at_unix_ms": loaded_at_ms,
            "files": rt.info.files,
            "gateway": gw.id.to_string(),
            "zone": gw.zone,
            "ports": rt.ports().iter().map(|p| json!({
                "port": p.port,
                "https": p.https,
                "east_west": p.east_west,
                "rules": rt.port_config(p).routes.rule_count(),
            })).collect::<Vec<_>>(),
            "backends": rt.config.backends.len(),
            "last_error": status.last_error,
            "rejected": status.rejected,
        })
    }
}

impl AdminApp {
    fn backends_json(&self) -> serde_json::Value {
        let rt = self.live.current();
        let now = now_ms();
        let backends: Vec<serde_json::Value> = rt
            .backend_runtimes()
            .map(|b| {
                let state = b.balancer.state();
                let endpoints: Vec<serde_json::Value> = b
                    .balancer
                    .endpoints
                    .iter()
                    .map(|e| {
                        json!({
                            "address": e.address.to_string(),
                            "zone": e.zone,
                            "weight": e.weight,
                            "healthy": e.state.is_healthy(),
                            "ejected": e.state.outlier.is_ejected(),
                            "ejections": e.state.outlier.ejections(),
                            "available": e.state.may_serve(now),
                            "in_flight": e.state.in_flight(),
                            "requests": e.state.requests(),
                        })
                    })
                    .collect();
                json!({
                    "backend": b.id.to_string(),
                    "requests_in_flight": state.breaker.current(Limit::Requests),
                    "pending": state.breaker.current(Limit::Pending),
                    "connections": state.breaker.current(Limit::Connections),
                    "retries_in_flight": state.breaker.current(Limit::Retries),
                    "endpoints": endpoints,
                })
            })
            .collect();
        json!({ "generation": rt.info.number, "backends": backends })
    }
}

/// Largest `/explain` request body read.
const EXPLAIN_BODY_LIMIT: usize = 64 * 1024;

impl AdminApp {
    /// `POST /explain`: 200 with the explanation, 400 with `{"error"}` for a bad query.
    async fn explain(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let error = |status, msg: String| {
            let body = serde_json::to_vec(&json!({ "error": msg })).unwrap_or_default();
            reply(status, "application/json", body)
        };
        if session.req_header().method != http::Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use POST".into());
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= EXPLAIN_BODY_LIMIT => {
                    body.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large".into())
                }
                Ok(None) => break,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
            }
        }
        let query: crate::explain::Query = match serde_json::from_slice(&body) {
            Ok(q) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
        };
        let rt = self.live.current();
        match crate::explain::explain(&rt, self.live.source().as_str(), &query) {
            Ok(ex) => {
                let body = serde_json::to_vec_pretty(&ex).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = r.body().len().to_string().parse() {
        r.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    r
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            // A LiveConfig exists only once a generation compiled, so the gateway is ready.
            "/ready" => reply(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            "/config" => {
                let body = serde_json::to_vec_pretty(&self.config_json()).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            "/identity" => match &self.identity {
                Some(id) => {
                    let body = serde_json::to_vec_pretty(&id.status()).unwrap_or_default();
                    reply(StatusCode::OK, "application/json", body)
                }
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    b"no mesh identity\n".to_vec(),
                ),
            },
            "/metrics" => match self.live.observability().and_then(|o| o.metrics.as_ref()) {
                Some(m) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    m.render(&self.live),
                ),
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    b"metrics are off\n".to_vec(),
                ),
            },
            "/backends" => {
                let body = serde_json::to_vec_pretty(&self.backends_json()).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            "/explain" => self.explain(session).await,
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
