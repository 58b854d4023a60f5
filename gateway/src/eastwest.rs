//! East-west hops between zones. Outbound: a source gateway that fails a backend's traffic
//! over to another zone dials that zone's east-west listener over mTLS with its mesh
//! certificate, SNI `gateway.ZONE.TRUST_DOMAIN`, and names the backend it chose in
//! `x-switchyard-backend`. Inbound: the east-west listener (mTLS from verified gateways only)
//! serves that backend from its own zone's endpoints and never forwards again.

use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};
use switchyard_config::ObjRef;

use crate::locality::{Tier, BACKEND_HEADER};
use crate::pki::MeshIdentity;
use crate::respond::Reason;
use crate::runtime::{BackendRuntime, Runtime};

/// The backend an inbound east-west request names, if this generation has it.
pub fn inbound_backend(
    runtime: &Runtime,
    req: &RequestHeader,
) -> Result<Arc<BackendRuntime>, Reason> {
    // Without a backend name (`namespace/name`) this is not a request from a gateway.
    let named = req
        .headers
        .get(BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .map(|(ns, name)| ObjRef::new(ns, name));
    let Some(id) = named else {
        return Err(Reason::BadRequest);
    };
    let backend = runtime.backend_by_id(&id).ok_or(Reason::NoBackend)?;
    if backend.balancer.is_empty() {
        return Err(Reason::NoEndpoints);
    }
    Ok(backend.clone())
}

/// Adds this attempt's mesh credentials to a remote zone's peer template: our current client
/// certificate, the current trust bundle (its version keeps pooled connections verified under
/// another bundle apart) and the zone's gateway name as SNI.
pub fn outbound_peer(peer: &mut HttpPeer, zone: &str, mesh: Option<&MeshIdentity>) -> Result<()> {
    let Some(mesh) = mesh else {
        return Err(Error::explain(
            ErrorType::ConnectError,
            "east-west failover needs a mesh identity (a zone and a CA)",
        ));
    };
    let creds = mesh.upstream_credentials();
    peer.sni = mesh.gateway_dns_name(zone);
    peer.client_cert_key = Some(creds.cert_key);
    peer.options.ca = Some(creds.ca);
    peer.group_key = creds.version;
    Ok(())
}

/// Names the backend for the remote gateway on an outbound east-west hop; removes the name
/// before an inbound east-west request goes to a local endpoint.
pub fn upstream_headers(
    upstream: &mut RequestHeader,
    backend: &BackendRuntime,
    tier: Tier,
    east_west_in: bool,
) -> Result<()> {
    if east_west_in {
        upstream.remove_header(BACKEND_HEADER);
    } else if matches!(tier, Tier::Remote(_)) {
        upstream.insert_header(BACKEND_HEADER, backend.id.to_string())?;
    } else {
        upstream.remove_header(BACKEND_HEADER);
    }
    Ok(())
}
