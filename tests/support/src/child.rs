//! A child process whose stdout and stderr go to a log file: spawn, signals, exit status, and
//! SIGKILL plus reap on drop. [`crate::GatewayProcess`] and [`crate::ControlProcess`] build on it.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct LoggedChild {
    child: Child,
    bin: PathBuf,
    log_path: PathBuf,
    _log_dir: TempDir,
    status: Option<ExitStatus>,
}

impl LoggedChild {
    /// Spawns `bin args..` with `env` added to the inherited environment; the log is
    /// `<temp dir named prefix*>/<log_name>`.
    pub fn spawn(
        bin: &Path,
        args: &[String],
        env: &[(&str, &str)],
        prefix: &str,
        log_name: &str,
    ) -> io::Result<LoggedChild> {
        let log_dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let log_path = log_dir.path().join(log_name);
        let log = File::create(&log_path)?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(LoggedChild {
            child,
            bin: bin.to_path_buf(),
            log_path,
            _log_dir: log_dir,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The binary this process runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the process has written to stdout and stderr so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// Sends a signal by name ("TERM", "HUP", "INT", ...) with kill(1).
    pub fn signal(&self, name: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{name} {} failed: {status}",
                self.child.id()
            )))
        }
    }

    /// SIGTERM: asks for a graceful shutdown (then see [`LoggedChild::wait_exit`]).
    pub fn terminate(&self) -> io::Result<()> {
        self.signal("TERM")
    }

    /// SIGKILL and reap; a no-op once the process has exited.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    pub fn try_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the process to exit; None if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl fmt::Debug for LoggedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedChild")
            .field("pid", &self.child.id())
            .field("bin", &self.bin)
            .field("log", &self.log_path)
            .field("status", &self.status)
            .finish()
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        self.kill();
    }
}
