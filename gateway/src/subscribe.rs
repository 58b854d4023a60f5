//! A gateway's subscription to the control service: long-polls for its view of each
//! generation, applies or stages and commits it, acknowledges every outcome (NACKs carry the
//! error), persists what it applied, and reconnects with jittered backoff, resuming from the
//! generation it has.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use switchyard_config::{Builder, Generation};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::live::{LiveConfig, Swapped};
use crate::persist;
use crate::protocol::{
    Ack, Payload, Phase, Update, WatchQuery, ACK_PATH, GENERATION_HEADER, UPDATE_HEADER,
    WATCH_PATH, WATCH_WAIT_SECS,
};

/// How a gateway reaches its control service.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Base URL, `http://host:port`.
    pub control: String,
    pub token: String,
    pub zone: String,
    /// This gateway instance.
    pub name: String,
    /// Where the last applied generation is kept.
    pub state_dir: PathBuf,
}

#[derive(Debug, Error)]
pub enum SubscribeError {
    #[error("control URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("control service at {url}: {reason}")]
    Request { url: String, reason: String },
}

/// Backoff between failed polls: exponential from 100 ms to 5 s, full jitter in the upper half.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = 100u64.saturating_mul(1 << self.attempt.min(6)).min(5_000);
        self.attempt += 1;
        Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// One answer of the control service.
#[derive(Debug)]
pub struct Message {
    pub update: Update,
    pub generation: u64,
    pub payload: Option<Payload>,
}

/// The client side of the subscription protocol.
pub struct Subscriber {
    opts: SubscribeOptions,
    /// The Gateway object to serve, when the zone has several.
    gateway: Option<String>,
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Reuses the parse of view files unchanged since the last generation.
    builder: Mutex<Builder>,
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Subscriber {
    pub fn new(opts: SubscribeOptions, gateway: Option<String>) -> Result<Self, SubscribeError> {
        let base = opts.control.trim_end_matches('/').to_string();
        let uri: Uri = base.parse().map_err(|e| SubscribeError::Url {
            url: base.clone(),
            reason: format!("{e}"),
        })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(SubscribeError::Url {
                url: base,
                reason: "expected http://HOST:PORT".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Subscriber {
            opts,
            gateway,
            base,
            client,
            builder: Mutex::new(Builder::new()),
        })
    }

    pub fn options(&self) -> &SubscribeOptions {
        &self.opts
    }

    fn request_error(&self, reason: impl Into<String>) -> SubscribeError {
        SubscribeError::Request {
            url: self.base.clone(),
            reason: reason.into(),
        }
    }

    /// One long-poll: `Ok(None)` when the wait ran out with nothing new.
    pub async fn poll(&self, applied: u64, staged: u64) -> Result<Option<Message>, SubscribeError> {
        let query = WatchQuery {
            name: self.opts.name.clone(),
            zone: self.opts.zone.clone(),
            gateway: self.gateway.clone(),
            applied,
            staged,
        };
        let uri = format!("{}{WATCH_PATH}?{}", self.base, query.to_query());
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.opts.token),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| self.request_error(e.to_string()))?;
        let wait = Duration::from_secs(WATCH_WAIT_SECS + 15);
        let resp = tokio::time::timeout(wait, self.client.request(req))
            .await
            .map_err(|_| self.request_error("watch timed out"))?
            .map_err(|e| self.request_error(format!("watch: {e}")))?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let update = header(UPDATE_HEADER).and_then(|u| Update::parse(&u));
        let generation = header(GENERATION_HEADER).and_then(|g| g.parse::<u64>().ok());
        let body = tokio::time::timeout(wait, resp.into_body().collect())
            .await
            .map_err(|_| self.request_error("watch body timed out"))?
            .map_err(|e| self.request_error(format!("watch body: {e}")))?
            .to_bytes();
        match status {
            StatusCode::NO_CONTENT => return Ok(None),
            StatusCode::OK => {}
            other => {
                let text = String::from_utf8_lossy(&body);
                return Err(self.request_error(format!("watch answered {other}: {}", text.trim())));
            }
        }
        let (Some(update), Some(generation)) = (update, generation) else {
            return Err(self.request_error("watch answer without update headers"));
        };
        let payload = match update {
            Update::Commit => None,
            Update::Apply | Update::Stage => Some(
                serde_json::from_slice::<Payload>(&body)
                    .map_err(|e| self.request_error(format!("watch payload: {e}")))?,
            ),
        };
        Ok(Some(Message {
            update,
            generation,
            payload,
        }))
    }

    /// Reports an outcome; failures are logged (the next poll tells the control service
    /// where this gateway stands anyway).
    pub async fn ack(&self, generation: u64, phase: Phase, result: Result<SystemTime, String>) {
        let (error, at) = match result {
            Ok(at) => (None, at),
            Err(e) => (Some(e), SystemTime::now()),
        };
        if let Some(e) = &error {
            warn!(generation, ?phase, error = %e, "NACK");
        }
        let ack = Ack {
            name: self.opts.name.clone(),
            zone: self.opts.zone.clone(),
            generation,
            phase,
            error,
            at_unix_us: unix_us(at),
        };
        let outcome = async {
            let body = serde_json::to_vec(&ack).map_err(|e| e.to_string())?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(format!("{}{ACK_PATH}", self.base))
                .header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", self.opts.token),
                )
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", resp.status()))
            }
        };
        if let Err(e) = outcome.await {
            warn!(generation, error = %e, "could not send ack to the control service");
        }
    }

    /// Waits for the first generation this gateway can serve: polls (with backoff while the
    /// control service is unreachable) until `start` accepts a payload. Each refusal is
    /// NACKed; the control service then waits for a newer generation.
    pub async fn first<T>(
        &self,
        mut start: impl FnMut(&Payload, Generation) -> Result<T, String>,
    ) -> (Payload, T) {
        let mut backoff = Backoff::default();
        loop {
            match self.poll(0, 0).await {
                // A gateway with nothing applied is never a stage target: it gets `apply`.
                Ok(Some(Message {
                    update: Update::Apply,
                    payload: Some(payload),
                    generation,
                })) => {
                    backoff.reset();
                    match self.build(&payload).and_then(|g| start(&payload, g)) {
                        Ok(t) => {
                            self.ack(generation, Phase::Applied, Ok(SystemTime::now()))
                                .await;
                            self.save(&payload);
                            return (payload, t);
                        }
                        Err(e) => self.ack(generation, Phase::Applied, Err(e)).await,
                    }
                }
                Ok(_) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next();
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "no generation yet");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Follows the control service for the life of the process.
    pub async fn run(self, live: Arc<LiveConfig>) {
        let mut backoff = Backoff::default();
        let mut staged: Option<Payload> = None;
        loop {
            let applied = live.current().info.number;
            let staged_number = live.staged().unwrap_or(0);
            match self.poll(applied, staged_number).await {
                Ok(None) => backoff.reset(),
                Ok(Some(msg)) => {
                    backoff.reset();
                    self.handle(msg, &live, &mut staged).await;
                }
                Err(e) => {
                    let delay = backoff.next();
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "control service unreachable; serving generation {applied}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn handle(&self, msg: Message, live: &LiveConfig, staged: &mut Option<Payload>) {
        let n = msg.generation;
        match (msg.update, msg.payload) {
            (Update::Apply, Some(payload)) => {
                let result = self.build(&payload).and_then(|g| {
                    live.apply_numbered(g, n)
                        .map(|_| SystemTime::now())
                        .map_err(|e| e.to_string())
                });
                let ok = result.is_ok();
                self.ack(n, Phase::Applied, result).await;
                if ok {
                    info!(
                        generation = n,
                        "applied generation from the control service"
                    );
                    self.save(&payload);
                }
            }
            (Update::Stage, Some(payload)) => {
                let result = self.build(&payload).and_then(|g| {
                    live.stage(g, n)
                        .map(|()| SystemTime::now())
                        .map_err(|e| e.to_string())
                });
                if result.is_ok() {
                    debug!(generation = n, "staged");
                    *staged = Some(payload);
                }
                self.ack(n, Phase::Staged, result).await;
            }
            (Update::Commit, _) => {
                let result = live.commit(n).map_err(|e| e.to_string());
                let payload = staged.take().filter(|p| p.generation == n);
                self.report(n, result, live, payload.as_ref()).await;
            }
            (update, None) => warn!(generation = n, ?update, "watch answer without a payload"),
        }
    }

    /// Acks a swap (or NACKs its failure) first, then frees the old generation and persists
    /// the new one: neither delays the ack.
    async fn report(
        &self,
        n: u64,
        result: Result<Swapped, String>,
        live: &LiveConfig,
        payload: Option<&Payload>,
    ) {
        match result {
            Ok(swapped) => {
                self.ack(n, Phase::Applied, Ok(swapped.at)).await;
                info!(
                    generation = n,
                    "generation from the control service in force"
                );
                live.retire(swapped);
                if let Some(p) = payload {
                    self.save(p);
                }
            }
            Err(e) => self.ack(n, Phase::Applied, Err(e)).await,
        }
    }

    fn save(&self, payload: &Payload) {
        if let Err(e) = persist::save(&self.opts.state_dir, payload) {
            warn!(error = %e, "could not persist the applied generation");
        }
    }
}

impl Subscriber {
    /// Validates and compiles a payload's view.
    pub fn build(&self, payload: &Payload) -> Result<Generation, String> {
        let started = std::time::Instant::now();
        let built = self
            .builder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .build_view(&payload.source_files())
            .map_err(|d| d.to_string());
        debug!(
            generation = payload.generation,
            build_ms = started.elapsed().as_secs_f64() * 1000.0,
            "view built"
        );
        built
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.next();
        assert!(
            (50..=100).contains(&(first.as_millis() as u64)),
            "{first:?}"
        );
        for _ in 0..10 {
            b.next();
        }
        let capped = b.next();
        assert!(
            (2_500..=5_000).contains(&(capped.as_millis() as u64)),
            "{capped:?}"
        );
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
