//! The real `switchyard gateway` as a child process: spawned with its output in a log file, ready-polled and killed on drop.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::child::LoggedChild;
use http::StatusCode;

use crate::client::{self, Response};

/// How long [`GatewayProcess::start`] waits for `/ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (bound, read, released: another process may take it first).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// A running gateway. Killed (SIGKILL) and reaped on drop; its log file lives until then.
#[derive(Debug)]
pub struct GatewayProcess {
    proc: LoggedChild,
    admin: SocketAddr,
}

/// Process control (logs, signals, exit status) is [`LoggedChild`]'s.
impl Deref for GatewayProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.proc
    }
}

impl DerefMut for GatewayProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.proc
    }
}

impl GatewayProcess {
    /// Spawns `bin args..` and waits until `GET http://{admin}/ready` answers 200, where the
    /// admin address is the value of `--admin` in `args`. Panics with the logs on failure.
    pub async fn start(bin: &Path, args: &[String]) -> GatewayProcess {
        let mut gw = Self::spawn(bin, args, &[])
            .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", bin.display()));
        if let Err(e) = gw.wait_ready(READY_TIMEOUT).await {
            let logs = gw.logs();
            gw.kill();
            panic!(
                "gateway {} {args:?} not ready: {e}\n--- gateway logs ---\n{logs}",
                bin.display()
            );
        }
        gw
    }

    /// Spawns without waiting (for tests that expect startup to fail); `env` is added to the
    /// inherited environment. Fails when `args` lacks a valid `--admin ADDR`.
    pub fn spawn(bin: &Path, args: &[String], env: &[(&str, &str)]) -> io::Result<GatewayProcess> {
        let admin = admin_arg(args)?;
        let proc = LoggedChild::spawn(bin, args, env, "switchyard-gw-", "gateway.log")?;
        Ok(GatewayProcess { proc, admin })
    }

    /// Polls `/ready` until it answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Err(io::Error::other(format!("gateway exited with {status}")));
            }
            let last = match tokio::time::timeout(Duration::from_secs(1), self.admin_get("/ready"))
                .await
            {
                Ok(Ok(r)) if r.status == StatusCode::OK => return Ok(()),
                Ok(Ok(r)) => format!("/ready answered {}: {}", r.status, r.text().trim()),
                Ok(Err(e)) => format!("/ready: {e}"),
                Err(_) => "/ready took over 1 s".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not ready after {timeout:?} ({last})"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `--admin` address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `GET http://{admin}{path}` on a fresh connection.
    pub async fn admin_get(&self, path: &str) -> io::Result<Response> {
        client::try_get(self.admin, &self.admin.to_string(), path, &[]).await
    }

    /// The admin `/config` document (`generation`, `digest`, `loaded_at`, `files`).
    pub async fn config(&self) -> serde_json::Value {
        let r = self
            .admin_get("/config")
            .await
            .unwrap_or_else(|e| panic!("GET http://{}/config: {e}\n{}", self.admin, self.logs()));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET /config: {}\n{}",
            r.text(),
            self.logs()
        );
        r.json()
    }
}

/// The value of `--admin ADDR` (or `--admin=ADDR`) in `args`.
fn admin_arg(args: &[String]) -> io::Result<SocketAddr> {
    let value = args
        .iter()
        .position(|a| a == "--admin")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--admin=").map(str::to_string))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "args lack --admin ADDR"))?;
    value.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--admin {value:?}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_the_admin_address() {
        let a = admin_arg(&args(&["gateway", "--admin", "127.0.0.1:9"])).unwrap();
        assert_eq!(a, "127.0.0.1:9".parse().unwrap());
        let a = admin_arg(&args(&["gateway", "--admin=127.0.0.1:10"])).unwrap();
        assert_eq!(a.port(), 10);
        assert!(admin_arg(&args(&["gateway"])).is_err());
        assert!(admin_arg(&args(&["--admin", "nope"])).is_err());
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    /// A stand-in gateway: `sh -c "sleep 30"` whose "admin" is an echo backend (200 JSON everywhere).
    #[tokio::test]
    async fn start_waits_for_ready_and_reads_config() {
        let admin = crate::EchoBackend::start("admin").await;
        let a = args(&["-c", "exec sleep 30", "--admin", &admin.addr().to_string()]);
        let gw = GatewayProcess::start(Path::new("/bin/sh"), &a).await;
        assert_eq!(gw.admin_addr(), admin.addr());
        assert_eq!(gw.config().await["path"], "/config");
        assert_eq!(admin.requests()[0].path, "/ready");
        let pid = gw.pid();
        drop(gw);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped on drop"
        );
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_logs() {
        let admin = format!("127.0.0.1:{}", free_port());
        let a = args(&[
            "-c",
            "echo started; echo oops >&2; exit 3",
            "--admin",
            &admin,
        ]);
        let mut gw = GatewayProcess::spawn(Path::new("/bin/sh"), &a, &[]).unwrap();
        let err = gw.wait_ready(Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        assert_eq!(
            gw.wait_exit(Duration::from_secs(1)).await.unwrap().code(),
            Some(3)
        );
        let logs = gw.logs();
        assert!(logs.contains("started") && logs.contains("oops"), "{logs}");
        assert!(format!("{gw:?}").contains("GatewayProcess"));
    }

    #[tokio::test]
    async fn kill_and_wait_exit() {
        let admin = format!("127.0.0.1:{}", free_port());
        let a = args(&["-c", "exec sleep 30", "--admin", &admin]);
        let mut gw = GatewayProcess::spawn(Path::new("/bin/sh"), &a, &[]).unwrap();
        assert!(gw.wait_exit(Duration::from_millis(100)).await.is_none());
        gw.terminate().unwrap();
        assert!(gw.wait_exit(Duration::from_secs(5)).await.is_some());
        gw.kill(); // no-op once exited
    }
}
