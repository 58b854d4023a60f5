//! Assembles a gateway process: loads the first generation (from route files, or from the
//! persisted copy or the control service), binds the Gateway's listeners (HTTP with h2c,
//! HTTPS with SNI certificates and ALPN h2) and the admin listener on one pingora `Server`,
//! starts the route-file watcher or the control subscription, and runs until a shutdown signal.
//! With `--upgrade` the listening sockets come from the running gateway instead
//! ([`crate::lifecycle`]), and only after the first generation loaded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use switchyard_config::Diagnostics;
use thiserror::Error;
use tracing::{info, warn};

use crate::persist;
use crate::protocol::{gateway_matches, Payload};

use crate::admin::AdminApp;
use crate::lifecycle::admin::{AdminService, LifecycleAdmin};
use crate::lifecycle::drain::{exit_when_drained, keepalive_window, DrainApp};
use crate::lifecycle::signals::SignalWatch;
use crate::lifecycle::upgrade::{self, UpgradeError};
use crate::lifecycle::Lifecycle;
use crate::live::{LiveConfig, Source};
use crate::proxy::Gateway;
use crate::runtime::CompileError;
use crate::subscribe::{SubscribeError, SubscribeOptions, Subscriber};
use crate::tls::SniResolver;
use crate::watch::{watch, Loader, WatchError};

/// L4 read buffer of TLS listeners: one TLS record.
const TLS_READ_BUFFER: usize = 16 * 1024;

/// Where a gateway's generations come from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Standalone: watch a directory of route files.
    Files {
        dir: PathBuf,
        /// Quiet time after a file change before the set is re-read.
        debounce: Duration,
    },
    /// Subscribe to a control service.
    Control(SubscribeOptions),
}

/// How the gateway process runs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub source: ConfigSource,
    /// Which Gateway of the set to serve ("ns/name" or "name"); `None` = the only one.
    pub gateway: Option<String>,
    pub admin: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before closing.
    pub grace_period: Duration,
    /// Where the mesh identity's certificates come from (control service or local CA dir);
    /// started when the Gateway has an EastWest or mesh listener, or may fail over east-west.
    pub identity: Option<crate::pki::IdentityOptions>,
    /// Access log, sampling, OTLP export and whether request metrics are on.
    pub observe: crate::observe::ObserveOptions,
    /// Graceful upgrade: the upgrade socket, and whether this process takes over.
    pub upgrade: UpgradeOptions,
}

/// The graceful upgrade's settings ([`crate::lifecycle::upgrade`]).
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// The upgrade socket; default [`upgrade::default_sock`] (old and new process must agree).
    pub sock: Option<PathBuf>,
    /// Take the listening sockets over from a running gateway.
    pub take_over: bool,
    /// The process to take over from; default: the one answering on the admin address.
    pub takeover_pid: Option<u32>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("route files in {dir} are invalid:\n{diagnostics}")]
    Config {
        dir: String,
        diagnostics: Diagnostics,
    },
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("listener {addr}: {reason}")]
    Listener { addr: String, reason: String },
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error("cannot start the subscription runtime: {0}")]
    Runtime(std::io::Error),
    #[error("mesh identity: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    #[error("cannot start a lifecycle thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
}

/// Runs the gateway; returns only when startup fails (serving ends the process).
pub fn serve(opts: GatewayOptions) -> Result<(), ServeError> {
    let state_dir = match &opts.source {
        ConfigSource::Control(sub) => Some(sub.state_dir.as_path()),
        ConfigSource::Files { .. } => None,
    };
    let requested =
        (opts.upgrade.sock.clone()).unwrap_or_else(|| upgrade::default_sock(state_dir, opts.admin));
    let upgrade_sock = match upgrade::check_sock(&requested) {
        Ok(sock) => sock,
        Err(e) if opts.upgrade.take_over => return Err(e.into()),
        // Only a later upgrade needs it (the state dir may not exist yet).
        Err(e) => {
            warn!(error = %e, "a graceful upgrade from this process may not find the socket");
            std::path::absolute(&requested).unwrap_or(requested)
        }
    };
    // The generation loads first: a config that fails ends this process before any socket moves.
    let (live, _watcher) = match &opts.source {
        ConfigSource::Files { dir, debounce } => {
            let mut loader = Loader::default();
            let generation =
                loader
                    .load(dir, *debounce)
                    .map_err(|diagnostics| ServeError::Config {
                        dir: dir.display().to_string(),
                        diagnostics,
                    })?;
            let live = LiveConfig::start(generation, opts.gateway.clone(), Source::Files, 1)?;
            let watcher = watch(dir.clone(), live.clone(), *debounce, loader)?;
            (live, Some(watcher))
        }
        ConfigSource::Control(sub) => (subscribe(sub.clone(), opts.gateway.clone())?, None),
    };
    let observability = crate::observe::Observability::start(&opts.observe, &live.current())?;
    live.observe_with(Arc::new(observability));

    // The mesh identity too (an upgrading process must not take the sockets without one).
    let runtime = live.current();
    let identity = crate::pki::serve::start_if_needed(opts.identity.as_ref(), &runtime)?;

    let conf = ServerConf {
        threads: opts.threads.max(1),
        grace_period_seconds: Some(opts.grace_period.as_secs()),
        // Past the grace period nothing is worth waiting for: cut it.
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 1024,
        upgrade_sock: upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade.take_over,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if opts.upgrade.take_over {
        let pid = match opts.upgrade.takeover_pid {
            Some(pid) => pid,
            None => upgrade::discover_pid(opts.admin)?,
        };
        upgrade::check_pid(pid)?;
        info!(pid, sock = %upgrade_sock.display(), generation = live.current().info.number, "generation loaded; taking the listening sockets over");
        upgrade::signal_when_listening(pid, upgrade_sock.clone()).map_err(ServeError::Thread)?;
    }
    // Takes the listening sockets from the old process when upgrading (exits if none arrive).
    server.bootstrap();
    let conf = server.configuration.clone();
    let lifecycle = Arc::new(Lifecycle::default());

    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    // Every accepted stream runs under its port's request-header deadline (sanitize::deadline).
    let gateway = Gateway::new(live.clone()).with_mesh(identity.clone());
    let mut http = pingora::proxy::http_proxy(&conf, gateway);
    http.server_options = Some(server_options);
    let app = crate::sanitize::deadline::HeaderDeadline::new(http, live.clone());
    let app = DrainApp::new(app, lifecycle.clone(), keepalive_window(opts.grace_period));
    let mut proxy = Service::new("switchyard-gateway".to_string(), app);

    let address = runtime.gateway().address;
    let mut egress = crate::egress::EgressListeners::new(&conf, live.clone());
    let mut egress_ports = 0;
    for port in runtime.ports() {
        let addr = SocketAddr::new(address, port.port).to_string();
        let protocol = runtime.port_config(port).protocol;
        if egress.bind(protocol, &addr) {
            egress_ports += 1;
            info!(%addr, %protocol, "egress listening");
            continue;
        }
        let mesh =
            crate::pki::serve::mesh_tls(identity.as_ref(), runtime.port_config(port), &live)?;
        if let Some(tls) = mesh {
            let buffers = L4BufferSettings::new(TLS_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE);
            proxy.add_listener(ListenerConfig::tcp(&addr).tls(tls).l4_buffer(buffers));
        } else if port.https {
            let mut tls = TlsSettings::intermediate("", "").map_err(|e| ServeError::Listener {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
            tls.set_cert_resolver(Arc::new(SniResolver::new(live.clone(), port.port)));
            tls.enable_h2();
            // rustls reads whole records; a record-sized L4 buffer saves syscalls.
            let buffers = L4BufferSettings::new(TLS_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE);
            proxy.add_listener(ListenerConfig::tcp(&addr).tls(tls).l4_buffer(buffers));
        } else {
            // Unbuffered reads: pingora parses headers into its own buffer, and a 64 KiB L4
            // read buffer per connection would dominate the memory of idle keep-alives.
            let buffers = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
            proxy.add_listener(ListenerConfig::tcp(&addr).l4_buffer(buffers));
        }
        info!(%addr, https = port.https, east_west = port.east_west, "listening");
    }
    drop(runtime);

    let admin = AdminService::new(
        "switchyard-admin",
        opts.admin,
        LifecycleAdmin::new(
            AdminApp::new(live.clone()).with_identity(identity.clone()),
            lifecycle.clone(),
        ),
        lifecycle.clone(),
    );
    info!(addr = %opts.admin, "admin listening");

    if let Err(e) = crate::certwatch::start(&live) {
        warn!(error = %e, "listener certificates will reload only with a new generation");
    }

    server.add_service(proxy);
    egress.add_to(&mut server);
    server.add_service(admin);
    // Egress connections (CONNECT tunnels) are not counted: with egress listeners the process
    // waits out the whole grace period.
    if egress_ports == 0 {
        exit_when_drained(
            lifecycle.clone(),
            server.watch_execution_phase(),
            opts.grace_period,
        )
        .map_err(ServeError::Thread)?;
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(SignalWatch::new(lifecycle, upgrade_sock)),
    });
    std::process::exit(0)
}

/// Starts from the persisted generation when there is a usable one, otherwise waits for the
/// control service; then follows the control service on a thread of its own.
fn subscribe(
    opts: SubscribeOptions,
    gateway: Option<String>,
) -> Result<Arc<LiveConfig>, ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let sub = Subscriber::new(opts.clone(), gateway.clone())?;
    let start = |payload: &Payload, generation| {
        LiveConfig::start(
            generation,
            Some(payload.gateway.clone()),
            Source::Control,
            payload.generation,
        )
        .map_err(|e| e.to_string())
    };
    let persisted = match persist::load(&opts.state_dir) {
        Ok(Some(p)) if p.zone.as_deref() != Some(opts.zone.as_str()) => {
            warn!(zone = ?p.zone, "persisted generation is for another zone; ignoring it");
            None
        }
        Ok(Some(p))
            if gateway
                .as_ref()
                .is_some_and(|g| !gateway_matches(g, &p.gateway)) =>
        {
            warn!(gateway = %p.gateway, "persisted generation is for another Gateway; ignoring it");
            None
        }
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot use the persisted generation");
            None
        }
    };
    let from_disk = persisted.and_then(|p| {
        match sub.build(&p).and_then(|g| start(&p, g)) {
            Ok(live) => {
                info!(generation = p.generation, "serving the persisted generation; catching up with the control service");
                Some(live)
            }
            Err(e) => {
                warn!(generation = p.generation, error = %e, "persisted generation does not compile; waiting for the control service");
                None
            }
        }
    });
    let live = match from_disk {
        Some(live) => live,
        None => {
            info!(control = %opts.control, "waiting for the first generation from the control service");
            let (payload, live) = rt.block_on(sub.first(start));
            info!(
                generation = payload.generation,
                "first generation from the control service"
            );
            live
        }
    };
    let follow = live.clone();
    std::thread::Builder::new()
        .name("switchyard-subscriber".into())
        .spawn(move || rt.block_on(sub.run(follow)))
        .map_err(ServeError::Runtime)?;
    Ok(live)
}
