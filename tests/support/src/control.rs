//! The real `switchyard control` service as a child process: spawned with its output in a log file, health-polled, queried with tokens, killed on drop.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use tempfile::TempDir;

use crate::child::LoggedChild;

use crate::client::{self, other, request, H1Conn, Response};

/// How long [`ControlProcess::start`] waits for `/healthz` to answer 200.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// The control service's default `--listen` address.
const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

/// Token files in a temporary directory (removed on drop). Each file holds its token plus a
/// trailing newline, which the control service trims.
pub struct TokenFiles {
    dir: TempDir,
    pub operator_token: String,
    pub gateway_token: String,
}

impl TokenFiles {
    /// Writes `operator.token` and `gateway.token`.
    pub fn new(operator_token: &str, gateway_token: &str) -> TokenFiles {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-tokens-")
            .tempdir()
            .expect("create a temporary token dir");
        let files = TokenFiles {
            dir,
            operator_token: operator_token.to_string(),
            gateway_token: gateway_token.to_string(),
        };
        files.write("operator.token", operator_token);
        files.write("gateway.token", gateway_token);
        files
    }

    /// Writes another token file `name` (`token` plus a newline) and returns its path.
    pub fn write(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, format!("{token}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The operator token file (status, rollback, metrics).
    pub fn operator(&self) -> PathBuf {
        self.dir.path().join("operator.token")
    }

    /// The gateway token file (watch, ack).
    pub fn gateway(&self) -> PathBuf {
        self.dir.path().join("gateway.token")
    }
}

impl fmt::Debug for TokenFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenFiles").field(&self.dir.path()).finish()
    }
}

/// A running control service. Killed (SIGKILL) and reaped on drop; its log file lives until then.
#[derive(Debug)]
pub struct ControlProcess {
    proc: LoggedChild,
    addr: SocketAddr,
    /// The operator token found in `--token-file` or `SWITCHYARD_TOKEN`, used by [`Self::status`].
    operator_token: Option<String>,
}

impl ControlProcess {
    /// Spawns `bin args..` (with `env` added) and waits until `GET /healthz` on the `--listen`
    /// address answers 200. Panics with the logs on failure.
    pub async fn start(bin: &Path, args: &[String], env: &[(&str, &str)]) -> ControlProcess {
        let mut control = Self::spawn(bin, args, env)
            .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", bin.display()));
        if let Err(e) = control.wait_healthy(HEALTHY_TIMEOUT).await {
            let logs = control.logs();
            control.kill();
            panic!(
                "control {} {args:?} not healthy: {e}\n--- control logs ---\n{logs}",
                bin.display()
            );
        }
        control
    }

    /// Spawns without waiting (for tests that expect startup to fail). The address is `--listen`
    /// (default 127.0.0.1:9090); the operator token is read from `--token-file` or taken from
    /// `SWITCHYARD_TOKEN` in `env`, if either is given.
    pub fn spawn(bin: &Path, args: &[String], env: &[(&str, &str)]) -> io::Result<ControlProcess> {
        let listen = arg_value(args, "--listen").unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let addr: SocketAddr = listen.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--listen {listen:?}: {e}"),
            )
        })?;
        let operator_token = match arg_value(args, "--token-file") {
            Some(f) => fs::read_to_string(&f).ok().map(|t| t.trim().to_string()),
            None => env
                .iter()
                .find(|(k, _)| *k == "SWITCHYARD_TOKEN")
                .map(|(_, v)| v.trim().to_string()),
        };
        let proc = LoggedChild::spawn(bin, args, env, "switchyard-control-", "control.log")?;
        Ok(ControlProcess {
            proc,
            addr,
            operator_token,
        })
    }

    /// Polls `/healthz` until it answers 200; fails early if the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Err(io::Error::other(format!("control exited with {status}")));
            }
            let last = match tokio::time::timeout(
                Duration::from_secs(1),
                self.get_with_token("/healthz", None),
            )
            .await
            {
                Ok(Ok(r)) if r.status == StatusCode::OK => return Ok(()),
                Ok(Ok(r)) => format!("/healthz answered {}: {}", r.status, r.text().trim()),
                Ok(Err(e)) => format!("/healthz: {e}"),
                Err(_) => "/healthz took over 1 s".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not healthy after {timeout:?} ({last})"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `--listen` address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{listen}`: the value for `--control`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operator token this process was started with, if known.
    pub fn operator_token(&self) -> Option<&str> {
        self.operator_token.as_deref()
    }

    /// `GET path` on a fresh connection, with `Authorization: Bearer {token}` when given.
    pub async fn get_with_token(&self, path: &str, token: Option<&str>) -> io::Result<Response> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        client::try_get(self.addr, &self.addr.to_string(), path, &headers).await
    }

    /// `POST path` with a JSON body on a fresh connection, with a bearer token when given.
    pub async fn post_with_token(
        &self,
        path: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> io::Result<Response> {
        let mut req = request(Method::POST, &self.addr.to_string(), path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Bytes::from(json.to_string())).map_err(other)?;
        H1Conn::connect(self.addr).await?.send(req).await
    }

    fn token(&self) -> &str {
        self.operator_token
            .as_deref()
            .expect("the control was started without a known operator token")
    }

    /// `GET /v1/status` with the operator token; panics (with the logs) unless it is 200 JSON.
    pub async fn status(&self) -> serde_json::Value {
        let r = self
            .get_with_token("/v1/status", Some(self.token()))
            .await
            .unwrap_or_else(|e| panic!("GET {}/v1/status: {e}\n{}", self.url(), self.logs()));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET /v1/status: {}\n{}",
            r.text(),
            self.logs()
        );
        r.json()
    }

    /// Polls `/v1/status` until `done` holds (bounded by `timeout`) and returns that document.
    /// Panics with `what`, the last document and `logs()` (e.g. this process's
    /// [`logs`](LoggedChild::logs), or a whole fleet's) on timeout.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&serde_json::Value) -> bool,
        logs: impl Fn() -> String,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await;
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last status:\n{s:#}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `POST /v1/rollback {"to": n}` with the operator token.
    pub async fn rollback_to(&self, n: u64) -> Response {
        let body = serde_json::json!({ "to": n });
        self.post_with_token("/v1/rollback", Some(self.token()), &body)
            .await
            .unwrap_or_else(|e| panic!("POST {}/v1/rollback: {e}\n{}", self.url(), self.logs()))
    }

    /// `POST /v1/rollback {"previous": true}` with the operator token.
    pub async fn rollback_previous(&self) -> Response {
        let body = serde_json::json!({ "previous": true });
        self.post_with_token("/v1/rollback", Some(self.token()), &body)
            .await
            .unwrap_or_else(|e| panic!("POST {}/v1/rollback: {e}\n{}", self.url(), self.logs()))
    }

    /// `GET /metrics` (Prometheus text) with the operator token; panics unless 200.
    pub async fn metrics(&self) -> String {
        let r = self
            .get_with_token("/metrics", Some(self.token()))
            .await
            .unwrap_or_else(|e| panic!("GET {}/metrics: {e}\n{}", self.url(), self.logs()));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET /metrics: {r:?}\n{}",
            self.logs()
        );
        r.text()
    }
}

/// Process control (logs, signals, exit status) is [`LoggedChild`]'s.
impl Deref for ControlProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.proc
    }
}

impl DerefMut for ControlProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.proc
    }
}

/// The value of `NAME VALUE` or `NAME=VALUE` in `args`.
fn arg_value(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn token_files_hold_the_tokens() {
        let t = TokenFiles::new("op", "gw");
        assert_eq!(fs::read_to_string(t.operator()).unwrap().trim(), "op");
        assert_eq!(fs::read_to_string(t.gateway()).unwrap().trim(), "gw");
        let other = t.write("wrong.token", "nope");
        assert_eq!(fs::read_to_string(other).unwrap(), "nope\n");
    }

    #[test]
    fn finds_listen_and_token() {
        assert_eq!(
            arg_value(&args(&["control", "--listen", "127.0.0.1:1"]), "--listen").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            arg_value(&args(&["--listen=127.0.0.1:2"]), "--listen").as_deref(),
            Some("127.0.0.1:2")
        );
        assert!(arg_value(&args(&["control"]), "--listen").is_none());
    }

    /// A stand-in control: `sh -c "sleep 30"` whose "listen" address is an echo backend.
    #[tokio::test]
    async fn start_waits_for_healthz_and_sends_the_token() {
        let fake = crate::EchoBackend::start("control").await;
        let tokens = TokenFiles::new("op-secret", "gw-secret");
        let a = args(&[
            "-c",
            "exec sleep 30",
            "--listen",
            &fake.addr().to_string(),
            "--token-file",
            &tokens.operator().display().to_string(),
        ]);
        let control = ControlProcess::start(Path::new("/bin/sh"), &a, &[]).await;
        assert_eq!(control.operator_token(), Some("op-secret"));
        assert_eq!(control.status().await["path"], "/v1/status");
        let r = control.rollback_to(3).await;
        assert_eq!(r.json()["method"], "POST");
        let seen = fake.requests();
        assert_eq!(seen[0].path, "/healthz");
        assert!(seen[0].headers.get("authorization").is_none());
        assert_eq!(seen[1].headers["authorization"], "Bearer op-secret");
        assert_eq!(seen[2].body.as_ref(), br#"{"to":3}"#);
        let pid = control.pid();
        drop(control);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[tokio::test]
    async fn early_exit_is_reported() {
        let a = args(&[
            "-c",
            "echo boom >&2; exit 2",
            "--listen",
            &format!("127.0.0.1:{}", crate::free_port()),
        ]);
        let mut c = ControlProcess::spawn(Path::new("/bin/sh"), &a, &[]).unwrap();
        let err = c.wait_healthy(Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        assert!(c.logs().contains("boom"));
    }
}
