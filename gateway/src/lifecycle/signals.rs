//! The gateway's shutdown signals, handed to pingora's `Server::run` in place of its own.
//!
//! Same meanings as pingora's: SIGQUIT hands the listening sockets to a new process
//! (graceful upgrade), SIGTERM drains and exits (graceful terminate), SIGINT exits at once.
//! Two differences: SIGTERM first marks the gateway draining (`/ready` answers 503), and
//! SIGQUIT is ignored, with a warning, while no process listens on the upgrade socket. Pingora
//! would try to send the sockets, fail after its retries, and shut the old process down
//! anyway, leaving nobody on the listeners.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use super::upgrade::receiver_waiting;
use super::Lifecycle;

pub struct SignalWatch {
    lifecycle: Arc<Lifecycle>,
    upgrade_sock: PathBuf,
}

impl SignalWatch {
    pub fn new(lifecycle: Arc<Lifecycle>, upgrade_sock: PathBuf) -> Self {
        SignalWatch {
            lifecycle,
            upgrade_sock,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (mut quit, mut term, mut int) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(q), Ok(t), Ok(i)) => (q, t, i),
            (q, t, i) => {
                let e = [q.err(), t.err(), i.err()].into_iter().flatten().next();
                error!(error = ?e, "cannot install the signal handlers; falling back to pingora's");
                return UnixShutdownSignalWatch.recv().await;
            }
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    if receiver_waiting(&self.upgrade_sock) {
                        info!(sock = %self.upgrade_sock.display(), "SIGQUIT: handing the listening sockets to the new process");
                        self.lifecycle.start_handover();
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    warn!(
                        sock = %self.upgrade_sock.display(),
                        "SIGQUIT ignored: no process waits on the upgrade socket (start the new one with `switchyard gateway --upgrade`); still serving"
                    );
                }
                _ = term.recv() => {
                    info!("SIGTERM: draining (listeners closed, /ready answers 503)");
                    self.lifecycle.start_draining();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    info!("SIGINT: exiting now");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}
