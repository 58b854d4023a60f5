//! `switchyard explain`: what a gateway would do with one request, and why. Against route
//! files (`--config-dir`, loaded and compiled as a standalone gateway does) or against a
//! running gateway (`--admin`, its `POST /explain`, which sees the live generation and the
//! live endpoint state). Exits 0 when the request would be proxied, 1 when it would be
//! refused, redirected or not found, 2 on errors.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchyard_gateway::explain::{self, Explanation, Query};
use switchyard_gateway::runtime::Runtime;
use switchyard_gateway::state::StateRegistry;
use switchyard_gateway::watch::Loader;

#[derive(Args, Clone, Debug)]
pub struct ExplainArgs {
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The Host header.
    #[arg(long)]
    host: String,
    /// The request target as a client sends it (need not be canonical), query included.
    #[arg(long)]
    path: String,
    /// A request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The client's IP address (rate-limit and hash keys).
    #[arg(long)]
    client_ip: Option<IpAddr>,
    /// The SPIFFE ID the client's certificate proves.
    #[arg(long)]
    source_principal: Option<String>,
    /// The source zone (default: the gateway's own).
    #[arg(long)]
    source_zone: Option<String>,
    /// Explain against these route files.
    #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
    config_dir: Option<PathBuf>,
    /// With --config-dir: the Gateway ("namespace/name" or "name"); default: the only one.
    #[arg(long, conflicts_with = "admin")]
    gateway: Option<String>,
    /// Explain against a running gateway's admin listener (ADDR or http://ADDR).
    #[arg(long)]
    admin: Option<String>,
    /// The listener port; default: the gateway's first HTTP or HTTPS port.
    #[arg(long)]
    port: Option<u16>,
    /// Seed of the weighted and mirror draws (default: random, reported).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `explain`; returns the exit code (0 proxied, 1 not).
pub fn run(args: &ExplainArgs) -> Result<i32> {
    let query = query(args)?;
    let ex = match (&args.config_dir, &args.admin) {
        (Some(dir), _) => from_files(dir, args.gateway.as_deref(), &query)?,
        (None, Some(admin)) => from_admin(admin, &query)?,
        (None, None) => bail!("pass --config-dir DIR or --admin ADDR"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ex)?);
    } else {
        print!("{}", ex.to_text());
    }
    Ok(ex.exit_code())
}

fn query(args: &ExplainArgs) -> Result<Query> {
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("header {h:?}: expected 'name: value'");
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Query {
        method: args.method.clone(),
        host: args.host.clone(),
        path: args.path.clone(),
        headers,
        client_ip: args.client_ip,
        source_principal: args.source_principal.clone(),
        source_zone: args.source_zone.clone(),
        port: args.port,
        seed: args.seed,
    })
}

/// Loads and compiles the files as a standalone gateway does, then explains.
fn from_files(dir: &std::path::Path, gateway: Option<&str>, q: &Query) -> Result<Explanation> {
    let generation = Loader::default()
        .load(dir, Duration::from_millis(50))
        .map_err(|d| anyhow::anyhow!("{d}"))
        .with_context(|| format!("route files in {}", dir.display()))?;
    let runtime = Runtime::compile(Arc::new(generation), gateway, 1, &StateRegistry::default())
        .context("compiling the generation")?;
    Ok(explain::explain(&runtime, "files", q)?)
}

/// Asks a running gateway's admin listener.
fn from_admin(admin: &str, q: &Query) -> Result<Explanation> {
    let base = if admin.contains("://") {
        admin.trim_end_matches('/').to_string()
    } else {
        format!("http://{admin}")
    };
    let url = format!("{base}/explain");
    let body = serde_json::to_vec(q)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, bytes) = rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let req = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("bad admin address {admin}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .with_context(|| format!("{url}: timed out"))?
            .with_context(|| format!("cannot reach the gateway's admin listener at {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    })?;
    if status != StatusCode::OK {
        let msg: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = msg["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        bail!("{url} answered {status}: {text}");
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{url}: unexpected answer"))
}
