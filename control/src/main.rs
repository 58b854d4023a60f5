//! `switchyard`: one binary for every role. `gateway` runs the data plane (standalone, watching
//! route files itself), `validate` checks route files, `demo` runs a local mesh with example
//! backends. Each subcommand lives in its own module; this file only parses and dispatches.

mod demo;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Gateway-centric service mesh on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway that serves the route files in a directory and reloads them on change.
    Gateway(GatewayArgs),
    /// Validate route files; print every error with file:line:column and exit non-zero.
    Validate {
        /// Directory of route files (*.yaml, *.yml, recursively).
        dir: PathBuf,
    },
    /// Run a local mesh: example backends plus a gateway serving deploy/examples.
    Demo(demo::DemoArgs),
}

#[derive(Args, Clone)]
pub struct GatewayArgs {
    /// Directory of route files, watched for changes (standalone mode).
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR")]
    config_dir: PathBuf,
    /// The Gateway resource to serve ("namespace/name" or "name"); default: the only one.
    #[arg(long)]
    gateway: Option<String>,
    /// Admin listener (/healthz, /ready, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Proxy worker threads; default: the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds SIGTERM waits for in-flight requests.
    #[arg(long, default_value_t = 10)]
    grace_period: u64,
    /// Milliseconds of quiet after a file change before the set is re-read.
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
}

impl GatewayArgs {
    fn options(&self) -> switchyard_gateway::GatewayOptions {
        switchyard_gateway::GatewayOptions {
            config_dir: self.config_dir.clone(),
            gateway: self.gateway.clone(),
            admin: self.admin,
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
            grace_period: Duration::from_secs(self.grace_period),
            debounce: Duration::from_millis(self.debounce_ms),
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `init` also installs the `log` bridge, so pingora's own logs reach tracing.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway(args) => {
            init_logging();
            switchyard_gateway::serve(args.options())?;
            Ok(())
        }
        Command::Validate { dir } => {
            if !validate::run(&dir) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Demo(args) => {
            init_logging();
            demo::run(args)
        }
    }
}
