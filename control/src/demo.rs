//! `switchyard demo`: a real local mesh in one command. It reads the example route files,
//! starts a small echo backend on every loopback endpoint they name, prints curl commands
//! that show the canary split and the header-pinned cohort, and runs the gateway on them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Args)]
pub struct DemoArgs {
    /// Route files to serve.
    #[arg(long, default_value = "deploy/examples")]
    config_dir: PathBuf,
    /// Admin listener of the demo gateway.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

/// Answers every request with JSON naming the backend, the endpoint and what it received.
async fn echo(name: String, addr: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
        .collect();
    let body = json!({
        "backend": name,
        "endpoint": addr.to_string(),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "headers": headers,
    });
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn run_backend(name: String, addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("demo backend {name} cannot bind {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(echo(name, addr, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    let generation = switchyard_config::build_dir(&args.config_dir)
        .map_err(|d| anyhow::anyhow!("{}:\n{d}", args.config_dir.display()))?;
    let backends: Vec<(String, SocketAddr)> = generation
        .backends
        .values()
        .flat_map(|b| {
            b.endpoints
                .iter()
                .filter(|e| e.address.ip().is_loopback())
                .map(move |e| (b.id.name.clone(), e.address))
        })
        .collect();
    let gateway = generation.gateway(None).map_err(|e| anyhow::anyhow!(e))?;
    let port = gateway
        .ports
        .first()
        .map(|p| p.port)
        .context("the demo Gateway has no listener")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    for (name, addr) in backends.clone() {
        rt.spawn(async move {
            if let Err(e) = run_backend(name, addr).await {
                tracing::error!("{e:#}");
            }
        });
    }
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    std::thread::sleep(Duration::from_millis(100));

    let base = format!("http://127.0.0.1:{port}");
    println!(
        "\nSwitchyard demo: {} example backends, gateway on {base}",
        backends.len()
    );
    for (name, addr) in &backends {
        println!("  backend {name:<10} {addr}");
    }
    println!(
        "\nTry:\n  # the 90/10 canary split of /cart between cart-v1 and cart-v2\n  \
         for i in $(seq 200); do curl -s -H 'Host: shop.example.com' {base}/cart; done | grep -o '\"backend\":\"[^\"]*\"' | sort | uniq -c\n  \
         # the header-pinned beta cohort always reaches cart-v2\n  \
         curl -s -H 'Host: shop.example.com' -H 'x-cohort: beta' {base}/cart\n  \
         # a redirect, and a 404 for an unknown host\n  \
         curl -si -H 'Host: shop.example.com' {base}/old-cart | head -3\n  \
         curl -si -H 'Host: nope.example.com' {base}/ | head -1\n  \
         # what the gateway runs\n  \
         curl -s http://{}/config\n\nEdit {}/*.yaml and the gateway reloads. Ctrl-C stops.\n",
        args.admin,
        args.config_dir.display()
    );
    switchyard_gateway::serve(switchyard_gateway::GatewayOptions {
        source: switchyard_gateway::ConfigSource::Files {
            dir: args.config_dir,
            debounce: Duration::from_millis(200),
        },
        gateway: None,
        admin: args.admin,
        threads: 2,
        grace_period: Duration::from_secs(1),
        identity: None,
        upgrade: Default::default(),
        observe: Default::default(),
    })?;
    Ok(())
}
