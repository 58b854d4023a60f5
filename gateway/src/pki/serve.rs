//! Startup glue between the listeners and the mesh identity: whether the Gateway's ports need
//! one (an EastWest listener, an HTTPS listener asking for client certificates), starting it,
//! and the TLS settings of those ports.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use switchyard_config::{ClientCertificates, ListenerProtocol, PortConfig};

use super::{IdentityOptions, MeshIdentity, PkiError};
use crate::live::LiveConfig;
use crate::runtime::Runtime;
use crate::tls::SniResolver;

/// The ports of `runtime`'s Gateway that need a mesh identity, described for an error.
fn mesh_ports(runtime: &Runtime) -> Vec<String> {
    runtime
        .gateway()
        .ports
        .iter()
        .filter(|p| p.needs_mesh_identity())
        .map(|p| match p.protocol {
            ListenerProtocol::EastWest => format!("{} ({})", p.port, p.protocol),
            _ => format!("{} (HTTPS with switchyard.dev/client-certificate)", p.port),
        })
        .collect()
}

/// Starts the mesh identity when the Gateway needs one: it serves a mesh or east-west port,
/// or it may fail over to another zone's east-west listener. A Gateway with such ports on a
/// gateway with no way to get certificates is an error naming the ports; one that only dials
/// east-west is served without failover (logged).
pub fn start_if_needed(
    opts: Option<&IdentityOptions>,
    runtime: &Runtime,
) -> Result<Option<Arc<MeshIdentity>>, PkiError> {
    let ports = mesh_ports(runtime);
    if ports.is_empty() {
        if !runtime.dials_east_west() {
            return Ok(None);
        }
        let Some(opts) = opts else {
            tracing::warn!(
                gateway = %runtime.gateway().id,
                "backends have endpoints in other zones, but this gateway has no mesh identity \
                 (--control or --mesh-ca-dir): it will not fail over to them"
            );
            return Ok(None);
        };
        return MeshIdentity::start(opts.clone()).map(Some);
    }
    let Some(opts) = opts else {
        return Err(PkiError::Tls(format!(
            "Gateway {} listens on {} which need a mesh identity: run the gateway with --control URL (certificates from the control service) or with --mesh-ca-dir DIR --zone ZONE --name NAME",
            runtime.gateway().id,
            ports.join(", ")
        )));
    };
    if let Some(zone) = &runtime.gateway().zone {
        if *zone != opts.zone {
            return Err(PkiError::Tls(format!(
                "Gateway {} is in zone {zone:?} (switchyard.dev/zone) but this gateway's --zone is {:?}",
                runtime.gateway().id,
                opts.zone
            )));
        }
    }
    MeshIdentity::start(opts.clone()).map(Some)
}

/// TLS settings for a port that needs the mesh identity; `None` for other ports.
pub fn mesh_tls(
    identity: Option<&Arc<MeshIdentity>>,
    port: &PortConfig,
    live: &Arc<LiveConfig>,
) -> Result<Option<TlsSettings>, PkiError> {
    if !port.needs_mesh_identity() {
        return Ok(None);
    }
    let identity = identity
        .ok_or_else(|| PkiError::Tls(format!("port {} needs a mesh identity", port.port)))?;
    let tls = match (port.protocol, port.client_certificates) {
        (ListenerProtocol::EastWest, _) => identity.east_west_tls()?,
        (_, mode) => identity.mesh_listener_tls(
            Arc::new(SniResolver::new(live.clone(), port.port)),
            mode == Some(ClientCertificates::Required),
        )?,
    };
    Ok(Some(tls))
}
