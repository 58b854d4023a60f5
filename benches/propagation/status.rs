//! The control's `/v1/status`: a keep-alive client with the operator token, the parsed fields
//! the bench reads, and the polls that wait for a generation to be applied everywhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{Method, StatusCode};
use serde_json::Value;
use switchyard_testkit::client::{self, H1Conn};

use crate::mesh::Mesh;
use crate::report::max;
use crate::sys::unix_ms;
use crate::{CHANGE_TIMEOUT, GATEWAYS, POLL, STATUS_TIMEOUT};

/// The fields of `/v1/status` the bench reads.
#[derive(Clone)]
pub(crate) struct Status {
    pub(crate) generation: u64,
    pub(crate) gateways: Vec<GatewayStatus>,
    /// (generation, flip_skew_ms)
    pub(crate) last_commit: Option<(u64, f64)>,
    /// (at_unix_ms, errors)
    pub(crate) last_rejection: Option<(f64, String)>,
    pub(crate) raw: Value,
}

#[derive(Clone)]
pub(crate) struct GatewayStatus {
    pub(crate) name: String,
    pub(crate) applied: Option<u64>,
    pub(crate) acked_at_unix_ms: Option<f64>,
    pub(crate) propagation_ms: Option<f64>,
    pub(crate) state: Option<String>,
}

impl Status {
    fn parse(raw: Value) -> Result<Status, String> {
        let generation = raw["generation"]
            .as_u64()
            .ok_or_else(|| format!("status without a numeric generation: {raw}"))?;
        let gateways = raw["gateways"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|g| GatewayStatus {
                        name: g["name"].as_str().unwrap_or("?").to_string(),
                        applied: g["applied"].as_u64(),
                        acked_at_unix_ms: g["acked_at_unix_ms"].as_f64(),
                        propagation_ms: g["propagation_ms"].as_f64(),
                        state: g["state"].as_str().map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last_commit = raw["last_commit"]["generation"]
            .as_u64()
            .zip(raw["last_commit"]["flip_skew_ms"].as_f64());
        let last_rejection = raw["last_rejection"]["at_unix_ms"]
            .as_f64()
            .map(|at| (at, raw["last_rejection"]["errors"].to_string()));
        Ok(Status {
            generation,
            gateways,
            last_commit,
            last_rejection,
            raw,
        })
    }

    /// Every one of [`GATEWAYS`] is listed and has applied `generation`.
    fn all_applied(&self, generation: u64) -> bool {
        GATEWAYS.iter().all(|(name, _)| {
            self.gateways
                .iter()
                .any(|g| g.name == *name && g.applied == Some(generation))
        })
    }
}

/// `GET /v1/status` with the operator token on one keep-alive connection (reconnects once).
pub(crate) struct StatusClient {
    addr: SocketAddr,
    bearer: String,
    conn: Option<H1Conn>,
}

impl StatusClient {
    pub(crate) fn new(addr: SocketAddr, token: &str) -> StatusClient {
        StatusClient {
            addr,
            bearer: format!("Bearer {token}"),
            conn: None,
        }
    }

    pub(crate) async fn get(&mut self) -> Result<Status, String> {
        let mut last = String::new();
        for _ in 0..2 {
            let conn = match self.conn.take() {
                Some(c) if !c.is_closed() => c,
                _ => match tokio::time::timeout(STATUS_TIMEOUT, H1Conn::connect(self.addr)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        last = format!("connect {}: {e}", self.addr);
                        continue;
                    }
                    Err(_) => {
                        last = format!("connect {}: timed out", self.addr);
                        continue;
                    }
                },
            };
            let mut conn = conn;
            let req = client::request(Method::GET, &self.addr.to_string(), "/v1/status")
                .header(AUTHORIZATION, &self.bearer)
                .body("")
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(STATUS_TIMEOUT, conn.send(req)).await {
                Ok(Ok(r)) if r.status == StatusCode::OK => {
                    self.conn = Some(conn);
                    let raw: Value = serde_json::from_slice(&r.body)
                        .map_err(|e| format!("/v1/status is not JSON ({e}): {}", r.text()))?;
                    return Status::parse(raw);
                }
                Ok(Ok(r)) => {
                    self.conn = Some(conn);
                    return Err(format!(
                        "/v1/status answered {}: {}",
                        r.status,
                        r.text().trim()
                    ));
                }
                Ok(Err(e)) => last = format!("/v1/status: {e}"),
                Err(_) => last = format!("/v1/status took over {STATUS_TIMEOUT:?}"),
            }
        }
        Err(last)
    }
}

/// Polls until every gateway has applied the current generation; returns that status.
pub(crate) async fn wait_converged(
    status: &mut StatusClient,
    mesh: &mut Mesh,
    timeout: Duration,
) -> Result<Status, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status.get().await;
        if let Ok(s) = &s {
            if s.generation > 0 && s.all_applied(s.generation) {
                return Ok(s.clone());
            }
        }
        mesh.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "not applied by every gateway within {timeout:?}; last status: {}",
                describe(&s)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) enum Change {
    Applied {
        status: Status,
        latency_ms: f64,
        observed_ms: f64,
    },
    TimedOut(String),
}

/// Polls until a generation newer than `previous` is applied by every gateway. A rejected
/// change or a dead process is an error; not converging within [`CHANGE_TIMEOUT`] is a timeout.
pub(crate) async fn wait_for_change(
    status: &mut StatusClient,
    mesh: &mut Mesh,
    previous: u64,
    t0: f64,
) -> Result<Change, String> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let s = status.get().await;
        if let Ok(s) = &s {
            if let Some((at, errors)) = &s.last_rejection {
                if *at >= t0.floor() {
                    return Err(format!("the change was rejected: {errors}"));
                }
            }
            if s.generation > previous && s.all_applied(s.generation) {
                let observed_ms = unix_ms() - t0;
                let acked: Vec<f64> = s
                    .gateways
                    .iter()
                    .filter_map(|g| g.acked_at_unix_ms)
                    .collect();
                let latency_ms = if acked.len() == s.gateways.len() {
                    max(&acked).expect("three gateways") - t0
                } else {
                    return Err(format!(
                        "generation {} applied but acked_at_unix_ms is missing: {}",
                        s.generation, s.raw
                    ));
                };
                return Ok(Change::Applied {
                    status: s.clone(),
                    latency_ms,
                    observed_ms,
                });
            }
        }
        mesh.check_alive()?;
        if Instant::now() >= deadline {
            return Ok(Change::TimedOut(describe(&s)));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `last_commit.flip_skew_ms` of the generation in `s`, polled for up to 1 s if the commit
/// record lags the acks.
pub(crate) async fn flip_skew(status: &mut StatusClient, mut s: Status) -> Option<f64> {
    let generation = s.generation;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some((g, skew)) = s.last_commit {
            if g == generation {
                return Some(skew);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
        s = status.get().await.ok()?;
    }
}

fn describe(s: &Result<Status, String>) -> String {
    match s {
        Err(e) => format!("status unavailable: {e}"),
        Ok(s) => {
            let gws: Vec<String> = s
                .gateways
                .iter()
                .map(|g| {
                    format!(
                        "{} applied {} state {}",
                        g.name,
                        g.applied.map_or("-".to_string(), |a| a.to_string()),
                        g.state.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            format!(
                "generation {}; [{}]; last_abandoned: {}",
                s.generation,
                gws.join("; "),
                s.raw.get("last_abandoned").unwrap_or(&Value::Null)
            )
        }
    }
}
