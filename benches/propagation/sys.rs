//! What the machine says: core count, wall clock, and a process's CPU time and RSS from /proc.

use std::fs;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(crate) fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1e3
}

/// CPU time (utime + stime, in clock ticks) of some processes at one instant.
pub(crate) struct CpuSample {
    at: Instant,
    ticks: Vec<Option<u64>>,
    pids: Vec<u32>,
}

impl CpuSample {
    pub(crate) fn take(pids: &[u32]) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            ticks: pids.iter().map(|p| cpu_ticks(*p)).collect(),
            pids: pids.to_vec(),
        }
    }

    /// Cores used by process `i` since the sample was taken.
    pub(crate) fn cores(&self, i: usize) -> Option<f64> {
        let now = cpu_ticks(self.pids[i])?;
        let secs = self.at.elapsed().as_secs_f64();
        Some((now - self.ticks[i]?) as f64 / clock_ticks_per_second() / secs)
    }
}

/// utime + stime from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
