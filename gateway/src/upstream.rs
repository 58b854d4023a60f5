//! Upstream peers: one prepared `HttpPeer` per endpoint, carrying the timeouts, protocol and
//! TLS settings of the backend's policy. Requests clone a prepared peer; nothing is resolved
//! or parsed per request.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use switchyard_config::{BackendPolicy, TlsAlpn, UpstreamProtocol};

use crate::tls::{load_ca_bundle, TlsError};

/// How many concurrent streams one upstream h2 connection may carry (pingora's default is 1).
const H2_STREAMS_PER_CONNECTION: usize = 100;
/// TCP keepalive probes on pooled upstream connections find dead peers.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Builds the peer template for one endpoint of a backend.
pub fn prepare_peer(address: SocketAddr, policy: &BackendPolicy) -> Result<HttpPeer, TlsError> {
    let (tls, sni) = match &policy.protocol {
        UpstreamProtocol::Tls(t) => (true, t.sni.clone()),
        // rustls fails on an empty SNI; plaintext peers never use it.
        _ => (false, String::new()),
    };
    let mut peer = HttpPeer::new(address, tls, sni);
    set_timeouts(&mut peer, policy);
    let o = &mut peer.options;
    match &policy.protocol {
        UpstreamProtocol::Http1 => o.alpn = ALPN::H1,
        UpstreamProtocol::H2c => {
            // On plaintext, ALPN::H2 means h2 with prior knowledge.
            o.alpn = ALPN::H2;
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        UpstreamProtocol::Tls(t) => {
            o.alpn = match t.alpn {
                TlsAlpn::Http1 => ALPN::H1,
                TlsAlpn::H2 => ALPN::H2,
                TlsAlpn::Auto => ALPN::H2H1,
            };
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
            o.verify_cert = !t.insecure_skip_verify;
            o.verify_hostname = !t.insecure_skip_verify;
            if let Some(ca) = &t.ca_file {
                o.ca = Some(load_ca_bundle(ca)?);
                // The pool key ignores `ca`: keep connections verified under another bundle apart.
                peer.group_key = xxhash_rust::xxh3::xxh3_64(ca.as_os_str().as_encoded_bytes());
            }
        }
    }
    Ok(peer)
}

/// The peer template for one east-west address of a remote zone: TLS (HTTP/1.1, so
/// WebSocket upgrades cross zones too), with the backend's timeouts. The mesh client
/// certificate, trust bundle and SNI are set per attempt, because they rotate.
pub fn east_west_peer(address: SocketAddr, policy: &BackendPolicy) -> HttpPeer {
    let mut peer = HttpPeer::new(address, true, String::new());
    set_timeouts(&mut peer, policy);
    let o = &mut peer.options;
    o.alpn = ALPN::H1;
    o.verify_cert = true;
    o.verify_hostname = true;
    peer
}

/// The policy's connect, read, write and idle timeouts, plus TCP keepalive probes.
fn set_timeouts(peer: &mut HttpPeer, policy: &BackendPolicy) {
    let o = &mut peer.options;
    o.connection_timeout = Some(policy.connect_timeout);
    o.total_connection_timeout = Some(policy.connect_timeout * 2);
    o.read_timeout = policy.read_timeout;
    o.write_timeout = policy.write_timeout;
    o.idle_timeout = Some(policy.idle_timeout);
    o.tcp_keepalive = Some(pingora::protocols::TcpKeepalive {
        idle: TCP_KEEPALIVE_IDLE,
        interval: Duration::from_secs(10),
        count: 3,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::from_secs(0),
    });
}
