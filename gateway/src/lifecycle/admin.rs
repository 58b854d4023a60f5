//! The admin listener as a pingora service of its own.
//!
//! A listening `Service` stops accepting when the shutdown is broadcast, but a draining gateway
//! must keep answering its health checks: `/ready` 503 takes it out of the load balancer,
//! `/healthz` 200 keeps the supervisor from killing it. [`AdminService`] keeps accepting
//! through a SIGTERM drain, and stops with the other listeners after a SIGQUIT hand-over,
//! when the new process answers on the same socket. Like pingora's listeners it takes its
//! socket from the table of inherited listening sockets when a previous process handed one
//! over, and records the socket it binds in that table, so that a graceful upgrade moves the
//! admin socket too. [`LifecycleAdmin`] wraps the admin app: `/ready` answers 503 while
//! draining, and every answer names the process in `x-switchyard-pid`.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::upgrade::PID_HEADER;
use super::Lifecycle;

/// Wraps the admin app: `/ready` is 503 while draining; every answer carries the pid.
pub struct LifecycleAdmin<S> {
    inner: S,
    lifecycle: Arc<Lifecycle>,
    pid: HeaderValue,
}

impl<S> LifecycleAdmin<S> {
    pub fn new(inner: S, lifecycle: Arc<Lifecycle>) -> Self {
        LifecycleAdmin {
            inner,
            lifecycle,
            pid: HeaderValue::from(std::process::id()),
        }
    }
}

#[async_trait]
impl<S: ServeHttp + Send + Sync> ServeHttp for LifecycleAdmin<S> {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let draining_ready =
            self.lifecycle.is_draining() && session.req_header().uri.path() == "/ready";
        let mut response = if draining_ready {
            let body = b"draining\n".to_vec();
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(9u32));
            r
        } else {
            self.inner.response(session).await
        };
        response.headers_mut().insert(PID_HEADER, self.pid.clone());
        response
    }
}

/// The admin listener: one address, one app, one thread.
pub struct AdminService<A> {
    name: String,
    addr: SocketAddr,
    app: Option<Arc<A>>,
    lifecycle: Arc<Lifecycle>,
}

impl<A> AdminService<A> {
    pub fn new(name: &str, addr: SocketAddr, app: A, lifecycle: Arc<Lifecycle>) -> Self {
        AdminService {
            name: name.to_string(),
            addr,
            app: Some(Arc::new(app)),
            lifecycle,
        }
    }

    /// The inherited socket for the address, or a new one recorded in the table.
    fn listener(&self, fds: Option<ListenFds>) -> std::io::Result<TcpListener> {
        let key = self.addr.to_string();
        let inherited = fds.as_ref().and_then(|f| f.lock().get(&key).copied());
        let listener = match inherited {
            // SAFETY: the fd was received from the previous process as the listening socket
            // bound to this address; this service is the only one that claims the address.
            Some(fd) => unsafe { StdListener::from_raw_fd(fd) },
            None => {
                let l = StdListener::bind(self.addr)?;
                if let Some(f) = &fds {
                    f.lock().add(key, l.as_raw_fd());
                }
                l
            }
        };
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for AdminService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        let listener = match self.listener(fds) {
            Ok(l) => l,
            Err(e) => {
                error!(addr = %self.addr, error = %e, "admin listener cannot bind; serving without it");
                return;
            }
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        let app = app.clone();
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            let mut stream: Option<Stream> = Some(Box::new(L4Stream::from(tcp)));
                            while let Some(s) = stream.take() {
                                stream = app.process_new(s, &shutdown).await;
                            }
                        });
                    }
                    Err(e) => {
                        warn!(addr = %self.addr, error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if *shutdown.borrow() && self.lifecycle.is_handing_over() {
                        info!(addr = %self.addr, "admin listener handed over");
                        break;
                    }
                    // A drain keeps the admin listener open until the process exits.
                }
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.addr.to_string()])
    }
}
