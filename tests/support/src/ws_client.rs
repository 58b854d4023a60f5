//! A WebSocket client (tokio-tungstenite over plain TCP) for echo roundtrips through the gateway.

use std::io;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{bounded, other};

/// Opens a WebSocket to `ws://host{path}` over TCP to `addr`, sends `msg` as text and returns
/// the first text (or binary, lossy UTF-8) message received.
pub async fn try_ws_echo(
    addr: SocketAddr,
    host: &str,
    path: &str,
    msg: &str,
) -> io::Result<String> {
    bounded("WebSocket echo", async move {
        let tcp = TcpStream::connect(addr).await?;
        let url = format!("ws://{host}{path}");
        let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .map_err(other)?;
        ws.send(Message::text(msg.to_string()))
            .await
            .map_err(other)?;
        let reply = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break t.to_string(),
                Some(Ok(Message::Binary(b))) => break String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(Message::Close(frame))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("WebSocket closed before a reply: {frame:?}"),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(other(e)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        };
        let _ = ws.close(None).await;
        Ok(reply)
    })
    .await
}

/// [`try_ws_echo`] that panics with the target when the roundtrip fails.
pub async fn ws_echo(addr: SocketAddr, host: &str, path: &str, msg: &str) -> String {
    try_ws_echo(addr, host, path, msg)
        .await
        .unwrap_or_else(|e| panic!("WebSocket echo via {addr} to ws://{host}{path} failed: {e}"))
}
