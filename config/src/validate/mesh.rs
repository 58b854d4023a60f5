//! Validation of the mesh listeners of a Gateway: the `switchyard.dev/EastWest` listener (no
//! hostname, no tls, at most one, in a zone) and the `switchyard.dev/` keys of an HTTPS
//! listener's `tls.options` (`switchyard.dev/client-certificate: Optional|Required`).

use std::collections::BTreeMap;

use super::Object;
use crate::model::ClientCertificates;
use crate::raw::gateway::{GatewaySpec, Listener};
use crate::report::Reporter;

/// The listener protocol name of the east-west listener.
pub(crate) const EAST_WEST: &str = "switchyard.dev/EastWest";
/// The TLS option that makes an HTTPS listener a mesh listener.
pub(crate) const CLIENT_CERTIFICATE: &str = "switchyard.dev/client-certificate";
const OPTION_PREFIX: &str = "switchyard.dev/";

/// Checks an EastWest listener's shape: it serves the gateway's own mesh certificate to every
/// peer, so it takes no hostname and no tls block, and the Gateway needs a zone.
pub(crate) fn east_west(
    raw: &Listener,
    field: &str,
    obj: &Object<'_, GatewaySpec>,
    zone: Option<&String>,
    rep: &mut Reporter<'_>,
) {
    let site = &obj.site;
    if raw.hostname.is_some() {
        rep.error(
            site,
            format!("{field}.hostname"),
            "an EastWest listener takes no hostname (peers dial gateway.ZONE.TRUST_DOMAIN)",
        );
    }
    if raw.tls.is_some() {
        rep.error(
            site,
            format!("{field}.tls"),
            "an EastWest listener takes no tls: it serves the gateway's mesh certificate and requires gateway client certificates",
        );
    }
    if zone.is_none() {
        rep.error(
            site,
            format!("{field}.protocol"),
            "an EastWest listener needs the Gateway's switchyard.dev/zone label",
        );
    }
}

/// Reads the `switchyard.dev/` keys of `tls.options`; other prefixes belong to other
/// implementations and are ignored, as the Gateway API asks.
pub(crate) fn client_certificates(
    options: &BTreeMap<String, String>,
    field: &str,
    obj: &Object<'_, GatewaySpec>,
    rep: &mut Reporter<'_>,
) -> Option<ClientCertificates> {
    let mut mode = None;
    for (key, value) in options {
        if !key.starts_with(OPTION_PREFIX) {
            continue;
        }
        let ofield = format!("{field}.tls.options.{key}");
        if key != CLIENT_CERTIFICATE {
            rep.error(
                &obj.site,
                ofield,
                format!("unknown TLS option {key:?} (supported: {CLIENT_CERTIFICATE})"),
            );
            continue;
        }
        match value.as_str() {
            "Optional" => mode = Some(ClientCertificates::Optional),
            "Required" => mode = Some(ClientCertificates::Required),
            other => rep.error(
                &obj.site,
                ofield,
                format!("invalid {CLIENT_CERTIFICATE} {other:?} (supported: Optional, Required)"),
            ),
        }
    }
    mode
}

/// Per-Gateway checks across listeners: one EastWest listener, and one client-certificate
/// mode per HTTPS port (the TLS handshake is per port).
#[derive(Default)]
pub(crate) struct MeshListeners {
    east_west: Option<usize>,
    modes: BTreeMap<u16, (Option<ClientCertificates>, String)>,
}

impl MeshListeners {
    pub(crate) fn check(
        &mut self,
        index: usize,
        raw: &Listener,
        mode: Option<ClientCertificates>,
        obj: &Object<'_, GatewaySpec>,
        rep: &mut Reporter<'_>,
    ) {
        let field = format!("spec.listeners[{index}]");
        if raw.protocol == EAST_WEST {
            match self.east_west {
                Some(first) => rep.error(
                    &obj.site,
                    format!("{field}.protocol"),
                    format!("at most one {EAST_WEST} listener per Gateway (also spec.listeners[{first}])"),
                ),
                None => self.east_west = Some(index),
            }
            return;
        }
        if raw.protocol != "HTTPS" {
            return;
        }
        match self.modes.get(&raw.port) {
            Some((first_mode, first)) if *first_mode != mode => rep.error(
                &obj.site,
                format!("{field}.tls.options"),
                format!(
                    "listeners on port {} must agree on {CLIENT_CERTIFICATE} (listener {first:?} has {}, this one {})",
                    raw.port,
                    describe(*first_mode),
                    describe(mode)
                ),
            ),
            Some(_) => {}
            None => {
                self.modes.insert(raw.port, (mode, raw.name.clone()));
            }
        }
    }
}

fn describe(mode: Option<ClientCertificates>) -> &'static str {
    match mode {
        None => "none",
        Some(ClientCertificates::Optional) => "Optional",
        Some(ClientCertificates::Required) => "Required",
    }
}
