//! Active health checks: one task per (backend, endpoint) with a `healthCheck`, on a thread of
//! their own so they never compete with request workers for a runtime. Each task probes over
//! TCP or HTTP/1.1 on its interval and flips the endpoint's `healthy` flag after the healthy or
//! unhealthy threshold of consecutive results.
//!
//! The flag lives in the endpoint's long-lived state, so it survives reloads: after every swap
//! the live config hands the new target list to [`HealthChecks::reconcile`], which keeps tasks
//! whose target and check are unchanged, restarts those whose check changed (keeping the
//! flag), stops those that went away (marking the endpoint healthy again: no check means
//! assumed healthy) and starts new ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use switchyard_config::{HealthCheck, HealthProbe, ObjRef};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::state::{BackendState, EndpointState};

/// One endpoint to check.
#[derive(Debug, Clone)]
pub struct Target {
    pub backend: ObjRef,
    pub address: SocketAddr,
    pub check: HealthCheck,
    pub endpoint: Arc<EndpointState>,
    pub backend_state: Arc<BackendState>,
}

/// Work for the health thread.
enum Command {
    Reconcile(Vec<Target>),
    /// Runs on the health thread every [`HOUSEKEEPING`]; used to trim rate-limit buckets.
    Housekeeping(Box<dyn Fn() + Send>),
}

/// How often housekeeping callbacks run.
pub const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// Handle to the health-check thread. Dropping it stops every check.
#[derive(Debug)]
pub struct HealthChecks {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Reconcile(t) => write!(f, "Reconcile({} targets)", t.len()),
            Command::Housekeeping(_) => f.write_str("Housekeeping"),
        }
    }
}

impl HealthChecks {
    /// Starts the thread (named `health-checks`) with its own single-threaded runtime.
    pub fn start() -> std::io::Result<HealthChecks> {
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("health-checks".into())
            .spawn(move || rt.block_on(run(rx)))?;
        Ok(HealthChecks { tx })
    }

    /// Replaces the set of checked endpoints (see the module docs).
    pub fn reconcile(&self, targets: Vec<Target>) {
        let _ = self.tx.send(Command::Reconcile(targets));
    }

    /// Runs `f` on the health thread every [`HOUSEKEEPING`].
    pub fn housekeeping(&self, f: impl Fn() + Send + 'static) {
        let _ = self.tx.send(Command::Housekeeping(Box::new(f)));
    }
}

type Key = (ObjRef, SocketAddr);

struct Running {
    check: HealthCheck,
    target: Target,
    task: JoinHandle<()>,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut running: HashMap<Key, Running> = HashMap::new();
    let mut chores: Vec<Box<dyn Fn() + Send>> = Vec::new();
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Command::Housekeeping(f)) => chores.push(f),
                Some(Command::Reconcile(targets)) => reconcile(&mut running, targets),
            },
            _ = tick.tick() => chores.iter().for_each(|f| f()),
        }
    }
    for (_, r) in running {
        r.task.abort();
    }
}

fn reconcile(running: &mut HashMap<Key, Running>, targets: Vec<Target>) {
    let mut wanted: HashMap<Key, Target> = targets
        .into_iter()
        .map(|t| ((t.backend.clone(), t.address), t))
        .collect();
    running.retain(|key, r| {
        let keep = wanted
            .get(key)
            .is_some_and(|t| t.check == r.check && Arc::ptr_eq(&t.endpoint, &r.target.endpoint));
        if keep {
            wanted.remove(key);
        } else {
            r.task.abort();
            if !wanted.contains_key(key) {
                // No check any more: the endpoint is assumed healthy again.
                set_healthy(&r.target, true);
            }
        }
        keep
    });
    for (key, target) in wanted {
        let task = tokio::spawn(check_loop(target.clone()));
        running.insert(
            key,
            Running {
                check: target.check.clone(),
                target,
                task,
            },
        );
    }
}

/// Flips the endpoint's flag and the backend's degraded count; returns whether it changed.
fn set_healthy(t: &Target, healthy: bool) -> bool {
    let was = t.endpoint.healthy.swap(healthy, Relaxed);
    if was != healthy {
        if healthy {
            t.backend_state.outlier.mark_recovered();
        } else {
            t.backend_state.outlier.mark_degraded();
        }
    }
    was != healthy
}

async fn check_loop(t: Target) {
    let check = &t.check;
    // Spread the first probes of many endpoints over a tenth of the interval.
    let spread = check.interval.as_millis() as u64 / 10;
    tokio::time::sleep(Duration::from_millis(fastrand::u64(..spread.max(1)))).await;
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut passes, mut fails) = (0u32, 0u32);
    loop {
        tick.tick().await;
        let result = tokio::time::timeout(check.timeout, probe(&t)).await;
        let ok = match result {
            Ok(Ok(())) => true,
            Ok(Err(why)) => {
                debug!(backend = %t.backend, endpoint = %t.address, %why, "health check failed");
                false
            }
            Err(_) => {
                debug!(backend = %t.backend, endpoint = %t.address, "health check timed out");
                false
            }
        };
        if ok {
            fails = 0;
            passes = passes.saturating_add(1);
            if passes >= check.healthy_threshold && set_healthy(&t, true) {
                info!(backend = %t.backend, endpoint = %t.address, "health check: endpoint healthy");
            }
        } else {
            passes = 0;
            fails = fails.saturating_add(1);
            if fails >= check.unhealthy_threshold && set_healthy(&t, false) {
                warn!(backend = %t.backend, endpoint = %t.address, "health check: endpoint unhealthy");
            }
        }
    }
}

/// One probe: `Ok` when it passes, else why not.
async fn probe(t: &Target) -> Result<(), String> {
    let stream = TcpStream::connect(t.address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let HealthProbe::Http {
        path,
        host,
        expected,
    } = &t.check.probe
    else {
        return Ok(());
    };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let host = host.clone().unwrap_or_else(|| t.address.to_string());
    let req = http::Request::get(path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "switchyard-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let result = sender.send_request(req).await;
    driver.abort();
    let status = result
        .map_err(|e| format!("request: {e}"))?
        .status()
        .as_u16();
    if expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}
