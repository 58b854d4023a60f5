//! The graceful upgrade's rendezvous: the upgrade socket's path (both processes must use the
//! same one), whether a new process waits on it, and the takeover of a running gateway.
//!
//! Pingora's protocol (`server/transfer_fd`): the new process, started with `--upgrade`,
//! binds and listens on the upgrade socket inside `Server::bootstrap()` and polls `accept`
//! about once a second, six times; the old process, on SIGQUIT, connects to it and sends its
//! listening sockets (SCM_RIGHTS) keyed by bind address. Nothing before `bootstrap()` touches a
//! socket, so the gateway loads and compiles its generation first: a config that does not
//! load ends the new process before anything is handed over.
//!
//! The takeover helper sends the SIGQUIT itself, and only once this process listens on the
//! upgrade socket; the old process's own SIGQUIT handler ([`super::signals`]) also refuses to
//! hand over when nobody listens there.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{error, info};

/// The admin response header naming the process that answered (tells the old and the new
/// process apart during an upgrade, and lets `--upgrade` find the process to take over from).
pub const PID_HEADER: &str = "x-switchyard-pid";

/// How long the takeover waits for this process to listen on the upgrade socket.
const LISTEN_WAIT: Duration = Duration::from_secs(8);

/// The longest path a Unix socket address holds (`sun_path` less the terminating NUL).
const MAX_SOCK_PATH: usize = 107;

/// `/proc/net/unix` flag of a listening socket (`__SO_ACCEPTCON`).
const SO_ACCEPTCON: u32 = 0x0001_0000;

#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error("upgrade socket {path}: {reason}")]
    Sock { path: String, reason: String },
    #[error("cannot find the gateway to take over: {0} (is a gateway answering on this --admin address? or pass --takeover-pid PID)")]
    Discover(String),
    #[error("--takeover-pid {pid}: {reason}")]
    Pid { pid: u32, reason: String },
}

/// The default upgrade socket: `<state dir>/upgrade.sock` for a subscribed gateway, else
/// `/tmp/switchyard-upgrade-<admin ip>-<admin port>.sock`. Both follow from flags the old and
/// the new process share.
pub fn default_sock(state_dir: Option<&Path>, admin: SocketAddr) -> PathBuf {
    match state_dir {
        Some(dir) => dir.join("upgrade.sock"),
        None => {
            let ip = admin.ip().to_string().replace(':', "_");
            PathBuf::from(format!(
                "/tmp/switchyard-upgrade-{ip}-{}.sock",
                admin.port()
            ))
        }
    }
}

/// Makes `path` absolute and checks that a Unix socket can be bound there (pingora panics
/// otherwise): a short enough path in an existing directory.
pub fn check_sock(path: &Path) -> Result<PathBuf, UpgradeError> {
    let fail = |reason: String| UpgradeError::Sock {
        path: path.display().to_string(),
        reason,
    };
    let abs = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
    let text = abs
        .to_str()
        .ok_or_else(|| fail("the path is not UTF-8".to_string()))?;
    if text.len() > MAX_SOCK_PATH {
        return Err(fail(format!(
            "{} bytes long; a Unix socket path holds at most {MAX_SOCK_PATH} (pass a shorter --upgrade-sock)",
            text.len()
        )));
    }
    let parent = abs.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(fail(format!(
            "directory {} does not exist",
            parent.display()
        )));
    }
    Ok(abs)
}

/// Whether some process listens on the Unix socket `path` (read from `/proc/net/unix`, so
/// the check does not take the listener's one connection).
pub fn receiver_waiting(path: &Path) -> bool {
    fs::read_to_string("/proc/net/unix")
        .map(|table| listening_in(&table, path))
        .unwrap_or(false)
}

fn listening_in(table: &str, path: &Path) -> bool {
    let Some(path) = path.to_str() else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7] == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & SO_ACCEPTCON != 0)
    })
}

/// The pid of the gateway answering on `admin`, from the [`PID_HEADER`] of its `/healthz`.
pub fn discover_pid(admin: SocketAddr) -> Result<u32, UpgradeError> {
    let fail = |e: String| UpgradeError::Discover(format!("GET http://{admin}/healthz: {e}"));
    let timeout = Duration::from_secs(2);
    let mut conn = TcpStream::connect_timeout(&admin, timeout).map_err(|e| fail(e.to_string()))?;
    conn.set_read_timeout(Some(timeout))
        .and_then(|_| conn.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::with_capacity(512);
    conn.take(16 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| fail(e.to_string()))?;
    pid_from_response(&buf).map_err(fail)
}

fn pid_from_response(buf: &[u8]) -> Result<u32, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(buf)
        .map_err(|e| format!("unreadable answer: {e}"))?;
    let value = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(PID_HEADER))
        .ok_or_else(|| format!("the answer has no {PID_HEADER} header"))?;
    std::str::from_utf8(value.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{PID_HEADER} is not a pid"))
}

/// Checks that `pid` names another live process this user may signal.
pub fn check_pid(pid: u32) -> Result<(), UpgradeError> {
    let fail = |reason: String| UpgradeError::Pid { pid, reason };
    if pid == std::process::id() {
        return Err(fail("that is this process".to_string()));
    }
    let raw = libc::pid_t::try_from(pid).map_err(|_| fail("not a pid".to_string()))?;
    if raw <= 0 {
        return Err(fail("not a pid".to_string()));
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(raw, 0) } != 0 {
        return Err(fail(io::Error::last_os_error().to_string()));
    }
    // SIGQUIT kills (and core-dumps) most other programs: make sure it is a gateway.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| fail(e.to_string()))?;
    if !is_gateway_cmdline(&cmdline) {
        let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        return Err(fail(format!(
            "not a `switchyard gateway` process (command line: {})",
            shown.trim()
        )));
    }
    Ok(())
}

/// Whether a `/proc/PID/cmdline` runs the `gateway` subcommand.
fn is_gateway_cmdline(cmdline: &[u8]) -> bool {
    cmdline
        .split(|b| *b == 0)
        .skip(1)
        .any(|arg| arg == b"gateway")
}

/// Starts a thread that sends SIGQUIT to `pid` once this process listens on `sock` (that is,
/// once `Server::bootstrap()` waits for the sockets). Call it just before `bootstrap()`.
pub fn signal_when_listening(pid: u32, sock: PathBuf) -> io::Result<()> {
    thread::Builder::new()
        .name("switchyard-takeover".into())
        .spawn(move || {
            let deadline = Instant::now() + LISTEN_WAIT;
            while !receiver_waiting(&sock) {
                if Instant::now() >= deadline {
                    error!(sock = %sock.display(), "not listening on the upgrade socket; the old process is left alone");
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let Ok(raw) = libc::pid_t::try_from(pid) else {
                return;
            };
            // SAFETY: kill(2) sends a signal; it touches no memory of this process.
            if unsafe { libc::kill(raw, libc::SIGQUIT) } == 0 {
                info!(pid, sock = %sock.display(), "SIGQUIT sent: the old process hands its listening sockets over");
            } else {
                error!(pid, error = %io::Error::last_os_error(), "cannot send SIGQUIT to the old process");
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sock_follows_state_dir_or_admin() {
        let admin: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        assert_eq!(
            default_sock(Some(Path::new("/var/lib/sy")), admin),
            PathBuf::from("/var/lib/sy/upgrade.sock")
        );
        assert_eq!(
            default_sock(None, admin),
            PathBuf::from("/tmp/switchyard-upgrade-127.0.0.1-9901.sock")
        );
        let v6: SocketAddr = "[::1]:9901".parse().unwrap();
        assert_eq!(
            default_sock(None, v6),
            PathBuf::from("/tmp/switchyard-upgrade-__1-9901.sock")
        );
    }

    #[test]
    fn check_sock_rejects_long_paths_and_missing_dirs() {
        let long = PathBuf::from(format!("/tmp/{}.sock", "x".repeat(120)));
        let e = check_sock(&long).unwrap_err().to_string();
        assert!(e.contains("at most 107"), "{e}");
        let e = check_sock(Path::new("/nonexistent-dir-xyz/u.sock"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(check_sock(Path::new("/tmp/u.sock")).is_ok());
    }

    #[test]
    fn listening_sockets_are_found_in_proc_net_unix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1234 /tmp/a.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 1235 /tmp/b.sock\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 1236\n";
        assert!(listening_in(table, Path::new("/tmp/a.sock")));
        assert!(
            !listening_in(table, Path::new("/tmp/b.sock")),
            "connected, not listening"
        );
        assert!(!listening_in(table, Path::new("/tmp/c.sock")));
    }

    #[test]
    fn a_real_listener_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sock");
        assert!(!receiver_waiting(&path));
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(receiver_waiting(&path));
    }

    #[test]
    fn pid_is_read_from_the_admin_answer() {
        let ok = b"HTTP/1.1 200 OK\r\nx-switchyard-pid: 4242\r\ncontent-length: 3\r\n\r\nok\n";
        assert_eq!(pid_from_response(ok), Ok(4242));
        let none = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(pid_from_response(none)
            .unwrap_err()
            .contains("no x-switchyard-pid"));
    }

    #[test]
    fn only_gateway_processes_are_taken_over() {
        assert!(is_gateway_cmdline(
            b"/usr/bin/switchyard\0gateway\0--config-dir\0d\0"
        ));
        assert!(!is_gateway_cmdline(b"/usr/bin/switchyard\0control\0"));
        assert!(!is_gateway_cmdline(b"gateway\0"), "argv[0] is the program");
        assert!(!is_gateway_cmdline(b""));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let e = check_pid(sleeper.id()).unwrap_err().to_string();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(e.contains("not a `switchyard gateway` process"), "{e}");
    }

    #[test]
    fn check_pid_refuses_self_and_missing_processes() {
        assert!(check_pid(std::process::id()).is_err());
        assert!(check_pid(0).is_err());
        // pid_max is at most 2^22 on Linux.
        assert!(check_pid(4_194_304 + 7).is_err());
    }
}
