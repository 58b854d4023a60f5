//! The access log: one JSON line per request, formatted in the request's `logging` hook and
//! copied into a bounded byte queue a writer thread ([`sink`]) drains. A full queue drops the line
//! and counts it (`switchyard_access_log_dropped_total`); the request never waits. Sampling
//! keeps a fraction of successful requests and every error (status 0 or >= 500, or any
//! reason flag).

pub mod sink;

use std::cell::RefCell;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use serde::Serialize;
use thiserror::Error;
use time::OffsetDateTime;

/// `--access-log`: where lines go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    #[default]
    Off,
    Stdout,
    Stderr,
    /// Appended to; reopened on SIGHUP or when moved.
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "off" | "" => AccessLogTarget::Off,
            "stdout" | "-" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            path => AccessLogTarget::File(PathBuf::from(path)),
        })
    }
}

/// Parses `--access-log-sample`: a fraction in 0..=1.
pub fn parse_sample(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate between 0 and 1")),
    }
}

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("access log {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the access-log writer: {0}")]
    Thread(std::io::Error),
}

/// The request path's handle on the access log.
#[derive(Debug)]
pub struct AccessLog {
    queue: Arc<sink::LineQueue>,
    sample: f64,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the sink and starts the writer thread; `None` when the target is `off`.
    pub fn start(
        target: &AccessLogTarget,
        sample: f64,
        dropped: IntCounter,
    ) -> Result<Option<AccessLog>, AccessLogError> {
        let reopen = Arc::new(AtomicBool::new(false));
        let output = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => sink::Output::Stdout,
            AccessLogTarget::Stderr => sink::Output::Stderr,
            AccessLogTarget::File(path) => {
                let file = sink::FileSink::open(path).map_err(|source| AccessLogError::Open {
                    path: path.display().to_string(),
                    source,
                })?;
                #[cfg(unix)]
                if let Err(e) =
                    signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen.clone())
                {
                    tracing::warn!(error = %e, "no SIGHUP handler: the access log reopens only when its file is moved");
                }
                sink::Output::File(file)
            }
        };
        let queue = Arc::new(sink::LineQueue::default());
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || sink::run(output, writer, reopen))
            .map_err(AccessLogError::Thread)?;
        Ok(Some(AccessLog {
            queue,
            sample,
            dropped,
        }))
    }

    /// Whether this request is logged: every error, and a `sample` fraction of the rest.
    pub fn wants(&self, error: bool) -> bool {
        error || self.sample >= 1.0 || (self.sample > 0.0 && fastrand::f64() < self.sample)
    }

    /// Formats `record` as one line (into a buffer reused by this thread) and queues it, or
    /// counts it dropped when the queue is full.
    pub fn send(&self, record: &Record<'_>) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            if serde_json::to_writer(&mut *line, record).is_err() {
                return;
            }
            line.push(b'\n');
            if !self.queue.push(&line) {
                self.dropped.inc();
            }
        });
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// One access-log line. Field order is the line's order.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// Request start, RFC 3339 UTC with milliseconds.
    pub time: &'a str,
    pub request_id: Option<&'a str>,
    pub trace_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// The canonical path (after `sanitize`), without the query.
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub endpoint_zone: Option<&'a str>,
    /// The status sent (0: none).
    pub status: u16,
    /// The reason flag, `ok` when none.
    pub reason: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    /// The last attempt: from picking the endpoint to a ready connection.
    pub upstream_connect_ms: Option<f64>,
    /// The last attempt: from picking the endpoint to the response head.
    pub upstream_response_ms: Option<f64>,
    pub retries: u32,
    pub generation: u64,
}

/// `when` as RFC 3339 UTC with milliseconds, e.g. `2026-11-21T22:25:28.123Z`.
pub fn rfc3339_ms(when: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    when.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

/// Milliseconds with microsecond resolution, for JSON.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_rates() {
        assert_eq!("off".parse(), Ok(AccessLogTarget::Off));
        assert_eq!("stdout".parse(), Ok(AccessLogTarget::Stdout));
        assert_eq!(
            "/var/log/a.log".parse(),
            Ok(AccessLogTarget::File("/var/log/a.log".into()))
        );
        assert_eq!(parse_sample("0.25"), Ok(0.25));
        assert!(parse_sample("1.5").is_err() && parse_sample("x").is_err());
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_040_728_123_456_789).unwrap();
        assert_eq!(rfc3339_ms(t), "2026-11-18T22:25:28.123Z");
        let whole = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(rfc3339_ms(whole), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn sampling_keeps_errors() {
        let log = AccessLog {
            queue: Arc::new(sink::LineQueue::default()),
            sample: 0.0,
            dropped: IntCounter::new("d", "d").unwrap(),
        };
        assert!(log.wants(true));
        assert!((0..100).all(|_| !log.wants(false)));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dropped = IntCounter::new("d", "d").unwrap();
        // Room for one line (about 400 bytes), not two.
        let log = AccessLog {
            queue: Arc::new(sink::LineQueue::new(600)),
            sample: 1.0,
            dropped: dropped.clone(),
        };
        let record = Record {
            time: "t",
            request_id: None,
            trace_id: "x",
            method: "GET",
            host: "h\"q",
            path: "/",
            route: None,
            rule: None,
            backend: None,
            endpoint: None,
            zone: None,
            endpoint_zone: None,
            status: 200,
            reason: "ok",
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 1.5,
            upstream_connect_ms: None,
            upstream_response_ms: None,
            retries: 0,
            generation: 1,
        };
        log.send(&record);
        log.send(&record);
        assert_eq!(dropped.get(), 1);
    }
}
