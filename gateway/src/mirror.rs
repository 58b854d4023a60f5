//! RequestMirror: fire-and-forget copies of requests to a mirror backend. A copy runs on its
//! own task with its own deadline; its outcome is only logged, so a mirror can never delay or
//! fail the main request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use pingora::http::RequestHeader;
use tracing::debug;

use crate::runtime::BackendRuntime;

/// Bodies above this size are not mirrored (the copy is dropped, the request is not).
pub const MIRROR_BODY_LIMIT: usize = 64 * 1024;
const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);

/// A request copy waiting for its body to finish.
#[derive(Debug)]
pub struct MirrorJob {
    targets: Vec<SocketAddr>,
    head: http::request::Parts,
    body: BytesMut,
    overflow: bool,
}

impl MirrorJob {
    pub fn new(targets: Vec<SocketAddr>, req: &RequestHeader) -> Self {
        let (mut head, ()) = http::Request::new(()).into_parts();
        head.method = req.method.clone();
        head.uri = req
            .uri
            .path_and_query()
            .cloned()
            .map(http::Uri::from)
            .unwrap_or_else(|| http::Uri::from_static("/"));
        head.headers = req.headers.clone();
        MirrorJob {
            targets,
            head,
            body: BytesMut::new(),
            overflow: false,
        }
    }

    /// Sends the copy to one more mirror backend too.
    /// A job for one endpoint of each mirror backend (picked by its balancer), or `None`
    /// when no backend has an endpoint to pick.
    pub fn for_backends(backends: &[Arc<BackendRuntime>], req: &RequestHeader) -> Option<Self> {
        let targets: Vec<SocketAddr> = backends
            .iter()
            .filter_map(|b| {
                let i = b.balancer.pick(None, None)?;
                Some(b.balancer.endpoints[i].address)
            })
            .collect();
        (!targets.is_empty()).then(|| Self::new(targets, req))
    }

    pub fn add_target(&mut self, target: SocketAddr) {
        self.targets.push(target);
    }

    /// Adds a chunk of the request body to the copy.
    pub fn push_body(&mut self, chunk: &[u8]) {
        if self.overflow || self.body.len() + chunk.len() > MIRROR_BODY_LIMIT {
            self.overflow = true;
            self.body.clear();
        } else {
            self.body.extend_from_slice(chunk);
        }
    }
}

/// Sends mirror copies over a shared, pooled HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct MirrorClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for MirrorClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        MirrorClient {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }
}

impl MirrorClient {
    /// Starts the copies of `job` on background tasks and returns at once.
    pub fn send(&self, job: MirrorJob) {
        if job.overflow {
            debug!("mirror copy dropped: body over {MIRROR_BODY_LIMIT} bytes");
            return;
        }
        let body = job.body.freeze();
        for target in job.targets {
            let mut head = job.head.clone();
            let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let Ok(uri) = format!("http://{target}{path}").parse() else {
                continue;
            };
            head.uri = uri;
            let req = http::Request::from_parts(head, Full::new(body.clone()));
            let client = self.client.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(MIRROR_TIMEOUT, client.request(req)).await {
                    Ok(Ok(resp)) => {
                        debug!(%target, status = resp.status().as_u16(), "mirror copy answered")
                    }
                    Ok(Err(e)) => debug!(%target, error = %e, "mirror copy failed"),
                    Err(_) => debug!(%target, "mirror copy timed out"),
                }
            });
        }
    }
}
