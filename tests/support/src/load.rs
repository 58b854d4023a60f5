//! A bounded HTTP/1.1 load driver for the e2e tests: closed-loop or paced (open-loop) workers on
//! keep-alive connections, counting statuses, transport errors, header values and a timeline.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::client::{H1Conn, Response};

/// Default for [`LoadSpec::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A load run ends at the latest this long after [`LoadSpec::duration`], even if requests hang.
pub const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(10);

/// At most this many entries are kept in [`LoadReport::timeline`].
pub const TIMELINE_CAP: usize = 200_000;

/// The most requests one run sends when [`LoadSpec::max_requests`] is not set.
pub const MAX_REQUESTS_CAP: u64 = 10_000_000;

/// How many distinct transport error messages [`LoadReport::error_samples`] keeps.
const ERROR_SAMPLES: usize = 16;

/// The gateway's own error marker, always counted in [`LoadReport::switchyard_errors`].
const SWITCHYARD_ERROR: &str = "x-switchyard-error";

/// One timeline entry: when the request was sent (since the run started), its status (0 for a
/// transport error) and the value of [`LoadSpec::record_header`].
pub type TimelineEntry = (Duration, u16, Option<String>);

/// What to send, how hard and for how long. Build with [`LoadSpec::new`] and the setters; the
/// fields are public for struct-update syntax.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Where to connect (the gateway's listener).
    pub addr: SocketAddr,
    /// The Host header (unless `headers` has one).
    pub host: String,
    /// Path and query of every request.
    pub path: String,
    pub method: Method,
    /// Extra request headers, in order (repeats allowed).
    pub headers: Vec<(String, String)>,
    /// Request body (sent with a content-length), empty by default.
    pub body: Bytes,
    /// Workers, each with its own keep-alive connection (at least 1).
    pub concurrency: usize,
    /// Stop after this many requests (default: only [`MAX_REQUESTS_CAP`]).
    pub max_requests: Option<u64>,
    /// No request is sent after this much time since the start (default 1 s).
    pub duration: Duration,
    /// Paced (open-loop): request `i` is due at `start + i / rate`, spread over the workers.
    /// Unset: closed-loop, each worker sends its next request as soon as the last one ends.
    pub rate_per_sec: Option<f64>,
    /// Response header whose values are counted and kept in the timeline (default `x-backend`).
    pub record_header: Option<String>,
    /// One request (connect included) fails with `TimedOut` after this long (default 5 s).
    pub request_timeout: Duration,
    /// A closed-loop worker waits this long after a transport error before reconnecting
    /// (default 10 ms), so a refusing port does not turn into a busy loop.
    pub error_backoff: Duration,
}

impl LoadSpec {
    /// `GET path` with `Host: host` to `addr`: one worker, closed-loop, for 1 s.
    pub fn new(addr: SocketAddr, host: &str, path: &str) -> LoadSpec {
        LoadSpec {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            concurrency: 1,
            max_requests: None,
            duration: Duration::from_secs(1),
            rate_per_sec: None,
            record_header: Some("x-backend".to_string()),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            error_backoff: Duration::from_millis(10),
        }
    }

    pub fn method(mut self, method: Method) -> LoadSpec {
        self.method = method;
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> LoadSpec {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> LoadSpec {
        self.body = body.into();
        self
    }

    pub fn concurrency(mut self, workers: usize) -> LoadSpec {
        self.concurrency = workers;
        self
    }

    pub fn max_requests(mut self, n: u64) -> LoadSpec {
        self.max_requests = Some(n);
        self
    }

    pub fn duration(mut self, duration: Duration) -> LoadSpec {
        self.duration = duration;
        self
    }

    /// Paces the run at `per_sec` requests per second across all workers.
    pub fn rate(mut self, per_sec: f64) -> LoadSpec {
        self.rate_per_sec = Some(per_sec);
        self
    }

    /// Counts the values of response header `name` instead of `x-backend`.
    pub fn record_header(mut self, name: &str) -> LoadSpec {
        self.record_header = Some(name.to_string());
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> LoadSpec {
        self.request_timeout = timeout;
        self
    }

    pub fn error_backoff(mut self, backoff: Duration) -> LoadSpec {
        self.error_backoff = backoff;
        self
    }
}

/// What a load run saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Requests that ended, with a response or a transport error.
    pub total: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response: connect, reset, truncated body, timeout, ...
    pub errors: u64,
    /// Transport errors by `io::ErrorKind` (`"ConnectionRefused"`, `"TimedOut"`, `"Other"`, ...).
    pub error_kinds: BTreeMap<String, u64>,
    /// Up to 16 distinct transport error messages, first seen first.
    pub error_samples: Vec<String>,
    /// The header counted in `header_values` ([`LoadSpec::record_header`]).
    pub header_name: Option<String>,
    /// Responses by the value of `header_name` (responses without it are not counted).
    pub header_values: BTreeMap<String, u64>,
    /// Responses by the value of `x-switchyard-error` (responses without it are not counted).
    pub switchyard_errors: BTreeMap<String, u64>,
    /// Every request (up to [`TIMELINE_CAP`]), ordered by send time.
    pub timeline: Vec<TimelineEntry>,
    /// Whether entries were left out of `timeline`.
    pub timeline_truncated: bool,
    /// From the start to the last request's end.
    pub elapsed: Duration,
    /// Whether the run was cut off at `duration` + [`HARD_DEADLINE_GRACE`] (requests still in
    /// flight then are not counted).
    pub hit_hard_deadline: bool,
}

impl LoadReport {
    /// Responses with status `code`.
    pub fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    /// Responses whose recorded header had `value`.
    pub fn header(&self, value: &str) -> u64 {
        self.header_values.get(value).copied().unwrap_or(0)
    }

    /// Responses of any status: `total - errors`.
    pub fn responses(&self) -> u64 {
        self.total - self.errors
    }

    /// Requests per second as sent: timeline entries minus one over the time from the first
    /// send to the last. None with fewer than two entries.
    pub fn send_rate(&self) -> Option<f64> {
        let (first, last) = (self.timeline.first()?.0, self.timeline.last()?.0);
        let span = last.checked_sub(first)?.as_secs_f64();
        (self.timeline.len() > 1 && span > 0.0).then(|| (self.timeline.len() - 1) as f64 / span)
    }

    /// Timeline entries sent in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &TimelineEntry> {
        self.timeline
            .iter()
            .filter(move |(t, _, _)| *t >= from && *t < to)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:?}: statuses {:?}, {} errors {:?}",
            self.total, self.elapsed, self.statuses, self.errors, self.error_kinds
        )?;
        if let Some(name) = &self.header_name {
            write!(f, ", {name} {:?}", self.header_values)?;
        }
        if !self.switchyard_errors.is_empty() {
            write!(f, ", {SWITCHYARD_ERROR} {:?}", self.switchyard_errors)?;
        }
        if !self.error_samples.is_empty() {
            write!(f, ", e.g. {:?}", self.error_samples)?;
        }
        Ok(())
    }
}

/// A load run in the background: [`LoadHandle::stop`] it early, [`LoadHandle::finish`] it for
/// the report. Dropping it abandons the run.
pub struct LoadHandle {
    stop: watch::Sender<bool>,
    run: Arc<Run>,
    task: Option<JoinHandle<LoadReport>>,
}

impl LoadHandle {
    /// Sends no new requests; those in flight still finish (within the request timeout).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the run to end (duration, request count or [`LoadHandle::stop`]) and reports.
    pub async fn finish(mut self) -> LoadReport {
        let task = self.task.take().expect("finish runs once");
        match task.await {
            Ok(report) => report,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("load run ended abnormally: {e}"),
        }
    }

    /// Requests that ended so far.
    pub fn completed(&self) -> u64 {
        self.run.completed.load(Ordering::SeqCst)
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.run.start.elapsed()
    }
}

impl fmt::Debug for LoadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadHandle")
            .field("addr", &self.run.spec.addr)
            .field("completed", &self.completed())
            .field("stopped", &*self.stop.borrow())
            .finish()
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs `spec` to its end and reports. Never takes longer than `duration` plus
/// [`HARD_DEADLINE_GRACE`].
pub async fn run_load(spec: LoadSpec) -> LoadReport {
    spawn_load(spec).finish().await
}

/// Starts `spec` in the background (needs a tokio runtime). Panics on an invalid spec
/// (no workers, a bad path, header or rate).
pub fn spawn_load(spec: LoadSpec) -> LoadHandle {
    assert!(
        spec.concurrency > 0,
        "LoadSpec::concurrency must be at least 1"
    );
    if let Some(rate) = spec.rate_per_sec {
        assert!(
            rate.is_finite() && rate > 0.0,
            "LoadSpec::rate_per_sec must be positive, got {rate}"
        );
    }
    let uri: Uri = spec
        .path
        .parse()
        .unwrap_or_else(|e| panic!("LoadSpec::path {:?}: {e}", spec.path));
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::try_from(name.as_str())
            .unwrap_or_else(|e| panic!("LoadSpec header name {name:?}: {e}"));
        let value = HeaderValue::try_from(value.as_str())
            .unwrap_or_else(|e| panic!("LoadSpec header value {value:?}: {e}"));
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        let host = HeaderValue::try_from(spec.host.as_str())
            .unwrap_or_else(|e| panic!("LoadSpec::host {:?}: {e}", spec.host));
        headers.insert(HOST, host);
    }
    let record = spec.record_header.as_deref().map(|name| {
        HeaderName::try_from(name)
            .unwrap_or_else(|e| panic!("LoadSpec::record_header {name:?}: {e}"))
    });
    let start = Instant::now();
    let end = start + spec.duration;
    let run = Arc::new(Run {
        uri,
        headers,
        record,
        max: spec
            .max_requests
            .unwrap_or(MAX_REQUESTS_CAP)
            .min(MAX_REQUESTS_CAP),
        start,
        end,
        hard: end + HARD_DEADLINE_GRACE,
        tickets: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
        spec,
    });
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(coordinate(run.clone(), stopped));
    LoadHandle {
        stop,
        run,
        task: Some(task),
    }
}

/// Everything the workers of one run share.
struct Run {
    spec: LoadSpec,
    uri: Uri,
    /// Host plus the spec's headers.
    headers: HeaderMap,
    record: Option<HeaderName>,
    max: u64,
    start: Instant,
    /// No request is sent at or after this.
    end: Instant,
    /// Nothing runs at or after this.
    hard: Instant,
    /// Next request index to claim.
    tickets: AtomicU64,
    completed: AtomicU64,
    tally: Mutex<Tally>,
}

/// The counts as they accumulate (shared, so a cut-off worker loses nothing it finished).
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    header_values: BTreeMap<String, u64>,
    switchyard_errors: BTreeMap<String, u64>,
    timeline: Vec<TimelineEntry>,
    timeline_truncated: bool,
    last_end: Duration,
}

impl Run {
    fn record(&self, sent: Instant, outcome: &io::Result<Response>) {
        let at = sent.saturating_duration_since(self.start);
        let ended = self.start.elapsed();
        let mut tally = self.tally.lock().expect("load tally lock");
        let (status, value) = match outcome {
            Ok(resp) => {
                *tally.statuses.entry(resp.status.as_u16()).or_default() += 1;
                let value = self
                    .record
                    .as_ref()
                    .and_then(|name| resp.headers.get(name))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                if let Some(v) = &value {
                    *tally.header_values.entry(v.clone()).or_default() += 1;
                }
                if let Some(v) = resp.headers.get(SWITCHYARD_ERROR) {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    *tally.switchyard_errors.entry(v).or_default() += 1;
                }
                (resp.status.as_u16(), value)
            }
            Err(e) => {
                tally.errors += 1;
                *tally
                    .error_kinds
                    .entry(format!("{:?}", e.kind()))
                    .or_default() += 1;
                let msg = e.to_string();
                if tally.error_samples.len() < ERROR_SAMPLES && !tally.error_samples.contains(&msg)
                {
                    tally.error_samples.push(msg);
                }
                (0, None)
            }
        };
        if tally.timeline.len() < TIMELINE_CAP {
            tally.timeline.push((at, status, value));
        } else {
            tally.timeline_truncated = true;
        }
        tally.last_end = tally.last_end.max(ended);
        drop(tally);
        self.completed.fetch_add(1, Ordering::SeqCst);
    }

    fn request(&self) -> Request<Bytes> {
        let mut req = Request::new(self.spec.body.clone());
        *req.method_mut() = self.spec.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Sends one request on `conn`, connecting first when there is no open connection.
    async fn send(&self, conn: &mut Option<H1Conn>) -> io::Result<Response> {
        if conn.as_ref().is_none_or(H1Conn::is_closed) {
            *conn = None;
            *conn = Some(H1Conn::connect(self.spec.addr).await?);
        }
        let resp = conn
            .as_mut()
            .expect("connected above")
            .send(self.request())
            .await?;
        let closing = resp.headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
        if closing {
            // Do not race the next request against the server's close.
            *conn = None;
        }
        Ok(resp)
    }
}

/// Runs the workers, cuts them off at the hard deadline, and builds the report.
async fn coordinate(run: Arc<Run>, stopped: watch::Receiver<bool>) -> LoadReport {
    let mut workers = JoinSet::new();
    for _ in 0..run.spec.concurrency {
        workers.spawn(worker(run.clone(), stopped.clone()));
    }
    let mut hit_hard_deadline = false;
    loop {
        match tokio::time::timeout_at(run.hard, workers.join_next()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                hit_hard_deadline = true;
                workers.abort_all();
                break;
            }
        }
    }
    let tally = std::mem::take(&mut *run.tally.lock().expect("load tally lock"));
    let mut timeline = tally.timeline;
    timeline.sort_by_key(|entry| entry.0);
    LoadReport {
        total: tally.statuses.values().sum::<u64>() + tally.errors,
        statuses: tally.statuses,
        errors: tally.errors,
        error_kinds: tally.error_kinds,
        error_samples: tally.error_samples,
        header_name: run.spec.record_header.clone(),
        header_values: tally.header_values,
        switchyard_errors: tally.switchyard_errors,
        timeline,
        timeline_truncated: tally.timeline_truncated,
        elapsed: tally.last_end,
        hit_hard_deadline,
    }
}

/// One worker: claims request indexes until the count, the duration or a stop ends the run.
async fn worker(run: Arc<Run>, mut stopped: watch::Receiver<bool>) {
    let mut conn: Option<H1Conn> = None;
    let paced = run.spec.rate_per_sec;
    loop {
        if *stopped.borrow() {
            return;
        }
        let index = run.tickets.fetch_add(1, Ordering::SeqCst);
        if index >= run.max {
            return;
        }
        if let Some(rate) = paced {
            let due = run.start + Duration::from_secs_f64(index as f64 / rate);
            if due >= run.end {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
        let sent = Instant::now();
        if sent >= run.end {
            return;
        }
        let budget = run.spec.request_timeout.min(run.hard - sent);
        let outcome = match tokio::time::timeout(budget, run.send(&mut conn)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no response within {budget:?}"),
            )),
        };
        let failed = outcome.is_err();
        run.record(sent, &outcome);
        if failed {
            // The connection's state is unknown: start over on a new one.
            conn = None;
            if paced.is_none() {
                tokio::select! {
                    _ = tokio::time::sleep(run.spec.error_backoff) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}
