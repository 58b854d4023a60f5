//! Draining downstream connections at shutdown (SIGTERM, or the old process after an upgrade).
//!
//! What pingora 0.9 does by itself once the shutdown is broadcast: the accept loops stop (the
//! listeners close; after an upgrade the new process holds them), a request that starts on a
//! kept-alive HTTP/1 connection is answered with `Connection: close`, HTTP/2 connections get a
//! GOAWAY and close when their streams end, and `cleanup()` wakes every HTTP/1 connection
//! parked between requests so that it closes at once. Then `run` sleeps the whole
//! `grace_period_seconds`, however little is left in flight, and shuts the runtimes down
//! (cutting what still runs) within `graceful_shutdown_timeout_seconds`.
//!
//! [`DrainApp`] wraps the proxy app to change two things. It delays `cleanup()` by a short
//! keep-alive window: a client busy on a kept-alive connection sends its next request within
//! it, gets the answer with `Connection: close` and reconnects (to the new process after an
//! upgrade) instead of racing a close of an idle connection; connections still idle after the
//! window are closed. And it counts open connections, so that [`exit_when_drained`] ends the
//! process as soon as none is left instead of waiting out the grace period.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use tokio::sync::broadcast;
use tracing::{info, warn};

use super::Lifecycle;

/// How long idle keep-alive connections stay open after the listeners close (at most half
/// the grace period).
pub const KEEPALIVE_WINDOW: Duration = Duration::from_secs(2);

/// How often the drain watcher looks at the open connections.
const POLL: Duration = Duration::from_millis(20);

/// Lets the accept loops see the shutdown before the first look: a connection accepted just
/// before it is counted once its task starts.
const SETTLE: Duration = Duration::from_millis(100);

/// The keep-alive window for a grace period.
pub fn keepalive_window(grace: Duration) -> Duration {
    KEEPALIVE_WINDOW.min(grace / 2)
}

/// A `ServerApp` that counts its open connections and closes idle keep-alive connections only
/// after the keep-alive window.
pub struct DrainApp<A> {
    inner: Arc<A>,
    lifecycle: Arc<Lifecycle>,
    keepalive_window: Duration,
}

impl<A> DrainApp<A> {
    pub fn new(inner: A, lifecycle: Arc<Lifecycle>, keepalive_window: Duration) -> Self {
        DrainApp {
            inner: Arc::new(inner),
            lifecycle,
            keepalive_window,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for DrainApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = self.lifecycle.open_connection();
        self.inner.process_new(stream, shutdown).await
    }

    /// Called by pingora once the accept loops have ended.
    async fn cleanup(&self) {
        if !self.keepalive_window.is_zero() {
            info!(
                window_ms = self.keepalive_window.as_millis() as u64,
                connections = self.lifecycle.connections(),
                "listeners closed; idle keep-alive connections close after the window"
            );
            tokio::time::sleep(self.keepalive_window).await;
        }
        self.inner.cleanup().await;
        info!(
            connections = self.lifecycle.connections(),
            "idle keep-alive connections closed"
        );
    }
}

/// Starts a thread that, once pingora's grace period has begun, exits the process (status 0)
/// as soon as no downstream connection is open. If connections remain when `grace` is over,
/// it leaves the end to pingora, which cuts them.
pub fn exit_when_drained(
    lifecycle: Arc<Lifecycle>,
    mut phases: broadcast::Receiver<ExecutionPhase>,
    grace: Duration,
) -> io::Result<()> {
    thread::Builder::new()
        .name("switchyard-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            let started = Instant::now();
            thread::sleep(SETTLE);
            let mut idle_polls = 0;
            while started.elapsed() < grace {
                if lifecycle.connections() == 0 {
                    idle_polls += 1;
                } else {
                    idle_polls = 0;
                }
                // Two looks in a row: a connection between its accept and its count is rare
                // and short.
                if idle_polls >= 2 {
                    info!(
                        after_ms = started.elapsed().as_millis() as u64,
                        "drained: no connection left in flight; exiting"
                    );
                    std::process::exit(0);
                }
                thread::sleep(POLL);
            }
            warn!(
                connections = lifecycle.connections(),
                grace_s = grace.as_secs(),
                "grace period over; cutting the connections still open"
            );
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_window_is_at_most_half_the_grace_period() {
        assert_eq!(keepalive_window(Duration::from_secs(25)), KEEPALIVE_WINDOW);
        assert_eq!(
            keepalive_window(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(keepalive_window(Duration::ZERO), Duration::ZERO);
    }
}
