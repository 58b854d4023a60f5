//! `switchyard`: one binary for every role. `control` runs the control service, `gateway` runs
//! the data plane (standalone, watching route files itself, or subscribed to a control
//! service), `status` and `rollback` operate a running control service, `validate` checks
//! route files, `explain` tells what a gateway would do with a request and why, `rollout`
//! shifts a route's traffic by editing its weights in the files, `cert` runs the mesh CA
//! offline, and `demo` runs a local mesh with example backends. Each subcommand lives in its
//! own module; this file only parses and dispatches.

mod auth;
mod cert;
mod demo;
mod explain;
mod operate;
mod rollout;
mod service;
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
    /// Run the control service: watch route files, validate them, publish generations to every
    /// gateway (fleet-atomic by default), keep history for rollback.
    Control(ControlArgs),
    /// Run a gateway: standalone on a directory of route files (--config-dir), or subscribed
    /// to a control service (--control).
    Gateway(GatewayArgs),
    /// Show the published generation and every gateway's state; exit 1 until all converged.
    Status {
        #[command(flatten)]
        op: OperatorArgs,
        /// Print the raw status document.
        #[arg(long)]
        json: bool,
    },
    /// Republish an earlier generation (as a new generation number).
    Rollback {
        #[command(flatten)]
        op: OperatorArgs,
        /// The generation to republish.
        #[arg(
            long,
            conflicts_with = "previous",
            required_unless_present = "previous"
        )]
        to: Option<u64>,
        /// The generation before the published one.
        #[arg(long)]
        previous: bool,
    },
    /// Explain what a gateway would do with one request: the rule matched (and why the others
    /// did not), filters, backend, endpoints, authorization; exit 0 proxied, 1 not, 2 error.
    Explain(explain::ExplainArgs),
    /// Validate route files; print every error with file:line:column and exit non-zero.
    Validate {
        /// Directory of route files (*.yaml, *.yml, recursively).
        dir: PathBuf,
    },
    /// Shift an HTTPRoute rule's traffic between its backendRefs by editing the route files
    /// in place (comments and layout kept); the edited set is validated before it is written.
    Rollout(rollout::RolloutArgs),
    /// Run a local mesh: example backends plus a gateway serving deploy/examples.
    Demo(demo::DemoArgs),
    /// The mesh CA offline: init-ca, issue (gateway or workload certificates), rotate-ca.
    Cert(cert::CertArgs),
}

#[derive(Args, Clone)]
pub struct OperatorArgs {
    /// The control service's URL.
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL",
        default_value = "http://127.0.0.1:9090"
    )]
    control: String,
    /// File holding the operator token (default: the SWITCHYARD_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl OperatorArgs {
    fn token(&self) -> Result<String> {
        auth::load(self.token_file.as_deref(), auth::OPERATOR_ENV, "operator")
    }
}

#[derive(Args, Clone)]
pub struct ControlArgs {
    /// Directory of route files, watched recursively.
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR")]
    config_dir: PathBuf,
    /// Where the generation counter and the last generations are kept.
    #[arg(long)]
    state_dir: PathBuf,
    /// API address; loopback unless you mean otherwise.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Operator token file (status, rollback, metrics); default: SWITCHYARD_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Gateway token file (watch, ack); default: SWITCHYARD_GATEWAY_TOKEN.
    #[arg(long)]
    gateway_token_file: Option<PathBuf>,
    /// Commit policy: stage on every gateway then flip together (fleet), per zone, or apply as
    /// published (off).
    #[arg(long, value_enum, default_value = "fleet")]
    atomic: service::Atomic,
    /// Milliseconds every target gateway has to stage before the commit is abandoned.
    #[arg(long, default_value_t = 5000)]
    stage_timeout_ms: u64,
    /// Generations kept for rollback.
    #[arg(long, default_value_t = 20)]
    history: usize,
    /// Milliseconds of quiet after a file change before the set is re-read.
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
    /// Seconds without a poll after which a gateway is stale (not targeted, not counted).
    #[arg(long, default_value_t = 30)]
    stale_after_s: u64,
    /// The mesh trust domain (SPIFFE IDs spiffe://TD/..., DNS names gateway.ZONE.TD).
    #[arg(long, default_value = switchyard_gateway::pki::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Lifetime of issued certificates: a duration (12h, 90s) or seconds.
    #[arg(long, default_value = "12h", value_parser = cert::parse_duration_arg)]
    cert_ttl: Duration,
    /// Operator-supplied root certificate (PEM); default: a root generated in STATE/ca.
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
}

impl ControlArgs {
    fn options(&self) -> Result<service::ControlOptions> {
        let operator_token =
            auth::load(self.token_file.as_deref(), auth::OPERATOR_ENV, "operator")?;
        let gateway_token = auth::load(
            self.gateway_token_file.as_deref(),
            auth::GATEWAY_ENV,
            "gateway",
        )?;
        if operator_token == gateway_token {
            anyhow::bail!("the operator and gateway tokens must differ");
        }
        Ok(service::ControlOptions {
            config_dir: self.config_dir.clone(),
            state_dir: self.state_dir.clone(),
            listen: self.listen,
            operator_token,
            gateway_token,
            atomic: self.atomic,
            stage_timeout: Duration::from_millis(self.stage_timeout_ms),
            history: self.history,
            debounce: Duration::from_millis(self.debounce_ms),
            stale_after: Duration::from_secs(self.stale_after_s),
            trust_domain: self.trust_domain.clone(),
            cert_ttl: self.cert_ttl,
            ca_files: self.ca_cert.clone().zip(self.ca_key.clone()),
        })
    }
}

#[derive(Args, Clone)]
pub struct GatewayArgs {
    /// Directory of route files, watched for changes (standalone mode).
    #[arg(
        long,
        env = "SWITCHYARD_CONFIG_DIR",
        conflicts_with = "control",
        required_unless_present = "control"
    )]
    config_dir: Option<PathBuf>,
    /// Control service URL (subscribed mode), e.g. http://127.0.0.1:9090.
    #[arg(long, requires_all = ["zone", "name", "state_dir"])]
    control: Option<String>,
    /// This gateway's zone (subscribed mode, or with --mesh-ca-dir).
    #[arg(long)]
    zone: Option<String>,
    /// This gateway instance's name (subscribed mode, or with --mesh-ca-dir).
    #[arg(long)]
    name: Option<String>,
    /// Standalone mesh identity: issue this gateway's certificates from a local CA dir (see
    /// `switchyard cert init-ca`).
    #[arg(long, conflicts_with = "control", requires_all = ["zone", "name"])]
    mesh_ca_dir: Option<PathBuf>,
    /// Lifetime of certificates issued from --mesh-ca-dir.
    #[arg(long, default_value = "12h", value_parser = cert::parse_duration_arg)]
    mesh_cert_ttl: Duration,
    /// How often the mesh trust bundle is re-read between certificate renewals.
    #[arg(long, default_value = "30s", value_parser = cert::parse_duration_arg)]
    bundle_refresh: Duration,
    /// Where the last applied generation is persisted (subscribed mode).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Gateway token file (subscribed mode); default: SWITCHYARD_GATEWAY_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The Gateway resource to serve ("namespace/name" or "name"); default: the only one (in
    /// the zone, when subscribed).
    #[arg(long)]
    gateway: Option<String>,
    /// Admin listener (/healthz, /ready, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Proxy worker threads; default: the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds SIGTERM waits for in-flight requests (below Kubernetes' default 30 s
    /// terminationGracePeriodSeconds, so the gateway ends its drain before the SIGKILL).
    #[arg(long, default_value_t = 25)]
    grace_period: u64,
    /// Take the listening sockets (proxy and admin) over from the gateway running with the
    /// same flags, after this process loaded its generation; that gateway drains and exits.
    #[arg(long)]
    upgrade: bool,
    /// The upgrade socket; default <state-dir>/upgrade.sock (subscribed) or
    /// /tmp/switchyard-upgrade-<admin ip>-<admin port>.sock. Both processes must use the same.
    #[arg(long)]
    upgrade_sock: Option<PathBuf>,
    /// With --upgrade: the pid of the gateway to take over; default: the one answering on
    /// --admin (its x-switchyard-pid header).
    #[arg(long, requires = "upgrade")]
    takeover_pid: Option<u32>,
    /// Milliseconds of quiet after a file change before the set is re-read (standalone).
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
    /// Request metrics and the admin /metrics (on|off; off is the baseline for measuring
    /// their cost).
    #[arg(long, default_value = "on", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    metrics: bool,
    /// Access log, one JSON line per request: off, stdout, stderr or a file path (appended;
    /// reopened on SIGHUP or when moved).
    #[arg(long, default_value = "off")]
    access_log: switchyard_gateway::accesslog::AccessLogTarget,
    /// Fraction (0..1) of successful requests written to the access log; errors (status 0
    /// or >= 500, or any reason flag) are always written.
    #[arg(long, default_value = "1", value_parser = switchyard_gateway::accesslog::parse_sample)]
    access_log_sample: f64,
    /// OTLP/HTTP collector (e.g. http://127.0.0.1:4318): exports one span per request.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Fraction (0..1) of the traces this gateway starts that are sampled (exported); a
    /// client's traceparent keeps its own decision.
    #[arg(long, default_value = "1", value_parser = switchyard_gateway::accesslog::parse_sample)]
    trace_sample: f64,
}

impl GatewayArgs {
    fn options(&self) -> Result<switchyard_gateway::GatewayOptions> {
        let identity = |source| switchyard_gateway::pki::IdentityOptions {
            zone: self.zone.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            source,
            bundle_refresh: self.bundle_refresh,
            persist_dir: self.state_dir.clone(),
        };
        let identity = match (&self.control, &self.mesh_ca_dir) {
            (Some(url), _) => Some(identity(switchyard_gateway::pki::IdentitySource::Control {
                url: url.clone(),
                token: auth::load(self.token_file.as_deref(), auth::GATEWAY_ENV, "gateway")?,
            })),
            (None, Some(dir)) => Some(identity(switchyard_gateway::pki::IdentitySource::LocalCa {
                dir: dir.clone(),
                ttl: self.mesh_cert_ttl,
            })),
            (None, None) => None,
        };
        let source = match (&self.config_dir, &self.control) {
            (_, Some(control)) => {
                switchyard_gateway::ConfigSource::Control(switchyard_gateway::SubscribeOptions {
                    control: control.clone(),
                    token: auth::load(self.token_file.as_deref(), auth::GATEWAY_ENV, "gateway")?,
                    zone: self.zone.clone().unwrap_or_default(),
                    name: self.name.clone().unwrap_or_default(),
                    state_dir: self.state_dir.clone().unwrap_or_default(),
                })
            }
            (Some(dir), None) => switchyard_gateway::ConfigSource::Files {
                dir: dir.clone(),
                debounce: Duration::from_millis(self.debounce_ms),
            },
            (None, None) => anyhow::bail!("pass --config-dir DIR or --control URL"),
        };
        Ok(switchyard_gateway::GatewayOptions {
            source,
            gateway: self.gateway.clone(),
            admin: self.admin,
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
            grace_period: Duration::from_secs(self.grace_period),
            identity,
            upgrade: switchyard_gateway::UpgradeOptions {
                sock: self.upgrade_sock.clone(),
                take_over: self.upgrade,
                takeover_pid: self.takeover_pid,
            },
            observe: switchyard_gateway::observe::ObserveOptions {
                metrics: self.metrics,
                access_log: self.access_log.clone(),
                access_log_sample: self.access_log_sample,
                otlp_endpoint: self.otlp_endpoint.clone(),
                trace_sample: self.trace_sample,
            },
        })
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
        Command::Control(args) => {
            init_logging();
            service::run(args.options()?)
        }
        Command::Gateway(args) => {
            init_logging();
            switchyard_gateway::serve(args.options()?)?;
            Ok(())
        }
        Command::Status { op, json } => match operate::status(&op.control, &op.token()?, json) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
        Command::Rollback {
            op,
            to,
            previous: _,
        } => match operate::rollback(&op.control, &op.token()?, to) {
            Ok(_) => Ok(()),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Explain(args) => match explain::run(&args) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
        Command::Validate { dir } => {
            if !validate::run(&dir) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Rollout(args) => match rollout::run(args) {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
        Command::Demo(args) => {
            init_logging();
            demo::run(args)
        }
        Command::Cert(args) => match cert::run(args) {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
    }
}
