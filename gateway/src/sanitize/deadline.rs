//! The request-header deadline (ClientTrafficPolicy `timeouts.requestHeader`).
//!
//! Pingora 0.9 reads a connection's first request header in `HttpProxy::process_new_http`
//! before any `ProxyHttp` hook runs, bounded only per read (the 60 s keep-alive timeout it
//! sets on every new HTTP/1 connection), and its h2c preface peek has no timeout at all, so a
//! client sending one byte now and then holds a connection open indefinitely. The deadline is
//! therefore enforced by the stream itself: [`HeaderDeadline`] is a `ServerApp` wrapped
//! around the proxy that wraps every accepted stream in a [`DeadlineStream`]. The clock is
//! armed at accept (the first header must be complete within the deadline), stopped by
//! `request_filter` ([`header_received`]), and armed again by the first byte of the next
//! request on a kept-alive connection ([`request_finished`]). When it expires, a read fails:
//! the connection is closed, after a best-effort `408` (`client_timeout`) when part of a
//! header had arrived. HTTP/2 connections (ALPN h2, or the h2c preface) are not clocked:
//! their requests are multiplexed and the h2 layer bounds them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::Stream;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

use crate::live::LiveConfig;

const ARMED: u8 = 0;
const IDLE: u8 = 1;
const OFF: u8 = 2;

/// Sent when the deadline passes after part of a request header arrived.
const TIMEOUT_REPLY: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nx-switchyard-error: client_timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 19\r\nconnection: close\r\n\r\n408 client_timeout\n";

/// A stream whose reads fail once the current request header is overdue.
pub struct DeadlineStream {
    inner: Stream,
    state: Arc<AtomicU8>,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes read since the clock was last armed.
    received: usize,
    first_read: bool,
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DeadlineStream {
    /// Wraps an accepted stream; the clock starts now unless the connection speaks h2.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        let h2 = inner.selected_alpn_proto() == Some(ALPN::H2);
        DeadlineStream {
            sleep: (!h2).then(|| Box::pin(sleep(timeout))),
            state: Arc::new(AtomicU8::new(if h2 { OFF } else { ARMED })),
            inner,
            timeout,
            received: 0,
            first_read: true,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.state.load(Ordering::Acquire) != ARMED {
            self.sleep = None;
            return false;
        }
        let Some(s) = self.sleep.as_mut() else {
            return false;
        };
        s.as_mut().poll(cx).is_ready()
    }

    fn overdue(&mut self, cx: &mut Context<'_>) -> io::Error {
        self.state.store(OFF, Ordering::Release);
        self.sleep = None;
        if self.received > 0 {
            // Best effort, on a socket that has sent nothing yet: one write, one flush.
            let inner = Pin::new(&mut self.inner);
            if let Poll::Ready(Ok(_)) = inner.poll_write(cx, TIMEOUT_REPLY) {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
        io::Error::new(io::ErrorKind::TimedOut, "request header deadline passed")
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(this.overdue(cx)));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                if this.first_read && read.starts_with(b"PRI ") {
                    // The h2c preface: HTTP/2 bounds its own streams.
                    this.state.store(OFF, Ordering::Release);
                }
                this.first_read = false;
                let state = this.state.load(Ordering::Acquire);
                if state == IDLE {
                    this.state.store(ARMED, Ordering::Release);
                    this.sleep = Some(Box::pin(sleep(this.timeout)));
                    this.received = 0;
                }
                if state != OFF {
                    this.received += read.len();
                }
            }
        }
        result
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    /// Pingora peeks for the h2c preface before reading a request; bounded by the clock.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let armed = self.state.load(Ordering::Acquire) == ARMED;
        match self.sleep.as_ref().map(|s| s.deadline()).filter(|_| armed) {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, self.inner.try_peek(buf)).await {
                    Ok(result) => result,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request header deadline passed",
                    )),
                }
            }
            None => self.inner.try_peek(buf).await,
        }
    }
}

/// The clock of the connection carrying `session`, if it has one (HTTP/1 only).
fn clock(session: &Session) -> Option<&Arc<AtomicU8>> {
    let stream = session.stream()?;
    let io: &dyn IO = &**stream;
    io.as_any()
        .downcast_ref::<DeadlineStream>()
        .map(|s| &s.state)
}

/// The request header is complete: stop the clock (the body has its own deadline).
pub fn header_received(session: &Session) {
    if let Some(state) = clock(session) {
        state.store(OFF, Ordering::Release);
    }
}

/// The request is done: the first byte of the next one on this connection starts the clock.
pub fn request_finished(session: &Session) {
    if let Some(state) = clock(session) {
        let _ = state.compare_exchange(OFF, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A `ServerApp` that puts every accepted stream under the header deadline of its port.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    live: Arc<LiveConfig>,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, live: Arc<LiveConfig>) -> Self {
        HeaderDeadline {
            inner: Arc::new(inner),
            live,
        }
    }

    fn timeout(&self, stream: &Stream) -> Duration {
        let port = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
        let runtime = self.live.current();
        port.and_then(|p| runtime.gateway().port(p))
            .map(|p| p.client.timeouts.request_header)
            .unwrap_or_else(|| switchyard_config::ClientTimeouts::default().request_header)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let timeout = self.timeout(&stream);
        let wrapped: Stream = Box::new(DeadlineStream::new(stream, timeout));
        self.inner.process_new(wrapped, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
