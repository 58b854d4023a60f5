//! Assembles a gateway process: loads the first generation, binds the Gateway's listeners
//! (HTTP with h2c, HTTPS with SNI certificates and ALPN h2) and the admin listener on one
//! pingora `Server`, starts the route-file watcher, and runs until a shutdown signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use switchyard_config::Diagnostics;
use thiserror::Error;
use tracing::info;

use crate::admin::AdminApp;
use crate::live::LiveConfig;
use crate::proxy::Gateway;
use crate::runtime::CompileError;
use crate::tls::SniResolver;
use crate::watch::{load_stable, watch, WatchError};

/// L4 read buffer of TLS listeners: one TLS record.
const TLS_READ_BUFFER: usize = 16 * 1024;

/// How the gateway process runs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub config_dir: PathBuf,
    /// Which Gateway of the set to serve ("ns/name" or "name"); `None` = the only one.
    pub gateway: Option<String>,
    pub admin: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before closing.
    pub grace_period: Duration,
    /// Quiet time after a file change before the set is re-read.
    pub debounce: Duration,
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
}

/// Runs the gateway; returns only when startup fails (serving ends the process).
pub fn serve(opts: GatewayOptions) -> Result<(), ServeError> {
    let generation =
        load_stable(&opts.config_dir, opts.debounce).map_err(|diagnostics| ServeError::Config {
            dir: opts.config_dir.display().to_string(),
            diagnostics,
        })?;
    let live = LiveConfig::start(generation, opts.gateway.clone())?;

    let conf = ServerConf {
        threads: opts.threads.max(1),
        grace_period_seconds: Some(opts.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: 1024,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    let mut proxy = ProxyServiceBuilder::new(&conf, Gateway::new(live.clone()))
        .name("switchyard-gateway")
        .server_options(server_options)
        .build();

    let runtime = live.current();
    let address = runtime.gateway().address;
    for port in runtime.ports() {
        let addr = SocketAddr::new(address, port.port).to_string();
        if port.https {
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
        info!(%addr, https = port.https, "listening");
    }
    drop(runtime);

    let mut admin = Service::new("switchyard-admin".to_string(), AdminApp::new(live.clone()));
    admin.threads = Some(1);
    admin.add_tcp(&opts.admin.to_string());
    info!(addr = %opts.admin, "admin listening");

    let _watcher = watch(opts.config_dir.clone(), live, opts.debounce)?;
    server.add_service(proxy);
    server.add_service(admin);
    server.run_forever()
}
