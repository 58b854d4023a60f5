//! The echo backend's request handler: JSON echo, `/status/{code}`, `/delay/{ms}` and the `/ws` echo.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::header::{
    CONNECTION, CONTENT_TYPE, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::backend::{RecordedRequest, State, TlsInfo};

/// What one accepted connection knows about itself, shared by the requests it carries.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// 1-based index of the connection among those the backend accepted.
    pub id: u64,
    /// SNI and ALPN when the connection is TLS.
    pub tls: Option<TlsInfo>,
    pub state: Arc<State>,
    /// Flips (or closes) when the backend shuts down; ends WebSocket sessions.
    pub shutdown: watch::Receiver<bool>,
}

/// Answers one request; never fails (errors become 4xx responses).
pub(crate) async fn handle(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let upgrade = (req.uri().path() == "/ws" && is_websocket_upgrade(&req))
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "request body aborted")),
    };
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let recorded = RecordedRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        host,
        headers: parts.headers,
        version: parts.version,
        body,
        connection: conn.id,
        tls: conn.tls.clone(),
    };
    let echo = echo_json(&conn.state.name, &recorded);
    let route = recorded.path.clone();
    let ws_key = recorded.headers.get(SEC_WEBSOCKET_KEY).cloned();
    conn.state.record(recorded);

    if let (Some(on_upgrade), Some(key)) = (upgrade, ws_key) {
        let shutdown = conn.shutdown.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo_websocket(ws, shutdown).await;
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
            .header("x-backend", conn.state.name.as_str())
            .body(Full::new(Bytes::new()))
            .expect("valid 101 response");
        return Ok(response);
    }

    let mut status = StatusCode::OK;
    if let Some(code) = route.strip_prefix("/status/") {
        match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
            Some(c) => status = StatusCode::from_u16(c).expect("status in 200..=599"),
            None => return Ok(plain(StatusCode::BAD_REQUEST, "bad /status/{code}")),
        }
    } else if let Some(ms) = route.strip_prefix("/delay/") {
        match ms.parse::<u64>() {
            Ok(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "bad /delay/{ms}")),
        }
    }
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(&echo).expect("JSON serializes"))
    };
    let response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header("x-backend", conn.state.name.as_str())
        .body(Full::new(body))
        .expect("valid echo response");
    Ok(response)
}

/// The JSON body describing `req` as backend `name` saw it.
fn echo_json(name: &str, req: &RecordedRequest) -> Value {
    let tls = req
        .tls
        .as_ref()
        .map(|t| json!({"sni": t.sni, "alpn": t.alpn}));
    json!({
        "backend": name,
        "method": req.method.as_str(),
        "path": req.path,
        "query": req.query,
        "host": req.host,
        "version": version_str(req.version),
        "headers": headers_json(&req.headers),
        "body_len": req.body.len(),
        "connection": req.connection,
        "tls": tls,
    })
}

/// "HTTP/1.1", "HTTP/2.0", ... as the JSON spells versions.
pub(crate) fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Lowercase header names to values; repeated headers joined with ", ".
fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_string(), Value::String(joined));
    }
    Value::Object(map)
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    req.version() == Version::HTTP_11
        && has(UPGRADE, "websocket")
        && has(CONNECTION, "upgrade")
        && req.headers().contains_key(SEC_WEBSOCKET_KEY)
}

fn plain(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(msg.as_bytes())))
        .expect("valid error response")
}

/// Sends every text and binary message back until the peer closes or the backend shuts down.
async fn echo_websocket<S>(mut ws: WebSocketStream<S>, mut shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            _ = shutdown.wait_for(|stop| *stop).map(|_| ()) => None,
        };
        let reply = match msg {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => m,
            // Pings are answered by tungstenite itself; pongs and frames need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    let _ = ws.close(None).await;
}
