//! A gateway process's lifecycle around its serving life: graceful upgrade (a new process takes
//! the listening sockets over from a running one) and graceful shutdown (SIGTERM drains
//! in-flight requests within a grace period).
//!
//! Pingora owns the mechanics (`server/mod.rs`): SIGQUIT sends the listening sockets over the
//! upgrade socket, SIGTERM closes the listeners and waits `grace_period_seconds`, then the
//! service runtimes get `graceful_shutdown_timeout_seconds`. This module adds what a gateway
//! behind a load balancer needs on top:
//! - [`signals`]: SIGQUIT hands over only when a new process is waiting on the upgrade socket
//!   (pingora shuts the old process down even when the transfer fails);
//! - [`drain`]: counts open downstream connections, keeps idle keep-alive connections open for
//!   a short window (a request arriving on one is answered with `Connection: close`, so busy
//!   clients never race a close), and ends the process as soon as nothing is left in flight
//!   instead of always sleeping the whole grace period;
//! - [`admin`]: the admin listener as a pingora service of our own, handed over like the
//!   others, that keeps answering during a drain (`/ready` 503, `/healthz` 200);
//! - [`upgrade`]: the upgrade socket's path and the takeover of a running gateway.

pub mod admin;
pub mod drain;
pub mod signals;
pub mod upgrade;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What the lifecycle pieces share: set by the signal handler, read by the admin listener and
/// the drain watcher.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// SIGTERM received: `/ready` answers 503 until the process exits.
    draining: AtomicBool,
    /// SIGQUIT accepted: the sockets go to a new process, and the admin listener closes with
    /// the others (the new process answers on it).
    handing_over: AtomicBool,
    /// Downstream connections open on the drained services.
    connections: AtomicUsize,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    pub fn start_handover(&self) {
        self.handing_over.store(true, Ordering::Release);
    }

    /// Downstream connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Counts a connection until the guard drops.
    pub fn open_connection(&self) -> ConnectionGuard<'_> {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self)
    }
}

/// One open downstream connection (see [`Lifecycle::open_connection`]).
pub struct ConnectionGuard<'a>(&'a Lifecycle);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_guards_count_open_connections() {
        let l = Lifecycle::default();
        let a = l.open_connection();
        let b = l.open_connection();
        assert_eq!(l.connections(), 2);
        drop(a);
        assert_eq!(l.connections(), 1);
        drop(b);
        assert_eq!(l.connections(), 0);
        assert!(!l.is_draining() && !l.is_handing_over());
        l.start_draining();
        l.start_handover();
        assert!(l.is_draining() && l.is_handing_over());
    }
}
